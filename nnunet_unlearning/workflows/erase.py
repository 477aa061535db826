"""``nnunet-unlearning erase``: once an unlearned model is accepted, remove the forgotten patients' data from
nnU-Net's folders, and record every file removed with its SHA-256.

Unlearning removes a patient from the model; the erasure request is complete when their data is gone too. For
every case the request's lineage forgot, this removes

- ``$nnUNet_raw/<dataset>/imagesTr/<case>_XXXX<ending>`` and ``labelsTr/<case><ending>``;
- ``$nnUNet_preprocessed/<dataset>/<any folder>/<case>.*`` and ``<case>_seg.*`` (every configuration's
  arrays and properties, ``gt_segmentations/``);
- ``$nnUNet_results/<dataset>/*/fold_*/validation/<case>.*`` and ``*/crossval_results_folds_*/<case>.*``
  (predictions of the case);

and edits ``splits_final.json`` (the case leaves every fold), both ``dataset.json`` files (``numTraining``;
a ``dataset`` listing loses the case), the converter's ``subjects.json`` (the case's record) and nnU-Net's
``validation/summary.json`` files (the case's per-case entry), and the scores kept of the original models
(``evaluation/kept_scores.py``: the case's entries). It runs only after the model is accepted (the
run's certificate verifies) and while no run of the request is unfinished, since most strategies read the
forget data. ``unlearning_erasure.json``, written into the accepted run's folder, lists each removed file
with its SHA-256 and size, each edited file with its SHA-256 before and after, and the files that still name
a case (certificates, requests and logs: the evidence of the erasure itself). A later request from this model
names the record and its SHA-256, so `verify` reaches it through the chain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nnunet_unlearning.artifacts import (
    CERTIFICATE_JSON,
    ERASURE_FILE,
    FINAL_CHECKPOINT,
    LATEST_CHECKPOINT,
    METRICS_FILE,
    REQUEST_FILE,
    RESUME_STATE_FILE,
)
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.kept_scores import scores_folder, without_cases
from nnunet_unlearning.files import atomic_write_json, atomic_write_text, sha256_file
from nnunet_unlearning.request import UnlearningRequest

#: Text files searched for case ids after the erasure, to report what still names a case.
_TEXT_SUFFIXES = (".json", ".txt", ".md", ".csv")


@dataclass
class ErasurePlan:
    """What `plan_erasure` found: files to remove, files to edit (path → new text), and what names a case."""

    cases: tuple[str, ...]
    remove: list[Path] = field(default_factory=list)
    edit: dict[Path, str] = field(default_factory=dict)


def nnunet_folder(variable: str, dataset_name: str) -> Path:
    """``$<variable>/<dataset_name>`` for one of nnU-Net's folder variables; one-line error when it is unset."""
    value = os.environ.get(variable)
    if not value:
        raise UserInputError(f"environment variable {variable} is not set (nnU-Net needs it)")
    return Path(value) / dataset_name


def unfinished_runs(results: Path, request_id: str) -> list[Path]:
    """Fold folders under ``results`` (``$nnUNet_results/<dataset>``) of runs of ``request_id`` (unlearning runs
    and retrain oracles) that have not finished: no final model recorded in their metrics yet, or nnU-Net's
    resumable checkpoint or our resume state still beside it."""
    unfinished = []
    for copy in sorted(results.glob(f"*/fold_*/{REQUEST_FILE}")):
        folder = copy.parent
        try:
            same = json.loads(copy.read_text()).get("request_id") == request_id
        except (OSError, ValueError):
            continue
        finished = _final_model_recorded(folder) and not any(
            (folder / name).exists() for name in (LATEST_CHECKPOINT, RESUME_STATE_FILE)
        )
        if same and not finished:
            unfinished.append(folder)
    return unfinished


def _final_model_recorded(folder: Path) -> bool:
    """Whether the run wrote its final model and recorded its SHA-256 (what a run does as its last step)."""
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (folder / FINAL_CHECKPOINT).is_file() and bool(metrics.get("unlearned_checkpoint_sha256"))


