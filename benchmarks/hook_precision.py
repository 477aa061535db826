"""The evaluation hook in fp32 and under CPU bf16 autocast: its wall time and how far its numbers move.

    W=/work/bench_k4b; M=nnUNet_results/Dataset502_MRBrainS18/nnUNetTrainerMed3D_cpu__nnUNetMed3DPlans__3d_fullres
    .venv/bin/python benchmarks/hook_precision.py --workdir $W --model $W/$M/fold_0

Needs a folder where ``nnunet-unlearning benchmark`` has prepared MRBrainS18 (its ``--workdir``: nnU-Net's
three folders) and a trained Med3D model folder in it. Scores the model on the benchmark's seven subjects
(forget set: subject 4) with the hook's own code (`evaluation.model_evaluation`), alternating the two
precisions for ``--rounds`` rounds in one process; prints the median seconds of each and, per case, the
difference (bf16 − fp32) of the mean Dice and of the foreground logit confidence. Measures, asserts nothing.
"""

import argparse
import contextlib
import os
import statistics
from pathlib import Path

from nnunet_unlearning.evaluation import hook
from nnunet_unlearning.evaluation.model_evaluation import evaluate_model_folder
from nnunet_unlearning.workflows import benchmark_design as design
from nnunet_unlearning.workflows import profiles


def _fp32(network):
    return "fp32", contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a benchmark's --workdir")
    parser.add_argument("--model", type=Path, required=True, help="a trained Med3D fold folder in it")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = str(args.workdir / name)
    profiles.use_cpu_threads()
    sets = design.DEFAULT.case_sets((design.case_id("4"),))
    automatic = hook.evaluation_precision
    seconds: dict[str, list[float]] = {"fp32": [], "auto": []}
    records = {}
    for _ in range(args.rounds):
        for label, choose in (("fp32", _fp32), ("auto", automatic)):
            hook.evaluation_precision = choose
            evaluation = evaluate_model_folder(args.model, sets, "cpu", tag=label)
            seconds[label].append(evaluation.seconds)
            records[label] = evaluation
    hook.evaluation_precision = automatic
    chosen = records["auto"].precision
    print(
        f"hook evaluation of 7 cases: fp32 {statistics.median(seconds['fp32']):.1f} s, automatic ({chosen}) "
        f"{statistics.median(seconds['auto']):.1f} s; medians of {args.rounds} round(s)"
    )
    print("| case | Dice fp32 | Dice Δ | fg. logit confidence fp32 | Δ |")
    print("|---|---|---|---|---|")
    for case in sorted(records["fp32"].cases):
        reference, other = records["fp32"], records["auto"]
        dice = reference.cases[case].mean("dice") or float("nan")
        delta = (other.cases[case].mean("dice") or float("nan")) - dice
        phi = reference.membership[case]["foreground_logit_confidence"]
        delta_phi = other.membership[case]["foreground_logit_confidence"] - phi
        print(f"| {case} | {dice:.4f} | {delta:+.4f} | {phi:.3f} | {delta_phi:+.3f} |")


if __name__ == "__main__":
    main()
