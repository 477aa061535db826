"""The package as users install it: the console script, and the trainers folder in a non-editable copy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAINER_MODULES = {"nnUNetTrainerUnlearn.py", "nnUNetTrainerRetrain.py", "nnUNetTrainerMed3D.py"}


def test_trainers_dir_of_this_checkout():
    script = Path(sys.executable).parent / "nnunet-unlearning"
    printed = subprocess.run([str(script), "trainers-dir"], capture_output=True, text=True, check=True).stdout
    folder = Path(printed.strip())
    assert folder.is_absolute() and {p.name for p in folder.glob("*.py")} >= TRAINER_MODULES


@pytest.mark.slow
def test_a_non_editable_install_carries_the_trainers_folder(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        cwd=tmp_path,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    printed = subprocess.run(
        [sys.executable, "-c", "from nnunet_unlearning.cli import main; main(['trainers-dir'])"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    ).stdout
    folder = Path(printed.strip())
    assert folder.resolve().is_relative_to(target.resolve())
    assert {p.name for p in folder.glob("*.py")} >= TRAINER_MODULES
    source = {p.relative_to(REPO) for p in (REPO / "nnunet_unlearning").rglob("*.py")}
    installed = {p.relative_to(target) for p in (target / "nnunet_unlearning").rglob("*.py")}
    assert source == installed
