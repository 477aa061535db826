"""Run nnU-Net trainers inside this Python process, exactly as ``nnUNetv2_train`` constructs them.

The demo and the tests use it to set short schedules on the trainer object instead of defining a trainer
class per schedule; users train through ``nnUNetv2_train``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def make_trainer(
    trainer_class: type,
    dataset_name: str,
    configuration: str,
    fold: int | str = 0,
    plans: str = "nnUNetPlans",
    device: str = "cpu",
    continue_training: bool = False,
):
    """Instantiate ``trainer_class`` for a preprocessed dataset (``$nnUNet_preprocessed/<dataset_name>``)."""
    from nnunetv2.paths import nnUNet_preprocessed

    folder = Path(str(nnUNet_preprocessed)) / dataset_name
    plans_dict = json.loads((folder / f"{plans}.json").read_text())
    plans_dict["continue_training"] = continue_training
    dataset_json = json.loads((folder / "dataset.json").read_text())
    return trainer_class(
        plans=plans_dict, configuration=configuration, fold=fold, dataset_json=dataset_json, device=torch.device(device)
    )


def set_schedule(trainer, epochs: int, iterations: int, val_iterations: int = 1) -> None:
    """Replace nnU-Net's schedule (1000 × 250 steps) with ``epochs`` × ``iterations`` steps."""
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    trainer.num_val_iterations_per_epoch = val_iterations


def train(
    trainer_class: type,
    dataset_name: str,
    configuration: str,
    plans: str,
    epochs: int,
    iterations: int,
    fold: int | str = 0,
    device: str = "cpu",
):
    """Train ``trainer_class`` in-process for ``epochs`` × ``iterations`` steps; return the finished trainer.

    A strategy that edits weights without training (SSD) runs no epoch, as its nnU-Net trainer does.
    """
    trainer = make_trainer(trainer_class, dataset_name, configuration, fold, plans=plans, device=device)
    set_schedule(trainer, epochs, iterations)
    if getattr(trainer, "strategy", None) is not None and not trainer.strategy.trains:
        trainer.num_epochs = 0
    trainer.run_training()
    return trainer
