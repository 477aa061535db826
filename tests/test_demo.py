"""The demo's own logic (its whole run is `make demo`; its steps are tested through the shared fixtures)."""

from __future__ import annotations

import json

from nnunet_unlearning.cli import main
from nnunet_unlearning.workflows.demo import MARKER, format_headline, headline


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


def test_headline_comes_from_the_runs_metrics(finished_runs):
    summary = headline(finished_runs["NoisyLabel"], finished_runs["Retrain"])
    unlearned = json.loads((finished_runs["NoisyLabel"] / "unlearning_metrics.json").read_text())
    retrained = json.loads((finished_runs["Retrain"] / "unlearning_metrics.json").read_text())
    assert summary["dice"]["original"]["forget"] == unlearned["evaluations"][0]["sets"]["forget"]["dice"]
    assert summary["dice"]["retrain oracle"]["retain"] == retrained["evaluations"][-1]["sets"]["retain"]["dice"]
    assert summary["forget_dice_gap_to_retrain"] == (
        summary["dice"]["NoisyLabel"]["forget"] - summary["dice"]["retrain oracle"]["forget"]
    )
    table = format_headline(summary)
    assert table.count("\n| ") == 3 and "forget drop" in table  # one row per model
