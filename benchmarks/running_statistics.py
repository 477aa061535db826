"""What the running-statistics policy costs in Dice: NoisyLabel on the demo's Med3D (BatchNorm) model, three ways.

- ``updated``: the old behaviour, every forward pass of a step (forget batches included) updates BatchNorm's
  running statistics, as plain nnU-Net training would;
- ``kept``: no step changes a buffer, and nothing is recalibrated (the original's statistics stay);
- ``recalibrated``: ours, buffers kept during the run, then the changed layers recalibrated on retain batches.

Same original, same request, same seed and schedule, run one after another in one process; Dice per set as
the evaluation hook scores it at the end. Measures, never asserts.

    .venv/bin/python benchmarks/running_statistics.py [--epochs 5] [--iterations 40] [--workdir DIR [--reuse]]
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from pathlib import Path

from nnunet_unlearning.artifacts import METRICS_FILE, SETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="reuse the original model and request in --workdir")
    args = parser.parse_args()

    from demo_request import demo_request

    from nnunet_unlearning.nnunet.inprocess import train
    from nnunet_unlearning.nnunet.trainers_dir import find_trainer
    from nnunet_unlearning.unlearning import step
    from nnunet_unlearning.workflows import demo

    data, forget = demo_request(args.workdir, "running_statistics_", reuse=args.reuse)
    base = find_trainer("nnUNetTrainerUnlearnNoisyLabel")
    kept_buffers = step.buffers_kept
    rows = {}
    for variant, recalibration, keep in (
        ("updated", 0, False),
        ("kept", 0, True),
        ("recalibrated", base.recalibration_batches, True),
    ):
        cls = type(f"{base.__name__}_{variant}", (base,), {"recalibration_batches": recalibration})
        step.buffers_kept = kept_buffers if keep else (lambda model: nullcontext())
        run = train(cls, demo.DATASET_NAME, demo.CONFIGURATION, demo.PLANS, args.epochs, args.iterations)
        metrics = json.loads((Path(run.output_folder) / METRICS_FILE).read_text())
        start, end = metrics["evaluations"][0]["sets"], metrics["evaluations"][-1]["sets"]
        rows[variant] = {
            "dice_start": {s: round(start[s]["dice"], 4) for s in SETS},
            "dice_end": {s: round(end[s]["dice"], 4) for s in SETS},
            "running_statistics": metrics["running_statistics"],
            "seconds": metrics["seconds"],
        }
        print(variant, json.dumps(rows[variant]), flush=True)
    step.buffers_kept = kept_buffers
    print(
        json.dumps(
            {
                "data": data,
                "forget": forget,
                "schedule": f"{args.epochs} epochs x {args.iterations} iterations",
                "runs": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
