"""One small nnU-Net world shared by the tests: a converted dataset, coarse plans, preprocessed data.

Real MRBrainS18 (IR and FLAIR from ``orig/``) when ``../shared/data/MRBrainS18`` is present, else the
synthetic phantom, so the suite passes on a fresh clone too. Full-resolution plans are far too slow for
CPU tests, so the 3d_fullres configuration is planned at a coarse spacing with a small patch and a small
network (``nnunet_unlearning.cpu_profile``); everything else is nnU-Net's own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DATASET_ID = 501
DATASET_NAME = "Dataset501_MRBrainS18"
CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlans"


@dataclass(frozen=True)
class NnunetWorld:
    """The three nnU-Net folders of the test session and what fills them."""

    raw: Path
    preprocessed: Path
    results: Path
    is_real: bool

    def env(self) -> dict[str, str]:
        """Environment for nnU-Net (in-process or subprocess): folders, CPU-friendly settings."""
        return {"nnUNet_raw": str(self.raw), "nnUNet_preprocessed": str(self.preprocessed),
                "nnUNet_results": str(self.results), "nnUNet_n_proc_DA": "0", "nnUNet_compile": "false",
                "OMP_NUM_THREADS": "2"}

    def apply(self) -> None:
        os.environ.update(self.env())


def build_world(root: Path, mrbrains18: Path | None) -> NnunetWorld:
    """Convert, fingerprint, plan coarse and preprocess dataset 501 under ``root``."""
    from nnunet_unlearning import cpu_profile
    from nnunet_unlearning.conversion.mrbrains18 import convert_mrbrains18
    from nnunet_unlearning.conversion.phantom import write_phantom

    world = NnunetWorld(root / "raw", root / "preprocessed", root / "results", is_real=mrbrains18 is not None)
    world.apply()
    # nnU-Net's planner sets torch's thread count to nnUNet_n_proc_DA, which must then be positive
    os.environ.pop("nnUNet_n_proc_DA")
    source = mrbrains18
    if source is None:
        source = root / "phantom"
        write_phantom(source, n_subjects=7, seed=0)
    convert_mrbrains18(source, DATASET_ID, modalities=("IR", "FLAIR"), source="orig", raw_root=world.raw)
    cpu_profile.plan_and_preprocess(DATASET_ID, PLANS)
    world.apply()
    return world


def load_trainer(trainer_class, world: NnunetWorld, fold: int | str = 0, continue_training: bool = False,
                 plans: str = PLANS):
    """Instantiate an nnU-Net trainer class in-process on the CPU, as ``nnUNetv2_train`` would."""
    import torch

    world.apply()
    folder = world.preprocessed / DATASET_NAME
    plans_dict = json.loads((folder / f"{plans}.json").read_text())
    plans_dict["continue_training"] = continue_training
    dataset_json = json.loads((folder / "dataset.json").read_text())
    return trainer_class(plans=plans_dict, configuration=CONFIGURATION, fold=fold, dataset_json=dataset_json,
                         device=torch.device("cpu"))


def shorten(trainer, epochs: int = 1, iterations: int = 2) -> None:
    """A test schedule: ``epochs`` × ``iterations`` training steps, one validation step per epoch."""
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    trainer.num_val_iterations_per_epoch = 1


def train_original(world: NnunetWorld) -> Path:
    """Train the 'original model' (nnUNetTrainer, fold 0, a few steps); return its checkpoint."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    trainer = load_trainer(nnUNetTrainer, world)
    shorten(trainer, epochs=2, iterations=4)
    trainer.run_training()
    return Path(trainer.output_folder) / "checkpoint_final.pth"
