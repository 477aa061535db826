"""The comparison report: table math on hand-made metrics, subgroups, and the report of real finished runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnunet_unlearning.artifacts import AUDIT_FILE, METRICS_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evidence.comparison import Model, mia_result, oracle_gaps, table_row
from nnunet_unlearning.evidence.report import write_report
from nnunet_unlearning.evidence.subgroups import group_rows, read_groups, restrict_evaluation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- hand-made metrics ----------------------------------------------------------------------------------------


def _evaluation(case_dice: dict[str, float | None], sets: dict[str, list[str]], mae: float = 0.1) -> dict:
    """An evaluation as the hook writes it: per-case means, and per-set aggregates computed by hand."""
    cases = {c: {"mean": {"dice": d, "hard_mae": mae, "soft_mae": mae}} for c, d in case_dice.items()}
    aggregates = {}
    for name, members in sets.items():
        defined = [case_dice[c] for c in members if case_dice[c] is not None]
        aggregates[name] = {
            "n_cases": len(members),
            "dice": sum(defined) / len(defined) if defined else None,
            "hard_mae": mae if members else None,
            "soft_mae": mae if members else None,
        }
    return {"tag": "end", "epoch": 1, "sets": aggregates, "cases": cases}


SETS = {"forget": ["f1"], "retain": ["r1", "r2", "r3"], "heldout": ["h1", "h2"]}


def _model(
    name: str,
    role: str,
    dice: dict,
    before: dict | None = None,
    wall: float | None = None,
    mia: dict | None = None,
    mae: float = 0.1,
) -> Model:
    end = _evaluation(dice, SETS, mae)
    return Model(
        name, role, name, None, None, end, None if before is None else _evaluation(before, SETS), (end,), mia, wall
    )


ORIGINAL = {"f1": 0.8, "r1": 0.9, "r2": 0.7, "r3": 0.8, "h1": 0.6, "h2": 0.7}
RETRAIN = {"f1": 0.5, "r1": 0.85, "r2": 0.75, "r3": 0.8, "h1": 0.65, "h2": 0.55}
UNLEARNED = {"f1": 0.4, "r1": 0.8, "r2": 0.6, "r3": None, "h1": 0.6, "h2": 0.6}


def test_oracle_gaps_and_avg_gap():
    run = {"dice_forget": 0.4, "dice_retain": 0.7, "dice_heldout": 0.6, "mae_forget": 0.2, "mia_efficacy": 0.9}
    oracle = {"dice_forget": 0.5, "dice_retain": 0.8, "dice_heldout": 0.6, "mae_forget": 0.1, "mia_efficacy": 0.6}
    gaps = oracle_gaps(run, oracle)
    assert gaps["gap_dice_forget"] == pytest.approx(-0.1)
    assert gaps["gap_mae_forget"] == pytest.approx(0.1)
    assert gaps["gap_mae_retain"] is None
    # mean |Δ| over Dice forget, retain, held-out and MIA efficacy: (0.1 + 0.1 + 0 + 0.3) / 4
    assert gaps["avg_gap"] == pytest.approx(0.125)
    assert gaps["avg_gap_terms"] == "dice_forget+dice_retain+dice_heldout+mia_efficacy"

    unaudited = oracle_gaps({**run, "mia_efficacy": None}, oracle)
    assert unaudited["avg_gap"] == pytest.approx(0.2 / 3)
    assert unaudited["avg_gap_terms"] == "dice_forget+dice_retain+dice_heldout"
    assert oracle_gaps(run, None)["avg_gap"] is None


def test_table_row_figures_gaps_and_speedup():
    oracle = _model("retrain", "oracle", RETRAIN, before=ORIGINAL, wall=1000.0)
    run = _model("unlearn", "unlearned", UNLEARNED, before=ORIGINAL, wall=50.0, mae=0.3)
    row = table_row(run, oracle)

    dice = {"forget": 0.4, "retain": (0.8 + 0.6) / 2, "heldout": 0.6}  # r3's undefined Dice left out
    before = {"forget": 0.8, "retain": 0.8, "heldout": 0.65}
    assert row["dice_retain"] == pytest.approx(dice["retain"])
    assert row["forget_drop_pct"] == pytest.approx(100 * (1 - dice["forget"] / before["forget"]))
    assert row["retain_retention_pct"] == pytest.approx(100 * dice["retain"] / before["retain"])
    assert row["dice_gap"] == pytest.approx(dice["retain"] - dice["forget"])
    assert row["mae_gap"] == pytest.approx(0.0)
    oracle_dice = {"forget": 0.5, "retain": 0.8, "heldout": 0.6}
    deltas = {name: dice[name] - oracle_dice[name] for name in dice}
    for name, delta in deltas.items():
        assert row[f"gap_dice_{name}"] == pytest.approx(delta)
    assert row["gap_mae_forget"] == pytest.approx(0.2)
    assert row["avg_gap"] == pytest.approx(sum(abs(d) for d in deltas.values()) / 3)
    assert row["speedup"] == pytest.approx(20.0)
    assert row["mia_efficacy"] is None and row["clinical_risk_forget"] is None

    oracle_row = table_row(oracle, oracle)
    assert oracle_row["avg_gap"] == 0 and oracle_row["speedup"] == 1
    lone = table_row(run, None)
    assert lone["avg_gap"] is None and lone["speedup"] is None and lone["forget_drop_pct"] is not None


def test_clinical_risk_is_read_from_the_evaluation():
    run = _model("unlearn", "unlearned", UNLEARNED)
    end = {**run.end, "clinical_risk": {"sets": {"forget": {"risk": 0.7}, "retain": {"risk": 0.2}}}}
    row = table_row(Model(run.name, run.role, None, None, None, end, None), None)
    assert (row["clinical_risk_forget"], row["clinical_risk_retain"], row["clinical_risk_heldout"]) == (0.7, 0.2, None)


def test_restrict_evaluation_means_over_member_cases():
    evaluation = _evaluation(UNLEARNED, SETS)
    restricted = restrict_evaluation(evaluation, SETS, {"r1", "r3", "h2"})
    assert restricted["sets"]["retain"] == {"n_cases": 2, "dice": 0.8, "hard_mae": 0.1, "soft_mae": 0.1}
    assert restricted["sets"]["forget"] == {"n_cases": 0, "dice": None, "hard_mae": None, "soft_mae": None}
    assert restricted["sets"]["heldout"]["dice"] == pytest.approx(0.6)
    assert set(restricted["cases"]) == {"r1", "r3", "h2"}
    # every case in one group: the set aggregates themselves
    everything = restrict_evaluation(evaluation, SETS, set(UNLEARNED))
    for name in SETS:
        assert everything["sets"][name]["dice"] == pytest.approx(evaluation["sets"][name]["dice"])


def test_group_rows_per_group_and_unlisted(tmp_path):
    original = _model("original", "original", ORIGINAL, before=ORIGINAL)
    oracle = _model("retrain", "oracle", RETRAIN, before=ORIGINAL, wall=10.0)
    run = _model("unlearn", "unlearned", UNLEARNED, before=ORIGINAL, wall=1.0)
    groups = {"f1": "F", "r1": "F", "h1": "F", "r2": "M", "h2": "M", "unknown_case": "M"}
    rows = group_rows([original, oracle, run], oracle, SETS, groups)

    assert [(r["group"], r["run"]) for r in rows] == [
        (g, m) for g in ("(unlisted)", "F", "M") for m in ("original", "retrain", "unlearn")
    ]
    by = {(r["group"], r["run"]): r for r in rows}
    female = by[("F", "unlearn")]
    assert (female["n_forget"], female["n_retain"], female["n_heldout"]) == (1, 1, 1)
    assert female["dice_retain"] == pytest.approx(0.8)
    assert female["retain_retention_pct"] == pytest.approx(100 * 0.8 / 0.9)
    assert female["gap_dice_retain"] == pytest.approx(0.8 - 0.85)
    male = by[("M", "unlearn")]
    assert male["n_forget"] == 0 and male["dice_forget"] is None and male["forget_drop_pct"] is None
    assert male["avg_gap"] == pytest.approx((abs(0.6 - 0.75) + abs(0.6 - 0.55)) / 2)
    assert by[("(unlisted)", "unlearn")]["n_retain"] == 1  # r3
    assert by[("(unlisted)", "unlearn")]["dice_retain"] is None  # its only case's Dice is undefined

    with pytest.raises(UserInputError, match="lists none of the runs' cases"):
        group_rows([run], None, SETS, {"other": "X"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case,sex\nf1,F\n", "needs the columns 'case' and 'group'"),
        ("case,group\nf1,F\nf1,M\n", "case f1 is listed more than once"),
        ("case,group\nf1,\n", "line 2 has an empty case or group"),
    ],
)
def test_read_groups_refuses_bad_files(tmp_path, text, message):
    path = tmp_path / "groups.csv"
    path.write_text(text)
    with pytest.raises(UserInputError, match=message) as error:
        read_groups(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_read_groups_extra_columns_and_spaces(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("case, group ,scanner\n f1 , F ,A\nr1,M,B\n")
    assert read_groups(path) == {"f1": "F", "r1": "M"}
    with pytest.raises(UserInputError, match="cannot read the groups file"):
        read_groups(tmp_path / "missing.csv")


def _audit_entry(sha: str, seed: int) -> dict:
    """An audit entry as audit.py writes it, from its own attack on small random features."""
    from nnunet_unlearning.evaluation.audit_attack import membership_attack

    rng = np.random.default_rng(seed)
    features = {
        name: {f"{name}{i}": rng.normal(size=(8, 6)) for i in range(2)} for name in ("retain", "heldout", "forget")
    }
    attack = membership_attack(features["retain"], features["heldout"], features["forget"], bootstrap=20, seed=seed)
    return {"folder": "/somewhere", "checkpoint_sha256": sha, **attack}


def test_mia_result_reads_the_audit_layout():
    entry = _audit_entry("abc", seed=0)
    result = mia_result(entry)
    assert result["mia_efficacy"] == entry["mia_efficacy"]["value"]
    assert result["mia_efficacy_ci"] == entry["mia_efficacy"]["ci95"]
    assert result["auc"] == entry["auc_forget_vs_heldout"]["value"]
    assert result["attack_auc"] == entry["attack_auc"]["value"]
    assert mia_result(None) is None and mia_result({"checkpoint_sha256": "abc"}) is None


# --- the report of real runs ----------------------------------------------------------------------------------


def _metrics(folder: Path) -> dict:
    return json.loads((folder / METRICS_FILE).read_text())


def _copy_run(folder: Path, root: Path) -> Path:
    """A copy of a run folder with nnU-Net's layout (<dataset>/<trainer>__<plans>__<config>/fold_N) under root."""
    target = root / folder.parent.parent.name / folder.parent.name / folder.name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("checkpoint_best.pth"))
    return target


