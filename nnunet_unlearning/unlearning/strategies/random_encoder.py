"""RandomEncoder: re-initialise the encoder, keep the decoder, and fine-tune on the retain subjects."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from nnunet_unlearning.unlearning.strategies.fine_tune import FineTune
from nnunet_unlearning.unlearning.strategy import StrategyContext


class RandomEncoder(FineTune):
    """FineTune from an encoder reset to a fresh random initialisation.

    Every module under ``model.encoder`` that has ``reset_parameters()`` (convolutions, normalisation
    layers, including their running statistics) is reset with its own default initialiser. With a
    ``ctx.generator`` the reset is seeded from it, so every distributed rank draws the same weights.
    """

    name = "RandomEncoder"

    def __init__(self, lr_scale: float = 1.0) -> None:
        # a re-initialised encoder is trained anew, at the original's rate; FineTune's tuned 0.5 is for
        # adjusting a trained one
        super().__init__(lr_scale)

    def prepare(self, model: nn.Module, ctx: StrategyContext) -> None:
        encoder = model.get_submodule("encoder")
        resets = [
            cast(Callable[[], None], m.reset_parameters) for m in encoder.modules() if hasattr(m, "reset_parameters")
        ]
        if ctx.generator is None:
            for reset in resets:
                reset()
            return
        seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator, device=ctx.generator.device))
        cuda_devices = sorted({p.device.index or 0 for p in encoder.parameters() if p.is_cuda})
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            for reset in resets:
                reset()
