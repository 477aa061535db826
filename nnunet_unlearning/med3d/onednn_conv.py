"""3D convolutions that run in oneDNN on a CPU for single-tile fp32 inputs too.

torch chooses a CPU convolution kernel by a heuristic (``ConvParams::use_mkldnn`` in ATen's Convolution.cpp):
an fp32 input of batch 1 with N·C·D·H ≤ 20480 and a kernel of at most 3 × 3 goes to its im2col fallback
(``slow_conv3d``), "for some case, native is faster". For 3D U-Net tiles it is much slower: a 3 × 3 × 3
convolution of 16 → 16 channels on a 16 × 48 × 48 tile took 296 ms there against 42 ms in oneDNN (torch 2.14.1,
this project's 2-core machine). nnU-Net's sliding-window predictor feeds the network one tile at a time, so
every fp32 evaluation of a Med3D network on a CPU (the evaluation hook, ``nnUNetv2_predict``, the audit) paid it;
training batches (batch ≥ 2) and bf16 autocast already run in oneDNN. docs/benchmarks.md has the whole-network
figures.
"""

from __future__ import annotations

import torch
from torch import nn


class OneDnnConv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters, same state_dict) whose batch-1 fp32 CPU forward calls oneDNN directly;
    every other input (a GPU, batches, autocast, padding modes other than zeros) takes torch's own route."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            input.device.type == "cpu"
            and input.dtype == torch.float32
            and weight.dtype == torch.float32
            and input.size(0) == 1
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)  # "same"/"valid": torch resolves those itself
            and not torch.is_autocast_enabled("cpu")  # autocast casts inside F.conv3d, not here
        ):
            return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


def use_onednn_convolutions(module: nn.Module) -> int:
    """Turn every plain ``nn.Conv3d`` in ``module`` into a :class:`OneDnnConv3d` in place (the class only:
    parameters, buffers and state_dict keys are unchanged); returns how many it turned."""
    turned = 0
    for layer in module.modules():
        if type(layer) is nn.Conv3d:
            layer.__class__ = OneDnnConv3d
            turned += 1
    return turned