def test_report_of_finished_runs(finished_runs, tmp_path):
    unlearned, retrain = finished_runs["NoisyLabel"], finished_runs["Retrain"]
    m_unlearned, m_retrain = _metrics(unlearned), _metrics(retrain)
    cases = sorted(set(m_unlearned["forget"]) | set(m_unlearned["retain"]) | set(m_unlearned["heldout"]))
    groups = tmp_path / "groups.csv"
    groups.write_text("case,group\n" + "".join(f"{c},{'A' if i % 2 else 'B'}\n" for i, c in enumerate(cases)))

    markdown = write_report([unlearned, retrain], tmp_path / "report", groups=groups)

    out = tmp_path / "report"
    assert markdown == out / "report.md"
    content = json.loads((out / "report.json").read_text())
    for name in ("report.md", "report.csv", "report_groups.csv", *content["plots"]):
        assert (out / name).is_file()
    assert len(content["plots"]) == 3
    assert all((out / name).read_bytes().startswith(PNG_SIGNATURE) for name in content["plots"])
    assert not list(out.glob(".*"))  # no temporary file left behind
    assert content["request_id"] == m_unlearned["request_id"]
    assert content["retrain"] == str(retrain)

    rows = {row["role"]: row for row in content["rows"]}
    assert [row["role"] for row in content["rows"]] == ["original", "oracle", "unlearned"]
    start = next(e for e in m_unlearned["evaluations"] if e["tag"] == "start")["sets"]
    end = next(e for e in m_unlearned["evaluations"] if e["tag"] == "end")["sets"]
    oracle_end = next(e for e in m_retrain["evaluations"] if e["tag"] == "end")["sets"]
    for name in ("forget", "retain", "heldout"):
        assert rows["original"][f"dice_{name}"] == start[name]["dice"]
        assert rows["unlearned"][f"dice_{name}"] == end[name]["dice"]
        assert rows["unlearned"][f"mae_{name}"] == end[name]["hard_mae"]
        assert rows["oracle"][f"dice_{name}"] == oracle_end[name]["dice"]
        assert rows["unlearned"][f"gap_dice_{name}"] == pytest.approx(end[name]["dice"] - oracle_end[name]["dice"])
    figures = m_unlearned["figures"]
    assert rows["unlearned"]["forget_drop_pct"] == pytest.approx(figures["forget_drop_pct"])
    assert rows["unlearned"]["retain_retention_pct"] == pytest.approx(figures["retain_retention_pct"])
    assert rows["unlearned"]["dice_gap"] == pytest.approx(figures["after"]["dice_gap"])
    assert rows["unlearned"]["mae_gap"] == pytest.approx(figures["after"]["hard_mae_gap"])
    assert rows["original"]["forget_drop_pct"] == pytest.approx(0, abs=1e-9)
    assert rows["original"]["retain_retention_pct"] == pytest.approx(100)
    expected_avg = np.mean([abs(end[s]["dice"] - oracle_end[s]["dice"]) for s in ("forget", "retain", "heldout")])
    assert rows["unlearned"]["avg_gap"] == pytest.approx(expected_avg)
    assert rows["unlearned"]["speedup"] == pytest.approx(m_retrain["seconds"]["wall"] / m_unlearned["seconds"]["wall"])
    assert rows["unlearned"]["wall_s"] == m_unlearned["seconds"]["wall"]
    assert rows["original"]["wall_s"] is None

    with open(out / "report.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["role"] for r in table] == ["original", "oracle", "unlearned"]
    assert float(table[2]["dice_forget"]) == end["forget"]["dice"]
    assert table[0]["speedup"] == ""
    text = markdown.read_text()
    assert f"{end['forget']['dice']:.4f}" in text and "Avg. Gap" in text
    assert all(f"]({name})" in text for name in content["plots"])

    group_table = content["groups"]["rows"]
    for role in ("original", "oracle", "unlearned"):
        per_role = [r for r in group_table if r["run"] == rows[role]["run"]]
        assert sorted(r["group"] for r in per_role) == ["A", "B"]
        assert sum(r["n_retain"] for r in per_role) == len(m_unlearned["retain"])


def test_report_is_the_same_whatever_the_run_order(finished_runs, tmp_path):
    runs = [finished_runs["Retrain"], finished_runs["NoisyLabel"]]
    write_report(runs, tmp_path / "a")
    write_report(runs[::-1], tmp_path / "b", original=finished_runs["NoisyLabel"], retrain=finished_runs["Retrain"])
    rows_a, rows_b = (json.loads((tmp_path / d / "report.json").read_text())["rows"] for d in ("a", "b"))
    assert rows_a == rows_b


def test_report_without_oracle_or_original(finished_runs, tmp_path):
    write_report([finished_runs["NoisyLabel"]], tmp_path / "only_unlearned")
    rows = json.loads((tmp_path / "only_unlearned" / "report.json").read_text())["rows"]
    assert [r["role"] for r in rows] == ["original", "unlearned"]
    assert rows[1]["avg_gap"] is None and rows[1]["speedup"] is None

    write_report([finished_runs["Retrain"]], tmp_path / "only_retrain")
    content = json.loads((tmp_path / "only_retrain" / "report.json").read_text())
    assert [r["role"] for r in content["rows"]] == ["oracle"] and content["original_from"] is None


def test_report_reads_the_audit_of_each_model(finished_runs, tmp_path):
    unlearned = _copy_run(finished_runs["NoisyLabel"], tmp_path / "runs")
    m_unlearned, m_retrain = _metrics(unlearned), _metrics(finished_runs["Retrain"])
    entries = {
        "original": _audit_entry(m_unlearned["original_checkpoint_sha256"], 1),
        "nnUNetTrainerUnlearnNoisyLabel": _audit_entry(m_unlearned["unlearned_checkpoint_sha256"], 2),
        "retrain": _audit_entry(m_retrain["unlearned_checkpoint_sha256"], 3),
        "stale": _audit_entry("0" * 64, 4),
    }
    (unlearned / AUDIT_FILE).write_text(
        json.dumps({"format": 1, "models": entries, "model": "nnUNetTrainerUnlearnNoisyLabel"})
    )

    write_report([unlearned, finished_runs["Retrain"]], tmp_path / "report")
    rows = {r["role"]: r for r in json.loads((tmp_path / "report" / "report.json").read_text())["rows"]}
    for role, key in (("original", "original"), ("unlearned", "nnUNetTrainerUnlearnNoisyLabel"), ("oracle", "retrain")):
        assert rows[role]["mia_efficacy"] == entries[key]["mia_efficacy"]["value"]
        assert rows[role]["mia_auc_ci"] == entries[key]["auc_forget_vs_heldout"]["ci95"]
    efficacy = {key: entry["mia_efficacy"]["value"] for key, entry in entries.items()}
    gap = efficacy["nnUNetTrainerUnlearnNoisyLabel"] - efficacy["retrain"]
    assert rows["unlearned"]["gap_mia_efficacy"] == pytest.approx(gap)
    dice_gaps = [abs(rows["unlearned"][f"gap_dice_{s}"]) for s in ("forget", "retain", "heldout")]
    assert rows["unlearned"]["avg_gap"] == pytest.approx((sum(dice_gaps) + abs(gap)) / 4)


def test_report_refuses_runs_of_another_request(finished_runs, tmp_path):
    other = _copy_run(finished_runs["NoisyLabel"], tmp_path / "runs")
    metrics = _metrics(other)
    (other / METRICS_FILE).write_text(json.dumps({**metrics, "request_id": "0123456789abcdef"}))
    with pytest.raises(UserInputError, match="one request") as error:
        write_report([finished_runs["Retrain"], other], tmp_path / "report")
    assert str(other) in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "report").exists()


