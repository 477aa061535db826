"""One small nnU-Net world shared by the tests: a converted dataset, coarse plans, preprocessed data.

Real MRBrainS18 (IR and FLAIR from ``orig/``) when ``../shared/data/MRBrainS18`` is present, else the
synthetic phantom, so the suite passes on a fresh clone too. Full-resolution plans are far too slow for
CPU tests, so the 3d_fullres configuration is planned at a coarse spacing with a small patch and a small
network (``nnunet_unlearning.workflows.profiles.TESTS``: coarser than the demo's, the challenge labels);
everything else is nnU-Net's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nnunet_unlearning.nnunet.inprocess import make_trainer, set_schedule
from nnunet_unlearning.workflows.demo import CONFIGURATION, DATASET_ID, DATASET_NAME, prepare_dataset
from nnunet_unlearning.workflows.profiles import TESTS

PLANS = "nnUNetPlans"
__all__ = [
    "CONFIGURATION",
    "DATASET_ID",
    "DATASET_NAME",
    "PLANS",
    "NnunetWorld",
    "build_world",
    "forget_args",
    "load_trainer",
    "shorten",
    "train_original",
]


@dataclass(frozen=True)
class NnunetWorld:
    """The three nnU-Net folders of the test session and what fills them."""

    raw: Path
    preprocessed: Path
    results: Path
    is_real: bool

    def env(self) -> dict[str, str]:
        """Environment for nnU-Net (in-process or subprocess): folders, CPU-friendly settings."""
        return {
            "nnUNet_raw": str(self.raw),
            "nnUNet_preprocessed": str(self.preprocessed),
            "nnUNet_results": str(self.results),
            "nnUNet_n_proc_DA": "0",
            "nnUNet_compile": "false",
            "OMP_NUM_THREADS": "2",
        }

    def apply(self) -> None:
        os.environ.update(self.env())


def build_world(root: Path, mrbrains18: Path | None) -> NnunetWorld:
    """Convert, fingerprint, plan (the tests' CPU planning) and preprocess dataset 501 under ``root``, as the
    demo does."""
    prepare_dataset(root, mrbrains18, TESTS)
    world = NnunetWorld(
        root / "nnUNet_raw", root / "nnUNet_preprocessed", root / "nnUNet_results", is_real=mrbrains18 is not None
    )
    world.apply()
    return world


def load_trainer(
    trainer_class, world: NnunetWorld, fold: int | str = 0, continue_training: bool = False, plans: str = PLANS
):
    """Instantiate an nnU-Net trainer class in-process on the CPU, as ``nnUNetv2_train`` would."""
    world.apply()
    return make_trainer(trainer_class, DATASET_NAME, CONFIGURATION, fold, plans, "cpu", continue_training)


def shorten(trainer, epochs: int = 1, iterations: int = 2) -> None:
    """A test schedule: ``epochs`` × ``iterations`` training steps, one validation step per epoch."""
    set_schedule(trainer, epochs, iterations)


def train_original(world: NnunetWorld) -> Path:
    """Train the 'original model' (nnUNetTrainer, fold 0, a few steps); return its checkpoint."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    trainer = load_trainer(nnUNetTrainer, world)
    shorten(trainer, epochs=2, iterations=4)
    trainer.run_training()
    return Path(trainer.output_folder) / "checkpoint_final.pth"


def forget_args(*more: str, trainer: str = "nnUNetTrainer") -> list[str]:
    """``nnunet-unlearning forget`` arguments for fold 0 of the test dataset's model trained by ``trainer``,
    followed by ``more`` (``--cases ...``, ``--subjects ...``, ``-o ...``)."""
    return ["forget", "-d", str(DATASET_ID), "-c", CONFIGURATION, "-f", "0", "-p", PLANS, "-tr", trainer, *more]
