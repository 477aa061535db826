"""Training-memory estimate for a network and patch, calibrated against nnU-Net's own planner.

The estimate runs the network once on PyTorch's "meta" device (shapes only, no data, a fraction of a
second even for ResNet-50) and adds up the tensors autograd saves for the backward pass: that is the
activation memory of a training step. Floating tensors count 2 bytes (nnU-Net trains with mixed
precision), integer ones (max-pool indices) their real size. Parameters add 16 bytes each (fp32 weight,
gradient, SGD momentum, fp16 autocast copy).

What a byte budget means on a real GPU (CUDA context, cuDNN workspace, allocator caching) is taken from
nnU-Net: its default planner fills an 8 GB target with a PlainConvUNet whose conv feature maps total
560 M elements at batch size 2 (`ExperimentPlanner.UNet_reference_val_3d`). We estimate that reference
network with the same method, and a budget of G GB allows G/8 of that estimate — the same linear scaling
nnU-Net applies to its reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

FLOAT_BYTES = 2
PARAM_BYTES = 16
# nnU-Net's ExperimentPlanner: UNet_reference_val_3d at UNet_reference_val_corresp_bs_3d in _corresp_GB
NNUNET_REFERENCE_FEATURE_MAPS = 560_000_000
NNUNET_REFERENCE_BATCH = 2
NNUNET_REFERENCE_GB = 8.0


def activation_bytes(build: Callable[[], nn.Module], input_shape: Sequence[int]) -> tuple[int, int]:
    """(bytes autograd saves in one forward on `input_shape` = (B, C, X, Y, Z), number of parameters).

    `build` constructs the network; it is called under the meta device, so nothing is allocated.
    """
    with torch.device("meta"):
        net = build()
        param_ids = {id(p) for p in net.parameters()}
        saved: dict[int, torch.Tensor] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            # weights are counted as parameters; a tensor saved by two ops (a skip, a shortcut) counts once
            if id(t) not in param_ids:
                saved[id(t)] = t
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.empty(tuple(input_shape)))
        n_params = sum(p.numel() for p in net.parameters())
    total = sum(t.numel() * (FLOAT_BYTES if t.is_floating_point() else t.element_size()) for t in saved.values())
    return total, n_params


def nnunet_default_unet(
    in_channels: int, num_classes: int, kernels: int | Sequence, strides: Sequence[Sequence[int]]
) -> PlainConvUNet:
    """nnU-Net's default 3D PlainConvUNet for these kernel sizes and strides (one entry per stage): min(32 · 2^i,
    320) features at stage i, two 3D convolutions per stage, instance norm, leaky ReLU, deep supervision."""
    n = len(strides)
    return PlainConvUNet(
        in_channels,
        n,
        [min(32 * 2**i, 320) for i in range(n)],
        nn.Conv3d,
        kernels,
        strides,
        2,
        num_classes,
        2,
        True,
        nn.InstanceNorm3d,
        {"eps": 1e-5, "affine": True},
        None,
        None,
        nn.LeakyReLU,
        {"inplace": True},
        deep_supervision=True,
    )


def nnunet_reference_bytes() -> int:
    """Our estimate for the network nnU-Net's planner puts into its 8 GB reference (batch 2, 560 M maps).

    nnU-Net's default 3D PlainConvUNet (6 stages, 32..320 features, instance norm) on a 128³ patch,
    with activations scaled linearly to the reference's feature-map count.
    """
    patch = (128, 128, 128)
    strides = [[1, 1, 1]] + [[2, 2, 2]] * 5

    def build() -> PlainConvUNet:
        return nnunet_default_unet(1, 4, 3, strides)

    per_sample, n_params = activation_bytes(build, (1, 1, *patch))
    with torch.device("meta"):
        feature_maps = build().compute_conv_feature_map_size(patch)
    scale = NNUNET_REFERENCE_FEATURE_MAPS / feature_maps
    return round(NNUNET_REFERENCE_BATCH * per_sample * scale) + PARAM_BYTES * n_params


def budget_bytes(gpu_memory_gb: float) -> int:
    """The estimate (our unit) a network may reach to fit `gpu_memory_gb` of GPU memory, nnU-Net-calibrated."""
    return round(nnunet_reference_bytes() * gpu_memory_gb / NNUNET_REFERENCE_GB)
