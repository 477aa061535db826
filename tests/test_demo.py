"""The demo's own logic (its whole run is `make demo`; its steps are tested through the shared fixtures)."""

from __future__ import annotations

import json

import pytest
from nnunet_fixture import PLANS

from nnunet_unlearning.artifacts import FINAL_CHECKPOINT, METRICS_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.workflows.demo import (
    CALIBRATED_CONFIG,
    MARKER,
    ORIGINAL,
    STRATEGY,
    UNLEARN,
    Schedule,
    format_headline,
    headline,
    unlearn_then_retrain,
)


def test_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--workdir", str(tmp_path)]) == 2
    assert "not an earlier demo folder" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_needs_overwrite_to_replace_an_earlier_run(tmp_path, capsys):
    (tmp_path / MARKER).write_text("")
    (tmp_path / "old").write_text("")
    assert main(["demo", "--workdir", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "old").is_file()


def test_headline_comes_from_the_runs_files(finished_runs):
    summary = headline(finished_runs["NoisyLabel"], finished_runs["Retrain"])
    unlearned = json.loads((finished_runs["NoisyLabel"] / "unlearning_metrics.json").read_text())
    retrained = json.loads((finished_runs["Retrain"] / "unlearning_metrics.json").read_text())
    certificate = json.loads((finished_runs["NoisyLabel"] / "unlearning_certificate.json").read_text())
    strategy = summary["strategy"]
    assert strategy == unlearned["trainer"].removeprefix("nnUNetTrainerUnlearn")
    assert summary["dice"]["original"]["forget"] == unlearned["evaluations"][0]["sets"]["forget"]["dice"]
    assert summary["dice"]["retrain oracle"]["retain"] == retrained["evaluations"][-1]["sets"]["retain"]["dice"]
    assert summary["forget_dice_gap_to_retrain"] == (
        summary["dice"][strategy]["forget"] - summary["dice"]["retrain oracle"]["forget"]
    )
    assert summary["speedup"] == retrained["seconds"]["wall"] / unlearned["seconds"]["wall"]
    assert summary["verdict"]["overall"] == certificate["verdict"]["overall"]
    assert summary["schedules"] == {"original and retrain oracle": str(ORIGINAL), "unlearning at most": str(UNLEARN)}
    table = format_headline(summary)
    assert table.count("\n| ") == 3 and "forget drop" in table  # one row per model
    assert f"certificate verdict: {certificate['verdict']['overall']}." in table
    assert "MIA efficacy" not in table  # no audit given


def test_headline_reads_the_audit_and_words_follow_the_numbers():
    summary = {
        "strategy": "NoisyLabel",
        "dice": {
            m: {"forget": 0.7, "retain": 0.75, "heldout": 0.72} for m in ("original", "NoisyLabel", "retrain oracle")
        },
        "figures": {"forget_drop_pct": 1.0, "retain_retention_pct": 99.0},
        "forget_dice_gap_to_retrain": 0.01,
        "seconds": {"unlearning": 400.0, "retrain": 200.0},
        "speedup": 0.5,
        "verdict": {"overall": "met", "text": "", "forgetting": "inside the band.", "calibration": None},
        "mia_efficacy": {"original": 0.60, "NoisyLabel": 0.52, "retrain oracle": 0.50},
    }
    table = format_headline(summary)
    assert "MIA efficacy" in table and "not faster than retraining" in table
    assert "closer to the retrain oracle than the original was" in table
    summary["mia_efficacy"]["NoisyLabel"] = 0.40
    summary["speedup"], summary["seconds"]["unlearning"] = 4.0, 50.0
    table = format_headline(summary)
    assert "no closer to the retrain oracle" in table and "4.0× faster than retraining" in table


@pytest.mark.slow
def test_calibrated_unlearning_then_the_oracle_train(world, forget_request_file, tmp_path):
    config = tmp_path / "calibrated_run.json"
    config.write_text(json.dumps(CALIBRATED_CONFIG))
    results = tmp_path / "nnUNet_results"
    unlearned, retrained = unlearn_then_retrain(
        results, forget_request_file, config, "the first case", PLANS, Schedule(2, 2), Schedule(1, 2)
    )
    assert unlearned.parent.name.startswith(f"nnUNetTrainerUnlearn{STRATEGY}__") and unlearned.is_relative_to(results)
    assert retrained.parent.name.startswith("nnUNetTrainerRetrain__") and retrained.is_relative_to(results)
    for folder in (unlearned, retrained):
        assert (folder / FINAL_CHECKPOINT).is_file()
    # the unlearning run read its run config: it is calibrated, on patches, under the memorisation reference
    calibration = json.loads((unlearned / METRICS_FILE).read_text())["calibration"]
    assert calibration["checks"] and calibration["settings"]["scores"] == "patches"
    assert calibration["settings"]["patience"] == 4
    assert calibration["criteria"]["reference"] == "memorisation"
    assert json.loads((retrained / METRICS_FILE).read_text())["calibration"] is None
    assert {p.name for p in (tmp_path / "logs").iterdir()} == {
        f"nnUNetTrainerUnlearn{STRATEGY}.txt",
        "nnUNetTrainerRetrain.txt",
    }
