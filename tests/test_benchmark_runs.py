"""One failed training does not stop the benchmark: it is reported with its trainer and error; a run's own
augmentation workers travel with it, to its process and to its scheduler line."""

from __future__ import annotations

import shlex
from pathlib import Path

from nnunet_unlearning.workflows import benchmark_tuning as tuning
from nnunet_unlearning.workflows.benchmark_runs import Run, command_line, train_runs
from nnunet_unlearning.workflows.profiles import CPU


def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path):
    missing = Run(
        "nnUNetTrainerNoSuchThing",
        "Dataset502_MRBrainS18",
        "3d_fullres",
        "nnUNetMed3DPlans",
        1,
        1,
        tmp_path / "forget_1" / "nnUNet_results",
    )
    lines = []
    failures = train_runs(
        [missing], {"nnUNet_raw": str(tmp_path), "nnUNet_preprocessed": str(tmp_path)}, "cpu", 1, progress=lines.append
    )
    assert len(failures) == 1
    assert failures[0].startswith(
        "nnUNetTrainerNoSuchThing (forget_1): UserInputError: trainer 'nnUNetTrainerNoSuchThing': not found"
    )
    assert "FAILED" in lines[-1] and not missing.finished


def test_unlearning_runs_carry_their_own_augmentation_workers(tmp_path):
    """The CPU profile augments an unlearning run's batches in its own process (0 workers) while the original
    and the oracles keep the environment's worker: every grid point and judged run inherits it from the base."""
    assert CPU.unlearning_augmentation_workers == 0 and CPU.augmentation_workers == 1
    base = Run("", "D", "3d_fullres", "p", 0, 20, Path(), tmp_path / "request.json", augmentation_workers=0)
    runs = tuning.judged_runs([tuning.GridPoint("SCRUB", 0.5, 2)], tmp_path, base, longest=5, check_steps=5)
    assert len(runs) == 3 and all(run.augmentation_workers == 0 for run in runs)
    environment = {"nnUNet_n_proc_DA": "1", "nnUNet_raw": str(tmp_path)}

    def variables(run: Run) -> dict[str, str]:
        words = shlex.split(command_line(run, environment, "cpu"))
        return dict(w.split("=", 1) for w in words[1 : words.index("nnUNetv2_train")])

    assert variables(runs[2])["nnUNet_n_proc_DA"] == "0"
    oracle = Run("nnUNetTrainerRetrain", "D", "3d_fullres", "p", 10, 80, tmp_path / "o", tmp_path / "request.json")
    assert oracle.augmentation_workers is None and variables(oracle)["nnUNet_n_proc_DA"] == "1"
