"""The benchmark end to end on a schedule of a few steps: real MRBrainS18 when present, else the phantom
(it has the release's subject ids). What is checked is the plumbing: every value of the benchmark's
tables comes from this run's own metrics files, and a second invocation continues instead of retraining."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
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
    replicates=2,
    lr_scales=(1.0, 2.0),
    labels=TESTS.labels,
    planning=TESTS,
)


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@contextlib.contextmanager
def _profile(name: str, profile):
    """The benchmark's profile ``name`` replaced by ``profile``, and the environment restored afterwards."""
    saved = dict(os.environ)
    PROFILES[name], original = profile, PROFILES[name]
    try:
        yield
    finally:
        PROFILES[name] = original
        os.environ.clear()
        os.environ.update(saved)


def _environment(line: str) -> dict[str, str]:
    """The variables a command line's ``env`` sets."""
    words = shlex.split(line)
    return dict(w.split("=", 1) for w in words[1 : words.index("nnUNetv2_train")])


def _arguments(benchmark_run, *extra: str) -> list[str]:
    run = benchmark_run["root"]
    return ["benchmark", str(benchmark_run["release"]), "--workdir", str(run), "--strategies", "NoisyLabel", *extra]


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
    # subject 1 is the tuning subject: no judged forget set, its runs at scale 1 in a table of their own
    assert content["forget_sets"] == [] and content["original_trainer"] == TINY.scratch_trainer
    assert content["tables"]["leave_one_subject_out"] == [] and content["tuning_subject"] == "1"
    main_table = {(r["model"], r["horizon"]): r for r in content["tables"]["tuning_subject"]}
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
    assert "## Tuning" in markdown and "NoisyLabel was not judged" in markdown
    # the tests' planning keeps nnU-Net's mirroring, and the benchmark says what its workdir's plans do
    assert "Mirroring augmentation (the workdir's plans): nnU-Net's, along every axis." in markdown


@pytest.mark.slow
def test_benchmark_tunes_on_its_tuning_subject_through_run_configs(benchmark_run):
    """The grid's scale-2 points train with a run config that sets lr_scale 2 (× the original's rate) in a
    results folder of their own; the choice is one of the grid's points, with every point's numbers."""
    run, content = benchmark_run["root"], benchmark_run["first"]
    folder = run / "forget_1" / "lr_2" / "nnUNet_results" / mrbrains18.DATASET_NAME
    metrics = json.loads(
        (
            folder
            / "nnUNetTrainerUnlearnNoisyLabel_5epochs__nnUNetMed3DPlans__3d_fullres"
            / "fold_0"
            / "unlearning_metrics.json"
        ).read_text()
    )
    assert metrics["hyperparameters"]["lr_scale"] == 2.0
    choice = content["tuning"]["NoisyLabel"]
    assert {(g["lr_scale"], g["epochs"]) for g in choice["grid"]} == {(1.0, 2), (1.0, 5), (2.0, 2), (2.0, 5)}
    assert (choice["lr_scale"], choice["epochs"]) in {(g["lr_scale"], g["epochs"]) for g in choice["grid"]}
    end = metrics["evaluations"][-1]["cases"]["MRBrainS18_1"]["mean"]["dice"]
    point = next(g for g in choice["grid"] if (g["lr_scale"], g["epochs"]) == (2.0, 5))
    assert point["dice_forget"] == pytest.approx(end)
    assert json.loads((run / "tuning.json").read_text())["tuning_subject"] == "1"


