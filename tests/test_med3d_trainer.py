"""nnUNetTrainerMed3D's additions: the weights variable, encoder/decoder learning rates, plans check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from nnunet_fixture import load_trainer
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.med3d.network import Med3DUNet
from nnunet_unlearning.med3d.original_recipe import original_recipe
from nnunet_unlearning.med3d.pretrained_trainer import (
    MED3D_WEIGHTS_ENV,
    Med3DTrainerMixin,
    med3d_weights_path,
)
from nnunet_unlearning.nnunet.trainers_dir import trainers_dir
from nnunet_unlearning.optim import ScaledPolyLRScheduler

STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1]]


@pytest.mark.parametrize("value", [None, "missing.pth"])
def test_missing_weights_variable_or_file_names_the_scratch_trainer(value, monkeypatch, tmp_path):
    if value is None:
        monkeypatch.delenv(MED3D_WEIGHTS_ENV, raising=False)
    else:
        monkeypatch.setenv(MED3D_WEIGHTS_ENV, str(tmp_path / value))
    with pytest.raises(UserInputError, match="nnUNetTrainerMed3D_scratch") as error:
        med3d_weights_path()
    assert MED3D_WEIGHTS_ENV in str(error.value) and "\n" not in str(error.value)


def test_encoder_trains_at_a_fraction_of_the_poly_learning_rate():
    net = Med3DUNet(1, 2, depth=10, strides=STRIDES, decoder_channels=[4, 4, 4, 4, 4])
    fake_trainer = SimpleNamespace(
        network=net,
        initial_lr=0.01,
        weight_decay=3e-5,
        num_epochs=10,
        encoder_lr_scale=Med3DTrainerMixin.encoder_lr_scale,
    )
    optimizer, scheduler = Med3DTrainerMixin.configure_optimizers(fake_trainer)
    decoder_group, encoder_group = optimizer.param_groups
    assert {id(p) for p in encoder_group["params"]} == {id(p) for p in net.encoder.parameters()}
    assert {id(p) for p in decoder_group["params"]} == {id(p) for p in net.decoder.parameters()}
    for epoch in (0, 5):
        scheduler.step(epoch)  # what nnU-Net does at each epoch start
        poly = 0.01 * (1 - epoch / 10) ** 0.9
        assert decoder_group["lr"] == pytest.approx(poly)
        assert encoder_group["lr"] == pytest.approx(poly * Med3DTrainerMixin.encoder_lr_scale)


def test_scheduler_state_survives_a_checkpoint_round_trip():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    groups = [{"params": params[:1]}, {"params": params[1:], "lr_scale": 0.25}]
    optimizer = torch.optim.SGD(groups, lr=1.0)
    ScaledPolyLRScheduler(optimizer, 1.0, 4)
    restored = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr_scale": 0.25}], lr=1.0)
    restored.load_state_dict(optimizer.state_dict())  # nnU-Net's --c path
    ScaledPolyLRScheduler(restored, 1.0, 4).step(2)
    assert restored.param_groups[1]["lr"] == pytest.approx(0.25 * restored.param_groups[0]["lr"])


def test_nnunet_finds_the_trainers_and_refuses_plans_without_med3d(world, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("nnUNet_extTrainer", str(trainers_dir()))
    scratch = recursive_find_trainer_class_by_name("nnUNetTrainerMed3D_scratch")
    assert recursive_find_trainer_class_by_name("nnUNetTrainerMed3D").med3d_pretrained
    assert not scratch.med3d_pretrained
    # the CPU profile's original: from scratch at 0.03, which the request's recipe carries to unlearning and oracle
    cpu = recursive_find_trainer_class_by_name("nnUNetTrainerMed3D_cpu")
    assert not cpu.med3d_pretrained and cpu.med3d_initial_lr == 0.03
    assert original_recipe("nnUNetTrainerMed3D_cpu", tmp_path)["initial_lr"] == 0.03
    assert original_recipe("nnUNetTrainerMed3D_scratch", tmp_path)["initial_lr"] is None
    trainer = load_trainer(scratch, world)  # the session's plans name PlainConvUNet
    with pytest.raises(SystemExit) as exit_info:
        trainer.initialize()
    assert exit_info.value.code == 2
    assert "plan-med3d" in capsys.readouterr().err
