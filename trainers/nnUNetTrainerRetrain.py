"""``nnUNetTrainerRetrain``: the exact-unlearning oracle, from scratch on the request's retain set."""

from nnunet_unlearning.unlearning.retrain_trainer import nnUNetTrainerRetrain

__all__ = ["nnUNetTrainerRetrain"]
