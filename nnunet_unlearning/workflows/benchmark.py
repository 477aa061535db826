"""``nnunet-unlearning benchmark``: the MRBrainS18 unlearning benchmark, end to end, in one folder.

convert the release (IR, FLAIR; the profile's label set) → plan and preprocess (profile) → the benchmark's split
(`benchmark_design`) → train the original Med3D model → tuning on the tuning subject: K retrain oracles, K − 1
more originals and every strategy's grid (`benchmark_tuning`), the choice → per judged forget set: request, K
oracles, each strategy at its tuned setting, as tuned and calibrated (held-out band; memorisation reference,
checked on patches) → per forget set: membership-inference audit and report → every run against the retrain distribution
(`benchmark_distribution`) → ``benchmark.json`` and ``benchmark.md`` (`benchmark_tables`,
`benchmark_distribution`). Every number in them is computed from this run's files.

Everything goes under ``workdir`` (nnU-Net's three folders included). Run again with the same arguments,
it continues: finished trainings are kept (`benchmark_runs`), audits and reports are redone. The trainings
run here, or go to a scheduler as command lines batch by batch, or are only collected (`benchmark_runs.executor`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from nnunet_unlearning.artifacts import REQUEST_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.kept_scores import SCORES_ENV
from nnunet_unlearning.files import atomic_write_json, atomic_write_text
from nnunet_unlearning.nnunet.mirroring import planned_mirroring
from nnunet_unlearning.workflows import benchmark_design as design
from nnunet_unlearning.workflows import benchmark_distribution as replicas
from nnunet_unlearning.workflows import benchmark_tables as tables
from nnunet_unlearning.workflows import benchmark_tuning as tuning
from nnunet_unlearning.workflows import profiles
from nnunet_unlearning.workflows.benchmark_runs import Run, executor
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


def _prepare_data(workdir: Path, mrbrains18: Path, profile, subjects: design.Design) -> str:
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
    subjects.write_split(preprocessed, cases)
    return plans_done.read_text().strip()


def run_benchmark(
    mrbrains18: Path,
    workdir: Path,
    profile_name: str = "cpu",
    forget: Sequence[str] | None = None,
    sizes: Sequence[int] = design.SIZES,
    strategies: Sequence[str] | None = None,
    jobs: int | None = None,
    replicates: int | None = None,
    heldout: Sequence[str] | None = None,
    frozen_tuning: Path | None = None,
    commands: Path | None = None,
    collect: bool = False,
    overwrite: bool = False,
) -> Path:
    """Run the benchmark (see the module doc); return the path of ``benchmark.md``.

    Args:
        mrbrains18: the MRBrainS18 release folder (``training/<id>/...``).
        workdir: the benchmark's folder; an earlier benchmark there is continued unless ``overwrite``.
        profile_name: ``cpu`` or ``paper`` (`profiles`).
        forget: one forget set (subject or case ids) instead of the design's sets.
        heldout: the subjects held out of the original's training (`benchmark_design.Design.holding_out`);
            the others train (default 070 and 148). A continued benchmark must hold out the same.
        sizes: forget-set sizes of the design (1: each training subject in turn).
        strategies: strategy names to run (default: all).
        jobs: trainings side by side (default: the profile's).
        replicates: K, independently trained originals and oracles per forget set (default: the profile's);
            1 gives one oracle and no membership test.
        frozen_tuning: an earlier benchmark's ``tuning.json``: its settings are judged as they are, and the
            tuning subject's oracles and grid are not trained (`benchmark_tuning.read_tuning`).
        commands: write the runs needed next as ``nnUNetv2_train`` command lines to this file instead of training
            them (`benchmark_runs.write_commands`) and raise `benchmark_runs.RunsPendingError`; call again once
            they have run. Only for a profile whose schedules are the trainers' own (``paper``).
        collect: train nothing; build the tables from the finished runs, the others reported as missing.
    """
    started_all = time.perf_counter()
    if profile_name not in PROFILES:
        raise UserInputError(f"--profile {profile_name}: unknown (known: {', '.join(PROFILES)})")
    profile = PROFILES[profile_name]
    mrbrains18 = Path(mrbrains18).resolve()
    if not (mrbrains18 / "training").is_dir():
        raise UserInputError(f"{mrbrains18}: no training/ folder; give the MRBrainS18 release folder")
    subjects = design.Design.holding_out(heldout or design.DEFAULT_HELDOUT)
    forget_sets = subjects.forget_sets(sizes, forget)
    names = strategy_names(strategies)
    jobs = jobs or profile.jobs
    if jobs < 1:
        raise UserInputError(f"--jobs {jobs}: must be at least 1")
    replicates = replicates or profile.replicates
    if replicates < 1:
        raise UserInputError(f"--replicates {replicates}: must be at least 1")
    if commands is not None and collect:
        raise UserInputError("--commands and --collect: give one of them")
    schedules = (profile.original_epochs, profile.original_iterations, profile.unlearning_iterations)
    # the trainers' own: nnU-Net's 1000 × 250 for the original (and so the oracle), 250-step unlearning epochs
    own = (profiles.NNUNET_EPOCHS, profiles.NNUNET_ITERATIONS, profiles.NNUNET_ITERATIONS)
    if commands is not None and schedules != own:
        raise UserInputError(
            f"--commands: the {profile_name} profile trains {profile.original_epochs} × {profile.original_iterations}"
            f"-step originals and {profile.unlearning_iterations}-step unlearning epochs, which nnUNetv2_train "
            "cannot be told; run it here (--jobs N) or use --profile paper"
        )
    workdir = Path(workdir).resolve()
    _prepare_workdir(workdir, overwrite)
    subjects.keep(workdir)

    environment = {name: str(workdir / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    environment["nnUNet_compile"] = "false"
    # every run keeps its own nnUNet_results; the original's kept start scores are shared by all of them
    environment[SCORES_ENV] = str(workdir / "original_scores")
    if profile.planning is not None:  # the CPU profile's augmentation workers; a GPU keeps nnU-Net's default
        environment["nnUNet_n_proc_DA"] = str(profile.planning.augmentation_workers)
    os.environ.update(environment)
    print(profile.describe())
    plans = _prepare_data(workdir, mrbrains18, profile, subjects)
    # a workdir keeps the plans it was first planned with, whatever the profile plans today
    plans_file = workdir / "nnUNet_preprocessed" / DATASET_NAME / f"{plans}.json"
    mirroring = planned_mirroring(json.loads(plans_file.read_text())["configurations"][profiles.CONFIGURATION])
    print(f"mirroring augmentation: {mirroring}")

    original_name, encoder = original_trainer(profile.scratch_trainer)
    config = profiles.CONFIGURATION  # both profiles train nnU-Net's 3d_fullres configuration
    originals = [
        Run(
            original_name,
            DATASET_NAME,
            config,
            plans,
            profile.original_epochs,
            profile.original_iterations,
            replicas.original_results(workdir, replicate),
        )
        for replicate in range(replicates)
    ]
    started = _step(
        f"training the original model ({original_name}, {encoder}) on "
        f"{', '.join(subjects.training)}; held out {', '.join(subjects.heldout)}"
    )
    scheduled = Path(commands).resolve() if commands is not None else None
    execute = executor(environment, profile.device, jobs, scheduled, collect)
    failures = executor(environment, profile.device, 1, scheduled, collect)(originals[:1])
    if failures:
        if collect:
            raise UserInputError(f"--collect: nothing to collect, the original model has not finished ({failures[0]})")
        raise RuntimeError(f"the original model did not train: {failures[0]}")
    print(f"    done in {time.perf_counter() - started:.0f} s")

    from nnunet_unlearning.request import write_request

    def requested(forget_set: tuple[str, ...]) -> Path:
        request = workdir / design.forget_tag(forget_set) / REQUEST_FILE
        if not request.is_file():
            write_request(DATASET_ID, config, "0", plans, original_name, list(forget_set), out=request)
        return request

    def oracles(forget_set: tuple[str, ...]) -> list[Run]:
        folder, request = workdir / design.forget_tag(forget_set), requested(forget_set)
        return [
            Run(
                ORACLE,
                DATASET_NAME,
                config,
                plans,
                profile.original_epochs,
                profile.original_iterations,
                replicas.oracle_results(folder, replicate),
                request,
            )
            for replicate in range(replicates)
        ]

    tuning_set = subjects.tuning_set()
    judged_sets = [f for f in forget_sets if f != tuning_set]
    tuning_folder = workdir / design.forget_tag(tuning_set)
    # a strategy run's fields that every grid point and judged run shares; each sets its own request
    workers = profile.planning.unlearning_augmentation_workers if profile.planning is not None else None
    base = Run("", DATASET_NAME, config, plans, 0, profile.unlearning_iterations, Path(), augmentation_workers=workers)
    training, heldout_cases = subjects.training_cases(), subjects.heldout_cases()
    everyone = {"training": training, "heldout": heldout_cases}
    points: list[tuple[tuning.GridPoint, Run]] = []
    oracles_by_set: dict[tuple[str, ...], list[Run]] = {}
    runs_by_set: dict[tuple[str, ...], list[Run]] = {}
    if frozen_tuning is not None:
        tuned = tuning.read_tuning(frozen_tuning, subjects.tuning_subject, names)
        started = _step(f"settings frozen in {frozen_tuning}; {replicates - 1} more original(s), {jobs} at a time")
        failures += execute(originals[1:])
    else:
        tuning_base = dataclasses.replace(base, request=requested(tuning_set))
        points = [
            (point, tuning.point_run(point, tuning_folder, tuning_base))
            for point in tuning.grid(names, profile.lr_scales, profile.horizons)
        ]
        oracles_by_set[tuning_set] = oracles(tuning_set)
        started = _step(
            f"tuning on subject {subjects.tuning_subject}: {replicates} retrain oracle(s), {replicates - 1} more "
            f"original(s) and {len(points)} grid runs ({len(names)} strategies × learning-rate scales "
            f"{list(profile.lr_scales)} × {len(profile.horizons)} horizons), {jobs} at a time"
        )
        failures += execute(oracles_by_set[tuning_set] + originals[1:] + [run for _, run in points])
        tuned = tuning.choose(
            [(point, run) for point, run in points if run.finished],
            [e for r in oracles_by_set[tuning_set] if r.finished and (e := replicas.end_evaluation(r)) is not None],
            replicas.original_evaluation(originals[0], everyone, profile.device),
            subjects.case_sets(tuning_set),
        )
        # the tuning subject's report: the trainers' defaults (scale 1) at both horizons
        runs_by_set[tuning_set] = [oracles_by_set[tuning_set][0]] + [r for p, r in points if p.lr_scale == 1]
    print(f"    done in {time.perf_counter() - started:.0f} s")
    tuning.write_tuning(workdir / "tuning.json", tuned, subjects.tuning_subject)
    for strategy, choice in tuned.items():
        print(f"    {strategy}: lr scale {choice['lr_scale']:g}, {choice['epochs']} epochs ({choice['reason']})")

    for forget_set in judged_sets:
        folder = workdir / design.forget_tag(forget_set)
        oracles_by_set[forget_set] = oracles(forget_set)
        judged_base = dataclasses.replace(base, request=requested(forget_set))
        chosen = [p for s in names if (p := tuning.chosen_point(tuned, s)) is not None]
        judged = tuning.judged_runs(chosen, folder, judged_base, max(profile.horizons), profile.check_steps)
        runs_by_set[forget_set] = [oracles_by_set[forget_set][0], *judged]
    every_run = [run for f in judged_sets for run in runs_by_set[f] + oracles_by_set[f][1:]]
    if every_run:
        started = _step(
            f"judging on {len(judged_sets)} forget set(s): per set {replicates} retrain oracle(s) and each strategy "
            f"at its tuned setting, as tuned and calibrated (held-out band; memorisation reference, checked on "
            f"patches; at most {max(profile.horizons)} epochs, checked every "
            f"{f'{profile.check_steps} steps' if profile.check_steps else 'epoch'}), {jobs} at a time"
        )
        failures += execute(every_run)
        print(f"    done in {time.perf_counter() - started:.0f} s")

    from nnunet_unlearning.evaluation.audit import run_audit
    from nnunet_unlearning.evidence.audit_table import write_audit_evidence
    from nnunet_unlearning.evidence.report import write_report

    reports = {}
    for forget_set, runs in runs_by_set.items():
        runs = [run for run in runs if run.finished]
        if not runs:  # collected before any of its runs finished: reported missing
            continue
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

    started = _step(f"scoring {sum(r.finished for r in originals)} original replicate(s) with the evaluation hook")
    scored = [(run, replicas.original_evaluation(run, everyone, profile.device)) for run in originals if run.finished]
    candidates = {f: [r for r in runs[1:] if r.finished] for f, runs in runs_by_set.items()}
    if points:  # every grid point, against the distribution
        candidates[tuning_set] = [r for _, r in points if r.finished]
    distribution = replicas.distribution(
        scored,
        {f: [r for r in runs if r.finished] for f, runs in oracles_by_set.items()},
        candidates,
        training,
        heldout_cases,
        design.subject_of,
    )
    print(f"    done in {time.perf_counter() - started:.0f} s")

    rows = tables.benchmark_rows({f: r for f, r in reports.items() if f != tuning_set})
    tuning_rows = tables.benchmark_rows({f: r for f, r in reports.items() if f == tuning_set})
    content = {
        "format": 1,
        "profile": profile.describe(),
        "mirroring": mirroring,
        "machine": machine(),
        "original_trainer": original_name,
        "original_encoder": encoder,
        "training": training,
        "heldout": heldout_cases,
        "replicates": replicates,
        "tuning_subject": subjects.tuning_subject,
        "lr_scales": list(profile.lr_scales),
        "tuning": tuned,
        "tuning_frozen_from": str(frozen_tuning) if frozen_tuning is not None else None,
        "forget_sets": [list(f) for f in judged_sets],
        "strategies": names,
        "failed_runs": failures,
        "wall_s": time.perf_counter() - started_all,
        "rows": rows,
        "tables": {**tables.tables(rows), "tuning_subject": tables.average(tuning_rows, ("model", "horizon"))},
        "retrain_distribution": distribution,
    }
    atomic_write_json(workdir / "benchmark.json", content)
    path = workdir / "benchmark.md"
    text = tables.markdown(content) + "\n" + replicas.markdown(distribution)
    atomic_write_text(path, text)
    print("\n" + text)
    print(f"benchmark: {path}")
    return path