@pytest.mark.slow
def test_benchmark_judges_runs_against_its_replicates(benchmark_run):
    """Two originals and two oracles: each run's gap to the oracles' mean and its membership test come from the
    replicates' own files (the oracles' end evaluations, the originals' kept evaluations)."""
    run, content = benchmark_run["root"], benchmark_run["first"]
    distribution = content["retrain_distribution"]
    assert content["replicates"] == 2 and distribution["k_originals"] == 2
    entry = distribution["forget_sets"]["1"]
    assert entry["k_oracles"] == 2
    plans = "nnUNetMed3DPlans__3d_fullres"
    oracle_ends = [
        json.loads(
            (
                results
                / mrbrains18.DATASET_NAME
                / f"nnUNetTrainerRetrain__{plans}"
                / "fold_0"
                / "unlearning_metrics.json"
            ).read_text()
        )["evaluations"][-1]
        for results in (run / "forget_1" / "nnUNet_results", run / "forget_1" / "oracle_seed_1" / "nnUNet_results")
    ]
    forget_dice = [e["cases"]["MRBrainS18_1"]["mean"]["dice"] for e in oracle_ends]
    assert entry["oracle"]["forget"]["mean"] == pytest.approx(sum(forget_dice) / 2)
    rows = {row["model"]: row for row in entry["rows"]}
    assert set(rows) == {
        "original",
        "retrain oracle",
        "NoisyLabel_2epochs",
        "NoisyLabel_5epochs",
        "NoisyLabel_2epochs lr×2",
        "NoisyLabel_5epochs lr×2",
    }
    kept = json.loads((run / "originals" / "seed_1" / "original_evaluation.json").read_text())
    assert set(kept["evaluation"]["cases"]) == set(content["training"] + content["heldout"])
    for row in rows.values():
        test = row["membership"]["1"]
        # a replicate is judged against the others: one model left on its own side is too few
        if row["model"] in ("original", "retrain oracle"):
            assert test is None
        else:
            assert test["k_in"] == 2 and test["verdict"] in (
                "looks like a member",
                "looks over-forgotten",
                "indistinguishable from retrained",
            )
    assert distribution["power"] is None  # 3 models a side are needed
    # where each run's wall time went: its training, its evaluations, the rest (the original has no run)
    assert rows["original"]["seconds"] is None
    for row in (rows["retrain oracle"], rows["NoisyLabel_5epochs"]):
        seconds = row["seconds"]
        assert seconds["wall"] == row["wall_s"] and min(seconds["training"], seconds["evaluation"]) > 0
        assert seconds["training"] + seconds["evaluation"] + seconds["other"] == pytest.approx(seconds["wall"])
    markdown = (run / "benchmark.md").read_text()
    assert "## Against the retrain distribution" in markdown
    assert "| wall s (training / evaluation / other) |" in markdown


@pytest.mark.slow
def test_benchmark_continues_and_leaves_its_inputs_alone(benchmark_run):
    run = benchmark_run["root"]
    after = {p: p.stat().st_mtime_ns for p in run.rglob("checkpoint_final.pth")}
    # 2 originals, 2 oracles, 2 learning-rate scales × 2 horizons
    assert after == benchmark_run["checkpoints"] and len(after) == 8
    assert benchmark_run["unchanged"]


