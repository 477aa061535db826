"""LearnNoise: train forget patches toward spatially coherent random label maps, jointly with retain."""

from __future__ import annotations

from torch import Tensor

from nnunet_unlearning.unlearning.strategies.ops.objectives import RelabelStrategy
from nnunet_unlearning.unlearning.strategies.ops.substitute_labels import smooth_random_labels
from nnunet_unlearning.unlearning.strategy import Batch, StrategyContext


class LearnNoise(RelabelStrategy):
    """``loss = task(retain) + forget_weight * task(forget, S)``, ``S`` random blobs, fresh each step.

    ``blob_size``: the blobs' approximate extent in voxels, one number for every axis or one per axis
    (anisotropic data: e.g. ``(4, 16, 16)`` for 3 mm slices of 1 mm pixels).
    """

    name = "LearnNoise"

    def __init__(self, forget_weight: float = 1.0, blob_size: float | tuple[float, ...] = 16.0) -> None:
        super().__init__(forget_weight)
        self.blob_size = blob_size

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        blob = list(self.blob_size) if isinstance(self.blob_size, tuple) else self.blob_size
        return {**super().hyperparameters(), "blob_size": blob}

    def forget_target(self, forget: Batch, ctx: StrategyContext) -> list[Tensor]:
        spatial_axes = forget.target[0].ndim - 2
        blob = self.blob_size if isinstance(self.blob_size, tuple) else (self.blob_size,) * spatial_axes
        return smooth_random_labels(forget.target, ctx.num_classes, ctx.ignore_label, blob, ctx.generator)
