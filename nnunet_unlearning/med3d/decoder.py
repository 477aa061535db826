"""U-Net decoder for the Med3D encoder, with nnU-Net's deep-supervision contract.

Levels are numbered by resolution: level 0 is full resolution (the input block's output), level i > 0 is the
encoder's stage i (stride product of strides[0..i]); the deepest level, 5, is layer4, the bottleneck.
Each decoder level i < 5 upsamples the level above by a transposed convolution (kernel = stride, as
nnU-Net), concatenates the skip of level i and applies two 3×3×3 conv + norm + LeakyReLU blocks.

Outputs (logits, no softmax): with `deep_supervision` one tensor per level 0..4, highest resolution first
(what nnU-Net's `_get_deep_supervision_scales` expects from `strides`), otherwise the level-0 tensor only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnunet_unlearning.med3d.resnet import as_triple, make_norm


def conv_block(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    """Two 3×3×3 convolutions, each followed by norm and LeakyReLU (nnU-Net's stage block)."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        # no bias: the norm right after subtracts any constant the conv could add
        layers += [
            nn.Conv3d(c_in, out_channels, kernel_size=3, padding=1, bias=False),
            make_norm(norm, out_channels),
            nn.LeakyReLU(0.01, inplace=True),
        ]
    return nn.Sequential(*layers)


class Med3DDecoder(nn.Module):
    """Decoder with skips from every encoder stage and from a full-resolution input block.

    Args:
        input_channels: channels of the network input (for the full-resolution input block).
        encoder_channels: channels of encoder levels 1..5 (stem, layer1..layer4).
        decoder_channels: output channels of decoder levels 0..4 (level 0 also sets the input block's).
        strides: six per-axis strides, strides[i] downsampling level i-1 to level i (strides[0] is the
            input block's, always 1).
        num_classes: output channels of every segmentation head.
        norm: "batch" or "instance".
        deep_supervision: return one output per level 0..4 instead of level 0 only; nnU-Net's trainer
            sets `decoder.deep_supervision` directly.
    """

    def __init__(
        self,
        input_channels: int,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        strides: Sequence[Sequence[int]],
        num_classes: int,
        norm: str,
        deep_supervision: bool,
    ) -> None:
        super().__init__()
        n_levels = len(decoder_channels)
        if len(encoder_channels) != n_levels or len(strides) != n_levels + 1:
            raise ValueError("need one decoder width per encoder stage and one stride per level")
        self.deep_supervision = deep_supervision
        # the input block is new (not MedicalNet's), so it lives here with the other trained-from-scratch
        # parts: `encoder.*` is exactly the checkpoint
        self.input_block = conv_block(input_channels, decoder_channels[0], norm)
        skip_channels = (decoder_channels[0], *encoder_channels[:-1])
        below = [*decoder_channels[1:], encoder_channels[-1]]
        self.upsamples = nn.ModuleList(
            nn.ConvTranspose3d(
                below[i],
                decoder_channels[i],
                kernel_size=as_triple(strides[i + 1]),
                stride=as_triple(strides[i + 1]),
                bias=False,
            )
            for i in range(n_levels)
        )
        self.blocks = nn.ModuleList(
            conv_block(decoder_channels[i] + skip_channels[i], decoder_channels[i], norm) for i in range(n_levels)
        )
        # named as nnU-Net's, so `nnUNetv2_train -pretrained_weights` skips the heads when classes differ
        self.seg_layers = nn.ModuleList(nn.Conv3d(c, num_classes, kernel_size=1) for c in decoder_channels)

    def forward(self, x: torch.Tensor, encoder_features: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """x: network input (B, C, X, Y, Z); encoder_features: levels 1..5. Returns logits (see module doc)."""
        skips = [self.input_block(x), *encoder_features[:-1]]
        y = encoder_features[-1]
        outputs = []
        for level in reversed(range(len(self.blocks))):
            y = self.blocks[level](torch.cat([self.upsamples[level](y), skips[level]], dim=1))
            if self.deep_supervision or level == 0:
                outputs.append(self.seg_layers[level](y))
        return outputs[::-1] if self.deep_supervision else outputs[0]