def test_report_refuses_missing_unfinished_and_ambiguous(finished_runs, tmp_path):
    with pytest.raises(UserInputError, match=r"no unlearning_metrics\.json"):
        write_report([tmp_path], tmp_path / "report")
    unfinished = _copy_run(finished_runs["NoisyLabel"], tmp_path / "runs")
    metrics = _metrics(unfinished)
    metrics["evaluations"] = [e for e in metrics["evaluations"] if e["tag"] != "end"]
    (unfinished / METRICS_FILE).write_text(json.dumps(metrics))
    with pytest.raises(UserInputError, match="has not finished"):
        write_report([unfinished], tmp_path / "report")
    second = _copy_run(finished_runs["Retrain"], tmp_path / "second")
    with pytest.raises(UserInputError, match="choose the oracle with --retrain"):
        write_report([finished_runs["Retrain"], second], tmp_path / "report")
    with pytest.raises(UserInputError, match="--retrain needs"):
        write_report([finished_runs["NoisyLabel"]], tmp_path / "report", retrain=finished_runs["NoisyLabel"])
    with pytest.raises(UserInputError, match="--original needs an unlearning run"):
        write_report([finished_runs["NoisyLabel"]], tmp_path / "report", original=finished_runs["Retrain"])


def test_cli_report(finished_runs, tmp_path):
    from nnunet_unlearning.cli import build_parser, main

    if "report" not in build_parser()._subparsers._group_actions[0].choices:
        pytest.skip("the `report` command is not wired into cli.py yet")
    out = tmp_path / "report"
    assert main(["report", str(finished_runs["NoisyLabel"]), str(finished_runs["Retrain"]), "-o", str(out)]) == 0
    assert (out / "report.md").is_file()
    assert main(["report", str(tmp_path), "-o", str(out)]) == 2
