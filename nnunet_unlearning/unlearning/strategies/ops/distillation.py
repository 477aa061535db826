"""Knowledge distillation between segmentation networks: temperature-scaled KL, voxel by voxel.

Used by SCRUB (student versus the original) and BadTeacher (student versus a competent and an
incompetent teacher). Shapes follow ``nnunet_unlearning.unlearning.strategy``: per-scale logits
``(B, K, x, y, z)`` and per-scale integer targets ``(B, 1, x, y, z)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategy import as_list


def scale_weights(num_scales: int) -> list[float]:
    """nnU-Net's deep-supervision weights: 1/2^i for scale i (full resolution first), the coarsest 0
    when there are several scales, normalised to sum 1.

    A zero-weighted scale still enters the loss multiplied by 0, so its head stays in the autograd graph
    (DistributedDataParallel needs a gradient, even a zero one, for every parameter).
    """
    weights = [0.5**i for i in range(num_scales)]
    if num_scales > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def voxelwise_kl(student: Tensor, teacher: Tensor, valid: Tensor | None, temperature: float) -> Tensor:
    """T² · mean over valid voxels of KL(p_teacher ‖ p_student), the KL summed over the class dimension.

    ``student``, ``teacher``: logits ``(B, K, x, y, z)``; ``p = softmax(logits / T)`` over K.
    ``valid``: boolean ``(B, 1, x, y, z)``, False at ignore-label voxels, or ``None`` (all voxels count).
    The direction and the T² factor are those of Hinton et al.'s distillation loss, as in the SCRUB and
    RepDistiller code (``kl_div(log_softmax(s/T), softmax(t/T)) · T²``). Computed in float32 (autocast-safe).
    A batch without valid voxels gives 0 (still in the graph).
    """
    log_p_student = F.log_softmax(student.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(dim=1)
    if valid is None:
        mean = kl.mean()
    else:
        weight = valid[:, 0].to(kl.dtype)
        mean = (kl * weight).sum() / weight.sum().clamp_min(1.0)
    return mean * temperature**2


def distillation_kl(
    student_outputs: list[Tensor],
    teacher_outputs: list[Tensor],
    target: list[Tensor],
    ignore_label: int | None,
    temperature: float,
) -> Tensor:
    """Deep-supervision weighted :func:`voxelwise_kl` over all scales; ignore-label voxels excluded.

    ``target`` gives, per scale, the label maps whose ignore-label voxels are left out (their labels are
    not otherwise used).
    """
    weights = scale_weights(len(student_outputs))
    terms = []
    for weight, student, teacher, labels in zip(weights, student_outputs, teacher_outputs, target, strict=True):
        valid = None if ignore_label is None else labels != ignore_label
        terms.append(weight * voxelwise_kl(student, teacher, valid, temperature))
    return torch.stack(terms).sum()


def frozen_outputs(teacher: nn.Module, data: Tensor) -> list[Tensor]:
    """A teacher's per-scale logits for ``data`` ``(B, C, X, Y, Z)``, without building a graph."""
    with torch.no_grad():
        return as_list(teacher(data))
