"""Where the wall time of one calibrated run goes: the benchmark's judged twin, run again against its original.

    .venv/bin/python benchmarks/calibrated_breakdown.py --workdir BENCHMARK_WORKDIR --subject 5
    .venv/bin/python -m cProfile -o run.pstats benchmarks/calibrated_breakdown.py ...   # the split inside a check
    .venv/bin/python benchmarks/calibrated_breakdown.py --workdir BENCHMARK_WORKDIR --subject 5 --console

Needs a benchmark workdir whose original (replicate 0) has finished (`nnunet-unlearning benchmark`). Runs the
judged calibrated twin of ``--strategy`` at the trainer's rate and long horizon (memorisation reference, patch
checks every ``Profile.check_steps`` steps: `benchmark_tuning.CALIBRATIONS`) on forget ``--subject``, as the
benchmark runs it (`benchmark_runs.train_run`, in this process), into ``<out>/forget_<subject>/`` with an empty
kept-scores folder, so that the start evaluation is paid as a first request pays it (the benchmark's own runs
reuse it). Prints the run record's parts: start and end evaluation, the calibration checks (every evaluation
second that is neither), training steps, the rest, and the decision. Measures, asserts nothing.

``--console``: the same run as a user starts it, through the ``nnUNetv2_train`` console script (the
benchmark's scheduler line, `benchmark_runs.command_line`, with the twin's schedule in a copy of its run
config): nnU-Net's own thread count, validation batches per epoch and final validation included.

``--scores FOLDER``: the kept-scores folder (default ``<out>/original_scores``); a second run against a filled
one pays neither the start evaluation nor check 0, as a later request (and the benchmark's runs) do.
``--augmentation-workers N``: ``nnUNet_n_proc_DA`` (default the profile's for unlearning runs). ``--tuned``:
the point as tuned (``--epochs`` epochs, no calibration) instead of its calibrated twin.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from nnunet_unlearning.artifacts import METRICS_FILE
from nnunet_unlearning.evaluation.kept_scores import SCORES_ENV
from nnunet_unlearning.request import write_request
from nnunet_unlearning.workflows import benchmark, profiles
from nnunet_unlearning.workflows import benchmark_tuning as tuning
from nnunet_unlearning.workflows.benchmark_runs import Run, command_line, train_run
from nnunet_unlearning.workflows.original_trainer import original_trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a benchmark workdir with a finished original")
    parser.add_argument("--subject", default="5", help="the forget subject (default 5)")
    parser.add_argument("--strategy", default="L1Sparse", help="the strategy (default L1Sparse)")
    parser.add_argument("--out", type=Path, default=Path("calibrated_breakdown"), help="where the run trains")
    parser.add_argument("--console", action="store_true", help="train through nnUNetv2_train, not in-process")
    parser.add_argument("--scores", type=Path, help="the kept-scores folder (default <out>/original_scores)")
    parser.add_argument("--augmentation-workers", type=int, default=profiles.CPU.unlearning_augmentation_workers,
                        help="nnUNet_n_proc_DA (default the profile's for unlearning runs)")  # fmt: skip
    parser.add_argument("--tuned", action="store_true", help="the point as tuned, not its calibrated twin")
    parser.add_argument("--epochs", type=int, default=5, help="the tuned point's epochs (default 5)")
    args = parser.parse_args()
    if args.tuned and args.console:
        parser.error("--console measures the calibrated twin (its schedule travels in its run config)")
    workdir, out = args.workdir.resolve(), args.out.resolve()
    profile = profiles.PROFILES["cpu"]  # the paper profile trains on a GPU, through its own commands
    environment = {name: str(workdir / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    scores = (args.scores or out / "original_scores").resolve()
    environment.update({"nnUNet_compile": "false", SCORES_ENV: str(scores)})
    environment["nnUNet_n_proc_DA"] = str(args.augmentation_workers)
    os.environ.update(environment)
    original, _ = original_trainer(profile.scratch_trainer)
    plans = profiles.MED3D_PLANS  # the CPU profile's (`Profile.plan`)
    folder = out / f"forget_{args.subject}"
    request = write_request(
        benchmark.DATASET_ID, profiles.CONFIGURATION, "0", plans, original, [f"MRBrainS18_{args.subject}"],
        out=folder / "request.json",
    )  # fmt: skip
    base = Run("", benchmark.DATASET_NAME, profiles.CONFIGURATION, plans, 0, profile.unlearning_iterations, Path(),
               request)  # fmt: skip
    point = tuning.GridPoint(args.strategy, 1.0, args.epochs if args.tuned else max(profile.horizons))
    judged = tuning.judged_runs([point], folder, base, max(profile.horizons), profile.check_steps)
    run = judged[0] if args.tuned else judged[-1]
    assert args.tuned or run.variant.endswith("memorisation patches"), run.variant  # the twin checked on patches
    if args.console:
        process_wall = console_run(run, environment, profile.device)
    else:
        process_wall = train_run(run, environment, profile.device)
    record = json.loads((run.folder / METRICS_FILE).read_text())
    seconds = record["seconds"]
    evaluations = {e["tag"]: e["seconds"] for e in record["evaluations"] if e["tag"] in ("start", "end")}
    checks = seconds["evaluation"] - sum(evaluations.values())
    rest = seconds["wall"] - seconds["evaluation"] - seconds["train"]
    reused = {e["tag"]: len(e.get("reused_cases", [])) for e in record["evaluations"]}
    what = f"{args.augmentation_workers} augmentation worker(s), start evaluation reused {reused.get('start', 0)} cases"
    if args.tuned:
        print(f"{args.strategy}, forget {args.subject}, as tuned: {record['steps_taken']} steps; {what}; "
              f"process {process_wall:.1f} s")  # fmt: skip
    else:
        decision = record["calibration"]["decision"]
        print(f"{args.strategy}, forget {args.subject}: {decision['reason']} after {decision['steps_taken']} steps, "
              f"kept {decision['steps_used']}; {what}; process {process_wall:.1f} s")  # fmt: skip
    print("| part | s |\n|---|---|")
    for part, value in (
        ("trainer wall (the record's)", seconds["wall"]),
        ("start evaluation (whole volumes)", evaluations.get("start", 0.0)),
        ("calibration checks (patches, with their recalibration; tuned: none)", checks),
        ("training steps", seconds["train"]),
        ("end evaluation (whole volumes)", evaluations.get("end", 0.0)),
        ("the rest (trainer, dataloaders, epoch ends, record, certificate)", rest),
    ):
        print(f"| {part} | {value:.1f} |")


def console_run(run: Run, environment: dict[str, str], device: str) -> float:
    """Train ``run`` through ``nnUNetv2_train`` (its schedule in a copy of its run config); return the
    process's wall time in seconds."""
    assert run.config is not None
    config = json.loads(run.config.read_text())
    config.update({"epochs": run.epochs, "iterations_per_epoch": run.iterations})
    console_config = run.config.with_name(f"console_{run.config.name}")
    console_config.write_text(json.dumps(config))
    run = replace(run, config=console_config)
    if run.folder.exists():
        shutil.rmtree(run.folder)  # an earlier measurement's
    # nnUNetv2_train from this interpreter's environment
    path = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    line = command_line(run, environment, device)
    subprocess.run(line, shell=True, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **path})
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