def _case_files(folder: Path, cases: Iterable[str]) -> list[Path]:
    """Files directly in ``folder`` whose name is ``<case>.<suffix>``, ``<case>_seg.<suffix>`` or, for images,
    ``<case>_XXXX.<suffix>``."""
    found = []
    for case in cases:
        for path in folder.glob(f"{case}*"):
            rest = path.name[len(case) :]
            if path.is_file() and (rest.startswith(".") or rest.startswith("_seg.") or _channel_suffix(rest)):
                found.append(path)
    return found


def _channel_suffix(rest: str) -> bool:
    """``_0000.nii.gz`` and the like: nnU-Net's channel suffix, four digits."""
    return len(rest) > 5 and rest[0] == "_" and rest[1:5].isdigit() and rest[5] == "."


def _without_cases_in_splits(path: Path, cases: set[str]) -> str | None:
    splits = json.loads(path.read_text())
    if not any(c in cases for fold in splits for key in ("train", "val") for c in fold[key]):
        return None
    for fold in splits:
        for key in ("train", "val"):
            fold[key] = [c for c in fold[key] if c not in cases]
    return json.dumps(splits, indent=4) + "\n"


def _without_cases_in_dataset_json(path: Path, cases: set[str], training_files: int) -> str | None:
    content = json.loads(path.read_text())
    changed = False
    if isinstance(content.get("dataset"), dict):
        kept = {k: v for k, v in content["dataset"].items() if k not in cases}
        changed = len(kept) != len(content["dataset"])
        content["dataset"] = kept
    if content.get("numTraining") != training_files:
        content["numTraining"] = training_files
        changed = True
    return json.dumps(content, indent=4) + "\n" if changed else None


def _without_cases_in_subjects(path: Path, cases: set[str]) -> str | None:
    content = json.loads(path.read_text())
    records = content.get("cases", {})
    if not cases & set(records):
        return None
    content["cases"] = {k: v for k, v in records.items() if k not in cases}
    return json.dumps(content, indent=2) + "\n"


def _without_cases_in_summary(path: Path, cases: set[str]) -> str | None:
    """nnU-Net's validation summary without the per-case entries of ``cases`` (its means are left as they were)."""
    content = json.loads(path.read_text())
    per_case = content.get("metric_per_case", [])
    kept = [entry for entry in per_case if _summary_case(entry) not in cases]
    if len(kept) == len(per_case):
        return None
    content["metric_per_case"] = kept
    return json.dumps(content, indent=4) + "\n"


def _summary_case(entry: dict) -> str:
    name = Path(str(entry.get("prediction_file") or entry.get("reference_file") or "")).name
    return name.split(".")[0]


def plan_erasure(request: UnlearningRequest) -> ErasurePlan:
    """Every file to remove and every file to edit for the cases the request's lineage forgot."""
    cases = tuple(sorted({*request.forget, *request.forgotten_before}))
    chosen = set(cases)
    raw = nnunet_folder("nnUNet_raw", request.dataset_name)
    preprocessed = nnunet_folder("nnUNet_preprocessed", request.dataset_name)
    results = nnunet_folder("nnUNet_results", request.dataset_name)
    plan = ErasurePlan(cases)
    plan.remove += _case_files(raw / "imagesTr", cases) + _case_files(raw / "labelsTr", cases)
    for folder in sorted(p for p in preprocessed.iterdir() if p.is_dir()):
        plan.remove += _case_files(folder, cases)
    for folder in sorted(results.glob("*/fold_*/validation")) + sorted(results.glob("*/crossval_results_folds_*")):
        plan.remove += _case_files(folder, cases)

    labels = raw / "labelsTr"
    remaining = len([p for p in labels.iterdir() if p.is_file() and p not in plan.remove]) if labels.is_dir() else 0
    edits = [(preprocessed / "splits_final.json", lambda p: _without_cases_in_splits(p, chosen))]
    edits += [
        (folder / "dataset.json", lambda p: _without_cases_in_dataset_json(p, chosen, remaining))
        for folder in (raw, preprocessed)
    ]
    edits += [(raw / "subjects.json", lambda p: _without_cases_in_subjects(p, chosen))]
    edits += [
        (path, lambda p: _without_cases_in_summary(p, chosen))
        for path in sorted(results.glob("*/fold_*/validation/summary.json"))
    ]
    edits += [(path, lambda p: without_cases(p, chosen)) for path in sorted(scores_folder(results).glob("*.json"))]
    for path, edit in edits:
        if path.is_file() and (text := edit(path)) is not None:
            plan.edit[path] = text
    return plan


