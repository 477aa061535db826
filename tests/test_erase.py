"""`nnunet-unlearning erase`: the forgotten case's data leaves nnU-Net's folders, every removed file is recorded
with its SHA-256, and nnU-Net fingerprints, plans, trains and predicts on what remains.

Works on a copy of the session's three nnU-Net folders (the shared ones are never erased).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, ERASURE_FILE, METRICS_FILE, REQUEST_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.request import UnlearningRequest
from nnunet_unlearning.workflows.erase import ErasurePlan, erase, unfinished_runs

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def copied(world, finished_runs, tmp_path, monkeypatch) -> tuple[Path, Path, UnlearningRequest]:
    """(root of the copied nnU-Net folders, the copied NoisyLabel run, its request), env pointing at the copy."""
    root = tmp_path / "world"
    for name, source in zip(FOLDERS, (world.raw, world.preprocessed, world.results)):
        shutil.copytree(source, root / name, symlinks=True)
        monkeypatch.setenv(name, str(root / name))
    run = finished_runs["NoisyLabel"]
    copy = root / "nnUNet_results" / DATASET_NAME / run.parent.name / run.name
    request = UnlearningRequest.from_file(copy / REQUEST_FILE)
    # Tests that build a trainer of the session's request without training it leave unfinished runs in the
    # session world, which erase rightly refuses; whether they ran before this test depends on the order.
    for folder in unfinished_runs(root / "nnUNet_results" / DATASET_NAME, request.request_id):
        shutil.rmtree(folder)
    return root, copy, request


@pytest.mark.slow
def test_erase_removes_the_case_records_it_and_nnunet_still_works(copied, capsys):
    root, run, request = copied
    (case,) = request.forget
    raw, preprocessed = root / "nnUNet_raw" / DATASET_NAME, root / "nnUNet_preprocessed" / DATASET_NAME
    case_files = [*raw.glob(f"imagesTr/{case}_0*"), raw / "labelsTr" / f"{case}.nii.gz"]
    case_files = sorted([*case_files, *preprocessed.glob(f"*/{case}.*"), *preprocessed.glob(f"*/{case}_seg.*")])
    assert len(case_files) >= 6  # 2 channels, label, preprocessed data + properties + segmentation, gt copy
    hashes = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in case_files}
    before = _tree(root)

    plan = erase(run, dry_run=True)
    assert isinstance(plan, ErasurePlan) and sorted(plan.remove) == case_files
    assert _tree(root) == before, "a dry run changed something"

    assert main(["erase", str(run)]) == 0
    assert f"erased cases {case}" in capsys.readouterr().out
    record = json.loads((run / ERASURE_FILE).read_text())
    assert {entry["path"]: entry["sha256"] for entry in record["removed"]} == hashes
    assert not any(p.exists() for p in case_files)
    assert case not in json.dumps(json.loads((preprocessed / "splits_final.json").read_text()))
    assert case not in json.loads((raw / "subjects.json").read_text())["cases"]
    for dataset_json in (raw / "dataset.json", preprocessed / "dataset.json"):
        assert json.loads(dataset_json.read_text())["numTraining"] == len(list((raw / "labelsTr").iterdir()))
    assert str(run / CERTIFICATE_JSON) in record["still_naming_a_case"]
    # the original's scores kept for later requests (written by the run's start evaluation) lose the case too
    kept = sorted((root / "nnUNet_results" / DATASET_NAME / "nnunet_unlearning_scores").glob("*.json"))
    assert kept and not any(case in path.read_text() for path in kept)
    assert not set(map(str, kept)) & set(record["still_naming_a_case"])
    assert record["certificate_sha256"] == hashlib.sha256((run / CERTIFICATE_JSON).read_bytes()).hexdigest()
    assert main(["verify", str(run / CERTIFICATE_JSON)]) == 0, "verify must accept erased source files"

    env = {**os.environ, "nnUNet_extTrainer": str(TESTS / "trainers_for_tests"), "nnUNet_def_n_proc": "1"}
    env["nnUNet_n_proc_DA"] = "1"  # nnU-Net's planner passes it to torch.set_num_threads
    env.update({name: str(root / name) for name in FOLDERS})
    train = ["nnUNetv2_train", str(DATASET_ID), CONFIGURATION, "0", "-p", PLANS, "-tr", "nnUNetTrainer_short_test"]
    commands = [
        ["nnUNetv2_extract_fingerprint", "-d", str(DATASET_ID), "--verify_dataset_integrity", "-np", "1"],
        ["nnUNetv2_plan_experiment", "-d", str(DATASET_ID), "-overwrite_plans_name", "nnUNetPlansAfterErasure"],
        [*train, "-device", "cpu"],
    ]
    for command in commands:
        done = subprocess.run([str(BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command[0]}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    held_out = json.loads((preprocessed / "splits_final.json").read_text())[0]["val"][0]
    images, predictions = root / "images", root / "predictions"
    images.mkdir()
    for channel in raw.glob(f"imagesTr/{held_out}_0*"):
        (images / channel.name).symlink_to(channel)
    predict = [str(BIN / "nnUNetv2_predict"), "-i", str(images), "-o", str(predictions), "-d", str(DATASET_ID)]
    predict += ["-c", CONFIGURATION, "-f", "0", "-p", PLANS, "-tr", "nnUNetTrainer_short_test", "-device", "cpu"]
    done = subprocess.run(
        [*predict, "--disable_tta", "-npp", "1", "-nps", "1"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (predictions / f"{held_out}.nii.gz").is_file()


@pytest.mark.slow
def test_erase_refusals(copied, capsys):
    root, run, _ = copied
    unfinished = root / "nnUNet_results" / DATASET_NAME / f"nnUNetTrainerUnlearnSCRUB__{PLANS}__{CONFIGURATION}"
    (unfinished / "fold_0").mkdir(parents=True)
    shutil.copy(run / REQUEST_FILE, unfinished / "fold_0" / REQUEST_FILE)
    before = _tree(root)
    assert main(["erase", str(run)]) == 2
    error = capsys.readouterr().err
    assert "a run of request" in error and "has not finished" in error and str(unfinished / "fold_0") in error
    shutil.rmtree(unfinished)

    with pytest.raises(UserInputError, match="not a certified unlearning run"):
        erase(run.parent)
    metrics = run / METRICS_FILE
    saved = metrics.read_bytes()
    metrics.write_bytes(saved + b" ")
    with pytest.raises(UserInputError, match="fails verify"):
        erase(run)
    metrics.write_bytes(saved)
    assert {k: v for k, v in _tree(root).items() if "SCRUB" not in k} == {
        k: v for k, v in before.items() if "SCRUB" not in k
    }
    erase(run)
    with pytest.raises(UserInputError, match="already erased"):
        erase(run)
