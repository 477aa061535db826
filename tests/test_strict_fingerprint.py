"""Strict mode: nnU-Net's intensity statistics fingerprinted without the forgotten cases, and ``strict-plans``.

On the session's test dataset (real MRBrainS18 IR and FLAIR when present, else the phantom; both ZScore-normalised).
The fingerprint reads only the raw dataset, so most tests build their request without a trained model; the strict
export is tested in test_export.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, load_trainer, shorten

from nnunet_unlearning.artifacts import load_run
from nnunet_unlearning.cli import main
from nnunet_unlearning.evidence.certificate import STRICT_PLANS_KEY
from nnunet_unlearning.request import OriginalModel, UnlearningRequest
from nnunet_unlearning.workflows.strict_fingerprint import PLANS_KEY, STATISTICS, strict_fingerprint, write_strict_plans


def _request(forget: tuple[str, ...], plans: str = PLANS) -> UnlearningRequest:
    """A request of fold 0 forgetting ``forget`` from a model of ``plans``; no model is read."""
    original = OriginalModel("nnUNetTrainer", plans, CONFIGURATION, "0", "", "", "")
    return UnlearningRequest(DATASET_ID, DATASET_NAME, original, forget, (), (), {}, "2025-01-01T00:00:00+00:00")


def _plans(world) -> tuple[Path, dict]:
    path = world.preprocessed / DATASET_NAME / f"{PLANS}.json"
    return path, json.loads(path.read_text())


def _cases(world) -> list[str]:
    return sorted(p.name.removesuffix("_0000.nii.gz") for p in (world.raw / DATASET_NAME / "imagesTr").glob("*_0000.*"))


def _raw_copy(world, tmp_path: Path, skip: str = "") -> Path:
    """``$nnUNet_raw`` with the dataset's files linked, except ``skip`` (a file name); returns the new root."""
    source, root = world.raw / DATASET_NAME, tmp_path / "raw"
    for path in source.rglob("*"):
        if path.is_file() and path.name != skip:
            target = root / DATASET_NAME / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return root


def _one_line_error(capsys, *message: str) -> None:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(part in err for part in message), err


def test_nothing_forgotten_gives_nnunets_own_statistics(world):
    source, plans = _plans(world)
    fingerprint = strict_fingerprint(_request(()), plans, source)
    nnunet = json.loads((world.preprocessed / DATASET_NAME / "dataset_fingerprint.json").read_text())[PLANS_KEY]
    assert {channel.channel: channel.strict for channel in fingerprint.channels} == nnunet  # bit for bit
    assert {channel.channel: channel.plans for channel in fingerprint.channels} == nnunet
    assert fingerprint.cases == len(_cases(world)) and fingerprint.forgotten == 0
    assert [channel.normalization for channel in fingerprint.channels] == ["ZScoreNormalization"] * 2
    assert not fingerprint.input_changes
    assert fingerprint.plans(plans)[PLANS_KEY] == plans[PLANS_KEY]


def test_forgetting_a_case_of_distinct_intensities_changes_them(world, tmp_path, monkeypatch):
    """A copy of the dataset with one case twice as bright: leaving it out lowers every channel's mean by about
    an eighth (7 cases: 8/7 of a case's mean with it, 1 without)."""
    bright = _cases(world)[0]
    raw = _raw_copy(world, tmp_path)
    for image in (raw / DATASET_NAME / "imagesTr").glob(f"{bright}_0*"):
        doubled = sitk.Cast(sitk.ReadImage(str(image)), sitk.sitkFloat32) * 2
        image.unlink()
        sitk.WriteImage(doubled, str(image))
    monkeypatch.setenv("nnUNet_raw", str(raw))
    source, plans = _plans(world)
    everyone = strict_fingerprint(_request(()), plans, source).plans(plans)  # what nnU-Net plans for this dataset

    fingerprint = strict_fingerprint(_request((bright,)), everyone, source)
    assert fingerprint.cases == len(_cases(world)) - 1 and fingerprint.forgotten == 1
    for channel in fingerprint.channels:
        relative = channel.relative()
        assert relative["mean"] is not None and -0.2 < relative["mean"] < -0.05, channel.text()
        assert channel.absolute()["percentile_99_5"] < 0, channel.text()
        assert channel.reads_statistics is False and channel.input_changes is False  # ZScore: input unchanged
    record = fingerprint.record()
    assert record["forgotten"] == 1 and bright not in json.dumps(record)


