"""Where our nnU-Net trainer classes are installed: the folder for ``nnUNet_extTrainer``."""

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_unlearning.errors import UserInputError

if TYPE_CHECKING:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def trainers_dir() -> Path:
    """The absolute folder holding the trainer modules, in a source checkout and an installed copy alike.

    The repository's top-level ``trainers/`` folder is installed as the package
    ``nnunet_unlearning_trainers`` (see pyproject.toml), so importing it finds the folder in both cases.
    """
    import nnunet_unlearning_trainers

    return Path(nnunet_unlearning_trainers.__file__).resolve().parent


def use_our_trainers() -> None:
    """Add our trainers folder to ``nnUNet_extTrainer`` (this process only) when it is not there yet, after the
    folders already listed, so that run folders written with our classes are found by nnU-Net's lookup (its
    predictor, the audit) as ``nnUNetv2_predict`` finds them."""
    folders = [f for f in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if f]
    if str(trainers_dir()) not in folders:
        os.environ["nnUNet_extTrainer"] = os.pathsep.join([*folders, str(trainers_dir())])


def find_trainer(name: str) -> "type[nnUNetTrainer]":
    """The trainer class ``nnUNetv2_train -tr <name>`` would run, found by nnU-Net's own lookup.

    Our trainers folder is added to ``nnUNet_extTrainer`` first (:func:`use_our_trainers`).
    """
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    use_our_trainers()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints every folder it searches
            return recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        raise UserInputError(f"trainer {name!r}: not found in nnU-Net or {os.environ['nnUNet_extTrainer']}") from None
