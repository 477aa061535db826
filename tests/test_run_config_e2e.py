"""The run config through nnU-Net: written into the request by ``forget --config``, read by the trainer,
overridden by ``nnUNet_unlearning_config``, and carried into the record and the certificate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, load_trainer

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, CERTIFICATE_MD, METRICS_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.request import REQUEST_ENV
from nnunet_unlearning.unlearning.run_config import CONFIG_ENV
from nnunet_unlearning.unlearning.schedules import trainer_family
from nnunet_unlearning.unlearning.strategies import SCRUB, LearnOthers, LearnOthersFixDecoder, NoisyLabel
from nnunet_unlearning.unlearning.strategies.ops.substitute_labels import voxelwise_random_labels

_FAMILY = trainer_family(NoisyLabel, __name__)


def _trainer_class(name: str) -> type:
    """A NoisyLabel trainer of its own name, so its results folder is this test's alone."""
    return type(f"nnUNetTrainerUnlearnNoisyLabel_{name}", (_FAMILY["nnUNetTrainerUnlearnNoisyLabel_50epochs"],), {})


def test_trainer_takes_the_environment_config_and_refuses_a_bad_one(request_world, tmp_path, monkeypatch, capsys):
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps({"epochs": 3, "iterations_per_epoch": 7, "strategies": {"NoisyLabel": {"lr_scale": 0.1}}})
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    trainer = load_trainer(_trainer_class("envconfig"), request_world)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch) == (3, 7)  # the config wins over _50epochs
    assert trainer.num_val_iterations_per_epoch == 1  # nnU-Net's 50 validation batches per 250 steps, kept
    assert trainer.initial_lr == pytest.approx(1e-3)
    assert trainer.settings.source == str(config)

    config.write_text(json.dumps({"strategies": {"NoisyLabel": {"forget_weight": -1}}}))
    with pytest.raises(SystemExit) as exit_info:
        load_trainer(_trainer_class("envconfig"), request_world)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"nnUNetTrainerUnlearnNoisyLabel_envconfig: error: {config}: strategies.NoisyLabel.forget_weight: "
        "must be ≥ 0, got -1"
    )