@pytest.mark.slow
def test_benchmark_collects_the_finished_runs_without_training(benchmark_run):
    run = benchmark_run["root"]
    with _profile("cpu", TINY):
        assert main(_arguments(benchmark_run, "--forget", "1", "--collect")) == 0
    collected = json.loads((run / "benchmark.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in run.rglob("checkpoint_final.pth")} == benchmark_run["checkpoints"]
    assert collected["rows"] == benchmark_run["first"]["rows"] and collected["failed_runs"] == []
    assert collected["tuning"] == benchmark_run["first"]["tuning"]


@pytest.mark.slow
def test_benchmark_writes_the_runs_it_needs_next_as_nnunet_command_lines(benchmark_run, capsys):
    """The paper profile's schedules are the trainers' own, so its runs can go to a scheduler: with the tuning
    subject finished, judging subject 4 needs its oracles and the tuned NoisyLabel, as tuned and twice calibrated."""
    run = benchmark_run["root"]
    paper = dataclasses.replace(
        PROFILES["paper"],
        replicates=TINY.replicates,
        lr_scales=TINY.lr_scales,
        horizons=TINY.horizons,
        device="cpu",
        labels=TINY.labels,
        scratch_trainer=TINY.scratch_trainer,
        planning=TESTS,
    )
    script = run / "commands.txt"
    with _profile("paper", paper):
        assert main(_arguments(benchmark_run, "--profile", "paper", "--forget", "4", "--commands", str(script))) == 0
    assert "5 command(s) written to" in capsys.readouterr().out
    lines = script.read_text().splitlines()
    assert all(
        line.startswith("env ") and " nnUNetv2_train Dataset502_MRBrainS18 3d_fullres 0 -tr " in line for line in lines
    )
    assert sum("-tr nnUNetTrainerRetrain -p nnUNetMed3DPlans -device cpu" in line for line in lines) == 2
    tuned = benchmark_run["first"]["tuning"]["NoisyLabel"]
    trainer = f"nnUNetTrainerUnlearnNoisyLabel_{tuned['epochs']}epochs"
    # the calibrated twins (held-out band, memorisation reference) run on the long horizon as their bound
    twins = f"nnUNetTrainerUnlearnNoisyLabel_{max(tuned['epochs'], max(TINY.horizons))}epochs"
    assert sum(f"-tr {trainer} " in line for line in lines) == (1 if trainer != twins else 3)
    assert sum(f"-tr {twins} " in line for line in lines) == (2 if trainer != twins else 3)
    request = str(run / "forget_4" / "unlearning_request.json")
    assert all(_environment(line)["nnUNet_unlearning_request"] == request for line in lines)
    calibrated = next(_environment(line) for line in lines if "calibrated_lr_" in line)
    config = json.loads(Path(calibrated["nnUNet_unlearning_config"]).read_text())
    assert config["calibration"]["enabled"] and config["strategies"]["NoisyLabel"]["lr_scale"] == tuned["lr_scale"]
    memorisation = next(_environment(line) for line in lines if "calibrated_memorisation_patches_lr_" in line)
    config = json.loads(Path(memorisation["nnUNet_unlearning_config"]).read_text())
    assert config["calibration"]["scores"] == "patches" and config["acceptance"] == {"reference": "memorisation"}
    assert not list((run / "forget_4").rglob("checkpoint_final.pth"))  # nothing trained here


def test_commands_need_the_trainers_own_schedules(tmp_path, capsys):
    arguments = ["benchmark", str(tmp_path), "--workdir", str(tmp_path / "w"), "--commands", str(tmp_path / "c.txt")]
    (tmp_path / "training").mkdir()
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("nnunet-unlearning benchmark: error: --commands: the cpu profile trains 10 × 80-step")
    assert "\n" not in error
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_benchmark_judges_settings_frozen_in_an_earlier_tuning_json(benchmark_run, tmp_path):
    """--tuning skips the tuning subject (no oracles, no grid) and judges the frozen settings; collected here,
    so subject 4's runs are reported missing rather than trained."""
    run = benchmark_run["root"]
    frozen = tmp_path / "tuning.json"
    frozen.write_text((run / "tuning.json").read_text())
    with _profile("cpu", TINY):
        assert main(_arguments(benchmark_run, "--forget", "4", "--tuning", str(frozen), "--collect")) == 0
    content = json.loads((run / "benchmark.json").read_text())
    assert content["tuning_frozen_from"] == str(frozen)
    assert content["tuning"] == benchmark_run["first"]["tuning"]
    assert content["tables"]["tuning_subject"] == []  # the tuning subject is neither trained nor reported
    assert set(content["retrain_distribution"]["forget_sets"]) <= {"4"}
    missing = content["failed_runs"]
    # subject 4's oracles, the tuned NoisyLabel and its two calibrated twins
    assert len(missing) == TINY.replicates + 3 and all("not finished" in line for line in missing)
    assert f"frozen in {frozen} (not tuned in this run)" in (run / "benchmark.md").read_text()
    assert {p: p.stat().st_mtime_ns for p in run.rglob("checkpoint_final.pth")} == benchmark_run["checkpoints"]
