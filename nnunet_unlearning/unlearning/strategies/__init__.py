"""Every unlearning strategy, one module each; ``STRATEGIES`` lists them in the order the docs use."""

from nnunet_unlearning.unlearning.strategies.bad_teacher import BadTeacher
from nnunet_unlearning.unlearning.strategies.fine_tune import FineTune
from nnunet_unlearning.unlearning.strategies.fix_decoder import (
    LearnNoiseFixDecoder,
    LearnOthersFixDecoder,
    MaxLossFixDecoder,
    NoisyLabelFixDecoder,
    RandomEncoderFixDecoder,
)
from nnunet_unlearning.unlearning.strategies.gradient_ascent import GradientAscent
from nnunet_unlearning.unlearning.strategies.l1_sparse import L1Sparse
from nnunet_unlearning.unlearning.strategies.learn_noise import LearnNoise
from nnunet_unlearning.unlearning.strategies.learn_others import LearnOthers
from nnunet_unlearning.unlearning.strategies.max_loss import MaxLoss
from nnunet_unlearning.unlearning.strategies.neg_grad_plus import NegGradPlus
from nnunet_unlearning.unlearning.strategies.noisy_label import NoisyLabel
from nnunet_unlearning.unlearning.strategies.random_encoder import RandomEncoder
from nnunet_unlearning.unlearning.strategies.random_label import RandomLabel
from nnunet_unlearning.unlearning.strategies.salun import SalUn
from nnunet_unlearning.unlearning.strategies.salun_cra import SalUnCRA
from nnunet_unlearning.unlearning.strategies.scrub import SCRUB
from nnunet_unlearning.unlearning.strategies.ssd import SSD

#: The seed study's mechanics, their fix-decoder variants, the clinical-safety methods, the field's references.
STRATEGIES = (
    NoisyLabel,
    MaxLoss,
    RandomEncoder,
    LearnOthers,
    LearnNoise,
    NoisyLabelFixDecoder,
    MaxLossFixDecoder,
    RandomEncoderFixDecoder,
    LearnOthersFixDecoder,
    LearnNoiseFixDecoder,
    FineTune,
    RandomLabel,
    SalUn,
    SalUnCRA,
    GradientAscent,
    NegGradPlus,
    SCRUB,
    BadTeacher,
    SSD,
    L1Sparse,
)

__all__ = ["STRATEGIES", *(s.__name__ for s in STRATEGIES)]
