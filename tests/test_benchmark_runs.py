"""One failed training does not stop the benchmark: it is reported with its trainer and error."""

from __future__ import annotations

from nnunet_unlearning.workflows.benchmark_runs import Run, train_runs


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
