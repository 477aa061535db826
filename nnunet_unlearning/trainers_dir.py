"""Where our nnU-Net trainer classes are installed: the folder for ``nnUNet_extTrainer``."""

from pathlib import Path


def trainers_dir() -> Path:
    """The absolute folder holding the trainer modules, in a source checkout and an installed copy alike.

    The repository's top-level ``trainers/`` folder is installed as the package
    ``nnunet_unlearning_trainers`` (see pyproject.toml), so importing it finds the folder in both cases.
    """
    import nnunet_unlearning_trainers

    return Path(nnunet_unlearning_trainers.__file__).resolve().parent
