"""`nnunet-unlearning export`: a certified run as a zip that plain nnU-Net installs and predicts with, without this
plugin, and that names no forgotten case; beside it, what nnU-Net's own export of the same run carries.

On the session's one real ``nnUNetv2_train`` unlearning run (one epoch of two steps, nnU-Net's final validation
included; ``console_script_run`` in conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import CONSOLE_SCRIPT_TRAINER
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, FINAL_CHECKPOINT, METRICS_FILE, REQUEST_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.request import UnlearningRequest
from nnunet_unlearning.workflows.export import (
    EXPORT_MANIFEST,
    case_mentions,
    export_run,
    plugin_network,
    zip_contents,
)

TRAINER = CONSOLE_SCRIPT_TRAINER
BIN = Path(sys.executable).parent
# nnU-Net's predictor with this plugin made unimportable and nnUNet_extTrainer unset: plain nnU-Net
PLAIN_NNUNET_PREDICT = """
import sys, importlib.abc
class NoPlugin(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("nnunet_unlearning", "nnunet_unlearning_trainers"):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoPlugin())
from nnunetv2.inference.predict_from_raw_data import predict_entry_point
sys.argv = ["nnUNetv2_predict", *sys.argv[1:]]
predict_entry_point()
"""


@pytest.fixture()
def trained_run(console_script_run) -> tuple[Path, dict[str, str]]:
    """(fold folder of the session's finished nnUNetv2_train unlearning run, the environment it ran with)."""
    return console_script_run


def _forgotten(run: Path) -> list[str]:
    return list(UnlearningRequest.from_file(run / REQUEST_FILE).forget)


@pytest.mark.slow
def test_nnunets_own_export_of_the_run_names_the_forgotten_case(trained_run, tmp_path):
    """The measurement docs/unlearning.md quotes: which files of nnUNetv2_export_model_to_zip name the patient."""
    run, env = trained_run
    out = tmp_path / "nnunet_export.zip"
    arguments = ["-d", str(DATASET_ID), "-o", str(out), "-c", CONFIGURATION, "-tr", TRAINER, "-p", PLANS, "-f", "0"]
    done = subprocess.run(
        [str(BIN / "nnUNetv2_export_model_to_zip"), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    leaks = case_mentions(zip_contents(out), _forgotten(run))
    print("nnU-Net's export names the forgotten case in:", sorted(leaks))
    assert any(name.endswith("debug.json") for name in leaks)
    names = zipfile.ZipFile(out).namelist()
    assert any(name.endswith("dataset_fingerprint.json") for name in names)
    checkpoint = torch.load(run / FINAL_CHECKPOINT, map_location="cpu", weights_only=False)
    assert checkpoint["optimizer_state"]["state"], "nnU-Net's checkpoint carries the optimizer's momentum"


@pytest.mark.slow
def test_export_installs_and_predicts_with_plain_nnunet(nnunet_world, trained_run, tmp_path, capsys, monkeypatch):
    run, env = trained_run
    monkeypatch.setenv("nnUNet_extTrainer", env["nnUNet_extTrainer"])  # the run's test trainer class
    out = tmp_path / "model.zip"
    assert main(["export", str(run), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    prefix = f"{DATASET_NAME}/{TRAINER}__{PLANS}__{CONFIGURATION}"
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == sorted(
            [
                f"{prefix}/dataset.json",
                f"{prefix}/plans.json",
                f"{prefix}/fold_0/{FINAL_CHECKPOINT}",
                f"{prefix}/fold_0/{EXPORT_MANIFEST}",
            ]
        )
        manifest = json.loads(archive.read(f"{prefix}/fold_0/{EXPORT_MANIFEST}"))
    assert case_mentions(zip_contents(out), _forgotten(run)) == {}
    assert manifest["request_id"] == UnlearningRequest.from_file(run / REQUEST_FILE).request_id
    assert manifest["trainer_name_in_checkpoint"] == "nnUNetTrainer"
    assert "intensity statistics" in manifest["still_derived_from_the_forgotten"]

    deploy = tmp_path / "deploy_results"
    plain = {key: value for key, value in env.items() if key != "nnUNet_extTrainer"}
    plain["nnUNet_results"] = str(deploy)
    installed = subprocess.run(
        [str(BIN / "nnUNetv2_install_pretrained_model_from_zip"), str(out)], env=plain, capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    checkpoint = torch.load(deploy / prefix / "fold_0" / FINAL_CHECKPOINT, map_location="cpu", weights_only=False)
    assert sorted(checkpoint) == ["inference_allowed_mirroring_axes", "init_args", "network_weights", "trainer_name"]
    certified = torch.load(run / FINAL_CHECKPOINT, map_location="cpu", weights_only=False)["network_weights"]
    assert all(torch.equal(certified[k], v) for k, v in checkpoint["network_weights"].items())

    images, predictions = tmp_path / "images", tmp_path / "predictions"
    images.mkdir()
    case = json.loads((nnunet_world.preprocessed / DATASET_NAME / "splits_final.json").read_text())[0]["val"][0]
    for channel in sorted((nnunet_world.raw / DATASET_NAME / "imagesTr").glob(f"{case}_0*.nii.gz")):
        (images / channel.name).symlink_to(channel)
    arguments = ["-i", str(images), "-o", str(predictions), "-d", str(DATASET_ID), "-c", CONFIGURATION, "-f", "0"]
    arguments += ["-tr", TRAINER, "-p", PLANS, "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"]
    predicted = subprocess.run(
        [str(BIN / "python"), "-c", PLAIN_NNUNET_PREDICT, *arguments],
        env=plain,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert predicted.returncode == 0, predicted.stdout[-2000:] + predicted.stderr[-2000:]
    assert (predictions / f"{case}.nii.gz").is_file()


@pytest.mark.slow
def test_export_refusals(trained_run, tmp_path, monkeypatch):
    run, env = trained_run
    monkeypatch.setenv("nnUNet_extTrainer", env["nnUNet_extTrainer"])
    with pytest.raises(UserInputError, match=r"must be a \.zip file"):
        export_run(run, tmp_path / "model.tar")
    with pytest.raises(UserInputError, match="inside the run's results folder"):
        export_run(run, run / "model.zip")
    with pytest.raises(UserInputError, match="not a certified unlearning run"):
        export_run(run.parent, tmp_path / "a.zip")
    existing = tmp_path / "exists.zip"
    existing.write_bytes(b"")
    with pytest.raises(UserInputError, match="already exists"):
        export_run(run, existing)
    metrics = run / METRICS_FILE
    saved = metrics.read_bytes()
    metrics.write_bytes(saved + b" ")
    try:
        with pytest.raises(UserInputError, match="fails verify"):
            export_run(run, tmp_path / "b.zip")
    finally:
        metrics.write_bytes(saved)
    assert (run / CERTIFICATE_JSON).is_file() and not (tmp_path / "b.zip").exists()


def test_a_med3d_network_is_named_as_needing_the_plugin():
    def plans(name: str) -> dict:
        return {"configurations": {"3d_fullres": {"architecture": {"network_class_name": name}}}}

    plain = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    assert plugin_network(plans(plain), "3d_fullres") is None
    med3d = "nnunet_unlearning.med3d.network.Med3DUNet"
    assert plugin_network(plans(med3d), "3d_fullres") == med3d


def test_case_mentions_finds_ids_in_any_file():
    files = {
        "a.json": b'{"forget": ["MRBrainS18_1"]}',
        "b.bin": b"\x00MRBrainS18_14\x00",
        "imagesTr/MRBrainS18_1_0000.nii.gz": b"MRBrainS18_1_0000",
        "c": b"nothing",
    }
    assert case_mentions(files, ["MRBrainS18_1", "MRBrainS18_14"]) == {
        "a.json": ["MRBrainS18_1"],
        "b.bin": ["MRBrainS18_14"],  # not MRBrainS18_1: ids are matched whole
        "imagesTr/MRBrainS18_1_0000.nii.gz": ["MRBrainS18_1"],
    }
