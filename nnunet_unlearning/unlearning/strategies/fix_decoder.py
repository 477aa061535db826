"""``<Name>FixDecoder``: a strategy unchanged except that every decoder parameter is frozen.

The seed study runs each of its mechanics twice, updating the whole network or the encoder only, to see
where a subject's memory lives. The variants are made by one function, not written out five times.
"""

from __future__ import annotations

import inspect

from nnunet_unlearning.unlearning.strategies.learn_noise import LearnNoise
from nnunet_unlearning.unlearning.strategies.learn_others import LearnOthers
from nnunet_unlearning.unlearning.strategies.max_loss import MaxLoss
from nnunet_unlearning.unlearning.strategies.noisy_label import NoisyLabel
from nnunet_unlearning.unlearning.strategies.random_encoder import RandomEncoder
from nnunet_unlearning.unlearning.strategy import DECODER_PREFIX, Strategy


def fix_decoder(strategy: type[Strategy], default_lr_scale: float | None = None) -> type[Strategy]:
    """A subclass of ``strategy`` named ``<Name>FixDecoder`` that freezes every ``decoder.`` parameter
    (segmentation heads included) in addition to what ``strategy`` freezes.

    ``default_lr_scale``: the variant's own default ``lr_scale`` where it was tuned apart from ``strategy``
    (None: ``strategy``'s); only for a ``strategy`` whose constructor takes no ``lr_scale``.
    """

    class FixDecoder(strategy):  # type: ignore[valid-type,misc]  # a class built from an argument
        name = f"{strategy.name}FixDecoder"

        def is_frozen(self, name: str) -> bool:
            return name.startswith(DECODER_PREFIX) or super().is_frozen(name)

    # a module-level name and qualname, so the class pickles and reads like a hand-written one
    FixDecoder.__name__ = FixDecoder.__qualname__ = f"{strategy.__name__}FixDecoder"
    FixDecoder.__module__ = __name__
    FixDecoder.__doc__ = f"{strategy.__name__} with the decoder frozen."
    if default_lr_scale is not None:
        if "lr_scale" in inspect.signature(strategy).parameters:
            raise TypeError(f"{strategy.__name__} takes lr_scale itself: give its default there")
        FixDecoder.default_lr_scale = default_lr_scale
    return FixDecoder


NoisyLabelFixDecoder = fix_decoder(NoisyLabel)
MaxLossFixDecoder = fix_decoder(MaxLoss)
RandomEncoderFixDecoder = fix_decoder(RandomEncoder)
# Tuned on the CPU benchmark's subject 1 (docs/strategies.md): half the trainer's rate kept 99 % utility at
# +0.7 oracle SDs over 5 epochs, where the full rate, LearnOthers' default, kept 94 %.
LearnOthersFixDecoder = fix_decoder(LearnOthers, default_lr_scale=0.5)
LearnNoiseFixDecoder = fix_decoder(LearnNoise)
