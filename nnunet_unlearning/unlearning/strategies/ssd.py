"""SSD (Selective Synaptic Dampening): shrink the weights that matter far more to the forget cases.

Foster et al., "Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening"
(AAAI 2024); reference code ``if-loops/selective-synaptic-dampening`` (``ssd.py::ParameterPerturber``,
``forget_random_main.py`` settings). No training: one pass of importance estimation, one weight edit.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.unlearning.distributed import count_distinct
from nnunet_unlearning.unlearning.strategies.ops.fisher_importance import diagonal_fisher
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext


def _noting_keys(batches: Iterator[Batch], seen: set[str]) -> Iterator[Batch]:
    for batch in batches:
        seen.update(batch.keys)
        yield batch


@torch.no_grad()
def dampen(
    model: nn.Module,
    forget_importance: dict[str, Tensor],
    full_importance: dict[str, Tensor],
    alpha: float,
    dampening: float,
) -> int:
    """θ ← min(λ·I_D / I_Df, 1)·θ for the entries with I_Df > α·I_D; the others are multiplied by exactly
    1 and stay bit-identical. Returns the number of entries dampened.
    """
    params = dict(model.named_parameters())
    dampened = 0
    for name, forget in forget_importance.items():
        full = full_importance[name]
        selected = forget > alpha * full
        # 0/0 at unselected entries gives NaN factors that torch.where discards.
        factor = torch.where(selected, (dampening * full / forget).clamp(max=1.0), torch.ones_like(forget))
        params[name].mul_(factor)
        dampened += int(selected.sum())
    return dampened


class SSD(Strategy):
    """Selective synaptic dampening, applied once in :meth:`prepare`; no epochs (``trains = False``).

    Importances (:func:`~.fisher.diagonal_fisher`: mean squared batch gradient of the task loss):
    I_Df from ``forget_batches`` forget batches, I_Dr from ``retain_batches`` retain batches, and for the
    full training set D = retain ∪ forget, I_D = w·I_Df + (1 − w)·I_Dr with w = N_f / (N_f + N_r) the
    forget set's share of training *cases*, counted as the distinct case identifiers in the sampled
    batches (the union over ranks). Weighting by cases makes I_D the importance on D that the reference
    computes with a loader over retain ∪ forget, whatever the two batch counts.

    Selection and dampening (reference, exponent 1 and upper bound 1): entries with I_Df > α·I_D are
    multiplied by min(λ·I_D / I_Df, 1); all others stay bit-identical. Defaults α = 10
    (``selection_weighting``), λ = 1 (``dampening_constant``).

    Since I_D ≥ w·I_Df, nothing can be selected when α·w ≥ 1 (the forget set is 1/α or more of the
    training cases). Medical datasets are small, so forgetting one patient often makes w larger than the
    reference's 1/10: by default (``alpha=None``) α is the reference 10 when 10·w < 1, and 1/(2w) otherwise
    (halfway to the bound; e.g. 2.5 for one of five subjects). The α used is recorded. An explicit α with
    α·w ≥ 1 raises :class:`UserInputError` rather than returning the original model unchanged.

    In a multi-GPU run, importances, batch counts and case sets are reduced over ranks before use, so
    every rank dampens the same entries by the same factors. Cost: ``forget_batches + retain_batches``
    forward and backward passes per rank (defaults 50 + 100, about 0.6 of nnU-Net's 250-iteration epoch).
    """

    name = "SSD"
    trains = False

    #: The reference implementation's selection weighting.
    REFERENCE_ALPHA = 10.0

    def __init__(
        self, alpha: float | None = None, dampening: float = 1.0, forget_batches: int = 50, retain_batches: int = 100
    ) -> None:
        self.alpha = alpha
        self.dampening = dampening
        self.forget_batches = forget_batches
        self.retain_batches = retain_batches
        #: Filled by :meth:`prepare`: case counts, forget share w and the fraction of entries dampened.
        self.summary: dict[str, float] = {}

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        used = self.summary.get("alpha", self.alpha)
        return {
            "alpha": "auto" if used is None else used,
            "dampening": self.dampening,
            "forget_batches": self.forget_batches,
            "retain_batches": self.retain_batches,
        }

    def prepare(self, model: nn.Module, ctx: StrategyContext) -> None:
        forget_keys: set[str] = set()
        retain_keys: set[str] = set()
        forget = diagonal_fisher(
            model,
            _noting_keys(ctx.forget_batches(), forget_keys),
            self.forget_batches,
            ctx.task_loss,
            ctx.all_reduce_sum,
        )
        retain = diagonal_fisher(
            model,
            _noting_keys(ctx.retain_batches(), retain_keys),
            self.retain_batches,
            ctx.task_loss,
            ctx.all_reduce_sum,
        )
        device = next(model.parameters()).device
        forget_cases = count_distinct(forget_keys, ctx.all_reduce_sum, device)
        retain_cases = count_distinct(retain_keys, ctx.all_reduce_sum, device)
        share = forget_cases / (forget_cases + retain_cases)
        alpha = self.alpha
        if alpha is None:
            alpha = self.REFERENCE_ALPHA if self.REFERENCE_ALPHA * share < 1.0 else 1.0 / (2.0 * share)
        if alpha * share >= 1.0:
            raise UserInputError(
                f"SSD cannot select any weight: the forget set is {forget_cases} of {forget_cases + retain_cases} "
                f"training cases ({share:.0%}) and alpha={alpha:g} needs under 1/alpha "
                f"({1 / alpha:.0%}); forget fewer cases or use a smaller alpha"
            )
        full = {name: share * forget[name] + (1.0 - share) * retain[name] for name in forget}
        dampened = dampen(model, forget, full, alpha, self.dampening)
        entries = sum(t.numel() for t in forget.values())
        self.summary = {
            "alpha": alpha,
            "forget_cases": forget_cases,
            "retain_cases": retain_cases,
            "forget_share": share,
            "dampened_fraction": dampened / max(entries, 1),
        }

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        raise NotImplementedError(
            "SSD edits the weights once in prepare() and trains no epochs (trains = False); its loss() is never called"
        )
