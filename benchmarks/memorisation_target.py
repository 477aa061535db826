"""Where the calibrated test's two references put a forgotten subject, against the retrain distribution.

    .venv/bin/python benchmarks/memorisation_target.py docs/results/cpu_k4_three_strategies.benchmark.json

Reads a benchmark's ``benchmark.json`` (its ``retrain_distribution``: per forget set the original model's
mean Dice on the forget, retain and held-out sets and the K retrained oracles' mean and standard deviation on
the forget set) and prints, per forget set, in oracle standard deviations from the oracles' mean forget Dice:
the original itself; the centre of the held-out band (the held-out mean, the default reference); and the
memorisation reference's target, the original's forget Dice less its memorisation (retain mean − held-out
mean, ≥ 0; `nnunet_unlearning.evaluation.calibration`) with its band (± the default tolerance × m); a run
that descends in small steps stops at the band's upper edge. The set means stand in for the per-case means the
test uses (equal for a one-subject forget set). No model is run: this is where each rule *aims*, not where a
run lands. Measures, asserts nothing.
"""

import argparse
import json
from pathlib import Path

from nnunet_unlearning.evaluation.calibration import AcceptanceCriteria

MEMORISATION_TOLERANCE = AcceptanceCriteria().memorisation_tolerance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark_json", type=Path)
    args = parser.parse_args()
    sets = json.loads(args.benchmark_json.read_text())["retrain_distribution"]["forget_sets"]
    print("| forget set | oracle forget Dice (mean ± SD, K) | original | held-out mean | memorisation m | "
          "original Δ SD | held-out centre Δ SD | memorisation band t ± m/2, Δ SD | its upper edge Δ SD |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, entry in sets.items():
        oracle, original = entry["oracle"]["forget"], entry["original"]
        memorisation = max(original["retain"] - original["heldout"], 0.0)
        target = original["forget"] - memorisation
        half = MEMORISATION_TOLERANCE * memorisation
        print(
            f"| {name} | {oracle['mean']:.4f} ± {oracle['std']:.4f} ({oracle['k']}) | {original['forget']:.4f} | "
            f"{original['heldout']:.4f} | {memorisation:.4f} | {in_sd(original['forget'], oracle)} | "
            f"{in_sd(original['heldout'], oracle)} | {in_sd(target - half, oracle)} … {in_sd(target + half, oracle)} | "
            f"{in_sd(target + half, oracle)} |"
        )


def in_sd(value: float, oracle: dict) -> str:
    """``value`` in oracle standard deviations from the oracles' mean, signed."""
    return f"{(value - oracle['mean']) / oracle['std']:+.1f}"


if __name__ == "__main__":
    main()
