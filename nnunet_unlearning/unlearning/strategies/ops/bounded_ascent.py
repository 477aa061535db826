"""Gradient ascent on a loss that stops once the loss passes a bound.

Unbounded ascent on the forget cases diverges: the loss grows without limit and the network's weights
with it, which damages every case, not only the forgotten ones. Past the bound the ascent term keeps its
value (for logging) but contributes no gradient, so the step is driven by the other terms alone.

Every default bound is a chance level: the value the ascended quantity takes for a prediction that spreads
every voxel evenly over the K classes. Ascending further would make the model confidently wrong on the
forget cases rather than uncertain about them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nnunet_unlearning.unlearning.strategies.ops.distillation import distillation_kl


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


def chance_level_divergence(
    teacher_outputs: list[Tensor], target: list[Tensor], ignore_label: int | None, temperature: float
) -> Tensor:
    """The distillation divergence of a chance-level student from a teacher: ``KL_T(teacher ‖ uniform)``.

    ``teacher_outputs``: the teacher's per-scale logits ``(B, K, x, y, z)``; ``target``: the per-scale label
    maps whose ignore-label voxels are left out, as in :func:`~.distillation.distillation_kl`, which this is
    for a student with equal logits for every class (``T² · Σ_s w_s · mean_v (ln K − H(p_T(v)))``, so at
    most ``T² ln K``). A scalar without a graph, computed per batch: the bound of the same batch's divergence.
    """
    uniform = [torch.zeros_like(logits) for logits in teacher_outputs]
    return distillation_kl(uniform, teacher_outputs, target, ignore_label, temperature).detach()


def bounded_ascent(loss: Tensor, bound: float | Tensor) -> Tensor:
    """The term to *minimise* for ascending on the scalar ``loss`` while ``loss < bound`` (a number or a
    scalar tensor without a graph).

    Below the bound it is ``-loss``; at or above, the same value with zero gradient. The parameters stay
    in the autograd graph either way, which DistributedDataParallel needs (every rank must produce a
    gradient for every parameter, even a zero one). ``torch.where`` avoids a host synchronisation.
    """
    return torch.where(loss.detach() < bound, -loss, -loss.detach())
