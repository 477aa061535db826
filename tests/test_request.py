"""The forget request: what it records, and every request it refuses (CLI: one line, exit 2)."""

from __future__ import annotations

import json

import pytest
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, forget_args

from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import sha256_file
from nnunet_unlearning.request import UnlearningRequest, build_request, load_request, write_request


def _splits(world) -> list[dict]:
    return json.loads((world.preprocessed / DATASET_NAME / "splits_final.json").read_text())


def _forget_args(*cases: str, trainer: str = "nnUNetTrainer") -> list[str]:
    return forget_args("--cases", *cases, trainer=trainer)


def test_request_records_sets_model_hash_and_source_files(world, original_checkpoint, tmp_path):
    split = _splits(world)[0]
    forget = split["train"][0]
    path = write_request(DATASET_ID, CONFIGURATION, "0", PLANS, "nnUNetTrainer", [forget], out=tmp_path / "r.json")
    request = UnlearningRequest.from_file(path)

    assert request.forget == (forget,)
    assert set(request.retain) == set(split["train"]) - {forget}
    assert set(request.heldout) == set(split["val"])
    assert request.original.checkpoint_sha256 == sha256_file(original_checkpoint)
    subjects = json.loads((world.raw / DATASET_NAME / "subjects.json").read_text())["cases"]
    assert request.source_files == {forget: subjects[forget]}
    assert json.loads(path.read_text())["request_id"] == request.request_id
    # plain nnU-Net: nnU-Net's initialisation, one learning rate for every parameter
    assert request.original.recipe == {
        "trainer": "nnUNetTrainer",
        "initialisation": "nnunet_default",
        "parameter_groups": [],
        "initial_lr": None,
    }


def test_default_location_and_env_override(world, original_checkpoint, tmp_path, monkeypatch):
    forget = _splits(world)[0]["train"][1]
    assert main(_forget_args(forget)) == 0
    default = world.preprocessed / DATASET_NAME / "unlearning_request.json"
    assert load_request(DATASET_NAME, "0").forget == (forget,)

    monkeypatch.setenv("nnUNet_unlearning_request", str(tmp_path / "elsewhere.json"))
    with pytest.raises(UserInputError, match="no unlearning request"):
        load_request(DATASET_NAME, "0")
    assert default.is_file()


def test_request_id_ignores_when_but_not_what(world, original_checkpoint):
    case_a, case_b = _splits(world)[0]["train"][:2]
    first = build_request(DATASET_ID, CONFIGURATION, "0", PLANS, "nnUNetTrainer", [case_a])
    again = build_request(DATASET_ID, CONFIGURATION, "0", PLANS, "nnUNetTrainer", [case_a])
    other = build_request(DATASET_ID, CONFIGURATION, "0", PLANS, "nnUNetTrainer", [case_b])
    assert first.request_id == again.request_id != other.request_id


@pytest.mark.parametrize(
    ("cases", "trainer", "message"),
    [
        (["MRBrainS18_999"], "nnUNetTrainer", "case MRBrainS18_999: unknown"),
        (["HELDOUT"], "nnUNetTrainer", "nothing to forget"),
        (["ALL_TRAINING"], "nnUNetTrainer", "leaves no retain set"),
        (["../imagesTr/MRBrainS18_1_0000.nii.gz"], "nnUNetTrainer", "looks like a path"),
        (["TRAIN0", "TRAIN0"], "nnUNetTrainer", "given more than once"),
        (["TRAIN0"], "nnUNetTrainerNeverTrained", "checkpoint not found"),
    ],
)
def test_refusals_are_one_line_with_exit_2(world, original_checkpoint, capsys, cases, trainer, message):
    split = _splits(world)[0]
    named = {"HELDOUT": [split["val"][0]], "ALL_TRAINING": split["train"], "TRAIN0": [split["train"][0]]}
    expanded = [c for case in cases for c in named.get(case, [case])]
    assert main(_forget_args(*expanded, trainer=trainer)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_dataset_is_refused(world, capsys):
    assert main(["forget", "-d", "999", "-c", CONFIGURATION, "-f", "0", "--cases", "MRBrainS18_1"]) == 2
    assert "dataset 999: not found" in capsys.readouterr().err


def test_fold_all_is_refused_with_its_reason(world, original_checkpoint, capsys):
    args = _forget_args(_splits(world)[0]["train"][0])
    args[args.index("-f") + 1] = "all"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "fold all: the model trained on every case, so no held-out subjects remain" in err
    assert err.count("\n") == 1
