"""Test-only schedules for the real ``nnUNetv2_train`` command: one epoch of two steps, one validation step."""

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_unlearning.nnunet.glue import CUDA
from nnunet_unlearning.unlearning.retrain_trainer import nnUNetTrainerRetrain
from nnunet_unlearning.unlearning.schedules import trainer_family
from nnunet_unlearning.unlearning.strategies import SCRUB, NoisyLabel

_NOISY_LABEL = trainer_family(NoisyLabel, __name__)["nnUNetTrainerUnlearnNoisyLabel"]
_SCRUB = trainer_family(SCRUB, __name__)["nnUNetTrainerUnlearnSCRUB"]


class _Short:
    """A short schedule, set after nnU-Net's own constructor: ``epochs`` × ``iterations``, one validation step."""

    epochs, iterations = 1, 2

    # nnU-Net records its trainers' init arguments by name, so the signature must be spelled out
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = CUDA,
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.epochs
        self.num_iterations_per_epoch = self.iterations
        self.num_val_iterations_per_epoch = 1


class nnUNetTrainerUnlearnNoisyLabel_test(_Short, _NOISY_LABEL):
    pass


class nnUNetTrainer_short_test(_Short, nnUNetTrainer):
    """nnU-Net's own trainer on the test schedule, for tests that run nnU-Net's commands on a dataset our tools
    changed (``erase``)."""


class nnUNetTrainerRetrain_test(_Short, nnUNetTrainerRetrain):
    pass


class nnUNetTrainerUnlearnSCRUB_resume_test(_Short, _SCRUB):
    """Two epochs of two steps, to be interrupted in the second; no final validation (the console-script
    test runs nnU-Net's), so that the interrupted, the resumed and the reference run stay short."""

    epochs = 2

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("final validation skipped by this test trainer")


class nnUNetTrainerUnlearnNoisyLabel_folds(_NOISY_LABEL):
    """NoisyLabel under a name of its own, for the request-set test's ensemble (nnU-Net's predictor finds it)."""
