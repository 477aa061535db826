"""SalUn: RandomLabel restricted to the weights most salient for the forget loss (Fan et al., ICLR 2024)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch
from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.random_label import RandomLabel
from nnunet_unlearning.unlearning.strategy import Batch, StrategyContext, as_list


def largest_entries(values: Tensor, count: int) -> Tensor:
    """Boolean mask of exactly ``count`` entries of the 1-D ``values`` with the largest values.

    Ties at the threshold are taken in index order, so equal inputs give equal masks on every rank.
    """
    chosen = torch.zeros_like(values, dtype=torch.bool)
    if count <= 0:
        return chosen
    if count >= values.numel():
        return ~chosen
    threshold = torch.kthvalue(values, values.numel() - count + 1).values
    chosen = values > threshold
    ties = torch.nonzero(values == threshold).flatten()
    chosen[ties[: count - int(chosen.sum())]] = True
    return chosen


def saliency_mask(
    model: nn.Module, batches: Iterable[Batch], ctx: StrategyContext, fraction: float
) -> dict[str, Tensor]:
    """Which weights SalUn may change: the ``fraction`` of all weights with the largest forget saliency.

    The saliency of a weight is ``|Σ_b ∂ task(b) / ∂w|``, the gradient of the task loss (own labels)
    summed over the given forget ``batches`` and over all distributed ranks (one ``ctx.all_reduce_sum``
    before the absolute value and the threshold, so every rank chooses the same weights), computed with
    the model in eval mode and leaving it and its ``.grad`` untouched. The threshold is global over all
    parameters that require gradients, as in the reference implementation (OPTML-Group/Unlearn-Saliency,
    ``generate_mask.py``); parameters that do not require gradients are never chosen.

    Returns boolean masks by parameter name (``True``: may change), shaped like the parameters.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"saliency fraction must lie in [0, 1], got {fraction}")
    named = list(model.named_parameters())
    trainable = [p for _, p in named if p.requires_grad]
    summed = [torch.zeros_like(p, dtype=torch.float32) for p in trainable]
    was_training = model.training
    model.eval()
    try:
        seen = 0
        for batch in batches:
            loss = ctx.task_loss(as_list(model(batch.data)), batch.target)
            for total, grad in zip(summed, torch.autograd.grad(loss, trainable, allow_unused=True)):
                if grad is not None:
                    total += grad
            seen += 1
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("saliency_mask got no forget batches")
    flat = torch.cat([s.flatten() for s in summed])
    ctx.all_reduce_sum(flat)
    chosen = iter(largest_entries(flat.abs_(), round(fraction * flat.numel())).split([p.numel() for p in trainable]))
    return {
        name: next(chosen).view(p.shape) if p.requires_grad else torch.zeros_like(p, dtype=torch.bool)
        for name, p in named
    }


class SalUn(RandomLabel):
    """RandomLabel that updates only the weights in :func:`saliency_mask` of the original model.

    ``fraction``: share of all weights that may change (default 0.5, the reference implementation's
    ``mask/with_0.5.pt``); ``mask_batches``: forget batches per rank the saliency is summed over.
    """

    name = "SalUn"

    def __init__(self, forget_weight: float = 1.0, fraction: float = 0.5, mask_batches: int = 4) -> None:
        super().__init__(forget_weight)
        self.fraction = fraction
        self.mask_batches = mask_batches
        self._mask: dict[str, Tensor] | None = None

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {**super().hyperparameters(), "fraction": self.fraction, "mask_batches": self.mask_batches}

    def prepare(self, model: nn.Module, ctx: StrategyContext) -> None:
        super().prepare(model, ctx)
        batches = islice(ctx.forget_batches(), self.mask_batches)
        self._mask = saliency_mask(model, batches, ctx, self.fraction)

    def update_mask(self) -> dict[str, Tensor] | None:
        return self._mask
