"""``nnUNetTrainerUnlearn<Strategy>`` and its ``_2epochs`` … ``_50epochs`` variants, one line each.

Use with ``nnUNetv2_train ID CONFIG FOLD -p PLANS -tr nnUNetTrainerUnlearnNoisyLabel_50epochs``.
The unsuffixed trainer runs 20 epochs. ``docs/strategies.md`` defines every strategy.
"""

from nnunet_unlearning.unlearning import strategies as s
from nnunet_unlearning.unlearning.schedules import trainer_family

globals().update(trainer_family(s.NoisyLabel, __name__))
globals().update(trainer_family(s.MaxLoss, __name__))
globals().update(trainer_family(s.RandomEncoder, __name__))
globals().update(trainer_family(s.LearnOthers, __name__))
globals().update(trainer_family(s.LearnNoise, __name__))
globals().update(trainer_family(s.NoisyLabelFixDecoder, __name__))
globals().update(trainer_family(s.MaxLossFixDecoder, __name__))
globals().update(trainer_family(s.RandomEncoderFixDecoder, __name__))
globals().update(trainer_family(s.LearnOthersFixDecoder, __name__))
globals().update(trainer_family(s.LearnNoiseFixDecoder, __name__))
globals().update(trainer_family(s.FineTune, __name__))
globals().update(trainer_family(s.RandomLabel, __name__))
globals().update(trainer_family(s.SalUn, __name__))
globals().update(trainer_family(s.SalUnCRA, __name__))
globals().update(trainer_family(s.GradientAscent, __name__))
globals().update(trainer_family(s.NegGradPlus, __name__))
globals().update(trainer_family(s.SCRUB, __name__))
globals().update(trainer_family(s.BadTeacher, __name__))
globals().update(trainer_family(s.SSD, __name__))
globals().update(trainer_family(s.L1Sparse, __name__))
