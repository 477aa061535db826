"""BadTeacher: distil the original on the retain cases and a random network on the forget cases.

Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks using an Incompetent
Teacher" (AAAI 2023); reference code ``vikram2000b/bad-teaching-unlearning`` (``unlearn.py``:
``UnlearnerLoss``, ``blindspot_unlearner``). The competent teacher is the frozen original
(``ctx.original``); the incompetent teacher is a randomly initialised network of the same architecture.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.ops.distillation import distillation_kl, frozen_outputs
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, as_list, given


def randomly_initialised_copy(model: nn.Module, seed: int) -> nn.Module:
    """A frozen copy of ``model`` (eval mode, no gradients, same device) with every module's parameters
    drawn afresh by its own ``reset_parameters()``.

    The draw happens on the CPU from ``seed`` inside a forked RNG, so it is the same on every rank of a
    multi-GPU run and leaves the global random state untouched.
    """
    device = next(model.parameters()).device
    teacher = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for module in teacher.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return teacher.to(device).eval().requires_grad_(False)


class BadTeacher(Strategy):
    """loss = KL_T(original ‖ student) on the retain batch + KL_T(incompetent ‖ student) on the forget batch.

    KL_T is :func:`~.distillation.distillation_kl` (voxel-wise over classes, ignore-label voxels excluded,
    scales weighted as nnU-Net's deep supervision). The reference mixes retain and forget samples in one
    batch and takes ``kl_div``'s default element mean; one batch of each with equal weights is the same
    objective for equal batch sizes, up to the constant 1/K of that element mean.

    Defaults: ``temperature`` 1 (reference ``KL_temperature = 1``); ``teacher_seed`` 0 draws the
    incompetent teacher (made in :meth:`prepare`, never trained).
    """

    name = "BadTeacher"
    needs_original = True

    def __init__(self, temperature: float = 1.0, teacher_seed: int = 0) -> None:
        self.temperature = temperature
        self.teacher_seed = teacher_seed
        self.incompetent: nn.Module | None = None

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {"temperature": self.temperature, "teacher_seed": self.teacher_seed}

    def prepare(self, model: nn.Module, ctx: StrategyContext) -> None:
        self.incompetent = randomly_initialised_copy(model, self.teacher_seed)

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        retain, forget = given(retain, "retain"), given(forget, "forget")
        if ctx.original is None or self.incompetent is None:
            raise ValueError("BadTeacher needs ctx.original and prepare() to have made the incompetent teacher")
        retain_kl = distillation_kl(
            as_list(model(retain.data)),
            frozen_outputs(ctx.original, retain.data),
            retain.target,
            ctx.ignore_label,
            self.temperature,
        )
        forget_kl = distillation_kl(
            as_list(model(forget.data)),
            frozen_outputs(self.incompetent, forget.data),
            forget.target,
            ctx.ignore_label,
            self.temperature,
        )
        return retain_kl + forget_kl
