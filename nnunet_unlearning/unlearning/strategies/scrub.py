"""SCRUB: a student that moves away from the original on the forget cases and stays close on the rest.

Kurmanji et al., "Towards Unbounded Machine Unlearning" (NeurIPS 2023); reference code ``meghdadk/SCRUB``
(``large_scale_unlearning.ipynb`` settings, ``thirdparty/repdistiller/helper/loops.py::train_distill``).
The student is the model being trained (it starts as the original); the teacher is the frozen original,
``ctx.original``.
"""

from __future__ import annotations

from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.ops.bounded_ascent import bounded_ascent, chance_level_divergence
from nnunet_unlearning.unlearning.strategies.ops.distillation import distillation_kl, frozen_outputs
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, as_list, given

#: How ``hyperparameters()`` reports the default, per-batch bound of the max-step.
CHANCE_LEVEL_DIVERGENCE = "KL_T(original || uniform)"


class SCRUB(Strategy):
    """Alternating max-steps and min-steps, as the reference alternates max-epochs and min-epochs.

    - max-step (forget batch): loss = bounded(KL_T(teacher ‖ student)), i.e. −KL_T while KL_T < B and
      the same value without gradient from B on (:func:`~.bounded_ascent.bounded_ascent`);
    - min-step (retain batch): loss = γ·task(retain) + α·KL_T(teacher ‖ student).

    KL_T is :func:`~.distillation.distillation_kl`: voxel-wise over the class dimension at temperature
    T, times T², ignore-label voxels excluded, scales weighted as nnU-Net's deep supervision.

    Bound (ours; the reference has none). ``divergence_bound`` (default ``None``: B is, for each forget
    batch, KL_T(teacher ‖ uniform), the divergence of a student that predicts every class with equal
    probability, :func:`~.bounded_ascent.chance_level_divergence`; at most T²·ln K). As for MaxLoss's
    ln K: past it the student is not uncertain on the forget cases but confidently unlike the teacher,
    and unbounded ascent at nnU-Net's learning rate and momentum destroys the whole model. A number
    gives a fixed B instead (``float("inf")``: the reference's unbounded max-step).

    Schedule. The reference runs ``sgda_epochs = 3`` epochs and, in the first ``msteps = 2``, one pass
    over the forget set (max) before the pass over the retain set (min). Here the trainer calls
    :meth:`loss` once per step with one batch of each, so: while ``ctx.progress < max_phase`` (default
    2/3 = msteps / sgda_epochs), every ``max_step_every``-th step (default 2: strictly alternating,
    starting with a max-step) is a max-step and the others min-steps; after that, min-steps only. The
    step counter lives in the strategy and is saved with nnU-Net's latest checkpoint, so a resumed run
    (``--c``) continues the alternation where it stopped. A step of one kind ignores the other batch (it
    is still loaded).

    Defaults (reference, large-scale setting): T = 4 (``kd_T``), γ = 0.99 (``gamma``, task-loss
    weight), α = 0.001 (``alpha``, KL weight); the reference's task loss is cross-entropy, ours the
    network's training loss (nnU-Net: Dice + CE). ``lr_scale`` (default 0.025): the trainer multiplies its
    initial learning rate by it. The reference runs SCRUB at 5·10⁻⁴ (``sgda_learning_rate``) where its
    fine-tuning baseline runs at 10⁻² (nnU-Net's 10⁻² is our fine-tuning rate), i.e. 0.05; tuned on the
    CPU benchmark's subject 1 (docs/strategies.md), half of that kept 99.6 % utility and came closest to
    the retrained models.
    """

    name = "SCRUB"
    needs_original = True
    resumable_state = ("_steps",)

    def __init__(
        self,
        temperature: float = 4.0,
        task_weight: float = 0.99,
        kl_weight: float = 0.001,
        max_phase: float = 2 / 3,
        max_step_every: int = 2,
        divergence_bound: float | None = None,
        lr_scale: float = 0.025,
    ) -> None:
        if max_step_every < 1:
            raise ValueError(f"SCRUB: max_step_every must be at least 1, got {max_step_every}")
        self.temperature = temperature
        self.task_weight = task_weight
        self.kl_weight = kl_weight
        self.max_phase = max_phase
        self.max_step_every = max_step_every
        self.divergence_bound = divergence_bound
        self.lr_scale = lr_scale
        self._steps = 0

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        bound = CHANCE_LEVEL_DIVERGENCE if self.divergence_bound is None else self.divergence_bound
        return {
            "temperature": self.temperature,
            "task_weight": self.task_weight,
            "kl_weight": self.kl_weight,
            "max_phase": self.max_phase,
            "max_step_every": self.max_step_every,
            "divergence_bound": bound,
            "lr_scale": self.lr_scale,
        }

    def is_max_step(self, step: int, progress: float) -> bool:
        """Whether step number ``step`` (from 0) at training ``progress`` is a max-step."""
        return progress < self.max_phase and step % self.max_step_every == 0

    def max_step_loss(self, model: nn.Module, forget: Batch, teacher: nn.Module, ignore_label: int | None) -> Tensor:
        """The bounded ascent on the student's divergence from ``teacher`` on ``forget``."""
        teacher_outputs = frozen_outputs(teacher, forget.data)
        divergence = distillation_kl(
            as_list(model(forget.data)), teacher_outputs, forget.target, ignore_label, self.temperature
        )
        bound: float | Tensor
        if self.divergence_bound is None:
            bound = chance_level_divergence(teacher_outputs, forget.target, ignore_label, self.temperature)
        else:
            bound = self.divergence_bound
        return bounded_ascent(divergence, bound)

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        teacher = ctx.original
        if teacher is None:
            raise ValueError("SCRUB needs the original model as teacher (ctx.original is None)")
        step = self._steps
        self._steps += 1
        if self.is_max_step(step, ctx.progress):
            return self.max_step_loss(model, given(forget, "forget"), teacher, ctx.ignore_label)
        retain = given(retain, "retain")  # a step of one kind reads only its own batch
        outputs = as_list(model(retain.data))
        divergence = distillation_kl(
            outputs, frozen_outputs(teacher, retain.data), retain.target, ctx.ignore_label, self.temperature
        )
        return self.task_weight * ctx.task_loss(outputs, retain.target) + self.kl_weight * divergence
