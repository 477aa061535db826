"""MaxLoss: gradient ascent on the forget loss, bounded, jointly with descent on the retain loss."""

from __future__ import annotations

from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.ops.bounded_ascent import bound_setting, bounded_ascent, resolve_bound
from nnunet_unlearning.unlearning.strategies.ops.objectives import task_loss_on
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, given


class MaxLoss(Strategy):
    """``loss = task(retain) - min(task(forget), B)``: the min stops the ascent's gradient at ``B``.

    ``loss_bound`` (default ``None``: ``B = ln K``, the cross-entropy of a prediction spread evenly over
    the ``K`` classes). Past it the model is no longer uncertain on the forget subjects but confidently
    wrong, which a membership-inference attack recognises as surely as remembering; the bound also keeps
    the forget loss from diverging.
    """

    name = "MaxLoss"

    def __init__(self, loss_bound: float | None = None) -> None:
        self.loss_bound = loss_bound

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {"loss_bound": bound_setting(self.loss_bound)}

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        retain, forget = given(retain, "retain"), given(forget, "forget")
        ascent = bounded_ascent(task_loss_on(model, forget, ctx), resolve_bound(self.loss_bound, ctx.num_classes))
        return task_loss_on(model, retain, ctx) + ascent
