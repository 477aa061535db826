"""What an unlearning strategy is: the per-step objective, and which parameters may change.

A strategy is plain torch. It never imports nnU-Net: the unlearning trainer (``base_trainer.py``) owns the
loop, the two data streams, the optimizer, checkpoints and the evaluation hook, and hands a strategy only
what it needs through :class:`StrategyContext`. That keeps every strategy testable on a toy network.

Conventions shared by all strategies:

- A model maps an image batch ``(B, C, X, Y, Z)`` to logits: with deep supervision a list of tensors
  ``(B, K, x_s, y_s, z_s)``, one per scale, highest resolution first; without, one tensor (use
  :func:`as_list`). ``K`` is the number of segmentation outputs, background included.
- A target is a list of integer label maps ``(B, 1, x_s, y_s, z_s)``, one per scale, matching the outputs.
  Voxels equal to ``ctx.ignore_label`` (when the dataset has one) carry no supervision.
- Parameter names are those of ``model.named_parameters()``; the encoder's start with ``"encoder."`` and
  the decoder's (segmentation heads included) with ``"decoder."``, as in nnU-Net's own architectures and
  in our Med3D network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

ENCODER_PREFIX = "encoder."
DECODER_PREFIX = "decoder."


@dataclass
class Batch:
    """One batch from nnU-Net's dataloader, on the training device.

    ``data``: float image patches ``(B, C, X, Y, Z)``, normalised as nnU-Net preprocessed them.
    ``target``: integer label maps, one ``(B, 1, x_s, y_s, z_s)`` tensor per deep-supervision scale,
    highest resolution first (a single-element list without deep supervision).
    ``keys``: the case identifier of each patch.
    """

    data: Tensor
    target: list[Tensor]
    keys: list[str]


def to_batch(batch: dict, device: torch.device) -> Batch:
    """A loader's batch dict (``data``, ``target``, ``keys``: nnU-Net's loaders yield it) as a :class:`Batch` on
    ``device``; a single target becomes a one-scale list."""
    target = batch["target"] if isinstance(batch["target"], list) else [batch["target"]]
    return Batch(
        data=batch["data"].to(device, non_blocking=True),
        target=[t.to(device, non_blocking=True) for t in target],
        keys=[str(k) for k in batch["keys"]],
    )


@dataclass
class StrategyContext:
    """Everything a strategy may use besides the model and the batches of the current step.

    ``task_loss(outputs, target)`` is the loss the original model was trained with (nnU-Net: Dice + CE,
    deep-supervision weighted, ignore label honoured), taking lists as described in the module docstring.
    ``original`` is a frozen copy of the model as it was before unlearning (eval mode, no gradients), set
    only for strategies with ``needs_original``.
    ``forget_batches()`` / ``retain_batches()`` yield fresh batches from the two streams, for statistics
    computed before training (saliency masks, Fisher importances).
    ``all_reduce_sum(t)`` sums a tensor in place over all distributed ranks (identity on one process); any
    statistic over data must pass through it so every rank applies the same mask or update.
    ``progress`` runs from 0 at the first step to 1 at the last (the trainer updates it), for schedules.
    """

    num_classes: int
    ignore_label: int | None
    task_loss: Callable[[list[Tensor], list[Tensor]], Tensor]
    forget_batches: Callable[[], Iterator[Batch]]
    retain_batches: Callable[[], Iterator[Batch]]
    original: nn.Module | None = None
    critical_classes: tuple[int, ...] = ()
    all_reduce_sum: Callable[[Tensor], Tensor] = field(default=lambda t: t)
    world_size: int = 1
    generator: torch.Generator | None = None
    progress: float = 0.0


def given(batch: Batch | None, stream: str) -> Batch:
    """``batch``, which the strategy's declared streams guarantee; a clear error when a caller broke that."""
    if batch is None:
        raise ValueError(f"no {stream} batch: the strategy reads the {stream} stream (uses_{stream} is True)")
    return batch


def as_list(outputs: Tensor | list[Tensor] | tuple[Tensor, ...]) -> list[Tensor]:
    """The model's outputs as a list of per-scale logits, whether deep supervision is on or off."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


class Strategy(ABC):
    """The per-step objective of one unlearning method.

    Class attributes tell the trainer what to prepare:

    - ``uses_retain`` / ``uses_forget``: which streams :meth:`loss` reads; a stream nobody reads is
      never loaded, so its cost is skipped.
    - ``needs_original``: the trainer puts a frozen copy of the original model into ``ctx.original``.
    - ``forget_labels``: ``"own"`` gives forget patches their own labels; ``"other_subject"`` gives them
      the label map of a randomly chosen retain subject at the same position (LearnOthers).
    - ``trains``: ``False`` for methods that edit the weights once in :meth:`prepare` and run no epochs.
    - ``resumable_state``: attributes the strategy changes between steps; a resumed run (``--c``) gets
      them back as they were, so it continues as an uninterrupted run would.
    - ``default_lr_scale``: the factor on the trainer's initial learning rate when the run config sets no
      ``lr_scale``, for a strategy whose constructor takes none (one that does states its default there).
    """

    name: ClassVar[str]
    uses_retain: ClassVar[bool] = True
    uses_forget: ClassVar[bool] = True
    needs_original: ClassVar[bool] = False
    forget_labels: ClassVar[Literal["own", "other_subject"]] = "own"
    trains: ClassVar[bool] = True
    #: Attributes that change from step to step and must survive ``--c`` (plain numbers: they are also
    #: written into unlearning_metrics.json as the run's final ``strategy_state``).
    resumable_state: ClassVar[tuple[str, ...]] = ()
    default_lr_scale: ClassVar[float] = 1.0

    def prepare(self, model: nn.Module, ctx: StrategyContext) -> None:  # noqa: B027 - optional hook
        """Run once before the first step (after the original weights are loaded)."""

    def is_frozen(self, name: str) -> bool:
        """Whether parameter ``name`` must not change at all (it is left out of the optimizer)."""
        return False

    def update_mask(self) -> dict[str, Tensor] | None:
        """Boolean masks, by parameter name, of the entries that may change (``True``), or ``None``.

        The trainer restores every ``False`` entry after each optimizer step, so those entries stay
        bit-identical whatever the optimizer does (momentum, weight decay). Known after :meth:`prepare`.
        """
        return None

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        """The settings that define this run, recorded in the metrics and the certificate."""
        return {}

    def resumable_state_dict(self) -> dict[str, object]:
        """The values of :attr:`resumable_state`, saved with nnU-Net's latest checkpoint."""
        return {name: getattr(self, name) for name in self.resumable_state}

    def load_resumable_state_dict(self, state: dict[str, object]) -> None:
        """Put back what :meth:`resumable_state_dict` saved (after :meth:`prepare` on resumption)."""
        for name in self.resumable_state:
            setattr(self, name, state[name])

    @abstractmethod
    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        """The scalar loss to minimise for one step.

        ``retain`` is ``None`` when ``uses_retain`` is false, ``forget`` when ``uses_forget`` is false.
        """
