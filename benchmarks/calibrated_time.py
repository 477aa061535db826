"""Wall time of calibrated unlearning, the first request and those that follow it, against one retrain.

    .venv/bin/nnunet-unlearning demo --workdir demo_run --overwrite     # the first request, and the oracle
    .venv/bin/python benchmarks/calibrated_time.py --workdir demo_run

Needs a finished demo folder: its original model, its calibrated NoisyLabel run (the first request, which
kept the original's per-case scores, `evaluation/kept_scores.py`) and its retrain oracle. Runs the demo's
calibrated NoisyLabel again as a user does, one ``nnUNetv2_train`` command at a time (the demo's run config
with its schedule written in, its own ``nnUNet_results`` under ``<workdir>/later_requests/``): first the demo's
own request with no kept scores (a first request, which scores the original in full), then a request for
each further training case of fold 0, which reuse the demo's kept scores. Prints each run's wall time as its
record counts it (from nnU-Net building the trainer, as the retrain's record counts its own) and the whole
command's (starting Python, importing torch and nnU-Net, finding the trainer: what a retrain command pays
too), what its start evaluation reused and cost, where it stopped, and both as shares of the demo's
retrain wall time. Measures, asserts nothing.
"""

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from nnunet_unlearning.artifacts import METRICS_FILE
from nnunet_unlearning.evaluation.kept_scores import SCORES_ENV, scores_folder
from nnunet_unlearning.files import atomic_write_json
from nnunet_unlearning.request import load_request, write_request
from nnunet_unlearning.workflows import demo
from nnunet_unlearning.workflows.benchmark_runs import Run, command_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("demo_run"), help="a finished demo folder")
    parser.add_argument("--requests", type=int, default=3, help="how many later requests (default 3)")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    environment = {name: str(workdir / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    environment["nnUNet_compile"] = "false"
    os.environ.update(environment)
    first = load_request(demo.DATASET_NAME, "0")
    results = workdir / "nnUNet_results" / demo.DATASET_NAME
    retrain = json.loads(next(results.glob(f"nnUNetTrainerRetrain__*/fold_0/{METRICS_FILE}")).read_text())
    retrain_wall = retrain["seconds"]["wall"]
    # nnUNetv2_train cannot be told a schedule: the run config carries the demo's
    config = workdir / "later_requests" / "calibrated_run.json"
    schedule = {"epochs": demo.UNLEARN.epochs, "iterations_per_epoch": demo.UNLEARN.iterations}
    atomic_write_json(config, {**json.loads((workdir / "calibrated_run.json").read_text()), **schedule})
    print(f"retrain oracle of the demo: {retrain_wall:.0f} s wall; first request: forget {first.forget[0]}")
    print(
        "| request | forget | wall s | start evaluation s | cases reused | stopped | share of the retrain "
        "| command s | its share |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    later = [case for case in first.retain][: args.requests]
    for number, case in enumerate([first.forget[0], *later], start=1):
        folder = workdir / "later_requests" / (case if number > 1 else f"first_{case}")
        # the first request's scores go to a folder of their own, empty when it starts
        environment[SCORES_ENV] = str(scores_folder(results) if number > 1 else folder / "scores")
        request = write_request(
            demo.DATASET_ID, demo.CONFIGURATION, "0", demo.PLANS, first.original.trainer, [case],
            out=folder / "unlearning_request.json",
        )  # fmt: skip
        run = Run(
            f"nnUNetTrainerUnlearn{demo.STRATEGY}", demo.DATASET_NAME, demo.CONFIGURATION, demo.PLANS,
            demo.UNLEARN.epochs, demo.UNLEARN.iterations, folder / "nnUNet_results", request, config,
        )  # fmt: skip
        log = folder / "nnUNetv2_train.log"
        started = time.perf_counter()
        with log.open("w") as output:
            code = subprocess.run(
                command_line(run, environment, "cpu"), shell=True, stdout=output, stderr=subprocess.STDOUT
            ).returncode
        command = time.perf_counter() - started
        if code != 0:
            print(f"| {number} | {case} | failed (exit {code}, {log}) | | | | | | |")
            continue
        record = json.loads((run.folder / METRICS_FILE).read_text())
        start = record["evaluations"][0]
        wall = record["seconds"]["wall"]
        decision = record["calibration"]["decision"]
        print(
            f"| {number} | {case} | {wall:.1f} | {start['seconds']:.1f} | {len(start.get('reused_cases', []))} of "
            f"{len(start['cases'])} | {decision['reason']} after {decision['steps_used']} steps | "
            f"{wall / retrain_wall:.1%} | {command:.1f} | {command / retrain_wall:.1%} |"
        )


if __name__ == "__main__":
    main()
