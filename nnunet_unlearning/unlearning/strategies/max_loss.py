"""MaxLoss: gradient ascent on the forget loss, bounded, with descent on the retain loss."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.common import task_loss_on
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext


class MaxLoss(Strategy):
    """``loss = task(retain) - min(task(forget), B)`` with ``B = bound_factor * ln(K)``.

    ``ln(K)`` is the cross-entropy of a model that predicts all ``K`` classes with equal probability on
    every voxel: past it the model is not uncertain on the forget subjects but confidently wrong, which
    is as recognisable as remembering them. The ``min`` zeroes the ascent's gradient there, so the
    forget loss cannot diverge.
    """

    name = "MaxLoss"

    def __init__(self, bound_factor: float = 1.0) -> None:
        self.bound_factor = bound_factor

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {"bound_factor": self.bound_factor}

    def bound(self, ctx: StrategyContext) -> float:
        """The forget loss above which the ascent stops."""
        return self.bound_factor * math.log(ctx.num_classes)

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None,
             ctx: StrategyContext) -> Tensor:
        forget_loss = torch.clamp(task_loss_on(model, forget, ctx), max=self.bound(ctx))
        return task_loss_on(model, retain, ctx) - forget_loss
