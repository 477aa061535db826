"""Torch threads per CPU training: the machine's cores shared between the trainings run side by side, or the
user's setting; a bad setting is refused in one line before any training starts."""

from __future__ import annotations

import os

import pytest

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.workflows import profiles
from nnunet_unlearning.workflows.benchmark_runs import Run, train_runs


def test_one_training_takes_every_core_and_side_by_side_ones_share_them(monkeypatch):
    monkeypatch.delenv(profiles.THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    assert [profiles.cpu_threads(n) for n in (1, 2, 3, 8)] == [4, 2, 1, 1]


def test_the_setting_wins_and_a_bad_one_is_refused_before_any_training(monkeypatch, tmp_path):
    monkeypatch.setenv(profiles.THREADS_ENV, "3")
    assert profiles.cpu_threads(2) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(profiles.THREADS_ENV, bad)
        with pytest.raises(UserInputError, match=f"{profiles.THREADS_ENV}={bad}: must be a positive integer"):
            profiles.cpu_threads()
    run = Run("nnUNetTrainerRetrain", "Dataset999_None", "3d_fullres", "nnUNetPlans", 1, 1, tmp_path / "results")
    with pytest.raises(UserInputError, match=profiles.THREADS_ENV):
        train_runs([run], {}, "cpu", jobs=2, progress=lambda _: None)
    assert not (tmp_path / "results").exists()  # nothing was started
