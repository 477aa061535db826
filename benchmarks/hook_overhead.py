"""Share of an unlearning run's wall time spent in the evaluation hook at its default (start + end).

Builds the CPU-profile world (real MRBrainS18 from ../shared/data when present, else the phantom),
trains a short original model, forgets one subject with NoisyLabel for the seed study's 20 epochs, and
reads the run's own timings from unlearning_metrics.json. Measures, never asserts.

    .venv/bin/python benchmarks/hook_overhead.py [--iterations 50] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "MRBrainS18"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=50, help="iterations per epoch (nnU-Net: 250)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_unlearning import demo
    from nnunet_unlearning.unlearning.request import write_request
    from nnunet_unlearning.unlearning.schedules import trainer_family
    from nnunet_unlearning.unlearning.strategies import NoisyLabel

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hook_overhead_"))
    real = SHARED if (SHARED / "training").is_dir() else None
    demo.prepare_dataset(workdir, real)
    original = demo.train(nnUNetTrainer, demo.ORIGINAL)
    forget = sorted(original.do_split()[0])[0]
    write_request(demo.DATASET_ID, demo.CONFIGURATION, "0", "nnUNetPlans", "nnUNetTrainer", [forget])
    run = demo.train(trainer_family(NoisyLabel, __name__)["nnUNetTrainerUnlearnNoisyLabel"],
                     demo.Schedule(args.epochs, args.iterations))
    metrics = json.loads((Path(run.output_folder) / "unlearning_metrics.json").read_text())
    seconds = metrics["seconds"]
    per_evaluation = [e["seconds"] for e in metrics["evaluations"]]
    cases = sum(metrics["evaluations"][0]["sets"][s]["n_cases"] for s in ("forget", "retain", "heldout"))
    print(json.dumps({"data": "MRBrainS18 (real)" if real else "phantom", "schedule": f"{args.epochs} epochs x "
                      f"{args.iterations} iterations", "cases_per_evaluation": cases, **seconds,
                      "seconds_per_evaluation": per_evaluation,
                      "hook_share_of_wall_pct": round(100 * seconds["evaluation"] / seconds["wall"], 2)}, indent=2))


if __name__ == "__main__":
    main()
