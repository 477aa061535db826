"""Which Med3D trainer trains an original model here: with MedicalNet weights when they are given."""

from __future__ import annotations

import os

from nnunet_unlearning.med3d.pretrained_trainer import MED3D_WEIGHTS_ENV, SCRATCH_TRAINER

PRETRAINED_TRAINER = "nnUNetTrainerMed3D"


def original_trainer(scratch_trainer: str = SCRATCH_TRAINER) -> tuple[str, str]:
    """(trainer name, how its encoder starts): ``nnUNetTrainerMed3D`` when ``nnUNet_med3d_weights`` names a
    MedicalNet checkpoint, ``scratch_trainer`` (random initialisation; the profile's) otherwise."""
    weights = os.environ.get(MED3D_WEIGHTS_ENV)
    if weights:
        return PRETRAINED_TRAINER, f"encoder initialised from the MedicalNet checkpoint {weights}"
    return scratch_trainer, f"encoder randomly initialised ({MED3D_WEIGHTS_ENV} is not set)"
