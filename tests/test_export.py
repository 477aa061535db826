"""`nnunet-unlearning export`: a certified run as a zip that plain nnU-Net installs and predicts with, without this
plugin, and that names no forgotten case; beside it, what nnU-Net's own export of the same run carries.

On the session's one real ``nnUNetv2_train`` unlearning run (one epoch of two steps, nnU-Net's final validation
included; ``console_script_run`` in conftest.py) and, for nnU-Net's residual-encoder U-Net, an in-process one of the
same length (``resenc_run``); ``--strict`` exports with the intensity statistics fingerprinted without the forgotten
case.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import CONSOLE_SCRIPT_TRAINER
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, load_trainer, shorten
from test_architectures import _resenc_plans

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, FINAL_CHECKPOINT, METRICS_FILE, REQUEST_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evidence.certificate import certificate_content
from nnunet_unlearning.request import REQUEST_ENV, UnlearningRequest, write_request
from nnunet_unlearning.workflows.export import (
    EXPORT_MANIFEST,
    case_mentions,
    export_run,
    plugin_network,
    zip_contents,
)
from nnunet_unlearning.workflows.strict_fingerprint import PLANS_KEY, strict_fingerprint

TRAINER = CONSOLE_SCRIPT_TRAINER
BIN = Path(sys.executable).parent
#: The ResEnc run's plans: test_architectures' tiny ResEnc plans under a name of their own, so that its original
#: model (nnUNetTrainer__<plans>) is not the one test_architectures trains.
RESENC_PLANS = "nnUNetResEncExportPlans"
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


@pytest.fixture(scope="session")
def resenc_run(nnunet_world, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(fold folder, environment) of a certified unlearning run on nnU-Net's residual-encoder U-Net: an original of
    one epoch of two steps and a NoisyLabel run of the same length, in-process."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_unlearning.nnunet.trainers_dir import trainers_dir
    from nnunet_unlearning.unlearning.schedules import trainer_family
    from nnunet_unlearning.unlearning.strategies import NoisyLabel

    folder = nnunet_world.preprocessed / DATASET_NAME
    plans = json.loads((folder / f"{_resenc_plans(nnunet_world)}.json").read_text())
    (folder / f"{RESENC_PLANS}.json").write_text(json.dumps({**plans, "plans_name": RESENC_PLANS}, indent=2))
    original = load_trainer(nnUNetTrainer, nnunet_world, plans=RESENC_PLANS)
    shorten(original)
    original.run_training()
    forget = sorted(original.do_split()[0])[:1]
    out = tmp_path_factory.mktemp("resenc_request") / "unlearning_request.json"
    request = write_request(DATASET_ID, CONFIGURATION, "0", RESENC_PLANS, "nnUNetTrainer", forget, out=out)
    previous = os.environ.get(REQUEST_ENV)
    os.environ[REQUEST_ENV] = str(request)
    try:
        trainer = load_trainer(
            trainer_family(NoisyLabel, __name__)["nnUNetTrainerUnlearnNoisyLabel"], nnunet_world, plans=RESENC_PLANS
        )
        shorten(trainer)
        trainer.run_training()
    finally:
        if previous is None:
            os.environ.pop(REQUEST_ENV)
        else:
            os.environ[REQUEST_ENV] = previous
    env = {**os.environ, **nnunet_world.env(), "nnUNet_extTrainer": str(trainers_dir()), REQUEST_ENV: str(request)}
    return Path(trainer.output_folder), env


def _forgotten(run: Path) -> list[str]:
    return list(UnlearningRequest.from_file(run / REQUEST_FILE).forget)


def _copy_of_run(run: Path, tmp_path: Path) -> Path:
    """The fold folder of a copy of ``run``'s whole trainer folder under ``tmp_path/results``, for a test that
    changes its files (a copied run still verifies: its certificate names its own files relative to it)."""
    target = tmp_path / "results" / DATASET_NAME / run.parent.name
    shutil.copytree(run.parent, target)
    return target / run.name


def _zipped_json(out: Path, name: str) -> dict:
    with zipfile.ZipFile(out) as archive:
        return json.loads(archive.read(next(n for n in archive.namelist() if n.endswith(f"/{name}"))))


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
    # nnU-Net's checkpoint carries the optimizer's momentum once a step was taken (a calibrated run may stop at
    # its first check, before any step: then there is none, and nnU-Net's export still finds its progress plot)
    steps = json.loads((run / METRICS_FILE).read_text())["steps_taken"]
    assert bool(checkpoint["optimizer_state"]["state"]) == (steps > 0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("run_fixture", "flags"),
    [("console_script_run", []), ("resenc_run", ["--strict"])],
    ids=["PlainConvUNet", "ResEnc-strict"],
)
def test_export_installs_and_predicts_with_plain_nnunet(
    nnunet_world, request, tmp_path, capsys, monkeypatch, run_fixture, flags
):
    """nnU-Net's own architectures need nothing of this plugin to be served: PlainConvUNet as exported, ResEnc with
    the strict statistics (a strict export's plans carry an entry nnU-Net does not know)."""
    run, env = request.getfixturevalue(run_fixture)
    trainer, plans = run.parent.name.split("__")[:2]
    monkeypatch.setenv("nnUNet_extTrainer", env["nnUNet_extTrainer"])  # the run's trainer class
    out = tmp_path / "model.zip"
    assert main(["export", str(run), "-o", str(out), *flags]) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    prefix = f"{DATASET_NAME}/{run.parent.name}"
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
    arguments += ["-tr", trainer, "-p", plans, "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"]
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


@pytest.mark.slow
def test_strict_export_carries_the_strict_statistics(trained_run, tmp_path, monkeypatch, capsys):
    run, env = trained_run
    monkeypatch.setenv("nnUNet_extTrainer", env["nnUNet_extTrainer"])
    plans_file = run.parent / "plans.json"
    before = plans_file.read_bytes()
    out = tmp_path / "model.zip"
    assert main(["export", str(run), "-o", str(out), "--strict"]) == 0
    assert "strict intensity statistics" in capsys.readouterr().out
    assert plans_file.read_bytes() == before

    request = UnlearningRequest.from_file(run / REQUEST_FILE)
    fingerprint = strict_fingerprint(request, json.loads(before), plans_file)
    plans = _zipped_json(out, "plans.json")
    assert plans[PLANS_KEY] == {channel.channel: channel.strict for channel in fingerprint.channels}
    assert plans[PLANS_KEY] != json.loads(before)[PLANS_KEY]
    assert {key: value for key, value in plans.items() if key not in (PLANS_KEY, "unlearning_strict_fingerprint")} == {
        key: value for key, value in json.loads(before).items() if key != PLANS_KEY
    }
    manifest = _zipped_json(out, EXPORT_MANIFEST)
    assert manifest["intensity_statistics"] == "strict"
    assert manifest["strict_fingerprint"] == fingerprint.record() and not fingerprint.input_changes
    assert "network topology" in manifest["still_derived_from_the_forgotten"]
    with zipfile.ZipFile(out) as archive:
        member = next(n for n in archive.namelist() if n.endswith(FINAL_CHECKPOINT))
        checkpoint = torch.load(io.BytesIO(archive.read(member)), map_location="cpu", weights_only=False)
    assert checkpoint["init_args"]["plans"] == plans  # the checkpoint's copy of the plans is the strict one too
    assert case_mentions(zip_contents(out), _forgotten(run)) == {}


@pytest.mark.slow
def test_strict_export_of_ct_channels_needs_a_model_trained_on_strict_plans(trained_run, tmp_path, monkeypatch, capsys):
    """CTNormalization reads the plans' statistics: strict ones would change the model's input, so a strict export
    is refused, unless the model trained with the strict plans of its request (then they are its own)."""
    run, env = trained_run
    monkeypatch.setenv("nnUNet_extTrainer", env["nnUNet_extTrainer"])
    copy = _copy_of_run(run, tmp_path)
    plans_file = copy.parent / "plans.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"][CONFIGURATION]["normalization_schemes"] = ["CTNormalization"] * 2
    plans_file.write_text(json.dumps(plans))
    request = UnlearningRequest.from_file(copy / REQUEST_FILE)
    assert "intensity statistics" in " ".join(certificate_content(copy)["statement"]["does_not_show"])

    assert main(["export", str(copy), "-o", str(tmp_path / "ct.zip"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "channel 0" in err and "CTNormalization" in err and "strict-plans" in err
    assert not (tmp_path / "ct.zip").exists()

    # as if trained with `-p <strict plans>`: the run's plans are its request's strict plans
    plans_file.write_text(json.dumps(strict_fingerprint(request, plans, plans_file).plans(plans)))
    assert main(["export", str(copy), "-o", str(tmp_path / "strict.zip"), "--strict"]) == 0
    record = _zipped_json(tmp_path / "strict.zip", EXPORT_MANIFEST)["strict_fingerprint"]
    assert record["input_changes"] is False and record["channels"]["0"]["reads_statistics"] is True
    statement = certificate_content(copy)["statement"]
    assert "without every case" in " ".join(statement["shows"])
    assert "intensity statistics" not in " ".join(statement["does_not_show"])


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
