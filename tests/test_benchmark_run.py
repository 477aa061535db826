"""The benchmark end to end on a schedule of a few steps: real MRBrainS18 when present, else the phantom
(it has the release's subject ids). What is checked is the plumbing: every value of the benchmark's
tables comes from this run's own metrics files, and a second invocation continues instead of retraining."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import SHARED_MRBRAINS18

from nnunet_unlearning.cli import main
from nnunet_unlearning.conversion.phantom import write_phantom
from nnunet_unlearning.workflows import benchmark as mrbrains18
from nnunet_unlearning.workflows.profiles import PROFILES, TESTS

#: the cpu profile on the test suite's planning (coarser, smallest networks) and a schedule of a few steps
TINY = dataclasses.replace(
    PROFILES["cpu"],
    original_epochs=1,
    original_iterations=2,
    unlearning_iterations=1,
    audit_patches=2,
    audit_bootstrap=10,
    labels=TESTS.labels,
    planning=TESTS,
)


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    """One benchmark run (forget subject 1, NoisyLabel), then the same command again."""
    saved = dict(os.environ)
    root = tmp_path_factory.mktemp("benchmark")
    release = SHARED_MRBRAINS18 if (SHARED_MRBRAINS18 / "training").is_dir() else root / "phantom"
    if release != SHARED_MRBRAINS18:
        write_phantom(release, n_subjects=7, seed=1)
    before = _digest(release / "training")
    PROFILES["cpu"], original = TINY, PROFILES["cpu"]
    try:
        arguments = [
            "benchmark",
            str(release),
            "--workdir",
            str(root / "run"),
            "--forget",
            "1",
            "--strategies",
            "NoisyLabel",
            "--jobs",
            "2",
        ]
        assert main(arguments) == 0
        first = json.loads((root / "run" / "benchmark.json").read_text())
        checkpoints = {p: p.stat().st_mtime_ns for p in (root / "run").rglob("checkpoint_final.pth")}
        assert main(arguments) == 0
    finally:
        PROFILES["cpu"] = original
        os.environ.clear()
        os.environ.update(saved)
    yield {
        "root": root / "run",
        "first": first,
        "checkpoints": checkpoints,
        "release": release,
        "unchanged": before == _digest(release / "training"),
    }


@pytest.mark.slow
def test_benchmark_tables_come_from_the_runs_files(benchmark_run):
    run, content = benchmark_run["root"], benchmark_run["first"]
    assert content["training"] == ["MRBrainS18_1", "MRBrainS18_4", "MRBrainS18_5", "MRBrainS18_7", "MRBrainS18_14"]
    assert content["heldout"] == ["MRBrainS18_070", "MRBrainS18_148"]
    assert content["forget_sets"] == [["MRBrainS18_1"]] and content["original_trainer"] == TINY.scratch_trainer
    main_table = {(r["model"], r["horizon"]): r for r in content["tables"]["leave_one_subject_out"]}
    assert set(main_table) == {("original", "-"), ("retrain oracle", "-"), ("NoisyLabel", "2"), ("NoisyLabel", "5")}
    folder = run / "forget_1" / "nnUNet_results" / mrbrains18.DATASET_NAME
    for (model, horizon), trainer in [
        (("NoisyLabel", "5"), "nnUNetTrainerUnlearnNoisyLabel_5epochs"),
        (("retrain oracle", "-"), "nnUNetTrainerRetrain"),
    ]:
        metrics = json.loads(
            (folder / f"{trainer}__nnUNetMed3DPlans__3d_fullres" / "fold_0" / "unlearning_metrics.json").read_text()
        )
        end = metrics["evaluations"][-1]["sets"]
        assert main_table[(model, horizon)]["dice_forget"] == pytest.approx(end["forget"]["dice"])
        assert main_table[(model, horizon)]["dice_heldout"] == pytest.approx(end["heldout"]["dice"])
        assert metrics["forget"] == ["MRBrainS18_1"] and sorted(end) == ["forget", "heldout", "retain"]
    noisy = json.loads(
        (
            folder
            / "nnUNetTrainerUnlearnNoisyLabel_5epochs__nnUNetMed3DPlans__3d_fullres"
            / "fold_0"
            / "unlearning_metrics.json"
        ).read_text()
    )
    assert noisy["schedule"] == {"epochs": 5, "iterations_per_epoch": 1}  # the _5epochs trainer, 5 epochs
    assert main_table[("retrain oracle", "-")]["mia_efficacy"] is not None  # the audit ran
    assert (run / "forget_1" / "report" / "report.md").is_file()
    markdown = (run / "benchmark.md").read_text()
    assert "## Leave one subject out" in markdown and "Seed study, NoisyLabel after 50 epochs" in markdown


@pytest.mark.slow
def test_benchmark_continues_and_leaves_its_inputs_alone(benchmark_run):
    run = benchmark_run["root"]
    after = {p: p.stat().st_mtime_ns for p in run.rglob("checkpoint_final.pth")}
    assert after == benchmark_run["checkpoints"] and len(after) == 4  # original, oracle, 2 horizons
    assert benchmark_run["unchanged"]
