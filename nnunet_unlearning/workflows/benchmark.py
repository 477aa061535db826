"""``nnunet-unlearning benchmark``: the MRBrainS18 unlearning benchmark, end to end, in one folder.

convert the release (IR, FLAIR; the profile's label set) → plan and preprocess (profile) → the benchmark's split
(`benchmark_design`) → train the original Med3D model → per forget set: request, retrain oracle, every strategy at
both horizons → per forget set: membership-inference audit and report → ``benchmark.json`` and
``benchmark.md`` (`benchmark_tables`). Every number in them is computed from this run's files.

Everything goes under ``workdir`` (nnU-Net's three folders included). Run again with the same arguments,
it continues: finished trainings are kept (`benchmark_runs`), audits and reports are redone.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from nnunet_unlearning.artifacts import REQUEST_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_json, atomic_write_text
from nnunet_unlearning.workflows import benchmark_design as design
from nnunet_unlearning.workflows import benchmark_tables as tables
from nnunet_unlearning.workflows import profiles
from nnunet_unlearning.workflows.benchmark_runs import Run, train_runs
from nnunet_unlearning.workflows.original_trainer import original_trainer
from nnunet_unlearning.workflows.profiles import PROFILES

DATASET_ID = 502
DATASET_NAME = "Dataset502_MRBrainS18"
MODALITIES = ("IR", "FLAIR")  # the two channels every subject of the release has
MARKER = ".nnunet-unlearning-benchmark"
ORACLE = "nnUNetTrainerRetrain"


def _step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.perf_counter()


def _prepare_workdir(workdir: Path, overwrite: bool) -> None:
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).is_file():
            raise UserInputError(f"{workdir}: exists and is not an earlier benchmark folder; choose another --workdir")
        if overwrite:
            shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by nnunet-unlearning benchmark\n")


def strategy_names(only: Sequence[str] | None) -> list[str]:
    """The strategies to run, in the docs' order; ``only`` restricts them (names as in docs/strategies.md)."""
    from nnunet_unlearning.unlearning.strategies import STRATEGIES

    names = [s.name for s in STRATEGIES]
    for name in only or ():
        if name not in names:
            raise UserInputError(f"--strategies {name}: unknown strategy (known: {', '.join(names)})")
    return [n for n in names if not only or n in only]