def still_naming(roots: Sequence[Path], cases: Iterable[str]) -> list[str]:
    """Text files under ``roots`` that still contain one of the case ids (as whole ids)."""
    from nnunet_unlearning.workflows.export import case_mentions

    named = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(_TEXT_SUFFIXES)):
            if case_mentions({str(path): path.read_bytes()}, cases):
                named.append(str(path))
    return named


def erase(run_folder: Path, dry_run: bool = False) -> Path | ErasurePlan:
    """Erase the data of the cases forgotten by the accepted run in ``run_folder`` (its ``fold_N``).

    Returns the path of the erasure record, or with ``dry_run`` the plan without touching anything. Raises
    `UserInputError` for a folder that is not a certified run, a certificate that fails verify, a run of the
    request that is unfinished, or an erasure already recorded in the folder.
    """
    from nnunet_unlearning.evidence.certificate import verify_certificate

    run_folder = Path(run_folder).resolve()
    certificate = run_folder / CERTIFICATE_JSON
    if not (run_folder / REQUEST_FILE).is_file() or not certificate.is_file():
        raise UserInputError(
            f"{run_folder}: not a certified unlearning run (no {REQUEST_FILE} or {CERTIFICATE_JSON}); erase after "
            "the accepted run has finished"
        )
    if (run_folder / ERASURE_FILE).exists():
        raise UserInputError(f"{run_folder / ERASURE_FILE}: this request's data was already erased")
    checked = verify_certificate(certificate)
    if not checked.ok:
        failed = checked.first_finding
        raise UserInputError(f"{certificate}: fails verify ({failed}); the model is not accepted")
    request = UnlearningRequest.from_file(run_folder / REQUEST_FILE)
    results = nnunet_folder("nnUNet_results", request.dataset_name)
    if unfinished := unfinished_runs(results, request.request_id):
        raise UserInputError(
            f"{unfinished[0]}: a run of request {request.request_id} has not finished (it may still read the "
            "forget data); finish or remove it before erasing"
        )
    plan = plan_erasure(request)
    if dry_run:
        return plan

    removed = [{"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size} for p in plan.remove]
    edited = []
    for path, text in plan.edit.items():
        before = sha256_file(path)
        atomic_write_text(path, text)
        edited.append({"path": str(path), "sha256_before": before, "sha256_after": sha256_file(path)})
    for path in plan.remove:
        path.unlink()
    roots = [nnunet_folder(v, request.dataset_name) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")]
    record = {
        "format": 1,
        "request_id": request.request_id,
        "certificate": str(certificate),
        "certificate_sha256": sha256_file(certificate),
        "erased": datetime.now(UTC).isoformat(timespec="seconds"),
        "cases": list(plan.cases),
        "removed": removed,
        "edited": edited,
        "still_naming_a_case": still_naming([r for r in roots if r.is_dir()], plan.cases),
        "statement": (
            "The files listed under 'removed' held the cases' images, labels, preprocessed arrays and "
            "predictions, and are deleted (a file system or backup may keep copies; this record cannot see "
            "them). The files under 'still_naming_a_case' name a case id but hold none of its data: the "
            "certificates, requests and logs that document the request. dataset_fingerprint.json keeps "
            "per-case statistics by position, without names, until the dataset is fingerprinted again."
        ),
    }
    path = run_folder / ERASURE_FILE
    atomic_write_json(path, record)
    return path
