"""fp32 CPU sliding-window prediction of a Med3D model with torch's convolution choice and with oneDNN forced.

    W=/work/bench_mem; M=nnUNet_results/Dataset502_MRBrainS18/nnUNetTrainerMed3D_cpu__nnUNetMed3DPlans__3d_fullres
    .venv/bin/python benchmarks/onednn_conv.py --model $W/originals/seed_1/$M/fold_0 \
        --image $W/nnUNet_preprocessed/Dataset502_MRBrainS18/nnUNetPlans_3d_fullres/MRBrainS18_070.b2nd

Loads the model as ``nnUNetv2_predict`` does (`nnunet.glue.trained_predictor`: Med3DUNet turns its
convolutions into `med3d.onednn_conv.OneDnnConv3d`), then predicts the preprocessed image with nnU-Net's
sliding window in fp32, alternating the network's convolutions between plain ``nn.Conv3d`` (torch's heuristic:
batch-1 tiles go to ``slow_conv3d``) and ``OneDnnConv3d``, and, for reference, under CPU bf16 autocast (where
every convolution runs in oneDNN), for ``--rounds`` rounds in one process, at the profile's torch threads.
Prints the median seconds of each and the largest logit difference between the two fp32 ways. Measures,
asserts nothing.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
from torch import nn

from nnunet_unlearning.artifacts import ModelFolder
from nnunet_unlearning.med3d.onednn_conv import OneDnnConv3d
from nnunet_unlearning.nnunet.glue import trained_predictor
from nnunet_unlearning.workflows import profiles


def _convolutions(network: nn.Module, cls: type[nn.Conv3d]) -> None:
    for layer in network.modules():
        if isinstance(layer, nn.Conv3d):
            layer.__class__ = cls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained Med3D fold folder")
    parser.add_argument("--image", type=Path, required=True, help="a preprocessed case (nnU-Net's .b2nd)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    profiles.use_cpu_threads()
    predictor = trained_predictor(ModelFolder.parse(args.model), torch.device("cpu"))
    case = args.image.name.removesuffix(".b2nd")
    data, _, _, _ = nnUNetDatasetBlosc2(str(args.image.parent), [case]).load_case(case)
    image = torch.from_numpy(np.asarray(data))
    ways = (("torch", nn.Conv3d, False), ("onednn", OneDnnConv3d, False), ("bf16", OneDnnConv3d, True))
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in ways}
    logits = {}
    with torch.no_grad():
        for _ in range(args.rounds):
            for label, cls, bf16 in ways:
                _convolutions(predictor.network, cls)
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits[label] = predictor.predict_sliding_window_return_logits(image)
                seconds[label].append(time.perf_counter() - start)
    difference = float((logits["torch"] - logits["onednn"]).abs().max())
    print(
        f"fp32 sliding window over {tuple(image.shape)}, {torch.get_num_threads()} thread(s): torch's choice "
        f"{statistics.median(seconds['torch']):.2f} s, oneDNN {statistics.median(seconds['onednn']):.2f} s, "
        f"bf16 autocast {statistics.median(seconds['bf16']):.2f} s (medians of {args.rounds}); largest fp32 logit "
        f"difference {difference:.2e}"
    )


if __name__ == "__main__":
    main()