def machine() -> str:
    """The machine the benchmark ran on, in words."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {device}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def _prepare_data(workdir: Path, mrbrains18: Path, profile) -> str:
    """Convert and plan once (kept across continued runs); write the split; return the plans name."""
    from nnunet_unlearning.conversion.mrbrains18 import convert_mrbrains18

    preprocessed = workdir / "nnUNet_preprocessed" / DATASET_NAME
    plans_done = preprocessed / "plans_name.txt"
    if not plans_done.is_file():
        started = _step(
            f"converting {mrbrains18} ({', '.join(MODALITIES)}; {profile.labels} labels), planning and preprocessing"
        )
        convert_mrbrains18(
            mrbrains18, DATASET_ID, modalities=MODALITIES, source="orig", labels=profile.labels, overwrite=True
        )
        plans = profile.plan(DATASET_ID)
        plans_done.write_text(plans + "\n")
        print(f"    done in {time.perf_counter() - started:.0f} s")
    raw = json.loads((workdir / "nnUNet_raw" / DATASET_NAME / "dataset.json").read_text())
    labels = workdir / "nnUNet_raw" / DATASET_NAME / "labelsTr"
    cases = [p.name.removesuffix(raw["file_ending"]) for p in labels.iterdir()]
    design.write_split(preprocessed, cases)
    return plans_done.read_text().strip()


def run_benchmark(
    mrbrains18: Path,
    workdir: Path,
    profile_name: str = "cpu",
    forget: Sequence[str] | None = None,
    sizes: Sequence[int] = design.SIZES,
    strategies: Sequence[str] | None = None,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Run the benchmark (see the module doc); return the path of ``benchmark.md``.

    Args:
        mrbrains18: the MRBrainS18 release folder (``training/<id>/...``).
        workdir: the benchmark's folder; an earlier benchmark there is continued unless ``overwrite``.
        profile_name: ``cpu`` or ``paper`` (`profiles`).
        forget: one forget set (subject or case ids) instead of the design's sets.
        sizes: forget-set sizes of the design (1: each training subject in turn).
        strategies: strategy names to run (default: all).
        jobs: trainings side by side (default: the profile's).
    """
    started_all = time.perf_counter()
    if profile_name not in PROFILES:
        raise UserInputError(f"--profile {profile_name}: unknown (known: {', '.join(PROFILES)})")
    profile = PROFILES[profile_name]
    mrbrains18 = Path(mrbrains18).resolve()
    if not (mrbrains18 / "training").is_dir():
        raise UserInputError(f"{mrbrains18}: no training/ folder; give the MRBrainS18 release folder")
    forget_sets = design.forget_sets(sizes, forget)
    names = strategy_names(strategies)
    jobs = jobs or profile.jobs
    if jobs < 1:
        raise UserInputError(f"--jobs {jobs}: must be at least 1")
    workdir = Path(workdir).resolve()
    _prepare_workdir(workdir, overwrite)

    environment = {name: str(workdir / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    environment["nnUNet_compile"] = "false"
    if profile.planning is not None:  # the CPU profile's augmentation workers; a GPU keeps nnU-Net's default
        environment["nnUNet_n_proc_DA"] = str(profile.planning.augmentation_workers)
    os.environ.update(environment)
    print(profile.describe())
    plans = _prepare_data(workdir, mrbrains18, profile)

    original_name, encoder = original_trainer(profile.scratch_trainer)
    config = profiles.CONFIGURATION  # both profiles train nnU-Net's 3d_fullres configuration
    original = Run(
        original_name,
        DATASET_NAME,
        config,
        plans,
        profile.original_epochs,
        profile.original_iterations,
        workdir / "nnUNet_results",
    )
    started = _step(
        f"training the original model ({original_name}, {encoder}) on "
        f"{', '.join(design.TRAINING_SUBJECTS)}; held out {', '.join(design.HELDOUT_SUBJECTS)}"
    )
    failures = train_runs([original], environment, profile.device, 1)
    if failures:
        raise RuntimeError(f"the original model did not train: {failures[0]}")
    print(f"    done in {time.perf_counter() - started:.0f} s")

    from nnunet_unlearning.request import write_request

    runs_by_set: dict[tuple[str, ...], list[Run]] = {}
    for forget_set in forget_sets:
        folder = workdir / design.forget_tag(forget_set)
        request = folder / REQUEST_FILE
        if not request.is_file():
            write_request(DATASET_ID, config, "0", plans, original_name, list(forget_set), out=request)
        results = folder / "nnUNet_results"
        runs = [
            Run(
                ORACLE,
                DATASET_NAME,
                config,
                plans,
                profile.original_epochs,
                profile.original_iterations,
                results,
                request,
            )
        ]
        runs += [
            Run(
                f"nnUNetTrainerUnlearn{name}_{epochs}epochs",
                DATASET_NAME,
                config,
                plans,
                epochs,
                profile.unlearning_iterations,
                results,
                request,
            )
            for name in names
            for epochs in profile.horizons
        ]
        runs_by_set[forget_set] = runs
    every_run = [run for runs in runs_by_set.values() for run in runs]
    started = _step(
        f"training {len(every_run)} models: per forget set the retrain oracle and "
        f"{len(names)} strategies × {len(profile.horizons)} horizons, {jobs} at a time"
    )
    failures += train_runs(every_run, environment, profile.device, jobs)
    print(f"    done in {time.perf_counter() - started:.0f} s")

    from nnunet_unlearning.evaluation.audit import run_audit
    from nnunet_unlearning.evidence.audit_table import write_audit_evidence
    from nnunet_unlearning.evidence.report import write_report

    reports = {}
    for forget_set, runs in runs_by_set.items():
        runs = [run for run in runs if run.finished]
        folder = workdir / design.forget_tag(forget_set)
        started = _step(f"audit and report for {design.forget_tag(forget_set)}")
        audit = run_audit(
            [r.folder for r in runs],
            out=folder / "audit",
            patches_per_case=profile.audit_patches,
            bootstrap=profile.audit_bootstrap,
            device=profile.device,
        )
        write_audit_evidence(audit)
        report = write_report([r.folder for r in runs], folder / "report")
        reports[forget_set] = json.loads((report.parent / "report.json").read_text())
        print(f"    {report} ({time.perf_counter() - started:.0f} s)")

    rows = tables.benchmark_rows(reports)
    content = {
        "format": 1,
        "profile": profile.describe(),
        "machine": machine(),
        "original_trainer": original_name,
        "original_encoder": encoder,
        "training": [design.case_id(s) for s in design.TRAINING_SUBJECTS],
        "heldout": [design.case_id(s) for s in design.HELDOUT_SUBJECTS],
        "forget_sets": [list(f) for f in forget_sets],
        "strategies": names,
        "failed_runs": failures,
        "wall_s": time.perf_counter() - started_all,
        "rows": rows,
        "tables": tables.tables(rows, str(profile.horizons[1])),
    }
    atomic_write_json(workdir / "benchmark.json", content)
    path = workdir / "benchmark.md"
    atomic_write_text(path, tables.markdown(content))
    print("\n" + tables.markdown(content))
    print(f"benchmark: {path}")
    return path
