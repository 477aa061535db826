"""The unlearning certificate: written for real finished runs, verified, and every kind of change detected.

Every test works on copies of the session's run folders (in nnU-Net's layout, so the retrain run is found
beside the unlearning run); the session fixtures' files are never touched.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_unlearning.artifacts import AUDIT_FILE, METRICS_FILE, REQUEST_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evidence.certificate import (
    CERTIFICATE_JSON,
    CERTIFICATE_MD,
    find_retrain_run,
    verify_certificate,
    write_certificate,
)
from nnunet_unlearning.files import sha256_file


def _copy_run(folder: Path, root: Path) -> Path:
    target = root / folder.parent.parent.name / folder.parent.name / folder.name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("checkpoint_best.pth", "unlearning_certificate.*"))
    return target


@pytest.fixture()
def runs(world, finished_runs, tmp_path) -> dict[str, Path]:
    """Copies of the finished runs under tmp_path/results, with the session world's environment applied."""
    return {name: _copy_run(folder, tmp_path / "results") for name, folder in finished_runs.items()}


def _metrics(folder: Path) -> dict:
    return json.loads((folder / METRICS_FILE).read_text())


def _edit(path: Path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def test_certificate_records_what_when_models_and_evidence(runs):
    folder = runs["NoisyLabel"]
    path = write_certificate(folder)

    assert path == folder / CERTIFICATE_JSON and (folder / CERTIFICATE_MD).is_file()
    content = json.loads(path.read_text())
    request = json.loads((folder / REQUEST_FILE).read_text())
    metrics = _metrics(folder)
    assert content["request_id"] == request["request_id"]
    assert content["forgotten"]["cases"] == request["forget"]
    assert content["forgotten"]["source_files"] == request["source_files"]
    assert content["forgotten"]["source_files"], "the session dataset comes from the converter"
    assert content["forgotten"]["requested"] == request["created"]
    files = content["files"]
    assert files["unlearned_checkpoint"]["sha256"] == sha256_file(folder / "checkpoint_final.pth")
    assert files["unlearned_checkpoint"]["sha256"] == metrics["unlearned_checkpoint_sha256"]
    assert files["original_checkpoint"] == {
        "path": request["original"]["checkpoint"],
        "sha256": request["original"]["checkpoint_sha256"],
    }
    assert files["request"]["sha256"] == sha256_file(folder / REQUEST_FILE)
    assert "audit" not in files
    assert content["model"]["strategy"] == "NoisyLabel"
    assert content["model"]["hyperparameters"] == metrics["hyperparameters"]
    assert content["seconds"] == metrics["seconds"]
    assert content["software"]["torch"] == torch.__version__.split("+")[0]
    assert content["software"]["python"] == platform.python_version()
    assert content["software"]["nnunetv2"] and content["software"]["nnunet_unlearning"]

    evidence = content["evidence"]
    assert evidence["retrain_run"] == str(runs["Retrain"].resolve())
    rows = {row["role"]: row for row in evidence["rows"]}
    end = next(e for e in metrics["evaluations"] if e["tag"] == "end")["sets"]
    oracle_end = next(e for e in _metrics(runs["Retrain"])["evaluations"] if e["tag"] == "end")["sets"]
    assert rows["unlearned"]["dice_forget"] == end["forget"]["dice"]
    assert rows["unlearned"]["gap_dice_retain"] == pytest.approx(end["retain"]["dice"] - oracle_end["retain"]["dice"])
    assert rows["unlearned"]["mia_efficacy"] is None
    does_not = " ".join(content["statement"]["does_not_show"])
    assert "no formal guarantee" in does_not and "No membership-inference audit" in does_not
    markdown = (folder / CERTIFICATE_MD).read_text()
    assert files["unlearned_checkpoint"]["sha256"] in markdown and "What it does not show" in markdown

    verdict = content["verdict"]
    assert verdict["overall"] in ("met", "not met", "not measured")
    assert set(verdict["criteria"]) == {"utility_retain", "utility_heldout", "forgetting", "membership_vs_retrain"}
    assert verdict["acceptance"]["utility_budget"] == 0.98 and verdict["calibration"] is None
    assert "## Verdict" in markdown and verdict["criteria"]["forgetting"]["text"] in markdown

    result = verify_certificate(path)
    assert result.ok, result.lines
    assert result.verdict == verdict["overall"]
    sources = sum(len(record["files"]) for record in content["forgotten"]["source_files"].values())
    assert sum(line.startswith("ok") for line in result.lines) == len(files) + sources
    assert _summary(result.lines, path).endswith("match")
    assert result.lines[-2:] == [
        f"verdict  overall: {verdict['overall']}",
        "verdict  recomputed from the certified metrics: the same",
    ]


def _summary(lines: list[str], path: Path) -> str:
    return next(line for line in lines if line.startswith(f"{path}: "))


def test_verify_recomputes_the_verdict(runs):
    path = write_certificate(runs["NoisyLabel"])
    stated = json.loads(path.read_text())["verdict"]["overall"]
    other = "met" if stated != "met" else "not met"
    _edit(path, lambda c: c["verdict"].update(overall=other))
    result = verify_certificate(path)
    assert not result.ok and result.verdict == other
    assert result.lines[-1].startswith(f"CHANGED  verdict: the certified metrics give {stated}")


def test_verify_reports_a_changed_checkpoint(runs):
    path = write_certificate(runs["NoisyLabel"])
    with open(runs["NoisyLabel"] / "checkpoint_final.pth", "ab") as handle:
        handle.write(b"\0")

    result = verify_certificate(path)
    assert not result.ok
    changed = [line for line in result.lines if line.startswith("CHANGED")]
    assert len(changed) == 1 and "checkpoint_final.pth" in changed[0]
    assert "1 of" in _summary(result.lines, path)
    assert result.lines[-1] == "verdict  not recomputed: the certified files do not all match"


def test_verify_missing_files_and_deleted_original(runs, tmp_path):
    path = write_certificate(runs["NoisyLabel"])
    _edit(path, lambda c: c["files"]["original_checkpoint"].update(path=str(tmp_path / "deleted.pth")))
    result = verify_certificate(path)
    assert result.ok, "a deleted original model is not a changed file"
    assert any(line.startswith("skipped  original checkpoint") for line in result.lines)

    (runs["NoisyLabel"] / REQUEST_FILE).unlink()
    result = verify_certificate(path)
    assert not result.ok
    assert any(line.startswith("MISSING  request") for line in result.lines)


def test_verify_source_files_when_resolvable(runs, tmp_path):
    path = write_certificate(runs["NoisyLabel"])
    content = json.loads(path.read_text())
    root = Path(content["forgotten"]["source_root"])
    copy = tmp_path / "release"
    entries = [entry for record in content["forgotten"]["source_files"].values() for entry in record["files"].values()]
    for entry in entries:
        (copy / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / entry["path"], copy / entry["path"])
    _edit(path, lambda c: c["forgotten"].update(source_root=str(copy)))
    assert verify_certificate(path).ok

    (copy / entries[0]["path"]).unlink()  # erased, as the request asked: not a finding
    result = verify_certificate(path)
    assert result.ok and any(line.startswith("skipped  source file") for line in result.lines)

    with open(copy / entries[1]["path"], "ab") as handle:
        handle.write(b"\0")
    result = verify_certificate(path)
    assert not result.ok and any(line.startswith("CHANGED  source file") for line in result.lines)

    _edit(path, lambda c: c["forgotten"].update(source_root=None))
    result = verify_certificate(path)
    assert result.ok and any("no source_root" in line for line in result.lines)


def test_certificate_quotes_and_pins_the_audit(runs):
    from nnunet_unlearning.evaluation.audit_attack import membership_attack

    folder = runs["NoisyLabel"]
    rng = np.random.default_rng(0)
    features = {n: {f"{n}{i}": rng.normal(size=(6, 6)) for i in range(2)} for n in ("retain", "heldout", "forget")}
    attack = membership_attack(features["retain"], features["heldout"], features["forget"], bootstrap=10)
    sha = _metrics(folder)["unlearned_checkpoint_sha256"]
    audit = {
        "format": 1,
        "settings": {"seed": 0},
        "model": "unlearned",
        "models": {"unlearned": {"checkpoint_sha256": sha, **attack}},
    }
    (folder / AUDIT_FILE).write_text(json.dumps(audit))

    content = json.loads(write_certificate(folder).read_text())
    rows = {row["role"]: row for row in content["evidence"]["rows"]}
    assert rows["unlearned"]["mia_efficacy"] == attack["mia_efficacy"]["value"]
    assert content["files"]["audit"]["sha256"] == sha256_file(folder / AUDIT_FILE)
    assert content["evidence"]["audit_settings"] == {"seed": 0}
    assert "No membership-inference audit" not in " ".join(content["statement"]["does_not_show"])

    _edit(folder / AUDIT_FILE, lambda c: c["settings"].update(seed=1))
    result = verify_certificate(folder)  # a run folder stands for its certificate
    assert not result.ok and any(line.startswith("CHANGED  audit") for line in result.lines)


def test_retrain_run_is_found_only_for_the_same_request(runs):
    folder = runs["NoisyLabel"]
    request_id = _metrics(folder)["request_id"]
    assert find_retrain_run(folder, request_id) == runs["Retrain"].resolve()
    assert find_retrain_run(folder, "another_request") is None
    assert find_retrain_run(runs["Retrain"], request_id) is None  # not itself

    _edit(runs["Retrain"] / METRICS_FILE, lambda c: c.update(request_id="another_request"))
    content = json.loads(write_certificate(folder).read_text())
    assert content["evidence"]["retrain_run"] is None
    assert "No finished retrain run" in " ".join(content["statement"]["does_not_show"])


def test_retrain_run_gets_its_own_certificate(runs):
    content = json.loads(write_certificate(runs["Retrain"]).read_text())
    assert content["model"]["strategy"] is None
    assert "from scratch" in " ".join(content["statement"]["shows"])
    assert verify_certificate(runs["Retrain"] / CERTIFICATE_JSON).ok


def test_write_refuses_changed_or_unfinished_runs(runs):
    folder = runs["NoisyLabel"]
    with open(folder / "checkpoint_final.pth", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(UserInputError, match="changed after the run"):
        write_certificate(folder)
    _edit(folder / METRICS_FILE, lambda c: c.update(unlearned_checkpoint_sha256=None))
    with pytest.raises(UserInputError, match="has not finished"):
        write_certificate(folder)
    assert not (folder / CERTIFICATE_JSON).exists()


@pytest.mark.parametrize("text", ["not json", json.dumps({"kind": "something else", "files": {}}), "[1, 2]"])
def test_verify_refuses_what_is_not_a_certificate(tmp_path, text):
    path = tmp_path / "file.json"
    path.write_text(text)
    with pytest.raises(UserInputError, match="not an unlearning certificate") as error:
        verify_certificate(path)
    assert str(path) in str(error.value)
    with pytest.raises(UserInputError, match="cannot read the certificate"):
        verify_certificate(tmp_path / "absent.json")


def test_cli_verify_exit_codes(runs, tmp_path):
    from nnunet_unlearning.cli import build_parser, main

    if "verify" not in build_parser()._subparsers._group_actions[0].choices:
        pytest.skip("the `verify` command is not wired into cli.py yet")
    path = write_certificate(runs["NoisyLabel"])
    assert main(["verify", str(path)]) == 0
    met = json.loads(path.read_text())["verdict"]["overall"] == "met"
    assert main(["verify", str(path), "--require-met"]) == (0 if met else 1)
    _edit(path, lambda c: c.pop("verdict") and c.update(format=1))  # a format-1 certificate states no verdict
    assert main(["verify", str(path)]) == 0 and main(["verify", str(path), "--require-met"]) == 1
    with open(runs["NoisyLabel"] / "checkpoint_final.pth", "ab") as handle:
        handle.write(b"\0")
    assert main(["verify", str(path)]) == 1
    (tmp_path / "x.json").write_text("{}")
    assert main(["verify", str(tmp_path / "x.json")]) == 2
