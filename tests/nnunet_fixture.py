"""One small nnU-Net world shared by the tests: a converted dataset, coarse plans, preprocessed data.

Real MRBrainS18 (IR and FLAIR from ``orig/``) when ``../shared/data/MRBrainS18`` is present, else the
synthetic phantom, so the suite passes on a fresh clone too. Full-resolution plans are far too slow for
CPU tests, so the 3d_fullres configuration is planned at a coarse spacing with a small patch and a small
network; everything else is nnU-Net's own planning and preprocessing.
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
#: nnU-Net spacing order (slice axis first): 6 mm slices, 3.83 mm in-plane (4× the MRBrainS18 voxel).
COARSE_SPACING = (6.0, 3.832, 3.832)
TINY_ARCHITECTURE = {
    "n_stages": 4,
    "features_per_stage": [8, 16, 32, 64],
    "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
    "n_conv_per_stage": [1, 1, 1, 1],
    "n_conv_per_stage_decoder": [1, 1, 1],
}
PATCH_SIZE = [16, 48, 48]


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


def make_coarse_plans(plans_file: Path) -> None:
    """Shrink the 3d_fullres configuration of an nnU-Net plans file for CPU tests (in place)."""
    plans = json.loads(plans_file.read_text())
    configuration = plans["configurations"][CONFIGURATION]
    configuration["patch_size"] = PATCH_SIZE
    configuration["batch_size"] = 2
    configuration["architecture"]["arch_kwargs"].update(TINY_ARCHITECTURE)
    plans_file.write_text(json.dumps(plans, indent=2))


def build_world(root: Path, mrbrains18: Path | None) -> NnunetWorld:
    """Convert, fingerprint, plan coarse and preprocess dataset 501 under ``root``."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    from nnunet_unlearning.conversion.mrbrains18 import convert_mrbrains18
    from nnunet_unlearning.conversion.phantom import write_phantom

    world = NnunetWorld(root / "raw", root / "preprocessed", root / "results", is_real=mrbrains18 is not None)
    world.apply()
    source = mrbrains18
    if source is None:
        source = root / "phantom"
        write_phantom(source, n_subjects=7, seed=0)
    convert_mrbrains18(source, DATASET_ID, modalities=("IR", "FLAIR"), source="orig", raw_root=world.raw)
    extract_fingerprint_dataset(DATASET_ID, num_processes=2, check_dataset_integrity=True, verbose=False,
                                show_progress_bar=False)
    plan_experiment_dataset(DATASET_ID, overwrite_target_spacing=COARSE_SPACING, overwrite_plans_name=PLANS)
    make_coarse_plans(world.preprocessed / DATASET_NAME / f"{PLANS}.json")
    preprocess_dataset(DATASET_ID, PLANS, (CONFIGURATION,), num_processes=[2], show_progress_bar=False)
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
