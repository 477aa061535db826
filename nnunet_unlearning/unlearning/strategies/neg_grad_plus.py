"""NegGradPlus (NegGrad+): descend on the retain cases while ascending on the forget cases.

Kurmanji et al., "Towards Unbounded Machine Unlearning" (NeurIPS 2023), baseline NegGrad+; reference code
``meghdadk/SCRUB``, ``thirdparty/repdistiller/helper/loops.py::train_negrad``:
``loss = alpha * retain_loss - (1 - alpha) * forget_loss``.
"""

from __future__ import annotations

from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.ops.bounded_ascent import bound_setting, bounded_ascent, resolve_bound
from nnunet_unlearning.unlearning.strategies.ops.objectives import task_loss_on
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, given


class NegGradPlus(Strategy):
    """loss = α·task(retain) − (1−α)·task(forget), the forget term bounded as in GradientAscent.

    ``alpha`` (default 0.95, the reference's ``alpha``): weight of the retain term; at α = 1 this is
    FineTune. ``loss_bound`` (default ``None``: ln K): past it the forget term gives no gradient.
    Uses the trainer's learning rate unchanged (no ``lr_scale`` argument; factor 1), the rate the MRBrainS18
    benchmark's CPU profile chose for it on subject 1 (docs/benchmarks.md).
    """

    name = "NegGradPlus"

    def __init__(self, alpha: float = 0.95, loss_bound: float | None = None) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"NegGradPlus: alpha must lie in [0, 1], got {alpha}")
        self.alpha = alpha
        self.loss_bound = loss_bound

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {"alpha": self.alpha, "loss_bound": bound_setting(self.loss_bound)}

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        retain, forget = given(retain, "retain"), given(forget, "forget")
        ascent = bounded_ascent(task_loss_on(model, forget, ctx), resolve_bound(self.loss_bound, ctx.num_classes))
        return self.alpha * task_loss_on(model, retain, ctx) + (1.0 - self.alpha) * ascent
