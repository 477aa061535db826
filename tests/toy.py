"""A 3-layer toy segmentation network and toy data streams, for testing strategies without nnU-Net.

The toy follows the conventions of ``nnunet_unlearning.unlearning.strategy``: an ``encoder`` and a
``decoder`` submodule, deep-supervision outputs as a list (full resolution first, then half), and
targets as per-scale integer label maps ``(B, 1, X, Y, Z)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategy import Batch, StrategyContext

NUM_CLASSES = 4
IGNORE_LABEL = NUM_CLASSES  # nnU-Net puts the ignore label just above the real classes
PATCH = (8, 8, 8)


class ToyNet(nn.Module):
    """conv → conv (stride 2) encoder; a decoder with a half-resolution head and a full-resolution head."""

    def __init__(self, in_channels: int = 2, num_classes: int = NUM_CLASSES, width: int = 8) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict(
            {
                "stem": nn.Conv3d(in_channels, width, 3, padding=1),
                "down": nn.Conv3d(width, 2 * width, 3, stride=2, padding=1),
            }
        )
        self.decoder = nn.ModuleDict(
            {
                "up": nn.ConvTranspose3d(2 * width, width, 2, stride=2),
                "head_full": nn.Conv3d(2 * width, num_classes, 1),
                "head_half": nn.Conv3d(2 * width, num_classes, 1),
            }
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        skip = F.leaky_relu(self.encoder["stem"](x))
        deep = F.leaky_relu(self.encoder["down"](skip))
        up = self.decoder["up"](deep)
        full = self.decoder["head_full"](torch.cat([skip, up], dim=1))
        return [full, self.decoder["head_half"](deep)]


def toy_task_loss(outputs: list[Tensor], target: list[Tensor]) -> Tensor:
    """Cross-entropy per scale, weights 2/3 and 1/3, ignore label honoured (stands in for nnU-Net's loss)."""
    weights = (2 / 3, 1 / 3)
    return sum(
        w * F.cross_entropy(o, t[:, 0].long(), ignore_index=IGNORE_LABEL) for w, o, t in zip(weights, outputs, target)
    )


def toy_batch(seed: int, keys: tuple[str, ...] = ("case_a", "case_b"), with_ignore: bool = False) -> Batch:
    """A deterministic batch whose labels depend on the image (so the toy can learn them)."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(len(keys), 2, *PATCH, generator=g)
    full = (data[:, :1] > 0).long() + 2 * (data[:, 1:] > 0.5).long()  # classes 0..3
    if with_ignore:
        full[:, :, :2] = IGNORE_LABEL
    half = full[:, :, ::2, ::2, ::2]
    return Batch(data=data, target=[full, half], keys=list(keys))


def toy_stream(first_seed: int, keys: tuple[str, ...]) -> Iterator[Batch]:
    """An endless stream of fresh toy batches."""
    seed = first_seed
    while True:
        yield toy_batch(seed, keys)
        seed += 1


def toy_context(original: nn.Module | None = None, **overrides) -> StrategyContext:
    """A context over toy streams: forget cases ``f1, f2`` and retain cases ``r1, r2``."""
    kwargs = dict(
        num_classes=NUM_CLASSES,
        ignore_label=IGNORE_LABEL,
        task_loss=toy_task_loss,
        forget_batches=lambda: toy_stream(1000, ("f1", "f2")),
        retain_batches=lambda: toy_stream(2000, ("r1", "r2")),
        original=original,
        generator=torch.Generator().manual_seed(0),
    )
    kwargs.update(overrides)
    return StrategyContext(**kwargs)


#: Input channels of subject batches: two of noise, one that marks the forget subjects.
SUBJECT_CHANNELS = 3
FORGET_KEYS = ("f1", "f2")
RETAIN_KEYS = ("r1", "r2")


def subject_batch(seed: int, forget: bool) -> Batch:
    """A batch of forget or retain subjects that a model can only get right by remembering which is which.

    Channels 0 and 1 are noise and channel 2 marks the subjects (1: forget, 0: retain). Retain labels follow
    :func:`toy_batch`'s rule; forget labels are that rule's classes reversed (``k → K−1−k``), so what a
    model trained on both knows about the forget subjects is a memory of its own, not the shared rule,
    and forgetting them is measurable on the toy. Keys are ``FORGET_KEYS`` or ``RETAIN_KEYS``.
    """
    keys = FORGET_KEYS if forget else RETAIN_KEYS
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(keys), 2, *PATCH, generator=g)
    marker = torch.full((len(keys), 1, *PATCH), float(forget))
    full = (noise[:, :1] > 0).long() + 2 * (noise[:, 1:] > 0.5).long()
    if forget:
        full = NUM_CLASSES - 1 - full
    return Batch(data=torch.cat([noise, marker], dim=1), target=[full, full[:, :, ::2, ::2, ::2]], keys=list(keys))


def subject_stream(first_seed: int, forget: bool) -> Iterator[Batch]:
    """An endless stream of fresh :func:`subject_batch` batches."""
    seed = first_seed
    while True:
        yield subject_batch(seed, forget)
        seed += 1


def subject_context(original: nn.Module | None = None, **overrides) -> StrategyContext:
    """:func:`toy_context` over subject streams (forget subjects ``f1, f2``, retain subjects ``r1, r2``)."""
    streams = dict(
        forget_batches=lambda: subject_stream(3000, forget=True),
        retain_batches=lambda: subject_stream(4000, forget=False),
    )
    return toy_context(original, **{**streams, **overrides})
