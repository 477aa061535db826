"""nnU-Net's optimizer and learning-rate schedule over parameter groups with their own rate scales.

Used by the Med3D trainer (a slower pretrained encoder), by unlearning (which keeps the original's groups)
and by the retrain oracle (which repeats them).

The SGD is torch's fused implementation where every parameter lies on a CPU or a CUDA device: one pass over
each tensor instead of the for-loop's five (weight decay, momentum, Nesterov, update, each a new tensor). On
the CPU profile's Med3D ResNet-10 U-Net (14.7 M parameters, 10.6 M of them in the encoder's last stage) the
optimizer took 25.7 ms of a 0.398 s training step as a for-loop and 7.5 ms fused, for the same update
(docs/benchmarks.md, "Fused SGD").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from torch import nn


class ScaledPolyLRScheduler(PolyLRScheduler):
    """nnU-Net's poly schedule, multiplied per parameter group by the group's `lr_scale` (default 1)."""

    def step(self, current_step: int | None = None) -> None:
        super().step(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


#: Device types torch's fused SGD serves.
FUSED_DEVICES = ("cpu", "cuda")


def grouped_sgd(
    named: Iterable[tuple[str, nn.Parameter]], groups: Iterable[Mapping], lr: float, weight_decay: float, epochs: int
) -> tuple[torch.optim.SGD, ScaledPolyLRScheduler]:
    """nnU-Net's SGD (momentum 0.99, Nesterov) and poly schedule over the ``named`` parameters.

    ``groups``: ``[{"prefix": "encoder.", "lr_scale": 0.1}, ...]``; a parameter joins the first group whose
    prefix its name starts with, else the 1 × group, which comes first (nnU-Net logs the first group's
    learning rate). Empty groups are left out.
    """
    groups = list(groups)
    members: list[list[nn.Parameter]] = [[] for _ in range(len(groups) + 1)]
    for name, param in named:
        index = next((i + 1 for i, group in enumerate(groups) if name.startswith(group["prefix"])), 0)
        members[index].append(param)
    scales = [1.0] + [float(group["lr_scale"]) for group in groups]
    param_groups = [{"params": params, "lr_scale": scale} for params, scale in zip(members, scales) if params]
    devices = {param.device.type for params in members for param in params}
    # None: torch's default (for-loop or foreach) where the fused kernel may be missing
    fused = True if devices and devices <= set(FUSED_DEVICES) else None
    optimizer = torch.optim.SGD(param_groups, lr, weight_decay=weight_decay, momentum=0.99, nesterov=True, fused=fused)
    return optimizer, ScaledPolyLRScheduler(optimizer, lr, max(epochs, 1))
