"""One request over several folds of nnU-Net's ensemble: unlearn where the patient trained, keep the fold that
never did, and ``nnUNetv2_predict`` the unlearned ensemble as usual.

The session trains the original of fold 0 only; fold 1's "original" here is a copy of it under a results folder
of its own (the request pins each fold's checkpoint by path and SHA-256, which is all a fold's request reads).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, CERTIFICATE_MD, FINAL_CHECKPOINT, METRICS_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.request import REQUEST_ENV, build_fold_requests, load_request

ORIGINAL = "nnUNetTrainer"


def _forget(*folds: str, more: tuple[str, ...] = ()) -> list[str]:
    return ["forget", "-d", str(DATASET_ID), "-c", CONFIGURATION, "-f", *folds, "-p", PLANS, "-tr", ORIGINAL, *more]


@pytest.fixture()
def two_folds(world, original_checkpoint, tmp_path, monkeypatch) -> tuple[str, dict]:
    """(a case in fold 1's validation split and so in fold 0's training split, the split), with originals of
    folds 0 and 1 under a results folder of this test."""
    model = tmp_path / "results" / DATASET_NAME / original_checkpoint.parent.parent.name
    for fold in ("fold_0", "fold_1"):
        shutil.copytree(original_checkpoint.parent, model / fold)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    splits = json.loads((world.preprocessed / DATASET_NAME / "splits_final.json").read_text())
    case = splits[1]["val"][0]
    assert case in splits[0]["train"]
    return case, splits


def test_a_request_set_unlearns_where_the_case_trained_and_keeps_the_other_fold(two_folds, tmp_path, capsys):
    case, splits = two_folds
    out = tmp_path / "request_set.json"
    assert main(_forget("0", "1", more=("--cases", case, "-o", str(out)))) == 0
    printed = capsys.readouterr().out
    assert f"fold 0: forget {case}" in printed
    assert f"fold 1: never trained on {case} (its validation split): nothing to unlearn" in printed
    requests = json.loads(out.read_text())["request_set"]
    assert list(requests) == ["0", "1"]
    assert requests["0"]["forget"] == [case] and not requests["0"]["untouched"]
    assert requests["0"]["retain"] == sorted(set(splits[0]["train"]) - {case})
    assert requests["1"]["untouched"] and requests["1"]["forget"] == [case]
    assert requests["1"]["retain"] == sorted(splits[1]["train"])
    assert requests["1"]["heldout"] == sorted(set(splits[1]["val"]) - {case}), "the patient is not 'unseen'"
    assert requests["0"]["request_id"] != requests["1"]["request_id"]
    # one id for the set: a later request's runs of every fold share one <Trainer>_request-<id8> folder
    assert requests["0"]["set_id"] == requests["1"]["set_id"] is not None


def test_each_fold_reads_its_own_request(two_folds, tmp_path, monkeypatch):
    case, _ = two_folds
    out = tmp_path / "request_set.json"
    assert main(_forget("0", "1", more=("--cases", case, "-o", str(out)))) == 0
    monkeypatch.setenv(REQUEST_ENV, str(out))
    assert load_request(DATASET_NAME, "1").untouched and not load_request(DATASET_NAME, "0").untouched
    with pytest.raises(UserInputError, match="covers folds 0, 1, not fold 2"):
        load_request(DATASET_NAME, "2")
    single = tmp_path / "single.json"  # a one-fold request is refused by another fold's run
    assert main(_forget("0", more=("--cases", case, "-o", str(single)))) == 0
    monkeypatch.setenv(REQUEST_ENV, str(single))
    with pytest.raises(UserInputError, match="request is for fold 0, this run trains fold 1"):
        load_request(DATASET_NAME, "1")


def test_bad_fold_requests_are_one_line_errors(two_folds, tmp_path, capsys):
    case, _ = two_folds
    out = tmp_path / "request_set.json"
    for folds, message in (
        (("0", "0"), "fold 0: given more than once"),
        (("0", "3"), "original model checkpoint not found"),  # the original never trained fold 3
    ):
        assert main(_forget(*folds, more=("--cases", case, "-o", str(out)))) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    with pytest.raises(UserInputError, match="none trained on the cases to forget"):
        build_fold_requests(DATASET_ID, CONFIGURATION, ["1"], PLANS, ORIGINAL, [case])


@pytest.mark.slow
def test_the_unlearned_ensemble_has_every_fold_and_predicts(two_folds, world, tmp_path, monkeypatch):
    from nnunet_fixture import load_trainer, shorten
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_unlearning.nnunet.trainers_dir import find_trainer, trainers_dir

    case, _ = two_folds
    out = tmp_path / "request_set.json"
    assert main(_forget("0", "1", more=("--cases", case, "-o", str(out)))) == 0
    monkeypatch.setenv(REQUEST_ENV, str(out))
    # a class of the tests' own (its results folder is no other test's), found as nnU-Net's predictor finds it
    for_tests = Path(__file__).parent / "trainers_for_tests"
    monkeypatch.setenv("nnUNet_extTrainer", os.pathsep.join([str(trainers_dir()), str(for_tests)]))
    cls = find_trainer("nnUNetTrainerUnlearnNoisyLabel_folds")
    folders = {}
    for fold in (0, 1):
        trainer = load_trainer(cls, world, fold=fold)
        shorten(trainer)
        trainer.run_training()
        folders[fold] = Path(trainer.output_folder)

    untouched = folders[1]
    original = torch.load(tmp_path / "results" / DATASET_NAME / f"{ORIGINAL}__{PLANS}__{CONFIGURATION}" / "fold_1"
                          / FINAL_CHECKPOINT, map_location="cpu", weights_only=False)["network_weights"]  # fmt: skip
    kept = torch.load(untouched / FINAL_CHECKPOINT, map_location="cpu", weights_only=False)["network_weights"]
    assert all(torch.equal(kept[k], original[k]) for k in original), "the untouched fold's model changed"
    metrics = json.loads((untouched / METRICS_FILE).read_text())
    assert metrics["steps_taken"] == 0
    assert [e["tag"] for e in metrics["evaluations"]] == ["start", "end"]
    assert metrics["evaluations"][0]["sets"]["forget"]["dice"] == metrics["evaluations"][-1]["sets"]["forget"]["dice"]
    certificate = json.loads((untouched / CERTIFICATE_JSON).read_text())
    assert certificate["forgotten"]["untouched"] and certificate["forgotten"]["cases"] == [case]
    assert "never trained on these cases" in (untouched / CERTIFICATE_MD).read_text()
    trained = json.loads((folders[0] / METRICS_FILE).read_text())
    assert trained["steps_taken"] > 0 and trained["forget"] == [case]

    # nnUNetv2_predict -f 0 1 -tr <the unlearning trainer> finds every fold of the unlearned ensemble
    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folders[0].parent), (0, 1))
    assert len(predictor.list_of_parameters) == 2