@pytest.mark.parametrize("scheme", ["ZScoreNormalization", "CTNormalization"])
def test_strict_plans_writes_new_plans_and_leaves_the_original(world, tmp_path, monkeypatch, capsys, scheme):
    """strict-plans in a copy of the dataset's preprocessed folder (plans only): the new file holds the strict
    statistics; a CT channel's plans get their own data_identifier and the command says to preprocess."""
    _, plans = _plans(world)
    plans["configurations"][CONFIGURATION]["normalization_schemes"] = [scheme] * 2
    source = tmp_path / "preprocessed" / DATASET_NAME / f"{PLANS}.json"
    source.parent.mkdir(parents=True)
    source.write_text(json.dumps(plans, indent=4))
    before = source.read_bytes()
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    request = _request((_cases(world)[0],))
    request_file = tmp_path / "unlearning_request.json"
    request_file.write_text(request.to_json())

    assert main(["strict-plans", str(request_file), "-o", "nnUNetPlans_strict"]) == 0
    out = capsys.readouterr().out
    written = source.with_name("nnUNetPlans_strict.json")
    assert f"wrote {written}" in out and "-tr nnUNetTrainerRetrain -p nnUNetPlans_strict" in out
    assert source.read_bytes() == before
    strict = json.loads(written.read_text())
    assert strict["plans_name"] == "nnUNetPlans_strict"
    assert strict[STRICT_PLANS_KEY]["request_id"] == request.request_id and strict[STRICT_PLANS_KEY]["forgotten"] == 1
    assert set(strict[PLANS_KEY]) == set(plans[PLANS_KEY]) and strict[PLANS_KEY] != plans[PLANS_KEY]
    assert all(set(channel) == set(STATISTICS) for channel in strict[PLANS_KEY].values())
    identifier = strict["configurations"][CONFIGURATION]["data_identifier"]
    if scheme == "CTNormalization":
        assert identifier == f"nnUNetPlans_strict_{CONFIGURATION}" and "nnUNetv2_preprocess" in out
        assert strict[STRICT_PLANS_KEY]["input_changes"] is True
    else:
        assert identifier == plans["configurations"][CONFIGURATION]["data_identifier"]
        assert "preprocessed data stays valid" in out

    assert main(["strict-plans", str(request_file), "-o", "nnUNetPlans_strict"]) == 2
    _one_line_error(capsys, f"{written}: already exists")


def test_strict_plans_bad_input_is_one_line(world, tmp_path, monkeypatch, capsys):
    request_file = tmp_path / "unlearning_request.json"
    assert main(["strict-plans", str(request_file)]) == 2
    _one_line_error(capsys, str(request_file), "cannot read the unlearning request")

    request_file.write_text(_request((_cases(world)[0],), plans="nnUNetPlansNone").to_json())
    assert main(["strict-plans", str(request_file)]) == 2
    _one_line_error(capsys, "nnUNetPlansNone.json: nnU-Net plans file not found")

    request_file.write_text(_request((_cases(world)[0],)).to_json())
    assert main(["strict-plans", str(request_file), "-o", "a__b"]) == 2
    _one_line_error(capsys, "plans name 'a__b'")

    kept = _cases(world)[1]
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    (tmp_path / "preprocessed" / DATASET_NAME).mkdir(parents=True)
    shutil.copy(_plans(world)[0], tmp_path / "preprocessed" / DATASET_NAME)
    monkeypatch.setenv("nnUNet_raw", str(_raw_copy(world, tmp_path, skip=f"{kept}_0001.nii.gz")))
    assert main(["strict-plans", str(request_file)]) == 2
    _one_line_error(capsys, f"case {kept} has 1 image file(s) for the 2 channels")
    monkeypatch.setenv("nnUNet_raw", str(_raw_copy(world, tmp_path / "labels", skip=f"{kept}.nii.gz")))
    assert main(["strict-plans", str(request_file)]) == 2
    _one_line_error(capsys, f"{kept}.nii.gz: missing")
    assert list((tmp_path / "preprocessed" / DATASET_NAME).iterdir()) == [
        tmp_path / "preprocessed" / DATASET_NAME / f"{PLANS}.json"
    ]


@pytest.mark.slow
def test_the_retrain_oracle_trains_on_strict_plans(request_world, forget_request_file):
    """nnUNetTrainerRetrain under the request's strict plans (-p), on the original's preprocessed data (ZScore)."""
    from nnunet_unlearning.unlearning.retrain_trainer import nnUNetTrainerRetrain

    written = write_strict_plans(forget_request_file, "nnUNetPlans_strict_oracle")
    trainer = load_trainer(nnUNetTrainerRetrain, request_world, plans=written.name)
    shorten(trainer)
    trainer.run_training()
    folder = Path(trainer.output_folder)
    assert folder.parent.name == f"nnUNetTrainerRetrain__{written.name}__{CONFIGURATION}"
    strict = {channel.channel: channel.strict for channel in written.fingerprint.channels}
    assert trainer.plans_manager.foreground_intensity_properties_per_channel == strict
    assert load_run(folder).request_id == written.request.request_id
