"""Which Med3D trainer trains an original model here: with MedicalNet weights when they are given."""

from __future__ import annotations

import os

from nnunet_unlearning.med3d.pretrained_trainer import MED3D_WEIGHTS_ENV, SCRATCH_TRAINER

PRETRAINED_TRAINER = "nnUNetTrainerMed3D"


def original_trainer() -> tuple[str, str]:
    """(trainer name, how its encoder starts): ``nnUNetTrainerMed3D`` when ``nnUNet_med3d_weights`` names a
    MedicalNet checkpoint, ``nnUNetTrainerMed3D_scratch`` (random initialisation) otherwise."""
    weights = os.environ.get(MED3D_WEIGHTS_ENV)
    if weights:
        return PRETRAINED_TRAINER, f"encoder initialised from the MedicalNet checkpoint {weights}"
    return SCRATCH_TRAINER, f"encoder randomly initialised ({MED3D_WEIGHTS_ENV} is not set)"
