"""Share of an unlearning run's wall time spent in the evaluation hook at its default (start + end).

Builds the demo's world (CPU profile, Med3D plans; real MRBrainS18 from ../shared/data when present, else
the phantom), trains the demo's original Med3D model, forgets one subject with NoisyLabel for the seed
study's 20 epochs, and reads the run's own timings from unlearning_metrics.json. Measures, never asserts.

    .venv/bin/python benchmarks/hook_overhead.py [--iterations 50] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nnunet_unlearning.artifacts import METRICS_FILE, SETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=50, help="iterations per epoch (nnU-Net: 250)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from demo_request import demo_request

    from nnunet_unlearning.workflows import demo

    data, _ = demo_request(args.workdir, "hook_overhead_")
    run = demo.train("nnUNetTrainerUnlearnNoisyLabel", demo.Schedule(args.epochs, args.iterations))
    metrics = json.loads((Path(run.output_folder) / METRICS_FILE).read_text())
    seconds = metrics["seconds"]
    per_evaluation = [e["seconds"] for e in metrics["evaluations"]]
    cases = sum(metrics["evaluations"][0]["sets"][s]["n_cases"] for s in SETS)
    print(
        json.dumps(
            {
                "data": data,
                "schedule": f"{args.epochs} epochs x {args.iterations} iterations",
                "cases_per_evaluation": cases,
                **seconds,
                "seconds_per_evaluation": per_evaluation,
                "hook_share_of_wall_pct": round(100 * seconds["evaluation"] / seconds["wall"], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
