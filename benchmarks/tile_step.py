"""The evaluation hook's sliding window at nnU-Net's half-tile step (0.5) and at ours (`EVALUATION_TILE_STEP`).

    W=<a benchmark workdir>; M=nnUNet_results/Dataset502_MRBrainS18/nnUNetTrainerMed3D_cpu__nnUNetMed3DPlans__3d_fullres
    export nnUNet_preprocessed=$W/nnUNet_preprocessed
    .venv/bin/python benchmarks/tile_step.py --model $W/originals/seed_1/$M/fold_0 --rounds 3

Loads the model as ``nnUNetv2_predict`` does (`nnunet.glue.trained_predictor`), then predicts every
preprocessed case of its dataset (or ``--cases``) at both steps, alternating which goes first from case to
case, for ``--rounds`` rounds in one process at the profile's torch threads, in the hook's precision, and
scores each prediction as the hook does (`evaluation.metrics.case_metrics`, `evaluation.subject_scores`).
Prints per case the median seconds and the Dice and membership scores at each step, then the totals. Measures,
asserts nothing.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from nnunet_unlearning.artifacts import ModelFolder
from nnunet_unlearning.evaluation.metrics import case_metrics
from nnunet_unlearning.evaluation.subject_scores import case_membership, scored_voxels
from nnunet_unlearning.med3d.cpu_precision import evaluation_precision
from nnunet_unlearning.nnunet.glue import EVALUATION_TILE_STEP, trained_predictor
from nnunet_unlearning.workflows import profiles

STEPS = (0.5, EVALUATION_TILE_STEP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained fold folder")
    parser.add_argument("--cases", nargs="+", help="preprocessed case ids (default: every case)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    profiles.use_cpu_threads()
    predictor = trained_predictor(ModelFolder.parse(args.model), torch.device("cpu"))
    data_folder = (
        Path(os.environ["nnUNet_preprocessed"])
        / predictor.plans_manager.dataset_name
        / predictor.configuration_manager.data_identifier
    )
    dataset_class = infer_dataset_class(str(data_folder))
    cases = args.cases or sorted(dataset_class.get_identifiers(str(data_folder)))
    dataset = dataset_class(str(data_folder), cases)
    labels = [int(c) for c in predictor.label_manager.foreground_labels]
    ignore = predictor.label_manager.ignore_label
    precision, context = evaluation_precision(predictor.network)
    seconds: dict[float, list[float]] = {step: [] for step in STEPS}
    dice: dict[float, list[float]] = {step: [] for step in STEPS}
    print(f"{len(cases)} cases, {torch.get_num_threads()} thread(s), {precision}, patch "
          f"{tuple(predictor.configuration_manager.patch_size)}")  # fmt: skip
    with torch.no_grad(), context:
        for index, case in enumerate(cases):
            data, seg, _, _ = dataset.load_case(case)
            image, truth = torch.from_numpy(np.asarray(data)), np.asarray(seg)[0].astype(np.int16)
            times: dict[float, list[float]] = {step: [] for step in STEPS}
            logits = {}
            for _ in range(args.rounds):
                for step in STEPS if index % 2 == 0 else STEPS[::-1]:
                    predictor.tile_step_size = step
                    start = time.perf_counter()
                    logits[step] = predictor.predict_sliding_window_return_logits(image)
                    times[step].append(time.perf_counter() - start)
            line = [case]
            for step in STEPS:
                probabilities = torch.softmax(logits[step].float(), dim=0).numpy()
                metrics = case_metrics(truth, probabilities.argmax(0), labels, probabilities=probabilities,
                                       ignore_labels=(-1,) if ignore is None else (-1, ignore))  # fmt: skip
                membership = case_membership(probabilities, truth, scored_voxels(truth, ignore))
                seconds[step].append(statistics.median(times[step]))
                mean_dice = metrics.mean("dice")  # None only when Dice is not computed: it always is
                dice[step].append(np.nan if mean_dice is None else mean_dice)
                line.append(f"step {step}: {seconds[step][-1]:.2f} s, Dice {dice[step][-1]:.4f}, logit confidence "
                            f"{membership['logit_confidence']:.4f}, loss {membership['loss']:.4f}")  # fmt: skip
            print(" | ".join(line), flush=True)
    slow, fast = STEPS
    print(f"total: step {slow} {sum(seconds[slow]):.1f} s, step {fast} {sum(seconds[fast]):.1f} s "
          f"({sum(seconds[fast]) / sum(seconds[slow]):.2f}×); mean Dice {np.mean(dice[slow]):.4f} vs "
          f"{np.mean(dice[fast]):.4f}; largest case difference "
          f"{max(abs(a - b) for a, b in zip(dice[slow], dice[fast], strict=True)):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
