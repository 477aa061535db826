"""LearnOthers: train forget images toward another (retain) subject's labels at the same patch position."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor

from nnunet_unlearning.unlearning.strategies.ops.objectives import RelabelStrategy
from nnunet_unlearning.unlearning.strategy import Batch, StrategyContext


class LearnOthers(RelabelStrategy):
    """``loss = task(retain) + forget_weight * task(forget, other)``.

    The trainer delivers forget batches whose target is already a randomly chosen retain subject's label
    map at the same position (``forget_labels = "other_subject"``); this strategy trains toward it.
    """

    name = "LearnOthers"
    forget_labels: ClassVar[Literal["own", "other_subject"]] = "other_subject"

    def forget_target(self, forget: Batch, ctx: StrategyContext) -> list[Tensor]:
        return forget.target
