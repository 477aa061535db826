"""RandomLabel: train forget patches toward their own segmentation with the foreground classes permuted."""

from __future__ import annotations

from torch import Tensor, nn

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.unlearning.strategies.ops.objectives import RelabelStrategy
from nnunet_unlearning.unlearning.strategies.ops.substitute_labels import permute_foreground
from nnunet_unlearning.unlearning.strategy import Batch, StrategyContext


class RandomLabel(RelabelStrategy):
    """``loss = task(retain) + forget_weight * task(forget, π(y))``.

    ``π`` is a fresh random derangement of the foreground classes for every patch at every step (no
    foreground class keeps its own label; background and ignore stay), applied at every scale: the
    structures are kept, their meaning is wrong.
    """

    name = "RandomLabel"

    def prepare(self, model: nn.Module, ctx: StrategyContext) -> None:
        if ctx.num_classes < 3:
            raise UserInputError(
                f"{self.name} permutes foreground classes, which needs at least two; "
                f"this dataset has {ctx.num_classes - 1}"
            )

    def forget_target(self, forget: Batch, ctx: StrategyContext) -> list[Tensor]:
        return permute_foreground(forget.target, ctx.num_classes, ctx.ignore_label, ctx.generator)
