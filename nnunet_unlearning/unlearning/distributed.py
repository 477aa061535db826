"""Reductions over the ranks of a multi-GPU run (``nnUNetv2_train ... -num_gpus N``, DDP).

Every statistic a strategy computes over data (saliency masks, Fisher importances, case counts) passes
through :func:`all_reduce_sum`, so that all ranks, which see different batches, apply the same mask or
the same weight edit. On a single process both functions are no-ops, so strategies need no branches.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch import distributed as dist

#: Hash buckets for counting distinct case identifiers across ranks; collisions (which would undercount
#: by one) have probability about n²/2²¹ for n cases: under 0.5 % for 100 cases.
KEY_BUCKETS = 2**20


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of ranks taking part in training (1 without torch.distributed)."""
    return dist.get_world_size() if _initialised() else 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` in place over all ranks and return it; identity without torch.distributed.

    ``t`` must live where the process group's backend can reduce it (CUDA tensors for NCCL, CPU for gloo).
    """
    if _initialised():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def count_distinct(
    keys: Iterable[str], reduce_sum: Callable[[Tensor], Tensor], device: torch.device | str = "cpu"
) -> int:
    """The number of distinct identifiers in the union of every rank's ``keys``.

    Each rank marks the hash buckets of its identifiers; summing the marks over ranks and counting the
    marked buckets gives the size of the union with only a sum-reduction (a plain sum of per-rank counts
    would count a case twice when two ranks both saw it). ``device`` must suit ``reduce_sum``'s backend.
    """
    marks = torch.zeros(KEY_BUCKETS, dtype=torch.int32, device=device)
    buckets = sorted({zlib.crc32(key.encode()) % KEY_BUCKETS for key in keys})
    marks[torch.tensor(buckets, dtype=torch.long, device=device)] = 1
    return int((reduce_sum(marks) > 0).sum())
