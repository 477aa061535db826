"""SCRUB: a student that moves away from the original on the forget cases and stays close on the rest.

Kurmanji et al., "Towards Unbounded Machine Unlearning" (NeurIPS 2023); reference code ``meghdadk/SCRUB``
(``large_scale_unlearning.ipynb`` settings, ``thirdparty/repdistiller/helper/loops.py::train_distill``).
The student is the model being trained (it starts as the original); the teacher is the frozen original,
``ctx.original``.
"""

from __future__ import annotations

from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.distillation import distillation_kl, frozen_outputs
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, as_list


class SCRUB(Strategy):
    """Alternating max-steps and min-steps, as the reference alternates max-epochs and min-epochs.

    - max-step (forget batch): loss = −KL_T(teacher ‖ student), maximising the divergence;
    - min-step (retain batch): loss = γ·task(retain) + α·KL_T(teacher ‖ student).

    KL_T is :func:`~.distillation.distillation_kl`: voxel-wise over the class dimension at temperature
    T, times T², ignore-label voxels excluded, scales weighted as nnU-Net's deep supervision.

    Schedule. The reference runs ``sgda_epochs = 3`` epochs and, in the first ``msteps = 2``, one pass
    over the forget set (max) before the pass over the retain set (min). Here the trainer calls
    :meth:`loss` once per step with one batch of each, so: while ``ctx.progress < max_phase`` (default
    2/3 = msteps / sgda_epochs), every ``max_step_every``-th step (default 2: strictly alternating,
    starting with a max-step) is a max-step and the others min-steps; after that, min-steps only. The
    step counter lives in the strategy (a resumed run restarts the alternation, which only matters for
    its parity). A step of one kind ignores the other batch (it is still loaded).

    Defaults (reference, large-scale setting): T = 4 (``kd_T``), γ = 0.99 (``gamma``, task-loss
    weight), α = 0.001 (``alpha``, KL weight); the reference's task loss is cross-entropy, ours the
    network's training loss (nnU-Net: Dice + CE).
    """

    name = "SCRUB"
    needs_original = True

    def __init__(self, temperature: float = 4.0, task_weight: float = 0.99, kl_weight: float = 0.001,
                 max_phase: float = 2 / 3, max_step_every: int = 2) -> None:
        if max_step_every < 1:
            raise ValueError(f"SCRUB: max_step_every must be at least 1, got {max_step_every}")
        self.temperature = temperature
        self.task_weight = task_weight
        self.kl_weight = kl_weight
        self.max_phase = max_phase
        self.max_step_every = max_step_every
        self._steps = 0

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {"temperature": self.temperature, "task_weight": self.task_weight, "kl_weight": self.kl_weight,
                "max_phase": self.max_phase, "max_step_every": self.max_step_every}

    def is_max_step(self, step: int, progress: float) -> bool:
        """Whether step number ``step`` (from 0) at training ``progress`` is a max-step."""
        return progress < self.max_phase and step % self.max_step_every == 0

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None,
             ctx: StrategyContext) -> Tensor:
        if ctx.original is None:
            raise ValueError("SCRUB needs the original model as teacher (ctx.original is None)")
        step = self._steps
        self._steps += 1
        if self.is_max_step(step, ctx.progress):
            divergence = distillation_kl(as_list(model(forget.data)), frozen_outputs(ctx.original, forget.data),
                                         forget.target, ctx.ignore_label, self.temperature)
            return -divergence
        outputs = as_list(model(retain.data))
        divergence = distillation_kl(outputs, frozen_outputs(ctx.original, retain.data), retain.target,
                                     ctx.ignore_label, self.temperature)
        return self.task_weight * ctx.task_loss(outputs, retain.target) + self.kl_weight * divergence
