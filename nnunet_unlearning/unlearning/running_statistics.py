"""Running statistics (BatchNorm and friends) during unlearning: the forgotten subjects never enter them.

A normalisation layer in train mode folds every batch it sees into its running mean and variance. An
unlearning step passes forget patches through the network in train mode, so without care those buffers
absorb exactly the subject being forgotten, also in a part of the network that is documented as frozen.

The policy (docs/unlearning.md, "Running statistics"):

1. No unlearning step and no strategy preparation changes any buffer (:func:`buffers_kept`): layers still
   normalise with the batch's statistics, as in training, but their running statistics stay where they
   were. This holds for retain batches too, because one loss may mix retain and forget forward passes in
   any order.
2. At the end of the run, the running statistics of every normalisation layer whose own parameters the run
   changed are recomputed from retain batches only (:func:`recalibrate`), so the model's buffers describe
   its unlearned weights on retain data. Layers whose parameters did not change (a frozen decoder, entries
   outside SalUn's mask, layers SSD left alone) keep the original's buffers bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from nnunet_unlearning.unlearning.distributed import all_reduce_sum, world_size


def stateful_norms(model: nn.Module) -> dict[str, _NormBase]:
    """The normalisation layers of ``model`` that keep running statistics, by module name.

    BatchNorm (1/2/3d, synchronised) and InstanceNorm built with ``track_running_stats=True``; nnU-Net's
    default InstanceNorm keeps none and is not listed.
    """
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, _NormBase) and module.track_running_stats and module.running_mean is not None
    }


@contextmanager
def _restored(buffers: Iterable[Tensor]) -> Iterator[None]:
    """Every tensor in ``buffers`` is bit-identical after the block to what it was before it."""
    with torch.no_grad():
        saved = [(buffer, buffer.clone()) for buffer in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def buffers_kept(model: nn.Module) -> AbstractContextManager[None]:
    """A block after which every buffer of ``model`` is what it was before it.

    Forward passes inside still compute what they always do (BatchNorm in train mode normalises with the
    batch's own statistics); only the running means, variances and batch counters they would have updated
    are put back. Done by copying outside the forward passes, so a compiled network is not re-traced.
    """
    return _restored(model.buffers())


def changed_norms(model: nn.Module, original: Mapping[str, Tensor]) -> list[str]:
    """Names of the stateful normalisation layers whose own parameters differ from ``original``.

    ``original`` is the original model's state dict (keys as in ``model.state_dict()``).
    """
    changed = []
    for name, module in stateful_norms(model).items():
        for key, param in module.named_parameters(recurse=False):
            before = original[f"{name}.{key}"]
            if not torch.equal(param.detach().to(before.device), before):
                changed.append(name)
                break
    return changed


@torch.no_grad()
def recalibrate(
    model: nn.Module,
    layers: Iterable[str],
    batches: Iterator[Tensor],
    num_batches: int,
    forward: Callable[[Tensor], object] | None = None,
) -> int:
    """Recompute the running statistics of ``layers`` from ``num_batches`` batches; return the batches used.

    ``batches`` yields image batches ``(B, C, X, Y, Z)`` on the model's device (retain data only). The
    statistics become the plain average over those batches (``momentum=None``), independent of what the
    buffers held before. Every other buffer of the model stays bit-identical, and the model's train/eval
    mode is restored afterwards. ``forward`` runs the model (default: ``model`` itself).
    """
    norms = stateful_norms(model)
    chosen = [norms[name] for name in layers]
    if not chosen or num_batches < 1:
        return 0
    own = {id(b) for module in chosen for b in module.buffers()}
    others = [b for b in model.buffers() if id(b) not in own]
    momenta = [module.momentum for module in chosen]
    was_training = model.training
    model.train()
    for module in chosen:
        module.reset_running_stats()
        module.momentum = None  # cumulative average over the recalibration batches
    try:
        with _restored(others):
            for _ in range(num_batches):
                (forward or model)(next(batches))
    finally:
        for module, momentum in zip(chosen, momenta):
            module.momentum = momentum
        model.train(was_training)
    return num_batches


@torch.no_grad()
def average_running_statistics(model: nn.Module, layers: Iterable[str]) -> None:
    """Average the running means and variances of ``layers`` over distributed ranks (after each rank
    recalibrated on its own batches), so every rank holds the same buffers; no-op on one process."""
    ranks = world_size()
    if ranks == 1:
        return
    norms = stateful_norms(model)
    for name in layers:
        for buffer in (norms[name].running_mean, norms[name].running_var):
            if buffer is not None:  # always set for the stateful layers listed
                all_reduce_sum(buffer).div_(ranks)
