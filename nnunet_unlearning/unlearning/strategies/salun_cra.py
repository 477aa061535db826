"""SalUnCRA: SalUn that makes clinically critical forget voxels uncertain instead of relabelling them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.unlearning.strategies.ops.substitute_labels import permute_foreground
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
    full-resolution output over those voxels, which the loss drives up toward ``ln K``.

    All other foreground forget voxels are relabelled as in SalUn, but by a derangement of the
    *non-critical* foreground classes only: no voxel is ever given a critical label it did not carry, so
    healthy tissue is never taught to look like a lesion. That needs two non-critical foreground classes.
    """

    name = "SalUnCRA"

    def __init__(
        self, forget_weight: float = 1.0, fraction: float = 0.5, mask_batches: int = 4, entropy_weight: float = 1.0
    ) -> None:
        super().__init__(forget_weight, fraction, mask_batches)
        self.entropy_weight = entropy_weight

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {**super().hyperparameters(), "entropy_weight": self.entropy_weight}

    def prepare(self, model: nn.Module, ctx: StrategyContext) -> None:
        healthy = [c for c in range(1, ctx.num_classes) if c not in ctx.critical_classes]
        if len(healthy) < 2:
            raise UserInputError(
                f"{self.name} permutes the non-critical foreground classes, which needs at "
                f"least two; this dataset has {len(healthy)} besides the critical classes "
                f"{list(ctx.critical_classes)}"
            )
        super().prepare(model, ctx)

    def forget_target(self, forget: Batch, ctx: StrategyContext) -> list[Tensor]:
        """Own labels on critical voxels, a derangement of the non-critical foreground classes elsewhere."""
        return permute_foreground(
            forget.target, ctx.num_classes, ctx.ignore_label, ctx.generator, fixed=ctx.critical_classes
        )

    def forget_loss(self, outputs: list[Tensor], forget: Batch, ctx: StrategyContext) -> Tensor:
        critical = [critical_voxels(t, ctx.critical_classes) for t in forget.target]
        shielded = [torch.where(c, z.detach(), z) for c, z in zip(critical, outputs)]
        task = ctx.task_loss(shielded, self.forget_target(forget, ctx))
        return task - self.entropy_weight * mean_entropy(outputs[0], critical[0])
