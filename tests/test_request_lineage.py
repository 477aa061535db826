"""Requests that follow each other: a request from an unlearned model keeps everyone forgotten so far out.

Works on a copy of the session's finished NoisyLabel run (its certificate included) under a results folder of
its own, so that ``forget -tr nnUNetTrainerUnlearnNoisyLabel`` starts from that unlearned model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, forget_args

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, METRICS_FILE, REQUEST_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import sha256_file
from nnunet_unlearning.request import UnlearningRequest, build_request, lineage_root

UNLEARNED = "nnUNetTrainerUnlearnNoisyLabel"


@pytest.fixture()
def lineage(world, finished_runs, tmp_path, monkeypatch) -> tuple[Path, UnlearningRequest]:
    """(the copied unlearned run's fold folder, the request that produced it), nnUNet_results pointing at the
    copy (the request names the original model by its absolute path, which stays where it is)."""
    unlearned = finished_runs["NoisyLabel"]
    results = tmp_path / "results" / DATASET_NAME
    folder = results / unlearned.parent.name / unlearned.name
    shutil.copytree(unlearned, folder)
    assert (folder / CERTIFICATE_JSON).is_file()
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    return folder, UnlearningRequest.from_file(folder / REQUEST_FILE)


def _forget_args(*cases: str) -> list[str]:
    return forget_args("--cases", *cases, trainer=UNLEARNED)


def test_second_request_keeps_the_first_patient_out(lineage):
    folder, first = lineage
    second_case = first.retain[0]
    second = build_request(DATASET_ID, CONFIGURATION, "0", PLANS, UNLEARNED, [second_case])

    assert second.forgotten_before == first.forget
    assert second.forget == (second_case,)
    assert set(second.retain) == set(first.retain) - {second_case}
    assert not set(first.forget) & set(second.retain), "the first patient re-entered the retain set"
    assert second.heldout == first.heldout
    assert second.original.checkpoint_sha256 == sha256_file(folder / "checkpoint_final.pth")
    assert second.previous == {
        "request_id": first.request_id,
        "run_folder": str(folder.resolve()),
        "certificate": str((folder / CERTIFICATE_JSON).resolve()),
        "certificate_sha256": sha256_file(folder / CERTIFICATE_JSON),
    }
    # the recipe and the oracle's schedule are the trained original's, not the unlearning run's
    assert second.original.recipe == first.original.recipe
    assert lineage_root(second) == first.original


def test_second_request_round_trips_through_its_file(lineage, tmp_path):
    _, first = lineage
    second = build_request(DATASET_ID, CONFIGURATION, "0", PLANS, UNLEARNED, [first.retain[0]])
    path = tmp_path / "second.json"
    path.write_text(second.to_json())
    assert UnlearningRequest.from_file(path) == second


def test_cli_writes_the_second_request_and_names_the_lineage(lineage, tmp_path, capsys):
    _, first = lineage
    out = tmp_path / "second.json"
    assert main([*_forget_args(first.retain[0]), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"forgotten by earlier requests of this model lineage: {' '.join(first.forget)}" in printed
    written = json.loads(out.read_text())
    assert written["forgotten_before"] == list(first.forget)
    assert written["previous"]["request_id"] == first.request_id
    assert f"<Trainer>_request-{written['request_id'][:8]}__{PLANS}__{CONFIGURATION}/fold_0" in printed


def test_forgetting_a_forgotten_case_again_is_refused(lineage, capsys):
    _, first = lineage
    assert main(_forget_args(first.forget[0])) == 2
    err = capsys.readouterr().err
    assert f"case {first.forget[0]}: already forgotten by an earlier request" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_forgetting_everyone_left_is_refused(lineage, capsys):
    _, first = lineage
    assert main(_forget_args(*first.retain)) == 2
    err = capsys.readouterr().err
    assert f"forgetting all {len(first.retain)} training cases left in fold 0 leaves no retain set" in err
    assert err.count("\n") == 1


def test_a_previous_certificate_that_fails_verify_is_refused(lineage, tmp_path, capsys):
    folder, first = lineage
    metrics = json.loads((folder / METRICS_FILE).read_text())
    metrics["seconds"]["wall"] += 1.0  # evidence changed after certification
    (folder / METRICS_FILE).write_text(json.dumps(metrics))
    out = tmp_path / "second.json"
    assert main([*_forget_args(first.retain[0]), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the previous request's certificate fails verify (CHANGED" in err
    assert err.count("\n") == 1 and not out.exists()


def test_an_unfinished_unlearning_run_cannot_start_a_request(lineage, capsys):
    folder, first = lineage
    (folder / CERTIFICATE_JSON).unlink()
    with pytest.raises(UserInputError, match="has not finished"):
        build_request(DATASET_ID, CONFIGURATION, "0", PLANS, UNLEARNED, [first.retain[0]])


@pytest.mark.slow
def test_the_second_run_certifies_the_chain_and_verify_follows_it(lineage, world, finished_runs, tmp_path, monkeypatch):
    from nnunet_fixture import load_trainer, shorten

    from nnunet_unlearning.evidence.certificate import verify_certificate
    from nnunet_unlearning.request import REQUEST_ENV
    from nnunet_unlearning.unlearning.schedules import trainer_family
    from nnunet_unlearning.unlearning.strategies import NoisyLabel

    folder, first = lineage
    request_file = tmp_path / "second.json"
    request_file.write_text(
        build_request(DATASET_ID, CONFIGURATION, "0", PLANS, UNLEARNED, [first.retain[0]]).to_json()
    )
    monkeypatch.setenv(REQUEST_ENV, str(request_file))
    # the same strategy as the first request, whose run holds nnU-Net's default folder of this trainer
    same_strategy = trainer_family(NoisyLabel, __name__)[UNLEARNED]
    # trainers build their folders under the session's results, where the first request's run of this trainer is
    occupied = finished_runs["NoisyLabel"]
    first_files = {p: sha256_file(p) for p in occupied.rglob("*") if p.is_file()}
    trainer = load_trainer(same_strategy, world)
    shorten(trainer)
    assert trainer.request.forgotten_before == first.forget
    assert not set(first.forget) & set(trainer.request.retain)
    trainer.run_training()
    second = Path(trainer.output_folder)
    request_id = trainer.request.request_id
    assert (
        second
        == occupied.parent.with_name(f"{UNLEARNED}_request-{request_id[:8]}__{PLANS}__{CONFIGURATION}") / "fold_0"
    )
    assert list(second.glob("training_log_*.txt")), "nnU-Net's log follows the run"
    assert {p: sha256_file(p) for p in occupied.rglob("*") if p.is_file()} == first_files, "the first run changed"
    # nnUNetv2_predict -tr <folder's trainer part> serves it: nnU-Net finds the class by the checkpoint's name
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_unlearning.nnunet.trainers_dir import trainers_dir

    monkeypatch.setenv("nnUNet_extTrainer", str(trainers_dir()))
    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(second.parent), (0,))
    loaded = predictor.list_of_parameters[0]
    saved = torch.load(second / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)

    certificate = json.loads((second / CERTIFICATE_JSON).read_text())
    assert certificate["previous"]["request_id"] == first.request_id
    assert certificate["forgotten"]["forgotten_before"] == list(first.forget)
    assert certificate["files"]["previous_certificate"]["sha256"] == sha256_file(folder / CERTIFICATE_JSON)
    assert json.loads((second / METRICS_FILE).read_text())["retain"] == sorted(set(first.retain) - {first.retain[0]})

    result = verify_certificate(second / CERTIFICATE_JSON)
    assert result.ok, result.lines
    assert any(line.startswith(f"previous request {first.request_id}") for line in result.lines)

    metrics = json.loads((folder / METRICS_FILE).read_text())  # the first link's evidence changes
    metrics["seconds"]["wall"] += 1.0
    (folder / METRICS_FILE).write_text(json.dumps(metrics))
    broken = verify_certificate(second / CERTIFICATE_JSON)
    assert not broken.ok
    assert any(line.strip().startswith("CHANGED  metrics") for line in broken.lines)

    (folder / CERTIFICATE_JSON).unlink()  # the first link is gone
    missing = verify_certificate(second / CERTIFICATE_JSON)
    assert not missing.ok
    assert any(line.startswith("MISSING  previous certificate") for line in missing.lines)
