"""SalUnCRA: SalUn that makes clinically critical forget voxels uncertain instead of relabelling them."""

from __future__ import annotations

import torch
from torch import Tensor

from nnunet_unlearning.unlearning.strategies.salun import SalUn
from nnunet_unlearning.unlearning.strategy import Batch, StrategyContext


def critical_voxels(target: Tensor, critical_classes: tuple[int, ...]) -> Tensor:
    """Boolean ``(B, 1, *spatial)`` map of the voxels of ``target`` whose label is a critical class."""
    return torch.isin(target, torch.tensor(critical_classes, dtype=target.dtype, device=target.device))


def mean_entropy(logits: Tensor, where: Tensor) -> Tensor:
    """Mean softmax entropy (nats) of ``logits`` ``(B, K, *spatial)`` over the voxels ``where``
    ``(B, 1, *spatial)``; 0 when there are none."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1, keepdim=True)
    return (entropy * where).sum() / where.sum().clamp(min=1)


class SalUnCRA(SalUn):
    """SalUn with a critical-region-aware forget term (classes ``ctx.critical_classes``).

    ``forget_loss = task(z', y') - entropy_weight * H_crit``: on forget voxels whose true label is
    critical, the task term sees the logits detached (``z'``) and the voxel's own label (``y'``), so it
    pushes them toward no class, healthy or not; ``H_crit`` is the mean softmax entropy of the
    full-resolution output over those voxels, which the loss drives up toward ``ln K``. All other forget
    voxels are relabelled as in SalUn.
    """

    name = "SalUnCRA"

    def __init__(self, forget_weight: float = 1.0, fraction: float = 0.5, mask_batches: int = 4,
                 entropy_weight: float = 1.0) -> None:
        super().__init__(forget_weight, fraction, mask_batches)
        self.entropy_weight = entropy_weight

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {**super().hyperparameters(), "entropy_weight": self.entropy_weight}

    def forget_target(self, forget: Batch, ctx: StrategyContext) -> list[Tensor]:
        relabelled = super().forget_target(forget, ctx)
        return [torch.where(critical_voxels(own, ctx.critical_classes), own, new)
                for own, new in zip(forget.target, relabelled)]

    def forget_loss(self, outputs: list[Tensor], forget: Batch, ctx: StrategyContext) -> Tensor:
        critical = [critical_voxels(t, ctx.critical_classes) for t in forget.target]
        shielded = [torch.where(c, z.detach(), z) for c, z in zip(critical, outputs)]
        task = ctx.task_loss(shielded, self.forget_target(forget, ctx))
        return task - self.entropy_weight * mean_entropy(outputs[0], critical[0])