def test_short_epochs_validate_in_proportion_and_a_calibrated_run_keeps_no_latest_checkpoint(
    request_world, tmp_path, monkeypatch
):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    trainer = load_trainer(_trainer_class("valshare"), request_world)
    assert (trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (250, 50)  # nnU-Net's
    config = tmp_path / "calibrated.json"
    config.write_text(json.dumps({"iterations_per_epoch": 12, "calibration": {"enabled": True}}))
    monkeypatch.setenv(CONFIG_ENV, str(config))
    trainer = load_trainer(_trainer_class("valshare"), request_world)
    assert trainer.num_val_iterations_per_epoch == 2
    # nnU-Net asks for a latest checkpoint at epoch ends; a calibrated run cannot be resumed, so none is written
    latest = Path(trainer.output_folder) / "checkpoint_latest.pth"
    trainer.save_checkpoint(str(latest))
    assert not latest.exists()


def test_a_strategys_tuned_default_rate_reaches_the_trainer(request_world, monkeypatch):
    """Without a config each trainer runs at its strategy's default lr_scale × the original's rate (10⁻²):
    SCRUB's tuned 0.025, LearnOthersFixDecoder's own tuned 0.5, LearnOthers the original's rate."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    for strategy, scale in ((SCRUB, 0.025), (LearnOthersFixDecoder, 0.5), (LearnOthers, 1.0)):
        family = trainer_family(strategy, __name__)[f"nnUNetTrainerUnlearn{strategy.name}"]
        trainer = load_trainer(type(f"{family.__name__}_defaultrate", (family,), {}), request_world)
        assert trainer.settings.source == "defaults" and trainer.settings.lr_scale == scale, strategy.name
        assert trainer.initial_lr == pytest.approx(1e-2 * scale), strategy.name


def _run_recording_noise(name: str, world) -> tuple[Path, list]:
    """Train one epoch of the config's schedule; return the folder and (forget batch, its noise) of step 1."""
    trainer = load_trainer(_trainer_class(name), world)
    trainer.num_val_iterations_per_epoch = 1
    draws = []
    forget_target = trainer.strategy.forget_target

    def recording(forget, ctx):
        noise = forget_target(forget, ctx)
        draws.append((forget, noise, ctx.num_classes, ctx.ignore_label))
        return noise

    trainer.strategy.forget_target = recording
    trainer.run_training()
    assert len(draws) == 2 and draws[0][0].data.shape[0] == 2 * trainer.batch_size  # 2 forget batches per step
    return Path(trainer.output_folder), draws[0]


def _noise_of_seed(seed: int, draw) -> list:
    forget, _, num_classes, ignore_label = draw
    return voxelwise_random_labels(forget.target, num_classes, ignore_label, torch.Generator().manual_seed(seed))


@pytest.mark.slow
def test_seed_and_hyperparameters_reach_the_record_and_certificate(world, original_checkpoint, tmp_path, monkeypatch):
    config = {
        "seed": 7,
        "epochs": 1,
        "iterations_per_epoch": 2,
        "forget_batches_per_step": 2,
        "strategies": {"NoisyLabel": {"forget_weight": 0.5}},
    }
    (tmp_path / "run.json").write_text(json.dumps(config))
    splits = json.loads((world.preprocessed / DATASET_NAME / "splits_final.json").read_text())
    request = tmp_path / "request.json"
    assert (
        main(
            [
                "forget",
                "-d",
                str(DATASET_ID),
                "-c",
                CONFIGURATION,
                "-f",
                "0",
                "-p",
                PLANS,
                "--cases",
                splits[0]["train"][0],
                "-o",
                str(request),
                "--config",
                str(tmp_path / "run.json"),
            ]
        )
        == 0
    )
    assert json.loads(request.read_text())["run_config"] == config
    monkeypatch.setenv(REQUEST_ENV, str(request))
    monkeypatch.delenv(CONFIG_ENV, raising=False)

    folder, draw = _run_recording_noise("seed7", world)
    metrics = json.loads((folder / METRICS_FILE).read_text())
    assert metrics["hyperparameters"] == {"forget_weight": 0.5, "lr_scale": 1.0}
    assert metrics["schedule"] == {"epochs": 1, "iterations_per_epoch": 2}
    settings = metrics["settings"]
    assert (settings["seed"], settings["forget_batches_per_step"]) == (7, 2)
    assert settings["non_default"] == {
        "seed": 7,
        "epochs": 1,
        "iterations_per_epoch": 2,
        "forget_batches_per_step": 2,
        "forget_weight": 0.5,
    }
    assert settings["source"].startswith(str(request))
    certificate = json.loads((folder / CERTIFICATE_JSON).read_text())
    assert certificate["model"]["settings"] == settings
    assert certificate["model"]["hyperparameters"] == metrics["hyperparameters"]
    row = next(r for r in certificate["evidence"]["rows"] if r["role"] == "unlearned")
    assert row["seed"] == 7 and "forget_weight=0.5" in row["non_default_settings"]
    assert "seed 7" in (folder / CERTIFICATE_MD).read_text()
    assert all(torch.equal(a, b) for a, b in zip(draw[1], _noise_of_seed(7, draw), strict=True))

    (tmp_path / "seed8.json").write_text(json.dumps({**config, "seed": 8}))
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "seed8.json"))  # overrides the request's config
    other_folder, other_draw = _run_recording_noise("seed8", world)
    assert json.loads((other_folder / METRICS_FILE).read_text())["settings"]["seed"] == 8
    assert all(torch.equal(a, b) for a, b in zip(other_draw[1], _noise_of_seed(8, other_draw), strict=True))
    assert not torch.equal(draw[1][0], other_draw[1][0])
