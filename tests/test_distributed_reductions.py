"""Statistics over data agree across ranks: 2 processes (torch.distributed, gloo, CPU) against 1.

Each rank sees half of the batches; after the reductions of ``nnunet_unlearning.unlearning.distributed``
every rank must hold the single-process result over all batches: the same SSD importances, case counts
and dampened weights, and the same SalUn saliency mask. Without the reductions (rank-local statistics)
the results differ, which shows the comparison can fail.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import distributed as dist
from toy import ToyNet, toy_batch, toy_context, toy_task_loss

from nnunet_unlearning.unlearning import distributed
from nnunet_unlearning.unlearning.strategies.ops.fisher_importance import diagonal_fisher
from nnunet_unlearning.unlearning.strategies.salun import saliency_mask
from nnunet_unlearning.unlearning.strategies.ssd import SSD

WORLD = 2
# Keys chosen so the ranks see different but overlapping cases: rank 0 sees f1, f2 and rank 1 f1, f3, so
# summing per-rank counts (4) would differ from the union (3).
FORGET = [toy_batch(1000 + i, keys) for i, keys in enumerate([("f1", "f2"), ("f3", "f1"), ("f2", "f1"), ("f1", "f3")])]
RETAIN = [toy_batch(2000 + i, keys) for i, keys in enumerate([("r1", "r2"), ("r3", "r4"), ("r5", "r6"), ("r2", "r4")])]
ALPHA = 2.0  # forget share 3/9: alpha must stay below 3 for SSD to be able to select anything
SALIENT_FRACTION = 0.5


def _model() -> ToyNet:
    torch.manual_seed(0)
    return ToyNet()


def _statistics(rank: int, world: int, reduce_sum) -> dict:
    """SSD's and SalUn's data statistics on ``rank``'s share of the batches (every ``world``-th one)."""
    forget, retain = FORGET[rank::world], RETAIN[rank::world]
    ctx = toy_context(
        forget_batches=lambda: iter(forget),
        retain_batches=lambda: iter(retain),
        all_reduce_sum=reduce_sum,
        world_size=world,
    )
    model = _model()
    ssd = SSD(alpha=ALPHA, forget_batches=len(forget), retain_batches=len(retain))
    ssd.prepare(model, ctx)
    return {
        "importance": diagonal_fisher(_model(), iter(forget), len(forget), toy_task_loss, reduce_sum),
        "ssd_weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "ssd_summary": ssd.summary,
        "salun_mask": saliency_mask(_model(), iter(forget), ctx, SALIENT_FRACTION),
    }


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # same kernels, hence same per-batch gradients, as the single-process run
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=120)
    )
    try:
        assert distributed.world_size() == world
        reduced = _statistics(rank, world, distributed.all_reduce_sum)
        local = _statistics(rank, world, lambda t: t)
        torch.save({"reduced": reduced, "local": local}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-12) for k in a)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_two_ranks_reduce_to_the_single_process_result(tmp_path):
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _statistics(0, 1, lambda t: t)
    finally:
        torch.set_num_threads(threads)
    assert single["ssd_summary"]["forget_cases"] == 3 and single["ssd_summary"]["retain_cases"] == 6
    assert 0 < single["ssd_summary"]["dampened_fraction"] < 1, "SSD must dampen some weights, not all"
    assert sum(int(m.sum()) for m in single["salun_mask"].values()) > 0

    for rank in ranks:
        reduced, local = rank["reduced"], rank["local"]
        assert _close(reduced["importance"], single["importance"])
        assert reduced["ssd_summary"] == single["ssd_summary"]
        assert _close(reduced["ssd_weights"], single["ssd_weights"])
        assert _equal(reduced["salun_mask"], single["salun_mask"])
        assert not _close(local["importance"], single["importance"])
        assert local["ssd_summary"]["forget_cases"] == 2, "one rank alone sees only two forget cases"
        assert not _equal(local["salun_mask"], single["salun_mask"])
    assert _equal(ranks[0]["reduced"]["ssd_weights"], ranks[1]["reduced"]["ssd_weights"]), (
        "all ranks must dampen bit-identically"
    )


def test_reducers_are_identities_on_one_process():
    t = torch.arange(3.0)
    assert distributed.all_reduce_sum(t) is t and torch.equal(t, torch.arange(3.0))
    assert distributed.world_size() == 1
    assert distributed.count_distinct(["a", "b", "a"], distributed.all_reduce_sum) == 2
    assert distributed.count_distinct([], distributed.all_reduce_sum) == 0
