"""Replay recorded calibrated runs under ``calibration.patience``: where each would have stopped, and what it keeps.

    .venv/bin/python benchmarks/calibration_patience.py /work/bench_mem --patience 3 4 5

Reads every ``unlearning_metrics.json`` with calibration checks below the given folders (benchmark workdirs,
demo folders), rebuilds each recorded check from its record and feeds the checks one at a time to the
stopping rule itself (`evaluation.calibration.decide`), with each patience value and without. A replay is
exact for the decisions (the rule reads only what a check records: its state, its distance to the band and
whether it kept the utility budget); what it cannot say is how the run would have gone on after a stop it
did not take. Prints one markdown row per run: the recorded stop and kept state, then per patience the
replayed stop, the kept state and the checks it would have saved. Measures, asserts nothing.
"""

import argparse
import json
from pathlib import Path

from nnunet_unlearning.evaluation.calibration import Check, Decision, ForgettingTest, Utility, decide


def _check(record: dict, budget: float) -> Check:
    """A check as the rule sees it, from its ``calibration.checks`` record."""
    test = ForgettingTest(
        "recorded", 1, 1, record["forget_mean"], record["heldout_mean"], record["heldout_sd"], record["half_width"],
        record["gap"], record["state"], record["target"], record["memorisation"],
    )  # fmt: skip
    utility = Utility(record["retain_ratio"], record["heldout_ratio"], budget)
    return Check(record["epoch"], record["steps"], test, utility)


def replay(checks: list[Check], patience: int | None) -> tuple[int, Decision]:
    """The index of the check the rule stops at and its decision."""
    for newest in range(len(checks)):
        decision = decide(checks[: newest + 1], last=newest == len(checks) - 1, patience=patience)
        if decision.stop:
            return newest, decision
    raise ValueError("a recorded calibrated run always stops at its last check")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="benchmark workdirs or demo folders")
    parser.add_argument("--patience", type=int, nargs="+", default=[3, 4, 5])
    args = parser.parse_args()
    print("| run | recorded | " + " | ".join(f"patience {p}" for p in args.patience) + " |")
    print("|---" * (2 + len(args.patience)) + "|")
    for folder in args.folders:
        for path in sorted(folder.rglob("unlearning_metrics.json")):
            calibration = json.loads(path.read_text()).get("calibration") or {}
            records = calibration.get("checks") or []
            if len(records) < 2:  # stopped at check 0: nothing for a patience to change
                continue
            checks = [_check(r, calibration["criteria"]["utility_budget"]) for r in records]
            _, recorded = replay(checks, calibration["settings"].get("patience"))
            cells = [f"{recorded.reason} after {checks[-1].steps}, keeps {checks[recorded.keep].steps}"]
            for patience in args.patience:
                stop, decision = replay(checks, patience)
                saved = len(checks) - 1 - stop
                cells.append(f"{decision.reason} after {checks[stop].steps}, keeps {checks[decision.keep].steps}"
                             + (f" ({saved} checks fewer)" if saved else ""))  # fmt: skip
            # <run folder>/nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>/fold_0
            where = path.parent.parent.parent.parent.parent.relative_to(folder.parent)
            trainer = path.parent.parent.name.split("__")[0].removeprefix("nnUNetTrainerUnlearn")
            print(f"| {where} / {trainer} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
