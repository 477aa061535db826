"""The original model's training recipe, which unlearning keeps and the retrain oracle repeats.

A Med3D original (``nnUNetTrainerMed3D``) started its encoder from MedicalNet weights and trained it at
``encoder_lr_scale`` × the decoder's learning rate. An unlearning run that trained that encoder at the
decoder's rate would move a pretrained encoder ten times faster than its own training did, and an oracle
that started from random weights would compare two recipes, not two data sets. The recipe is read from
the original's trainer class (nnU-Net's own lookup) and written into the request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnunet_unlearning.artifacts import MED3D_INITIALISATION_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import sha256_file
from nnunet_unlearning.med3d.pretrained_trainer import MED3D_WEIGHTS_ENV, Med3DTrainerMixin
from nnunet_unlearning.nnunet.trainers_dir import find_trainer

#: Initialisations a recipe names.
MEDICALNET, NNUNET_DEFAULT = "medicalnet", "nnunet_default"


def original_recipe(trainer_name: str, results_folder: Path) -> dict:
    """``{"trainer", "initialisation", "parameter_groups", "initial_lr"}`` of the original trained by
    ``trainer_name`` into ``results_folder`` (its ``fold_N``), and, for a MedicalNet start,
    ``"initialisation_checkpoint"``: the ``{"checkpoint", "sha256"}`` the Med3D trainer recorded there (``None``
    for a model trained before it did).

    ``parameter_groups``: ``[{"prefix": "encoder.", "lr_scale": s}]`` for parameters whose names start with
    the prefix and train at ``s`` × the learning rate; every other parameter trains at 1 ×. ``initial_lr``:
    the original's learning rate where its trainer class sets one, None for nnU-Net's default. Raises
    :class:`UserInputError` when nnU-Net cannot find the trainer.
    """
    cls = find_trainer(trainer_name)
    if not issubclass(cls, Med3DTrainerMixin):
        return {"trainer": trainer_name, "initialisation": NNUNET_DEFAULT, "parameter_groups": [], "initial_lr": None}
    recipe: dict[str, Any] = {
        "trainer": trainer_name,
        "initialisation": MEDICALNET if cls.med3d_pretrained else NNUNET_DEFAULT,
        "parameter_groups": [{"prefix": "encoder.", "lr_scale": float(cls.encoder_lr_scale)}],
        "initial_lr": cls.med3d_initial_lr,
    }
    if cls.med3d_pretrained:
        record = Path(results_folder) / MED3D_INITIALISATION_FILE
        recipe["initialisation_checkpoint"] = json.loads(record.read_text()) if record.is_file() else None
    return recipe


def recipe_of(original) -> dict:
    """The recipe a request recorded for its original model (an ``OriginalModel``); requests written before
    recipes were recorded get it from the original's trainer class now."""
    if original.recipe is not None:
        return original.recipe
    return original_recipe(original.trainer, Path(original.results_folder))


def check_same_initialisation(weights: Path, recorded: dict | None) -> None:
    """Refuse a MedicalNet file other than the one the original started from (when the original recorded it)."""
    if recorded is not None and sha256_file(weights) != recorded["sha256"]:
        raise UserInputError(
            f"{weights}: not the MedicalNet checkpoint the original model started from ({recorded['checkpoint']}, "
            f"SHA-256 {recorded['sha256'][:16]}…); set {MED3D_WEIGHTS_ENV} to that file"
        )


def initial_lr_of(original, default: float) -> float:
    """The learning rate the original trained at (its recipe's ``initial_lr``), else ``default`` (nnU-Net's,
    which a trainer holds as ``initial_lr``; recipes written before they recorded it used it too)."""
    recorded = recipe_of(original).get("initial_lr")
    return default if recorded is None else float(recorded)
