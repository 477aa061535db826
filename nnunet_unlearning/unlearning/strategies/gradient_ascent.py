"""GradientAscent (NegGrad): ascend the task loss on the forget cases, and nothing else.

The simplest unlearning baseline (Unlearn-Sparse / Unlearn-Saliency ``GA``; "NegGrad" in Kurmanji et al.,
2023). It never sees a retain case, so only a small learning rate and the divergence bound keep it from
destroying the model.
"""

from __future__ import annotations

from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.ops.bounded_ascent import bound_setting, bounded_ascent, resolve_bound
from nnunet_unlearning.unlearning.strategies.ops.objectives import task_loss_on
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, given


class GradientAscent(Strategy):
    """loss = −task(forget) while task(forget) < bound; no gradient past the bound.

    ``lr_scale`` (default 0.1): the trainer multiplies its initial learning rate by it. The reference
    runs GA at 1/100 of fine-tuning's learning rate, but for about a hundred steps; our schedules take
    thousands, and the bound, not the learning rate, is what stops divergence here.
    ``loss_bound`` (default ``None``: ln K, the loss of a chance-level prediction over K classes).
    """

    name = "GradientAscent"
    uses_retain = False

    def __init__(self, lr_scale: float = 0.1, loss_bound: float | None = None) -> None:
        self.lr_scale = lr_scale
        self.loss_bound = loss_bound

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {"lr_scale": self.lr_scale, "loss_bound": bound_setting(self.loss_bound)}

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        forget = given(forget, "forget")
        return bounded_ascent(task_loss_on(model, forget, ctx), resolve_bound(self.loss_bound, ctx.num_classes))
