"""Every unlearning trainer a user may name is found by nnU-Net's own lookup, as ``nnUNetv2_train -tr`` finds it."""

from __future__ import annotations

import pytest
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunet_unlearning.nnunet.trainers_dir import trainers_dir
from nnunet_unlearning.unlearning.schedules import DEFAULT_EPOCHS, SCHEDULES
from nnunet_unlearning.unlearning.strategies import STRATEGIES

# spelled here as docs/unlearning.md spells them, not taken from the code that generates the classes
NAMES = [(f"nnUNetTrainerUnlearn{s.name}", s, DEFAULT_EPOCHS) for s in STRATEGIES] + [
    (f"nnUNetTrainerUnlearn{s.name}_{n}epochs", s, n) for s in STRATEGIES for n in SCHEDULES
]


@pytest.mark.parametrize(("name", "strategy", "epochs"), NAMES, ids=[n for n, _, _ in NAMES])
def test_nnunet_finds_every_unlearning_trainer(name, strategy, epochs, monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", str(trainers_dir()))
    found = recursive_find_trainer_class_by_name(name)
    assert found.__name__ == name and found.__module__ == "nnUNetTrainerUnlearn"  # trainers/'s module, by nnU-Net
    assert found.strategy_class is strategy and found.unlearning_epochs == epochs
