"""One optimisation step of unlearning, shared by the nnU-Net trainer and the strategies' unit tests.

Kept free of nnU-Net so that what a toy-network test checks is exactly what runs in training.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from nnunet_unlearning.unlearning.running_statistics import buffers_kept
from nnunet_unlearning.unlearning.strategy import Batch, Strategy, StrategyContext

#: nnU-Net clips the gradient norm at 12; unlearning keeps the same bound so steps are comparable.
GRAD_CLIP_NORM = 12.0


def trainable_parameters(model: nn.Module, strategy: Strategy) -> list[nn.Parameter]:
    """Freeze what ``strategy`` freezes (``requires_grad = False``) and return the rest, in model order."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(not strategy.is_frozen(name))
        if param.requires_grad:
            trainable.append(param)
    return trainable


class ParameterGuard:
    """Holds the entries a strategy's update mask forbids to change, and puts them back after a step.

    Restoring after the optimizer step (rather than masking gradients) keeps the entries bit-identical
    under any optimizer, including momentum and weight decay, which move weights whose gradient is zero.
    """

    def __init__(self, model: nn.Module, masks: dict[str, Tensor] | None) -> None:
        params = dict(model.named_parameters())
        self._held: list[tuple[nn.Parameter, Tensor, Tensor]] = []
        for name, may_change in (masks or {}).items():
            param = params[name]
            if may_change.shape != param.shape:
                raise ValueError(
                    f"update mask for {name} has shape {tuple(may_change.shape)}, parameter has {tuple(param.shape)}"
                )
            keep = ~may_change.to(device=param.device, dtype=torch.bool)
            if keep.any():
                self._held.append((param, keep, param.detach()[keep].clone()))

    @torch.no_grad()
    def restore(self) -> None:
        for param, keep, values in self._held:
            param[keep] = values


def prepare_strategy(strategy: Strategy, model: nn.Module, ctx: StrategyContext) -> None:
    """Run ``strategy.prepare``; its forward passes (saliency, Fisher importances) change no buffer."""
    with buffers_kept(model):
        strategy.prepare(model, ctx)


def unlearning_step(
    model: nn.Module,
    strategy: Strategy,
    optimizer: torch.optim.Optimizer,
    retain: Batch | None,
    forget: Batch | None,
    ctx: StrategyContext,
    guard: ParameterGuard | None = None,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> float:
    """Take one step on ``strategy.loss`` and return the loss value.

    The step changes parameters only: every buffer (BatchNorm's running statistics) is the same after it
    as before, whatever batches the strategy passed through the model (see ``running_statistics.py``).
    With a ``grad_scaler`` (CUDA), the forward pass runs under autocast as in nnU-Net's own train step.
    """
    optimizer.zero_grad(set_to_none=True)
    device_type = next(model.parameters()).device.type
    autocast = torch.autocast(device_type, enabled=True) if grad_scaler is not None else nullcontext()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # buffers are put back after the backward pass, which reads the running statistics the forward saved
    with buffers_kept(model):
        with autocast:
            loss = strategy.loss(model, retain, forget, ctx)
        if grad_scaler is not None:
            grad_scaler.scale(loss).backward()
            grad_scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
            grad_scaler.step(optimizer)
            grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
            optimizer.step()
    if guard is not None:
        guard.restore()
    return float(loss.detach())
