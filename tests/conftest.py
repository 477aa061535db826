"""Shared fixtures: the real MRBrainS18 data (when present) and one preprocessed nnU-Net world."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent

from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, NnunetWorld, build_world, train_original  # noqa: E402

from nnunet_unlearning.request import REQUEST_ENV, write_request  # noqa: E402
from nnunet_unlearning.workflows.profiles import THREADS_ENV  # noqa: E402

# Tests use tiny tensors, for which thread hand-offs cost more than they save (measured: a toy step takes
# 5 ms on one thread and 120 ms on two when the machine is busy); the trainings they spawn inherit the setting.
torch.set_num_threads(1)
os.environ[THREADS_ENV] = "1"

SHARED_MRBRAINS18 = TESTS.parents[1] / "shared" / "data" / "MRBrainS18"


@pytest.fixture()
def preprocessed(tmp_path, monkeypatch) -> Path:
    """An empty ``nnUNet_preprocessed`` folder of this test's own (plans files written by the test)."""
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def mrbrains18_root() -> Path:
    """The real MRBrainS18 training data beside the checkout, or skip the test with the reason."""
    if not (SHARED_MRBRAINS18 / "training").is_dir():
        pytest.skip(f"real MRBrainS18 data not found at {SHARED_MRBRAINS18} (only the shared workspace has it)")
    return SHARED_MRBRAINS18


@pytest.fixture(scope="session")
def nnunet_world(tmp_path_factory) -> NnunetWorld:
    """Dataset 501 converted (real data when present, else the phantom), planned coarse, preprocessed."""
    saved = dict(os.environ)
    real = SHARED_MRBRAINS18 if (SHARED_MRBRAINS18 / "training").is_dir() else None
    world = build_world(tmp_path_factory.mktemp("nnunet"), real)
    yield world
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def original_checkpoint(nnunet_world: NnunetWorld) -> Path:
    """A briefly trained nnUNetTrainer model of fold 0 (5 training cases, 2 held out)."""
    return train_original(nnunet_world)


@pytest.fixture()
def world(nnunet_world: NnunetWorld, monkeypatch) -> NnunetWorld:
    """The session world with its environment applied for this test only."""
    for key, value in nnunet_world.env().items():
        monkeypatch.setenv(key, value)
    return nnunet_world


@pytest.fixture(scope="session")
def forget_request_file(nnunet_world, original_checkpoint, tmp_path_factory) -> Path:
    """A request forgetting the first training case of fold 0 (written once, outside nnU-Net's folders)."""
    nnunet_world.apply()
    splits = json.loads((nnunet_world.preprocessed / DATASET_NAME / "splits_final.json").read_text())
    return write_request(
        DATASET_ID,
        CONFIGURATION,
        "0",
        PLANS,
        "nnUNetTrainer",
        [splits[0]["train"][0]],
        out=tmp_path_factory.mktemp("request") / "unlearning_request.json",
    )


@pytest.fixture()
def request_world(world, forget_request_file, monkeypatch):
    """The session world, with ``nnUNet_unlearning_request`` pointing at ``forget_request_file``."""
    monkeypatch.setenv(REQUEST_ENV, str(forget_request_file))
    return world


@pytest.fixture(scope="session")
def finished_runs(nnunet_world, forget_request_file) -> dict[str, Path]:
    """Output folders of short finished runs of the shared request: {"NoisyLabel": ..., "Retrain": ...}."""
    from nnunet_fixture import load_trainer, shorten

    from nnunet_unlearning.unlearning.retrain_trainer import nnUNetTrainerRetrain
    from nnunet_unlearning.unlearning.schedules import trainer_family
    from nnunet_unlearning.unlearning.strategies import NoisyLabel

    previous = os.environ.get(REQUEST_ENV)
    os.environ[REQUEST_ENV] = str(forget_request_file)
    folders = {}
    try:
        for name, cls in (
            ("NoisyLabel", trainer_family(NoisyLabel, __name__)["nnUNetTrainerUnlearnNoisyLabel"]),
            ("Retrain", nnUNetTrainerRetrain),
        ):
            trainer = load_trainer(cls, nnunet_world)
            shorten(trainer)
            trainer.run_training()
            folders[name] = Path(trainer.output_folder)
    finally:
        if previous is None:
            os.environ.pop(REQUEST_ENV)
        else:
            os.environ[REQUEST_ENV] = previous
    return folders


@pytest.fixture()
def finished_run_copies(finished_runs, tmp_path) -> dict[str, Path]:
    """Copies of ``finished_runs`` (whole trainer folders) under tmp_path/results, for tests that write into
    run folders; the session's runs stay as they were for every other test."""
    copies = {}
    for name, fold in finished_runs.items():
        target = tmp_path / "results" / fold.parent.parent.name / fold.parent.name
        shutil.copytree(fold.parent, target)
        copies[name] = target / fold.name
    return copies


#: The test trainer ``console_script_run`` runs (tests/trainers_for_tests: one epoch of two steps).
CONSOLE_SCRIPT_TRAINER = "nnUNetTrainerUnlearnNoisyLabel_test"


@pytest.fixture(scope="session")
def console_script_run(nnunet_world, forget_request_file, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(fold folder, environment) of one real ``nnUNetv2_train`` unlearning run of the shared request, calibrated
    through a run config, with nnU-Net's final validation: the console script finds our trainer through
    ``nnUNet_extTrainer``."""
    import subprocess
    import sys

    from nnunet_unlearning.nnunet.trainers_dir import trainers_dir
    from nnunet_unlearning.unlearning.run_config import CONFIG_ENV

    config = tmp_path_factory.mktemp("console_run") / "calibrated.json"
    config.write_text(json.dumps({"calibration": {"enabled": True, "check_every": 1}}))
    env = {
        **os.environ,
        **nnunet_world.env(),
        "nnUNet_extTrainer": os.pathsep.join([str(trainers_dir()), str(TESTS / "trainers_for_tests")]),
        "nnUNet_def_n_proc": "1",
        REQUEST_ENV: str(forget_request_file),
        CONFIG_ENV: str(config),
    }
    command = [str(Path(sys.executable).parent / "nnUNetv2_train"), str(DATASET_ID), CONFIGURATION, "0"]
    done = subprocess.run(
        [*command, "-tr", CONSOLE_SCRIPT_TRAINER, "-device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = nnunet_world.results / DATASET_NAME / f"{CONSOLE_SCRIPT_TRAINER}__{PLANS}__{CONFIGURATION}" / "fold_0"
    return folder, env
