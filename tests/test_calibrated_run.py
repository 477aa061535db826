"""Calibrated runs through nnU-Net's trainer on the shared CPU fixture (in-process, as ``nnUNetv2_train`` runs it).

Four runs of NoisyLabel under the run config's ``calibration`` section: one whose band is so wide that the
original already meets it (it stops before any step and certifies the original's weights), one whose
band is a single point (never met), so the run checks every epoch until over-forgetting, the utility
budget or the end of its schedule stops it, one under the memorisation reference, and one checked on
patches (`patch_hook`). What each decides
depends on the data (real MRBrainS18 or the phantom); what is asserted holds whatever it decides: the
record, the rollback, the folder, the verdict.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from nnunet_fixture import load_trainer

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, METRICS_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.evidence.report import write_report
from nnunet_unlearning.nnunet.glue import bare_network
from nnunet_unlearning.unlearning.run_config import CONFIG_ENV
from nnunet_unlearning.unlearning.schedules import trainer_family
from nnunet_unlearning.unlearning.strategies import NoisyLabel

_BASE = trainer_family(NoisyLabel, __name__)["nnUNetTrainerUnlearnNoisyLabel"]


def _calibrated_run(
    name: str, acceptance: dict, world, tmp_path, monkeypatch, calibration: dict | None = None
) -> tuple[Any, Path, dict]:
    config = {
        "epochs": 3,
        "iterations_per_epoch": 2,
        "acceptance": acceptance,
        "calibration": {"enabled": True, "check_every": 1, **(calibration or {})},
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / f"{name}.json"))
    trainer = load_trainer(type(f"nnUNetTrainerUnlearnNoisyLabel_{name}", (_BASE,), {}), world)
    trainer.num_val_iterations_per_epoch = 1
    trainer.run_training()
    folder = Path(trainer.output_folder)
    return trainer, folder, json.loads((folder / METRICS_FILE).read_text())


def _by_tag(metrics: dict, tag: str) -> dict:
    return next(e for e in metrics["evaluations"] if e["tag"] == tag)


def _case_dice(evaluation: dict) -> dict:
    return {case: values["mean"]["dice"] for case, values in evaluation["cases"].items()}


@pytest.mark.slow
def test_an_original_inside_a_wide_band_is_certified_without_a_step(
    request_world, original_checkpoint, tmp_path, monkeypatch
):
    trainer, folder, metrics = _calibrated_run(
        "calwide", {"reference": "heldout", "tolerance": 100.0}, request_world, tmp_path, monkeypatch
    )
    decision = metrics["calibration"]["decision"]
    assert decision["reason"] == "forgotten" and decision["target_reached"]
    assert (decision["steps_used"], metrics["steps_taken"], len(metrics["calibration"]["checks"])) == (0, 0, 1)
    # checked before nnU-Net's data loading: no dataloader or augmentation worker was started, and the model
    # folder still holds what nnUNetv2_predict reads besides the checkpoint
    assert (trainer.dataloader_train, trainer.dataloader_val, trainer.dataloader_forget) == (None, None, None)
    assert all((folder.parent / name).is_file() for name in ("plans.json", "dataset.json"))
    final = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    original = torch.load(original_checkpoint, map_location="cpu", weights_only=False)["network_weights"]
    assert all(torch.equal(final[key], original[key]) for key in original)
    assert _case_dice(_by_tag(metrics, "end")) == _case_dice(_by_tag(metrics, "start"))
    # the end is the start's evaluation again, which cost nothing more
    assert _by_tag(metrics, "end")["seconds"] == 0.0 and metrics["seconds"]["evaluation"] <= metrics["seconds"]["wall"]
    certificate = json.loads((folder / CERTIFICATE_JSON).read_text())
    assert certificate["verdict"]["criteria"]["forgetting"]["verdict"] == "met"
    assert "certifies the state after epoch 0 (0 steps)" in certificate["verdict"]["calibration"]


@pytest.mark.slow
def test_a_calibrated_run_checks_every_epoch_and_certifies_the_state_it_keeps(
    request_world, original_checkpoint, tmp_path, monkeypatch, capsys
):
    point_band = {"reference": "heldout", "z": 0.0, "tolerance": 0.0, "utility_budget": 0.5}
    _, folder, metrics = _calibrated_run("calpoint", point_band, request_world, tmp_path, monkeypatch)
    calibration = metrics["calibration"]
    checks, decision = calibration["checks"], calibration["decision"]
    print("calibration decision:", json.dumps(decision), "checks:", json.dumps(checks))

    assert decision["reason"] in ("over_forgotten", "utility_budget", "schedule_end", "forgotten")
    assert [c["tag"] for c in checks] == ["start"] + [f"epoch_{e}" for e in range(1, len(checks))]
    assert [c["steps"] for c in checks] == [2 * e for e in range(len(checks))]
    assert decision["stopped_at_epoch"] == len(checks) - 1 and metrics["steps_taken"] == decision["steps_taken"]
    if decision["reason"] != "forgotten":  # a point band is met only by an exact tie
        assert not decision["target_reached"]
        within = [c for c in checks if c["within_budget"]]
        assert decision["kept_epoch"] == min(within, key=lambda c: (c["distance"], c["epoch"]))["epoch"]

    # the certified model is the kept state: the end evaluation repeats its check case by case, at its epoch
    assert _case_dice(_by_tag(metrics, "end")) == _case_dice(_by_tag(metrics, decision["kept_tag"]))
    assert _by_tag(metrics, "end")["epoch"] == decision["kept_epoch"]
    assert sorted(p.name for p in folder.glob("*.pth")) == ["checkpoint_final.pth"]
    assert not (folder / "unlearning_resume_state.json").exists()
    # nnU-Net's debug.json (str() of every trainer attribute) names the original's and the kept weights, no dump
    debug = json.loads((folder / "debug.json").read_text())
    assert "tensor(" not in json.dumps(debug) and debug["_original_weights"].endswith(" tensors>")
    # each check after the first (the start's evaluation) counts its copy of the network and its recalibration
    # as evaluation time beside its scoring
    evaluation, scored = metrics["seconds"]["evaluation"], sum(e["seconds"] for e in metrics["evaluations"])
    assert evaluation > scored if len(checks) > 1 else evaluation == scored
    assert evaluation <= metrics["seconds"]["wall"]

    certificate = json.loads((folder / CERTIFICATE_JSON).read_text())
    verdict = certificate["verdict"]
    kept_state = next(c for c in checks if c["tag"] == decision["kept_tag"])["state"]
    assert (verdict["criteria"]["forgetting"]["verdict"] == "met") == (kept_state == "forgotten")
    assert verdict["acceptance"]["z"] == 0.0 and verdict["calibration"].startswith("Calibrated run: stopped")
    capsys.readouterr()
    assert main(["verify", str(folder)]) == 0
    assert main(["verify", str(folder), "--require-met"]) == (0 if verdict["overall"] == "met" else 1)
    out = capsys.readouterr().out
    assert f"verdict  overall: {verdict['overall']}" in out and "recomputed from the certified metrics" in out

    report = write_report([folder], tmp_path / "report").read_text()
    section = report.split("## Calibrated runs", 1)[1].split("\n## ", 1)[0]
    assert verdict["calibration"] in section
    assert sum(line.startswith(("| start |", "| epoch_")) for line in section.splitlines()) == len(checks)


@pytest.mark.slow
def test_the_memorisation_reference_aims_at_the_start_score_less_the_originals_memorisation(
    request_world, original_checkpoint, tmp_path, monkeypatch
):
    acceptance = {"utility_budget": 0.5}  # the default reference: the memorisation one
    _, folder, metrics = _calibrated_run("calmem", acceptance, request_world, tmp_path, monkeypatch)
    checks, decision = metrics["calibration"]["checks"], metrics["calibration"]["decision"]
    start = _case_dice(_by_tag(metrics, "start"))

    def mean(cases: list[str]) -> float:
        return sum(start[c] for c in cases) / len(cases)

    memorisation = max(mean(metrics["retain"]) - mean(metrics["heldout"]), 0.0)
    target = mean(metrics["forget"]) - memorisation
    assert all(c["memorisation"] == pytest.approx(memorisation) for c in checks)
    assert all(
        c["target"] == pytest.approx(target) and c["half_width"] == pytest.approx(memorisation / 2) for c in checks
    )
    # the original lies a whole memorisation above its target: outside a band of half that width, unless the
    # original memorised nothing measurable (then it is its own target)
    assert checks[0]["state"] == ("remembered" if memorisation > 0 else "forgotten")
    assert (decision["steps_taken"] > 0) == (memorisation > 0)
    forgetting = json.loads((folder / CERTIFICATE_JSON).read_text())["verdict"]["criteria"]["forgetting"]
    assert "the memorisation band" in forgetting["text"]
    assert forgetting["numbers"]["memorisation"] == pytest.approx(memorisation)


def test_a_calibrated_run_refuses_to_resume(request_world, tmp_path, monkeypatch, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"calibration": {"enabled": True}}))
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "c.json"))
    cls = type("nnUNetTrainerUnlearnNoisyLabel_calresume", (_BASE,), {})
    with pytest.raises(SystemExit) as exit_info:
        load_trainer(cls, request_world, continue_training=True)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nnUNetTrainerUnlearnNoisyLabel_calresume: error: ")
    assert "a calibrated run cannot be resumed with --c" in err[-1]


@pytest.mark.slow
def test_checks_on_patches_leave_whole_volume_scoring_to_the_start_and_the_end(
    request_world, original_checkpoint, tmp_path, monkeypatch
):
    point_band = {"reference": "heldout", "z": 0.0, "tolerance": 0.0, "utility_budget": 0.5}
    patches = {"scores": "patches", "patches_per_case": 3}
    trainer, folder, metrics = _calibrated_run("calpatch", point_band, request_world, tmp_path, monkeypatch, patches)
    calibration = metrics["calibration"]
    checks, decision = calibration["checks"], calibration["decision"]
    assert calibration["settings"]["scores"] == "patches" and calibration["settings"]["patches_per_case"] == 3
    assert [c["tag"] for c in checks] == ["start"] + [f"epoch_{e}" for e in range(1, len(checks))]
    # the checks are not whole-volume evaluations: the record holds only the start and the certified end,
    # scored afresh at the kept check's epoch (the original kept: the start's evaluation, at no cost); the
    # checks' cost still counts as evaluation time
    assert [e["tag"] for e in metrics["evaluations"]] == ["start", "end"]
    end = _by_tag(metrics, "end")
    assert end["epoch"] == decision["kept_epoch"]
    if decision["kept_epoch"] == 0:
        assert end["seconds"] == 0.0 and _case_dice(end) == _case_dice(_by_tag(metrics, "start"))
    else:
        assert end["seconds"] > 0
    assert metrics["seconds"]["evaluation"] > sum(e["seconds"] for e in metrics["evaluations"])
    # the certified network is the state the kept check scored: its patch scores again
    kept = next(c for c in checks if c["tag"] == decision["kept_tag"])
    trainer.set_deep_supervision_enabled(False)
    again = trainer.check_hook.evaluate(bare_network(trainer.network), "again", 0)
    assert again.sets["forget"]["dice"] == pytest.approx(kept["forget_mean"], abs=1e-6)
    assert again.sets["retain"]["n_cases"] == len(metrics["retain"])
    # check 0's patch scores of the original are kept: a later request against it predicts no case again
    original = copy.deepcopy(bare_network(trainer.network))
    original.load_state_dict(trainer._original_weights)
    reused = trainer.check_hook.evaluate(original, "start", 0, trainer._kept_scores())
    assert reused.reused == sorted(reused.cases)
    assert reused.sets["forget"]["dice"] == pytest.approx(checks[0]["forget_mean"], abs=1e-6)
    verdict = json.loads((folder / CERTIFICATE_JSON).read_text())["verdict"]
    assert verdict["calibration"].startswith("Calibrated run: stopped")
