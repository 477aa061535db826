"""MedicalNet (Med3D) 3D ResNet encoder with per-stage, per-axis strides.

Parameter names equal MedicalNet's after removing the `module.` prefix (`conv1.weight`, `bn1.*`,
`layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, ...), so a MedicalNet checkpoint loads tensor by
tensor. Weight shapes do not depend on strides, so any per-axis strides load the same tensors.

MedicalNet's segmentation network keeps layer3/layer4 at stride 1 with dilation 2/4 (output stride 8). As
a U-Net encoder we instead downsample by the plans' strides in every stage and use no dilation; the
tensors are the same.

Arrays are channel-first: input (B, C, X, Y, Z) in the plans' (transposed) axis order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.utils import get_norm_layer
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck
from torch import nn

# depth -> (block, blocks per stage, shortcut type); MedicalNet's choices (see its models/resnet.py and
# the checkpoints' key lists: only depths 10 and 50 carry `downsample` tensors).
Block = type[ResNetBlock] | type[ResNetBottleneck]
RESNET_CONFIGS: dict[int, tuple[Block, tuple[int, int, int, int], str]] = {
    10: (ResNetBlock, (1, 1, 1, 1), "B"),
    18: (ResNetBlock, (2, 2, 2, 2), "A"),
    34: (ResNetBlock, (3, 4, 6, 3), "A"),
    50: (ResNetBottleneck, (3, 4, 6, 3), "B"),
}
STEM_CHANNELS = 64
STAGE_PLANES = (64, 128, 256, 512)
NORMS = ("batch", "instance")

Stride = Sequence[int]
Stride3 = tuple[int, int, int]


def make_norm(norm: str, channels: int) -> nn.Module:
    """BatchNorm3d (MedicalNet's, carries running statistics) or affine InstanceNorm3d (nnU-Net's)."""
    return get_norm_layer(name=monai_norm(norm), spatial_dims=3, channels=channels)


def monai_norm(norm: str) -> str | tuple[str, dict]:
    """The MONAI norm spec for our `norm` choice (instance norm with learnable affine, as nnU-Net)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return "batch" if norm == "batch" else ("instance", {"affine": True})


def as_triple(stride: Stride) -> Stride3:
    """A per-axis stride as a triple of ints (validated to have three entries)."""
    x, y, z = (int(v) for v in stride)
    return x, y, z


class ZeroPadShortcut(nn.Module):
    """MedicalNet's parameter-free shortcut type A: subsample by the stride, zero-pad the new channels.

    MedicalNet detaches this path (`out.data`, a pre-0.4 PyTorch idiom); we keep its gradient, which
    changes no tensor in the checkpoint.
    """

    def __init__(self, out_channels: int, stride: Stride) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride[0], :: self.stride[1], :: self.stride[2]]
        pad = x.new_zeros(x.shape[0], self.out_channels - x.shape[1], *x.shape[2:])
        return torch.cat([x, pad], dim=1)


class MedicalNetResNet(nn.Module):
    """MedicalNet 3D ResNet-{10,18,34,50} as a U-Net encoder.

    Args:
        depth: 10, 18, 34 or 50.
        in_channels: input channels (MedicalNet's stem has 1; see `checkpoint.inflate_stem`).
        strides: five per-axis strides (each 3 ints) for conv1, the max-pool, layer2, layer3, layer4.
            MedicalNet's own values are (2,2,2), (2,2,2), (2,2,2), (1,1,1), (1,1,1).
        norm: "batch" or "instance" (affine), used in every norm layer.

    `forward(x)` returns five feature maps, highest resolution first: after conv1+bn1+relu (64 ch),
    layer1, layer2, layer3, layer4 (64, 128, 256, 512 ch × block expansion).
    """

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        depth: int = 50,
        in_channels: int = 1,
        strides: Sequence[Stride] = ((2, 2, 2),) * 3 + ((1, 1, 1),) * 2,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if depth not in RESNET_CONFIGS:
            raise ValueError(f"depth must be one of {sorted(RESNET_CONFIGS)}, got {depth!r}")
        if len(strides) != 5 or any(len(s) != 3 for s in strides):
            raise ValueError(f"strides must be five triples (conv1, maxpool, layer2..4), got {strides!r}")
        block, blocks_per_stage, shortcut = RESNET_CONFIGS[depth]
        self.depth = depth
        self.norm = norm
        self.shortcut_type = shortcut
        triples = [as_triple(s) for s in strides]

        self.conv1 = nn.Conv3d(in_channels, STEM_CHANNELS, kernel_size=7, stride=triples[0], padding=3, bias=False)
        self.bn1 = make_norm(norm, STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        # a kernel of 3 where MedicalNet pools, 1 on axes the plans keep (no smoothing across thick slices)
        pool_kernel = tuple(3 if s > 1 else 1 for s in triples[1])
        self.maxpool = nn.MaxPool3d(pool_kernel, stride=triples[1], padding=tuple(k // 2 for k in pool_kernel))

        in_planes = STEM_CHANNELS
        layer_strides = [(1, 1, 1), triples[2], triples[3], triples[4]]
        for i, (planes, n_blocks, stride) in enumerate(zip(STAGE_PLANES, blocks_per_stage, layer_strides, strict=True)):
            layer, in_planes = self._make_layer(block, in_planes, planes, n_blocks, stride, shortcut, norm)
            setattr(self, f"layer{i + 1}", layer)
        self.stage_channels = (STEM_CHANNELS, *(p * block.expansion for p in STAGE_PLANES))
        self.reset_medicalnet_init()

    @staticmethod
    def _make_layer(
        block: Block, in_planes: int, planes: int, n_blocks: int, stride: Stride3, shortcut: str, norm: str
    ) -> tuple[nn.Sequential, int]:
        out_planes = planes * block.expansion
        downsample: nn.Module | None = None
        # MedicalNet's rule; layer1 always has stride 1 here, so which layers own a shortcut module
        # (and so the key set) does not depend on the plans' strides.
        if any(s != 1 for s in stride) or in_planes != out_planes:
            if shortcut == "A":
                downsample = ZeroPadShortcut(out_planes, stride)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                    make_norm(norm, out_planes),
                )
        mnorm = monai_norm(norm)
        # MONAI annotates `stride` as int but hands it to nn.Conv3d, which takes a per-axis triple
        layers = [
            block(
                in_planes,
                planes,
                spatial_dims=3,
                stride=stride,  # type: ignore[arg-type]
                downsample=downsample,
                norm=mnorm,
            )
        ]
        layers += [block(out_planes, planes, spatial_dims=3, norm=mnorm) for _ in range(1, n_blocks)]
        return nn.Sequential(*layers), out_planes

    def reset_medicalnet_init(self) -> None:
        """MedicalNet's initialisation: Kaiming-normal (fan_out) convolutions, norm scale 1 and shift 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm3d, nn.InstanceNorm3d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, X, Y, Z) -> five feature maps (B, C_i, X_i, Y_i, Z_i), highest resolution first."""
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        x = self.layer1(self.maxpool(x))
        features.append(x)
        for layer in (self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features
