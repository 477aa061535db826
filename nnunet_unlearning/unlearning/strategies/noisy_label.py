"""NoisyLabel: train forget patches toward labels drawn independently per voxel, jointly with retain."""

from __future__ import annotations

from torch import Tensor

from nnunet_unlearning.unlearning.strategies.ops.objectives import RelabelStrategy
from nnunet_unlearning.unlearning.strategies.ops.substitute_labels import voxelwise_random_labels
from nnunet_unlearning.unlearning.strategy import Batch, StrategyContext


class NoisyLabel(RelabelStrategy):
    """``loss = task(retain) + forget_weight * task(forget, U)``, ``U`` uniform i.i.d. per voxel, fresh each step."""

    name = "NoisyLabel"

    def forget_target(self, forget: Batch, ctx: StrategyContext) -> list[Tensor]:
        return voxelwise_random_labels(forget.target, ctx.num_classes, ctx.ignore_label, ctx.generator)
