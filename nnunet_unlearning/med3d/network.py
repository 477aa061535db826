"""Med3DUNet: MedicalNet 3D ResNet encoder + U-Net decoder, built by nnU-Net from the plans.

nnU-Net builds it through `get_network_from_plans` with `network_class_name =
"nnunet_unlearning.med3d.network.Med3DUNet"` and the plans' JSON `arch_kwargs`, for training and
`nnUNetv2_predict` alike. It reads no files; pretrained weights are loaded by the trainer
(`nnunet_unlearning.med3d.pretrained_trainer`).

Submodules: `encoder` (parameter names exactly MedicalNet's) and `decoder` (everything trained from
scratch: input block, upsampling, conv blocks, segmentation heads).

No `initialize` method: the constructor initialises the encoder as MedicalNet does and the decoder as
nnU-Net's default architecture does (`InitWeights_He(1e-2)`), so the network is the same whether or not
nnU-Net's `allow_init` applies an initializer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.med3d.cpu_precision import SETTINGS as CPU_BF16_SETTINGS
from nnunet_unlearning.med3d.cpu_precision import bf16_decision
from nnunet_unlearning.med3d.decoder import Med3DDecoder
from nnunet_unlearning.med3d.onednn_conv import use_onednn_convolutions
from nnunet_unlearning.med3d.resnet import NORMS, RESNET_CONFIGS, MedicalNetResNet

N_LEVELS = 6  # input block, conv1, maxpool+layer1, layer2, layer3, layer4
DEFAULT_STRIDES = ((1, 1, 1),) + ((2, 2, 2),) * 5
DEFAULT_DECODER_CHANNELS = (32, 64, 128, 256, 320)
# chosen by measurement (docs/benchmarks.md, "Med3D"): higher held-out Dice than instance norm
DEFAULT_NORM = "batch"


def validate_arch_kwargs(
    depth: int, strides: Sequence[Sequence[int]], norm: str, decoder_channels: Sequence[int], cpu_bf16: str = "no"
) -> None:
    """Raise UserInputError (one line naming the arch_kwargs entry) when the plans ask for a network we cannot build."""
    if cpu_bf16 not in CPU_BF16_SETTINGS:
        raise UserInputError(
            f"Med3DUNet arch_kwargs: cpu_bf16 must be one of {list(CPU_BF16_SETTINGS)}, got {cpu_bf16!r}"
        )
    if depth not in RESNET_CONFIGS:
        raise UserInputError(f"Med3DUNet arch_kwargs: depth must be one of {sorted(RESNET_CONFIGS)}, got {depth!r}")
    if norm not in NORMS:
        raise UserInputError(f"Med3DUNet arch_kwargs: norm must be one of {list(NORMS)}, got {norm!r}")
    if len(strides) != N_LEVELS or any(len(s) != 3 for s in strides) or any(int(v) < 1 for s in strides for v in s):
        raise UserInputError(
            f"Med3DUNet arch_kwargs: strides must be {N_LEVELS} triples of positive ints "
            f"(input block, conv1, maxpool, layer2, layer3, layer4), got {strides!r}"
        )
    if any(int(v) != 1 for v in strides[0]):
        raise UserInputError(
            f"Med3DUNet arch_kwargs: strides[0] (full-resolution input block) must be [1, 1, 1], got {list(strides[0])}"
        )
    if len(decoder_channels) != N_LEVELS - 1 or any(int(c) < 1 for c in decoder_channels):
        raise UserInputError(
            f"Med3DUNet arch_kwargs: decoder_channels must be {N_LEVELS - 1} positive ints "
            f"(levels 0..4), got {decoder_channels!r}"
        )


class Med3DUNet(nn.Module):
    """U-Net with a MedicalNet ResNet encoder.

    Args:
        input_channels: image channels (modalities).
        num_classes: segmentation outputs (nnU-Net's `num_segmentation_heads`).
        deep_supervision: return one logit map per level 0..4 (highest resolution first) instead of one.
        depth: ResNet depth, 10, 18, 34 or 50.
        strides: six per-axis strides (plans' `pool_op_kernel_sizes`): [1, 1, 1] for the full-resolution
            input block, then conv1, maxpool, layer2, layer3, layer4.
        norm: "batch" (MedicalNet's) or "instance" (nnU-Net's), in encoder and decoder.
        decoder_channels: widths of decoder levels 0..4.
        cpu_bf16: "no", "yes" or "auto": whether training steps on a CPU run under bf16 autocast
            (`cpu_precision.py`); an ``eval()``-mode forward runs in the caller's precision (the evaluation hook
            chooses by the same setting, `cpu_precision.evaluation_precision`); GPUs are unaffected.

    Input (B, input_channels, X, Y, Z) with X, Y, Z divisible by the product of the strides per axis;
    output logits (B, num_classes, X, Y, Z) (and the lower levels, with deep supervision), always fp32.
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        deep_supervision: bool = True,
        depth: int = 50,
        strides: Sequence[Sequence[int]] = DEFAULT_STRIDES,
        norm: str = DEFAULT_NORM,
        decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
        cpu_bf16: str = "no",
    ) -> None:
        super().__init__()
        validate_arch_kwargs(depth, strides, norm, decoder_channels, cpu_bf16)
        self.cpu_bf16 = cpu_bf16
        self.strides = [tuple(int(v) for v in s) for s in strides]
        self.total_stride = tuple(int(v) for v in np.prod(self.strides, axis=0))
        self.encoder = MedicalNetResNet(depth, input_channels, self.strides[1:], norm)
        self.decoder = Med3DDecoder(
            input_channels,
            self.encoder.stage_channels,
            [int(c) for c in decoder_channels],
            self.strides,
            num_classes,
            norm,
            deep_supervision,
        )
        self.decoder.apply(InitWeights_He(1e-2))
        # nnU-Net predicts one tile at a time: without this, fp32 CPU predictions run in torch's slow fallback
        use_onednn_convolutions(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if any(n % s for n, s in zip(x.shape[2:], self.total_stride, strict=True)):
            raise ValueError(
                f"Med3DUNet: spatial shape {tuple(x.shape[2:])} is not divisible by the total "
                f"stride {self.total_stride}"
            )
        if not self.trains_in_bf16(x):
            return self.decoder(x, self.encoder(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.decoder(x, self.encoder(x))
        # the losses sum over many voxels: they get fp32 logits
        return [o.float() for o in out] if isinstance(out, list) else out.float()

    def trains_in_bf16(self, x: torch.Tensor) -> bool:
        """Whether a forward of ``x`` runs under CPU bf16 autocast: a training-mode forward on a CPU whose
        ``cpu_bf16`` setting decides for it (`cpu_precision.bf16_decision`)."""
        return self.training and x.device.type == "cpu" and self.cpu_bf16 != "no" and bf16_decision(self.cpu_bf16)[0]


NETWORK_CLASS_NAME = f"{Med3DUNet.__module__}.{Med3DUNet.__name__}"  # the plans' `network_class_name`
