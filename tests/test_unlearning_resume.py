"""``--c`` resumes an unlearning run where it stopped, and a run folder never holds a partly unlearned model.

A real ``nnUNetv2_train`` subprocess is killed in the middle of its second epoch and resumed with ``--c``;
its record and certificate are compared with those of an uninterrupted run of the same trainer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS

from nnunet_unlearning.artifacts import (
    BEST_CHECKPOINT,
    CERTIFICATE_JSON,
    FINAL_CHECKPOINT,
    LATEST_CHECKPOINT,
    METRICS_FILE,
    RESUME_STATE_FILE,
)
from nnunet_unlearning.nnunet.trainers_dir import trainers_dir

TESTS = Path(__file__).resolve().parent
TRAINER = "nnUNetTrainerUnlearnSCRUB_resume_test"  # 2 epochs × 2 steps (tests/trainers_for_tests)
EPOCHS, STEPS_PER_EPOCH = 2, 2


def _command(continue_training: bool) -> list[str]:
    return [
        str(Path(sys.executable).parent / "nnUNetv2_train"),
        str(DATASET_ID),
        CONFIGURATION,
        "0",
        "-tr",
        TRAINER,
        "-device",
        "cpu",
        *(["--c"] if continue_training else []),
    ]


def _env(results: Path) -> dict[str, str]:
    return {
        **os.environ,
        "nnUNet_results": str(results),
        "nnUNet_def_n_proc": "1",
        "nnUNet_extTrainer": os.pathsep.join([str(trainers_dir()), str(TESTS / "trainers_for_tests")]),
    }


def _run_folder(results: Path) -> Path:
    return results / DATASET_NAME / f"{TRAINER}__{PLANS}__{CONFIGURATION}" / "fold_0"


def _train(results: Path, continue_training: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run(_command(continue_training), env=_env(results), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _log(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted(folder.glob("training_log_*.txt")))


def _epoch_starts(log: str, epoch: int) -> int:
    """How often nnU-Net's log says that ``epoch`` started (its lines read ``<time>: Epoch N ``)."""
    return len(re.findall(rf": Epoch {epoch} *$", log, flags=re.MULTILINE))


def _kill_in_second_epoch(results: Path) -> None:
    """Start the run and kill it (SIGKILL, as an out-of-memory killer or a cluster's time limit would) once
    epoch 1 has started, i.e. after nnU-Net finished writing the latest checkpoint of epoch 0."""
    folder = _run_folder(results)
    results.mkdir(parents=True)
    output = results / "nnUNetv2_train.out"
    with output.open("w") as sink:
        process = subprocess.Popen(
            _command(False), env=_env(results), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 500
        while not _epoch_starts(_log(folder) if folder.is_dir() else "", 1):
            assert process.poll() is None, f"the run ended before it was interrupted:\n{output.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "epoch 1 never started"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_killed_run_resumes_at_its_epoch_and_ends_like_an_uninterrupted_one(request_world, tmp_path):
    interrupted = tmp_path / "interrupted"
    _kill_in_second_epoch(interrupted)
    folder = _run_folder(interrupted)
    assert (folder / LATEST_CHECKPOINT).is_file() and not (folder / FINAL_CHECKPOINT).is_file()
    assert not (folder / BEST_CHECKPOINT).is_file()
    checkpoint = torch.load(folder / LATEST_CHECKPOINT, map_location="cpu", weights_only=False)
    state = torch.load(folder / RESUME_STATE_FILE, weights_only=True)
    assert checkpoint["current_epoch"] == state["epoch"] == 1
    assert state["steps_taken"] == STEPS_PER_EPOCH and state["strategy"] == {"_steps": STEPS_PER_EPOCH}
    assert state["generator"] is not None
    before_kill = json.loads((folder / METRICS_FILE).read_text())
    assert before_kill["seconds"]["prepare"] > 0  # written once the preparation was done, before any epoch

    _train(interrupted, continue_training=True)
    log = _log(folder)
    assert [_epoch_starts(log, epoch) for epoch in range(EPOCHS)] == [1, 2]
    resumed = json.loads((folder / METRICS_FILE).read_text())
    assert resumed["resumed_at_epochs"] == [1]
    assert [e["tag"] for e in resumed["evaluations"]] == ["start", "end"]
    assert resumed["steps_taken"] == EPOCHS * STEPS_PER_EPOCH
    assert resumed["strategy_state"] == {"_steps": EPOCHS * STEPS_PER_EPOCH}  # SCRUB's alternation continued
    assert resumed["seconds"]["prepare"] == before_kill["seconds"]["prepare"]  # not counted twice
    assert sorted(p.name for p in folder.glob("*.pth")) == [FINAL_CHECKPOINT]
    assert not (folder / RESUME_STATE_FILE).exists()

    uninterrupted = tmp_path / "uninterrupted"
    _train(uninterrupted)
    reference_folder = _run_folder(uninterrupted)
    reference = json.loads((reference_folder / METRICS_FILE).read_text())
    assert reference["resumed_at_epochs"] == [] and reference["steps_taken"] == resumed["steps_taken"]
    assert reference["strategy_state"] == resumed["strategy_state"]
    assert reference["schedule"] == resumed["schedule"] and reference["hyperparameters"] == resumed["hyperparameters"]
    ours, theirs = (json.loads((f / CERTIFICATE_JSON).read_text()) for f in (folder, reference_folder))
    assert ours.keys() == theirs.keys() and ours["model"].keys() == theirs["model"].keys()
    assert ours["model"]["models_in_folder"] == theirs["model"]["models_in_folder"] == [FINAL_CHECKPOINT]
    assert ours["forgotten"]["cases"] == theirs["forgotten"]["cases"]
