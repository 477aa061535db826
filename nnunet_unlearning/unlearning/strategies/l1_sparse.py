"""L1Sparse (ℓ1-sparse unlearning): fine-tune on the retain cases under a decaying ℓ1 penalty.

Jia et al., "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023), sparsity-aware unlearning;
reference code ``OPTML-Group/Unlearn-Sparse`` (``FT_prune`` → ``FT_l1`` in ``optim/unlearn/FT.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnunet_unlearning.unlearning.strategies.ops.objectives import task_loss_on
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext, given


def l1_norm(model: nn.Module) -> Tensor:
    """Σ|θ| over the parameters that may change (``requires_grad``), as a scalar in the graph."""
    return torch.stack([p.abs().sum() for p in model.parameters() if p.requires_grad]).sum()


class L1Sparse(Strategy):
    """loss = task(retain) + γ·(1 − progress)·Σ|θ|.

    The penalty decays linearly from γ at the first step to 0 at the last, over all parameters that may
    change (the reference: every parameter, weights and biases). The reference decays per epoch
    (``alpha · (1 − epoch / unlearn_epochs)``); we decay per step with ``ctx.progress``, which is the
    same line sampled finer.

    Default γ = 5·10⁻⁴ (``gamma``; the reference takes it on the command line as ``--alpha``, without
    a method-specific default: docs/strategies.md says where the value comes from). The penalty's
    gradient is γ·sign(θ) per entry whatever the network size, so γ transfers between networks; its value
    Σ|θ| does not (it dominates the logged loss of a large network).
    """

    name = "L1Sparse"
    uses_forget = False

    def __init__(self, gamma: float = 5e-4) -> None:
        self.gamma = gamma

    def hyperparameters(self) -> dict[str, float | int | str | list]:
        return {"gamma": self.gamma}

    def loss(self, model: nn.Module, retain: Batch | None, forget: Batch | None, ctx: StrategyContext) -> Tensor:
        retain = given(retain, "retain")
        return task_loss_on(model, retain, ctx) + self.gamma * (1.0 - ctx.progress) * l1_norm(model)
