"""The original model's training recipe, which unlearning keeps and the retrain oracle repeats.

A Med3D original (``nnUNetTrainerMed3D``) started its encoder from MedicalNet weights and trained it at
``encoder_lr_scale`` × the decoder's learning rate. An unlearning run that trained that encoder at the
decoder's rate would move a pretrained encoder ten times faster than its own training did, and an oracle
that started from random weights would compare two recipes, not two data sets. The recipe is read from
the original's trainer class (nnU-Net's own lookup) and written into the request.
"""

from __future__ import annotations

from nnunet_unlearning.med3d.pretrained_trainer import Med3DTrainerMixin
from nnunet_unlearning.trainers_dir import find_trainer

#: Initialisations a recipe names.
MEDICALNET, NNUNET_DEFAULT = "medicalnet", "nnunet_default"


def original_recipe(trainer_name: str) -> dict:
    """``{"trainer", "initialisation", "parameter_groups"}`` of the nnU-Net trainer ``trainer_name``.

    ``parameter_groups``: ``[{"prefix": "encoder.", "lr_scale": s}]`` for parameters whose names start with
    the prefix and train at ``s`` × the learning rate; every other parameter trains at 1 ×. Raises
    :class:`UserInputError` when nnU-Net cannot find the trainer.
    """
    cls = find_trainer(trainer_name)
    if issubclass(cls, Med3DTrainerMixin):
        return {
            "trainer": trainer_name,
            "initialisation": MEDICALNET if cls.med3d_pretrained else NNUNET_DEFAULT,
            "parameter_groups": [{"prefix": "encoder.", "lr_scale": float(cls.encoder_lr_scale)}],
        }
    return {"trainer": trainer_name, "initialisation": NNUNET_DEFAULT, "parameter_groups": []}


def recipe_of(original) -> dict:
    """The recipe a request recorded for its original model (an ``OriginalModel``); requests written before
    recipes were recorded get it from the original's trainer class now."""
    return original.recipe if original.recipe is not None else original_recipe(original.trainer)
