"""Gradient ascent on a loss that stops once the loss passes a bound.

Unbounded ascent on the forget cases diverges: the loss grows without limit and the network's weights
with it, which damages every case, not only the forgotten ones. Past the bound the ascent term keeps its
value (for logging) but contributes no gradient, so the step is driven by the other terms alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def chance_level_loss(num_classes: int) -> float:
    """The cross-entropy of a uniform prediction over ``num_classes`` classes, ln K (nats).

    nnU-Net's Dice + CE loss of a uniform prediction is about the same: its soft Dice term (foreground
    classes only) is near zero for a prediction that spreads every voxel evenly over K classes.
    """
    return math.log(num_classes)


def resolve_bound(bound: float | None, num_classes: int) -> float:
    """``bound``, or the chance-level loss when it is ``None`` (the default of every bounded strategy)."""
    return chance_level_loss(num_classes) if bound is None else bound


def bound_setting(bound: float | None) -> float | str:
    """How a strategy reports its bound in ``hyperparameters()``."""
    return "ln(num_classes)" if bound is None else bound


def bounded_ascent(loss: Tensor, bound: float) -> Tensor:
    """The term to *minimise* for ascending on the scalar ``loss`` while ``loss < bound``.

    Below the bound it is ``-loss``; at or above, the same value with zero gradient. The parameters stay
    in the autograd graph either way, which DistributedDataParallel needs (every rank must produce a
    gradient for every parameter, even a zero one). ``torch.where`` avoids a host synchronisation.
    """
    return torch.where(loss.detach() < bound, -loss, -loss.detach())
