"""Test-only Med3D trainer: nnUNetTrainerMed3D with a schedule short enough for CPU tests.

Imported by nnU-Net as a top-level module from `nnUNet_extTrainer`; imports only library code.
"""

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_unlearning.med3d.pretrained_trainer import Med3DTrainerMixin

CUDA = torch.device("cuda")  # nnU-Net's default device argument


class nnUNetTrainerMed3D_test(Med3DTrainerMixin, nnUNetTrainer):
    """1 epoch of 2 training iterations and 1 validation iteration."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
