"""End to end through nnU-Net's own commands: plan-med3d, nnUNetv2_train with MedicalNet weights,
nnUNetv2_predict and nnUNetv2_evaluate_folder, on the session's coarse dataset (real MRBrainS18 when present).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest
import torch
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, load_trainer
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunet_unlearning.files import sha256_file
from nnunet_unlearning.med3d.checkpoint import check_medicalnet_file
from nnunet_unlearning.med3d.plans import plan_med3d
from nnunet_unlearning.med3d.pretrained_trainer import MED3D_WEIGHTS_ENV, Med3DTrainerMixin
from nnunet_unlearning.med3d.resnet import MedicalNetResNet
from nnunet_unlearning.nnunet.glue import bare_network
from nnunet_unlearning.nnunet.trainers_dir import trainers_dir
from nnunet_unlearning.request import REQUEST_ENV, UnlearningRequest, write_request
from nnunet_unlearning.unlearning.retrain_trainer import nnUNetTrainerRetrain
from nnunet_unlearning.unlearning.schedules import trainer_family
from nnunet_unlearning.unlearning.strategies import NoisyLabel

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PLANS = "nnUNetMed3DPlans"
TRAINER = "nnUNetTrainerMed3D_test"


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command[0]}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_train_predict_evaluate_with_medicalnet_weights(world, tmp_path, monkeypatch):
    plan_med3d(DATASET_ID, CONFIGURATION, depth=10, decoder_channels=[8, 16, 16, 16, 16])
    # a ResNet-10 file in MedicalNet's format: `module.` keys, a segmentation head, one input channel
    weights = tmp_path / "resnet_10.pth"
    medicalnet = {f"module.{k}": v for k, v in MedicalNetResNet(10, 1, norm="batch").state_dict().items()}
    medicalnet["module.conv_seg.2.weight"] = torch.zeros(32, 32, 3, 3, 3)
    torch.save({"state_dict": medicalnet}, weights)
    env = {
        **os.environ,
        MED3D_WEIGHTS_ENV: str(weights),
        "nnUNet_def_n_proc": "1",
        "nnUNet_extTrainer": os.pathsep.join([str(trainers_dir()), str(TESTS / "trainers_for_tests")]),
    }

    run(
        [
            str(BIN / "nnUNetv2_train"),
            str(DATASET_ID),
            CONFIGURATION,
            "0",
            "-p",
            PLANS,
            "-tr",
            TRAINER,
            "-device",
            "cpu",
        ],
        env,
    )
    model = world.results / DATASET_NAME / f"{TRAINER}__{PLANS}__{CONFIGURATION}"
    log = "".join(p.read_text() for p in (model / "fold_0").glob("training_log_*.txt"))
    norm = json.loads((world.preprocessed / DATASET_NAME / f"{PLANS}.json").read_text())["configurations"][
        CONFIGURATION
    ]["architecture"]["arch_kwargs"]["norm"]
    report = check_medicalnet_file(weights, depth=10, in_channels=2, norm=norm).summary().splitlines()[0]
    assert report in log and "0 missing" in report
    assert (model / "fold_0" / "validation" / "summary.json").is_file()  # nnU-Net's own final validation

    # the encoder started from the file: after two steps at 0.1× the rate it is far closer to it than to
    # a fresh random initialisation
    trained = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    key = "layer4.0.conv2.weight"
    encoder = trained["network_weights"][f"encoder.{key}"]
    fresh = MedicalNetResNet(10, 1).state_dict()[key]
    assert (encoder - medicalnet[f"module.{key}"]).norm() < 0.1 * (encoder - fresh).norm()

    _unlearning_and_oracle_keep_the_recipe(world, tmp_path, monkeypatch, env, weights, medicalnet)

    # --c / --val path: nnU-Net loads its checkpoint, the MedicalNet file is not needed
    monkeypatch.delenv(MED3D_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("nnUNet_extTrainer", env["nnUNet_extTrainer"])
    resumed = load_trainer(recursive_find_trainer_class_by_name(TRAINER), world, fold=1, plans=PLANS)
    resumed.load_checkpoint(str(model / "fold_0" / "checkpoint_final.pth"))
    assert torch.equal(resumed.network.encoder.state_dict()[key], encoder)

    images = world.raw / DATASET_NAME / "imagesTr"
    labels = world.raw / DATASET_NAME / "labelsTr"
    cases = sorted(p.name.removesuffix(".nii.gz") for p in labels.glob("*.nii.gz"))[:2]
    inputs = tmp_path / "input"
    inputs.mkdir()
    for case in cases:
        for image in images.glob(f"{case}_*.nii.gz"):
            (inputs / image.name).symlink_to(image)
    predictions = tmp_path / "predictions"
    run(
        [
            str(BIN / "nnUNetv2_predict"),
            "-i",
            str(inputs),
            "-o",
            str(predictions),
            "-d",
            str(DATASET_ID),
            "-c",
            CONFIGURATION,
            "-f",
            "0",
            "-p",
            PLANS,
            "-tr",
            TRAINER,
            "-device",
            "cpu",
            "-npp",
            "1",
            "-nps",
            "1",
            "--disable_tta",
        ],
        env,
    )  # mirroring is nnU-Net's, exercised by the training's final validation
    for case in cases:
        assert nib.load(predictions / f"{case}.nii.gz").shape == nib.load(labels / f"{case}.nii.gz").shape

    preprocessed = world.preprocessed / DATASET_NAME
    run(
        [
            str(BIN / "nnUNetv2_evaluate_folder"),
            str(labels),
            str(predictions),
            "-djfile",
            str(preprocessed / "dataset.json"),
            "-pfile",
            str(preprocessed / f"{PLANS}.json"),
            "-np",
            "1",
            "--chill",
        ],
        env,
    )
    summary = json.loads((predictions / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(cases)
    dice = summary["foreground_mean"]["Dice"]
    assert math.isfinite(dice) and 0.0 <= dice <= 1.0


def _unlearning_and_oracle_keep_the_recipe(
    world, tmp_path, monkeypatch, env: dict, weights: Path, medicalnet: dict
) -> None:
    """The request records the Med3D original's recipe; unlearning keeps its slower encoder, and the oracle
    starts its encoder from the same MedicalNet file and trains it at the same rate."""
    for key in ("nnUNet_extTrainer", MED3D_WEIGHTS_ENV):
        monkeypatch.setenv(key, env[key])
    splits = json.loads((world.preprocessed / DATASET_NAME / "splits_final.json").read_text())
    path = write_request(
        DATASET_ID, CONFIGURATION, "0", PLANS, TRAINER, [splits[0]["train"][0]], out=tmp_path / "request.json"
    )
    recipe = UnlearningRequest.from_file(path).original.recipe
    assert recipe == {
        "trainer": TRAINER,
        "initialisation": "medicalnet",
        "parameter_groups": [{"prefix": "encoder.", "lr_scale": Med3DTrainerMixin.encoder_lr_scale}],
        "initial_lr": None,
        "initialisation_checkpoint": {"checkpoint": str(weights.resolve()), "sha256": sha256_file(weights)},
    }
    # an original trained at another rate (nnUNetTrainerMed3D_cpu's 0.03): both runs start from that rate
    request = json.loads(path.read_text())
    request["original"]["recipe"]["initial_lr"] = 0.03
    path.write_text(json.dumps(request))
    monkeypatch.setenv(REQUEST_ENV, str(path))
    unlearn = trainer_family(NoisyLabel, __name__)["nnUNetTrainerUnlearnNoisyLabel"]
    for cls in (unlearn, type("nnUNetTrainerRetrain_recipe", (nnUNetTrainerRetrain,), {})):
        trainer = load_trainer(cls, world, plans=PLANS)
        trainer.initialize()
        lr_scale = trainer.settings.lr_scale if cls is unlearn else 1.0
        assert trainer.initial_lr == pytest.approx(0.03 * lr_scale)
        network = bare_network(trainer.network)
        rest, encoder = trainer.optimizer.param_groups
        assert (rest["lr_scale"], encoder["lr_scale"]) == (1.0, Med3DTrainerMixin.encoder_lr_scale)
        assert {id(p) for p in encoder["params"]} == {id(p) for p in network.encoder.parameters()}
        assert {id(p) for p in rest["params"]} == {id(p) for p in network.decoder.parameters()}
    key = "layer4.0.conv2.weight"  # the oracle's encoder is the MedicalNet file's
    assert torch.equal(network.encoder.state_dict()[key], medicalnet[f"module.{key}"])

    other = tmp_path / "other_resnet_10.pth"  # another MedicalNet file than the original's: refused
    torch.save({"state_dict": {k: v + 1 if v.is_floating_point() else v for k, v in medicalnet.items()}}, other)
    monkeypatch.setenv(MED3D_WEIGHTS_ENV, str(other))
    with pytest.raises(SystemExit) as exit_info:
        load_trainer(type("nnUNetTrainerRetrain_other", (nnUNetTrainerRetrain,), {}), world, plans=PLANS).initialize()
    assert exit_info.value.code == 2
