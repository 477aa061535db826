"""nnU-Net trainers for the Med3D (MedicalNet ResNet) U-Net; plans from `nnunet-unlearning plan-med3d`.

nnUNetTrainerMed3D: encoder initialised from the MedicalNet checkpoint in `$nnUNet_med3d_weights`, trained
at 0.1 × the decoder's learning rate. nnUNetTrainerMed3D_scratch: random initialisation, one learning rate.
nnUNetTrainerMed3D_cpu: the CPU profile's original (`nnunet-unlearning demo`, the benchmark): random
initialisation at learning rate 0.03, measured best for short CPU schedules (docs/benchmarks.md).
The logic is in `nnunet_unlearning.med3d.pretrained_trainer`.
"""

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_unlearning.med3d.pretrained_trainer import Med3DTrainerMixin


class nnUNetTrainerMed3D(Med3DTrainerMixin, nnUNetTrainer):
    """Med3DUNet with its encoder initialised from MedicalNet weights (`nnUNet_med3d_weights`)."""


class nnUNetTrainerMed3D_scratch(Med3DTrainerMixin, nnUNetTrainer):
    """Med3DUNet trained from random initialisation (MedicalNet's init for the encoder)."""

    med3d_pretrained = False
    encoder_lr_scale = 1.0


class nnUNetTrainerMed3D_cpu(nnUNetTrainerMed3D_scratch):
    """Med3DUNet from random initialisation at learning rate 0.03: the CPU profile's original."""

    med3d_initial_lr = 0.03
