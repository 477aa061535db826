"""Diagonal Fisher importances of a network's parameters on a stream of batches.

The importance of a parameter entry is the mean, over batches, of the squared gradient of the task loss
of the batch, as in the SSD reference code (``if-loops/selective-synaptic-dampening``, ``calc_importance``,
itself adapted from Avalanche): squared *batch* gradients, not per-sample ones, averaged over the
number of batches. In a multi-GPU run each rank sums its own batches and the sums and batch counts are
reduced over ranks before dividing, so every rank ends with the same importances: those of all batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice

import torch
from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategy import Batch, as_list


def diagonal_fisher(
    model: nn.Module,
    batches: Iterator[Batch],
    num_batches: int,
    task_loss: Callable[[list[Tensor], list[Tensor]], Tensor],
    all_reduce_sum: Callable[[Tensor], Tensor],
) -> dict[str, Tensor]:
    """Importances by parameter name (each shaped like its parameter) from ``num_batches`` batches.

    Only parameters with ``requires_grad`` are included; a parameter the loss does not reach gets zeros.
    The network runs in eval mode, as in the reference, and its mode is restored afterwards. Gradients
    come from ``torch.autograd.grad``, so ``.grad`` fields and optimizer state are left untouched.
    ``batches`` must yield at least one batch on some rank.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    sums = {name: torch.zeros_like(p) for name, p in params.items()}
    taken = 0
    was_training = model.training
    model.eval()
    try:
        for batch in islice(batches, num_batches):
            loss = task_loss(as_list(model(batch.data)), batch.target)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for total, grad in zip(sums.values(), grads, strict=True):
                if grad is not None:
                    total.add_(grad.square())
            taken += 1
    finally:
        model.train(was_training)
    device = next(iter(sums.values())).device
    count = float(all_reduce_sum(torch.tensor([float(taken)], device=device)).item())
    if count == 0:
        raise ValueError("diagonal_fisher: the batch stream yielded no batch on any rank")
    return {name: all_reduce_sum(total) / count for name, total in sums.items()}
