"""Wall time of calibrated unlearning for the requests that follow the first, against one retrain.

    .venv/bin/nnunet-unlearning demo --workdir demo_run --overwrite     # the first request, and the oracle
    .venv/bin/python benchmarks/calibrated_time.py --workdir demo_run

Needs a finished demo folder: its original model, its calibrated NoisyLabel run (the first request, which
kept the original's per-case scores, `evaluation/kept_scores.py`) and its retrain oracle. For each further
training case of fold 0, one after another, writes a request forgetting it and runs the demo's calibrated
NoisyLabel for it (its own ``nnUNet_results`` under ``<workdir>/later_requests/``, the demo's kept scores
shared), as the demo's own runs train (a fresh process, one torch thread). Prints each run's wall time, what
its start evaluation reused and cost, where it stopped, and the share of the demo's retrain wall time.
Measures, asserts nothing.
"""

import argparse
import json
import os
from pathlib import Path

from nnunet_unlearning.artifacts import METRICS_FILE
from nnunet_unlearning.evaluation.kept_scores import SCORES_ENV, scores_folder
from nnunet_unlearning.request import load_request, write_request
from nnunet_unlearning.workflows import demo, profiles
from nnunet_unlearning.workflows.benchmark_runs import Run, train_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("demo_run"), help="a finished demo folder")
    parser.add_argument("--requests", type=int, default=3, help="how many later requests (default 3)")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = str(workdir / name)
    os.environ["nnUNet_compile"] = "false"
    profiles.CPU.use_for_training()
    first = load_request(demo.DATASET_NAME, "0")
    results = workdir / "nnUNet_results" / demo.DATASET_NAME
    retrain = json.loads(next(results.glob(f"nnUNetTrainerRetrain__*/fold_0/{METRICS_FILE}")).read_text())
    retrain_wall = retrain["seconds"]["wall"]
    environment = {
        name: os.environ[name]
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_compile", "nnUNet_n_proc_DA")
        if name in os.environ
    }
    environment[SCORES_ENV] = str(scores_folder(results))
    print(f"retrain oracle of the demo: {retrain_wall:.0f} s wall; first request: forget {first.forget[0]}")
    print("| request | forget | wall s | start evaluation s | cases reused | stopped | share of the retrain |")
    print("|---|---|---|---|---|---|---|")
    later = [case for case in first.retain][: args.requests]
    for number, case in enumerate(later, start=2):
        folder = workdir / "later_requests" / case
        request = write_request(
            demo.DATASET_ID, demo.CONFIGURATION, "0", demo.PLANS, first.original.trainer, [case],
            out=folder / "unlearning_request.json",
        )  # fmt: skip
        run = Run(
            f"nnUNetTrainerUnlearn{demo.STRATEGY}", demo.DATASET_NAME, demo.CONFIGURATION, demo.PLANS,
            demo.UNLEARN.epochs, demo.UNLEARN.iterations, folder / "nnUNet_results", request,
            workdir / "calibrated_run.json",
        )  # fmt: skip
        failures = train_runs([run], environment, "cpu", jobs=1, progress=lambda _: None)
        if failures:
            print(f"| {number} | {case} | failed: {failures[0]} | | | | |")
            continue
        record = json.loads((run.folder / METRICS_FILE).read_text())
        start = record["evaluations"][0]
        wall = record["seconds"]["wall"]
        decision = record["calibration"]["decision"]
        print(
            f"| {number} | {case} | {wall:.1f} | {start['seconds']:.1f} | {len(start.get('reused_cases', []))} of "
            f"{len(start['cases'])} | {decision['reason']} after {decision['steps_used']} steps | "
            f"{wall / retrain_wall:.1%} |"
        )


if __name__ == "__main__":
    main()
