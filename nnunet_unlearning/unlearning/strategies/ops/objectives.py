"""One-liners that several strategies share: the task loss of a batch, and the "retain + forget toward a
target" objective that the relabelling strategies (NoisyLabel, LearnOthers, LearnNoise, RandomLabel, SalUn)
have in common."""

from __future__ import annotations

from abc import abstractmethod

from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, as_list, given


def task_loss_on(model: nn.Module, batch: Batch, ctx: StrategyContext, target: list[Tensor] | None = None) -> Tensor:
    """The task loss of ``model`` on ``batch``, toward ``target`` (default: the batch's own labels)."""
    return ctx.task_loss(as_list(model(batch.data)), batch.target if target is None else target)


class RelabelStrategy(Strategy):
    """Joint training: retain batches toward their labels, forget batches toward a substitute target.

    ``loss = task(retain) + forget_weight * forget_loss``, where by default ``forget_loss`` is
    ``task(forget, forget_target(forget))``. Subclasses say what the substitute target is.
    """

    def __init__(self, forget_weight: float = 1.0) -> None:
        self.forget_weight = forget_weight

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {"forget_weight": self.forget_weight}

    @abstractmethod
    def forget_target(self, forget: Batch, ctx: StrategyContext) -> list[Tensor]:
        """The label maps the forget patches are trained toward, one per deep-supervision scale, shaped
        and typed like ``forget.target``; drawn afresh at every call where the method is random."""

    def forget_loss(self, outputs: list[Tensor], forget: Batch, ctx: StrategyContext) -> Tensor:
        """The forget term of the loss, given the model's per-scale logits on the forget patches."""
        return ctx.task_loss(outputs, self.forget_target(forget, ctx))

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        retain, forget = given(retain, "retain"), given(forget, "forget")
        forget_term = self.forget_loss(as_list(model(forget.data)), forget, ctx)
        return task_loss_on(model, retain, ctx) + self.forget_weight * forget_term
