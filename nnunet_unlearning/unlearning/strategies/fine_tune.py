"""FineTune: keep training on the retain subjects only, so the forget subjects fade by omission."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.ops.objectives import task_loss_on
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, given


class FineTune(Strategy):
    """``loss = task(retain)``; the forget stream is never loaded."""

    name = "FineTune"
    uses_forget: ClassVar[bool] = False

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        retain = given(retain, "retain")
        return task_loss_on(model, retain, ctx)
