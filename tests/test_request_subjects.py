"""`forget --subjects`: a patient, not a case; through the converter's subjects.json or a user's CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, forget_args

from nnunet_unlearning.cli import main
from nnunet_unlearning.request import build_request


def _split(world) -> dict:
    return json.loads((world.preprocessed / DATASET_NAME / "splits_final.json").read_text())[0]


def _args(*more: str) -> list[str]:
    return forget_args(*more)


def _csv(path: Path, rows: list[tuple[str, str]], header: str = "case,subject") -> Path:
    path.write_text(header + "\n" + "".join(f"{case},{subject}\n" for case, subject in rows))
    return path


def test_subject_from_the_converters_subjects_file(world, original_checkpoint):
    case = _split(world)["train"][0]
    subject = json.loads((world.raw / DATASET_NAME / "subjects.json").read_text())["cases"][case]["subject"]
    request = build_request(DATASET_ID, CONFIGURATION, "0", PLANS, "nnUNetTrainer", [], subjects=[subject])
    assert request.forget == (case,)
    assert request.subjects == {
        "source": str((world.raw / DATASET_NAME / "subjects.json").resolve()),
        "cases": {subject: [case]},
    }
    assert case not in request.retain


def test_a_subject_with_several_cases_is_forgotten_whole(world, original_checkpoint, tmp_path):
    split = _split(world)
    train, val = split["train"], split["val"]
    # P1 has two training cases and one case nnU-Net's case-level split put into validation
    rows = [(train[0], "P1"), (train[1], "P1"), (val[0], "P1")]
    rows += [(c, f"S{i}") for i, c in enumerate(train[2:] + val[1:])]
    csv_file = _csv(tmp_path / "subjects.csv", rows)
    out = tmp_path / "request.json"
    assert main(_args("--subjects", "P1", "--subject-map", str(csv_file), "-o", str(out))) == 0
    written = json.loads(out.read_text())
    assert written["forget"] == sorted(train[:2])
    assert written["retain"] == sorted(train[2:])
    # the model saw P1 through its training cases: P1's validation case is no longer "never seen"
    assert written["heldout"] == sorted(val[1:])
    assert written["subjects"]["cases"] == {"P1": sorted([train[0], train[1], val[0]])}


def _refusal(capsys, args: list[str], message: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_subject_requests_are_one_line(world, original_checkpoint, tmp_path, capsys):
    split = _split(world)
    train, val = split["train"], split["val"]
    csv_file = _csv(tmp_path / "ok.csv", [(c, c[-3:]) for c in train] + [(val[0], "VAL")])
    out = tmp_path / "never.json"
    _refusal(capsys, _args("--subjects", "nobody", "--subject-map", str(csv_file)), "subject nobody: unknown in")
    _refusal(
        capsys,
        _args("--subjects", "VAL", "--subject-map", str(csv_file)),
        f"subject VAL: none of its cases ({val[0]}) is in the original model's training split of fold 0",
    )
    unknown = _csv(tmp_path / "unknown.csv", [(train[0], "A"), ("MRBrainS18_999", "B")])
    _refusal(
        capsys,
        _args("--subjects", "A", "--subject-map", str(unknown)),
        "line 3: case MRBrainS18_999 is not a case of this dataset",
    )
    twice = _csv(tmp_path / "twice.csv", [(train[0], "A"), (train[0], "B")])
    _refusal(capsys, _args("--subjects", "A", "--subject-map", str(twice)), f"line 3: case {train[0]} is listed twice")
    header = _csv(tmp_path / "header.csv", [(train[0], "A")], header="id,patient")
    _refusal(capsys, _args("--subjects", "A", "--subject-map", str(header)), "the first line must be the header")
    everyone = _csv(tmp_path / "everyone.csv", [(c, "ALL") for c in train])
    _refusal(capsys, _args("--subjects", "ALL", "--subject-map", str(everyone)), "leaves no retain set")
    _refusal(capsys, _args("--cases", train[0], "--subject-map", str(csv_file)), "it cannot be used with --cases")
    _refusal(capsys, _args("--subjects", "x", "x", "--subject-map", str(csv_file)), "subject x: given more than once")
    assert not out.exists()


def test_cases_and_subjects_are_exclusive(world, original_checkpoint, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(_args("--cases", "MRBrainS18_1", "--subjects", "1"))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "argument --subjects: not allowed with argument --cases" in err and err.count("\n") == 1


def test_without_subjects_file_or_csv_the_user_is_told_what_to_give(
    world, original_checkpoint, capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))  # a raw folder without the converter's subjects.json
    _refusal(capsys, _args("--subjects", "1"), "subjects.json: not found, so subjects cannot be resolved")
