"""The unlearning certificate: what was forgotten, from which model, into which model, and the evidence.

Every unlearning run writes ``unlearning_certificate.json`` and ``unlearning_certificate.md`` into its
output folder when it ends; the membership-inference audit writes them again with its result. The
certificate pins files by SHA-256 (the original and the unlearned checkpoint, the request copy, the
metrics and audit it quotes, the forgotten cases' source files) and states a verdict against acceptance
criteria (``verdict.py``); `verify_certificate` recomputes those hashes and the verdict. Paths of files
in the run folder are stored relative to it, so a moved or copied run folder still verifies. What a
certificate shows and what it does not: `statement`, and docs/report.md.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import cast

from nnunet_unlearning.artifacts import (
    AUDIT_FILE,
    CERTIFICATE_JSON,
    CERTIFICATE_MD,
    FINAL_CHECKPOINT,
    METRICS_FILE,
    REQUEST_FILE,
    RETRAIN_PREFIX,
    load_run,
)
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evidence.comparison import compare, non_default_text
from nnunet_unlearning.evidence.table_format import TABLES, markdown_table
from nnunet_unlearning.evidence.verdict import verdict
from nnunet_unlearning.files import atomic_write_text, sha256_file
from nnunet_unlearning.records import CertificateRecord, FileEntry, StatementRecord

#: Certified files whose absence is not a failure: the original model may be deleted once it is unlearned.
MAY_BE_DELETED = ("original_checkpoint",)
KIND = "nnunet-unlearning unlearning certificate"
#: 2 adds the verdict; format 1 certificates (no verdict) still verify
FORMAT = 2
READABLE_FORMATS = (1, 2)
#: The plans entry that marks strict plans (``workflows/strict_fingerprint.py``): intensity statistics
#: fingerprinted without the lineage's forgotten cases; its ``request_id`` names the request.
STRICT_PLANS_KEY = "unlearning_strict_fingerprint"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `verify_certificate`: ``ok`` when every certified file that exists still matches, no
    required file is missing and the stated verdict is the one the certified metrics give; ``lines`` says so
    file by file, then gives the verdict per criterion; ``verdict``: the overall verdict ("met", "not met",
    "not measured"; None for a format-1 certificate, which states none)."""

    ok: bool
    lines: list[str]
    verdict: str | None = None

    @property
    def first_finding(self) -> str:
        """The first line that reports a finding (a changed, missing or unreadable file, a broken chain),
        earlier certificates of the chain included; "" when there is none."""
        findings = ("MISSING", "CHANGED", "UNREADABLE", "CHAIN")
        return next((line.strip() for line in self.lines if line.strip().startswith(findings)), "")


def find_retrain_run(run_folder: Path, request_id: str) -> Path | None:
    """A finished retrain run of the same request beside ``run_folder``, or None.

    Looks for ``<results dataset folder>/nnUNetTrainerRetrain*__<same plans>__<same configuration>/<same fold>``
    whose unlearning_metrics.json has the same request_id and an "end" evaluation; the plain
    ``nnUNetTrainerRetrain`` first, then the others by name.
    """
    run_folder = Path(run_folder).resolve()
    parts = run_folder.parent.name.split("__")
    if len(parts) != 3:
        return None
    pattern = f"{RETRAIN_PREFIX}*__{parts[1]}__{parts[2]}/{run_folder.name}"
    candidates = sorted(
        run_folder.parent.parent.glob(pattern),
        key=lambda p: (p.parent.name.split("__")[0] != RETRAIN_PREFIX, p.parent.name),
    )
    for candidate in candidates:
        if candidate.resolve() == run_folder:
            continue
        try:
            run = load_run(candidate)
        except UserInputError:
            continue  # unfinished or unreadable: not evidence
        if run.request_id == request_id and run.metrics.get("unlearned_checkpoint_sha256"):
            return candidate
    return None


def _software() -> dict[str, str | None]:
    """Versions of the software in this process (the run's own, when the run writes the certificate)."""
    import nnunet_unlearning

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": version("torch"),
        "nnunetv2": version("nnunetv2"),
        "nnunet_unlearning": nnunet_unlearning.__version__,
    }


def _utc(timestamp: float | None = None) -> str:
    moment = datetime.now(UTC) if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="seconds")


def _source_root(dataset_name: str) -> str | None:
    """The converter's source_root from ``$nnUNet_raw/<dataset>/subjects.json``, when it can be found."""
    raw = os.environ.get("nnUNet_raw")
    subjects = Path(raw) / dataset_name / "subjects.json" if raw else None
    if subjects is None or not subjects.is_file():
        return None
    try:
        return json.loads(subjects.read_text()).get("source_root")
    except (OSError, ValueError):
        return None


def statement(is_retrain: bool, has_retrain: bool, has_audit: bool, strict_statistics: bool) -> StatementRecord:
    """What the certificate shows and what it does not, in plain sentences. ``strict_statistics``: the run's
    plans carry intensity statistics fingerprinted without the request's lineage (`strict_plans_of`)."""
    if is_retrain:
        origin = (
            "The certified model was trained from scratch by the retrain trainer on the request's retain "
            "cases only; it never loaded the original model's weights. This is exact unlearning as far as "
            "the training code, its data split and the preprocessed data can be trusted."
        )
    else:
        origin = (
            "The certified (unlearned) model is the output of the run in this folder, which started from the "
            "original model named here: the run refuses to start unless the original checkpoint's SHA-256 "
            "matches the request."
        )
    shows = [
        "Which cases the request asked to forget and, where the dataset was converted by nnunet-unlearning, the "
        "SHA-256 of the source files they came from.",
        origin,
        "How the model scored on the forget, retain and held-out cases (Dice and MAE, measured by the run itself)"
        + ("; its gap to a model retrained without the forgotten cases" if has_retrain else "")
        + ("; and the result of a membership-inference audit" if has_audit else "")
        + ".",
        "`nnunet-unlearning verify` recomputes every hash: whether these files are still the ones certified.",
    ]
    if not is_retrain:
        shows.insert(
            2,
            "The run folder held no model but the certified checkpoint when the certificate was written: "
            "the run never writes nnU-Net's checkpoint_best.pth (an early, barely unlearned state), and "
            "its resumable checkpoint_latest.pth is removed when it ends.",
        )
    if strict_statistics:
        shows.append(
            "The run's plans carry intensity statistics that nnU-Net's fingerprint gives without every case this "
            "request's lineage forgot (`nnunet-unlearning strict-plans`): the preprocessing the model was trained "
            "with and expects does not derive from them."
        )
    does_not = [
        "Approximate unlearning gives no formal guarantee: this does not prove that the model equals, or is "
        "distributed like, a model never trained on the forgotten cases, nor that no information about them "
        "remains in its weights."
        if not is_retrain
        else "It does not prove that the forgotten cases' data reached training by no other route (e.g. a copy under "
        "another case id).",
        "The evidence is empirical: few cases, mean scores per set. Scores and a membership-inference efficacy "
        "close to the retrain oracle's are consistent with forgetting, not proof of it; the audit is one attack, "
        "and a stronger one may succeed where it fails.",
        "Hashes show that files are unchanged since the certificate was written, not who wrote it: the "
        "certificate is not signed, and anyone who can write the folder can write a new one.",
        "It covers the files named here only. Copies of the original model, of the training data (raw, "
        "preprocessed, caches), predictions, logs and backups elsewhere are not covered; deleting them is the "
        "data controller's task.",
    ]
    if not strict_statistics:
        does_not.append(
            "The plans' intensity statistics (foreground mean, standard deviation and percentiles per channel), "
            "which fix the preprocessing the model was trained with and expects, were computed by nnU-Net over "
            "every training case, the forgotten ones included (`nnunet-unlearning strict-plans` and `export "
            "--strict` compute them without them)."
        )
    if not has_retrain:
        does_not.append(
            "No finished retrain run of this request was found beside this run, so there is no gap to "
            "the exact-unlearning oracle."
        )
    if not has_audit:
        does_not.append(
            "No membership-inference audit of this model was found (`nnunet-unlearning audit`), so "
            "there is no privacy evidence beyond Dice and MAE."
        )
    return {"shows": shows, "does_not_show": does_not}


def strict_plans_of(run_folder: Path, request_id: str) -> bool:
    """Whether the plans the run trained with (nnU-Net's ``plans.json`` beside ``run_folder``) are strict plans
    of request ``request_id`` (:data:`STRICT_PLANS_KEY`)."""
    plans = Path(run_folder).resolve().parent / "plans.json"
    try:
        mark = json.loads(plans.read_text()).get(STRICT_PLANS_KEY) if plans.is_file() else None
    except (OSError, ValueError, AttributeError):
        return False  # unreadable plans state nothing strict
    return isinstance(mark, dict) and mark.get("request_id") == request_id


def _file_entry(folder: Path, name: str) -> FileEntry:
    return {"path": name, "sha256": sha256_file(folder / name)}


def certificate_content(run_folder: Path) -> CertificateRecord:
    """The certificate of a finished run (see `write_certificate`), without writing anything."""
    from nnunet_unlearning.request import UnlearningRequest

    folder = Path(run_folder)
    run = load_run(folder)
    if not (folder / REQUEST_FILE).is_file():
        raise UserInputError(f"{folder}: no {REQUEST_FILE}; not a finished unlearning run")
    request = UnlearningRequest.from_file(folder / REQUEST_FILE)
    if request.request_id != run.request_id:
        raise UserInputError(
            f"{folder / REQUEST_FILE}: request {request.request_id}, but {METRICS_FILE} is of request {run.request_id}"
        )
    checkpoint = folder / FINAL_CHECKPOINT
    recorded = run.metrics.get("unlearned_checkpoint_sha256")
    if not recorded or not checkpoint.is_file():
        raise UserInputError(f"{folder}: the run has not finished (no {FINAL_CHECKPOINT} recorded in {METRICS_FILE})")
    files = {
        "unlearned_checkpoint": _file_entry(folder, FINAL_CHECKPOINT),
        "request": _file_entry(folder, REQUEST_FILE),
        "metrics": _file_entry(folder, METRICS_FILE),
    }
    if files["unlearned_checkpoint"]["sha256"] != recorded:
        raise UserInputError(
            f"{checkpoint}: SHA-256 differs from the one the run recorded in {METRICS_FILE}; the "
            "model changed after the run, so it cannot be certified"
        )
    files["original_checkpoint"] = {"path": request.original.checkpoint, "sha256": request.original.checkpoint_sha256}
    if request.previous is not None:  # the chain: this request started from the model of the one before
        files["previous_certificate"] = {
            "path": request.previous["certificate"],
            "sha256": request.previous["certificate_sha256"],
        }
    if (folder / AUDIT_FILE).is_file():
        files["audit"] = _file_entry(folder, AUDIT_FILE)

    models = sorted(p.name for p in folder.glob("*.pth"))
    if not run.is_retrain and models != [FINAL_CHECKPOINT]:
        raise UserInputError(
            f"{folder}: holds models besides the certified {FINAL_CHECKPOINT} ({', '.join(models)}); "
            "a partly unlearned model must not sit beside the certified one"
        )
    retrain = None if run.is_retrain else find_retrain_run(folder, run.request_id)
    comparison = compare([folder] + ([retrain] if retrain is not None else []))
    this = next(m for m in comparison.models if m.folder == str(folder))
    parts = folder.resolve().parent.name.split("__")
    return {
        "kind": KIND,
        "format": FORMAT,
        "issued": _utc(),
        "request_id": run.request_id,
        "dataset": {"id": request.dataset_id, "name": request.dataset_name},
        "forgotten": {
            "cases": list(request.forget),
            "requested": request.created,
            "source_root": _source_root(request.dataset_name),
            "source_files": request.source_files,
            "subjects": request.subjects,
            "forgotten_before": list(request.forgotten_before),
            "untouched": request.untouched,
        },
        "previous": request.previous,
        "model": {
            "trainer": run.trainer,
            "plans": parts[1] if len(parts) == 3 else None,
            "configuration": parts[2] if len(parts) == 3 else None,
            "fold": folder.resolve().name,
            "strategy": run.metrics.get("strategy"),
            "hyperparameters": run.metrics.get("hyperparameters", {}),
            "settings": run.metrics.get("settings"),
            "schedule": run.metrics.get("schedule"),
            "finished": _utc(checkpoint.stat().st_mtime),
            "models_in_folder": models,
        },
        "original": {
            "trainer": request.original.trainer,
            "plans": request.original.plans,
            "configuration": request.original.configuration,
            "fold": request.original.fold,
            "recipe": request.original.recipe,
        },
        "files": files,
        "software": _software(),
        "seconds": run.metrics["seconds"],
        "evidence": {
            "rows": comparison.rows(),
            "retrain_run": str(retrain) if retrain is not None else None,
            "retrain_checkpoint_sha256": (
                comparison.oracle_run.metrics.get("unlearned_checkpoint_sha256")
                if comparison.oracle_run is not None
                else None
            ),
            "audit_settings": run.audit.get("settings") if run.audit and this.mia is not None else None,
        },
        "verdict": verdict(run.metrics, retrain is not None),
        "statement": statement(
            run.is_retrain, retrain is not None, this.mia is not None, strict_plans_of(folder, run.request_id)
        ),
    }


def _settings_text(settings: Mapping | None, schedule: Mapping | None) -> str:
    """The run's seed, batch ratio, changed settings and schedule, each part as "; ..." (absent parts left out)."""
    parts = []
    if settings:
        parts.append(
            f"seed {settings['seed']}, {settings['forget_batches_per_step']} forget batch(es) per retain "
            f"batch, changed from the defaults: {non_default_text(settings)}"
        )
    if schedule:
        parts.append(f"{schedule['epochs']} epochs × {schedule['iterations_per_epoch']} iterations")
    return "".join(f"; {part}" for part in parts)


def certificate_markdown(content: Mapping) -> str:
    """The certificate for people: the same facts as the JSON, with the evidence as tables."""
    forgotten, model, files = content["forgotten"], content["model"], content["files"]
    lines = [
        f"# Unlearning certificate: request {content['request_id']}",
        "",
        f"Issued {content['issued']} for {content['dataset']['name']}. Check it with "
        f"`nnunet-unlearning verify {CERTIFICATE_JSON}`.",
        "",
        "## What was forgotten",
        "",
        f"Cases: {', '.join(forgotten['cases'])} (requested {forgotten['requested']}).",
        "",
    ]
    if forgotten.get("untouched"):
        lines += [
            f"Fold {content['original']['fold']} of the original never trained on these cases (they are in its "
            "validation split), so nothing was unlearned: this run keeps its model as it is, and certifies "
            "it as this fold's member of the unlearned ensemble.",
            "",
        ]
    if forgotten.get("subjects"):
        subjects = forgotten["subjects"]
        named = "; ".join(f"{subject}: {', '.join(cases)}" for subject, cases in subjects["cases"].items())
        lines += [f"Requested by subject ({subjects['source']}): {named}.", ""]
    if content.get("previous"):
        previous = content["previous"]
        lines += [
            f"This request started from the model of request {previous['request_id']} (certificate "
            f"{previous['certificate']}, SHA-256 {previous['certificate_sha256'][:16]}…), whose lineage had "
            f"already forgotten {', '.join(forgotten['forgotten_before'])}; none of them was retained again. "
            "`verify` checks that certificate too, and the ones before it.",
            "",
        ]
    if forgotten["source_files"]:
        lines += [
            f"Source files (relative to {forgotten['source_root'] or 'the converted release'}):",
            "",
            "| case | file | path | SHA-256 |",
            "|---|---|---|---|",
        ]
        for case, record in forgotten["source_files"].items():
            lines += [
                f"| {case} | {key} | {entry['path']} | `{entry['sha256']}` |"
                for key, entry in record.get("files", {}).items()
            ]
        lines.append("")
    hyper = ", ".join(f"{k} = {v}" for k, v in model["hyperparameters"].items()) or "none"
    run_settings = _settings_text(model.get("settings"), model.get("schedule"))
    lines += [
        "## The models",
        "",
        f"- original: {content['original']['trainer']} ({content['original']['plans']}, "
        f"{content['original']['configuration']}, fold {content['original']['fold']}), "
        f"`{files['original_checkpoint']['path']}`, SHA-256 `{files['original_checkpoint']['sha256']}`",
        f"- certified: {model['trainer']} (strategy {model['strategy'] or 'retrain from scratch'}; "
        f"hyperparameters: {hyper}{run_settings}), finished {model['finished']}, "
        f"`{files['unlearned_checkpoint']['path']}`, "
        f"SHA-256 `{files['unlearned_checkpoint']['sha256']}`",
        f"- wall time {content['seconds'].get('wall')} s; software: "
        + ", ".join(f"{k} {v}" for k, v in content["software"].items()),
        "",
        "## Certified files",
        "",
        "| file | path | SHA-256 |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | `{entry['path']}` | `{entry['sha256']}` |" for name, entry in files.items()]
    evidence = content["evidence"]
    lines += [
        "",
        "## Evidence",
        "",
        f"Retrain oracle: {evidence['retrain_run'] or 'none found'}. Δ = this model − oracle; Avg. Gap as in "
        "docs/report.md.",
        "",
    ]
    for title, keys in TABLES.items():
        lines += [f"### {title}", "", markdown_table(evidence["rows"], keys), ""]
    lines += _verdict_markdown(content["verdict"])
    lines += ["## What this certificate shows", ""] + [f"- {s}" for s in content["statement"]["shows"]]
    lines += ["", "## What it does not show", ""] + [f"- {s}" for s in content["statement"]["does_not_show"]]
    return "\n".join(lines) + "\n"


def _verdict_markdown(result: Mapping) -> list[str]:
    acceptance = ", ".join(f"{k} = {v}" for k, v in result["acceptance"].items())
    lines = ["## Verdict", "", f"**{result['text']}** Criteria: {acceptance}.", ""]
    if result["calibration"]:
        lines += [result["calibration"], ""]
    lines += ["| criterion | required | verdict | why |", "|---|---|---|---|"]
    lines += [
        f"| {name} | {'yes' if c['required'] else 'no'} | {c['verdict']} | {c['text']} |"
        for name, c in result["criteria"].items()
    ]
    return [*lines, ""]


def write_certificate(run_folder: Path) -> Path:
    """Write ``unlearning_certificate.json`` and ``.md`` into a finished run's folder; return the JSON's path.

    Reads the folder's unlearning_metrics.json, unlearning_request.json and, when present,
    unlearning_audit.json, and a finished ``nnUNetTrainerRetrain*`` run of the same request beside it
    (`find_retrain_run`) for the gap to the oracle. Raises `UserInputError` for an unfinished run or a
    checkpoint that changed after the run recorded its hash.
    """
    folder = Path(run_folder)
    content = certificate_content(folder)
    atomic_write_text(folder / CERTIFICATE_MD, certificate_markdown(content))
    path = folder / CERTIFICATE_JSON
    atomic_write_text(path, json.dumps(content, indent=2) + "\n")
    return path


# --- verification -----------------------------------------------------------------------------------------


def _check(label: str, path: Path, certified: str, required: bool) -> tuple[bool, str]:
    """(still fine, one line) for one certified file; an absent optional file is skipped, not a failure."""
    try:
        now = sha256_file(path)
    except FileNotFoundError:
        if required:
            return False, f"MISSING  {label}: {path}"
        return True, f"skipped  {label}: {path} not found (deleted or moved), not checked"
    except OSError as error:
        return False, f"UNREADABLE {label}: {path} ({error.strerror})"
    if now != certified:
        return False, f"CHANGED  {label}: {path} (SHA-256 now {now[:16]}…, certified {certified[:16]}…)"
    return True, f"ok       {label}: {path}"


def read_certificate(path: Path) -> tuple[Path, CertificateRecord]:
    """(the certificate's path, its content); a run folder stands for its unlearning_certificate.json."""
    path = Path(path)
    if path.is_dir():
        path = path / CERTIFICATE_JSON
    try:
        content = json.loads(path.read_text())
    except OSError as error:
        raise UserInputError(f"{path}: cannot read the certificate ({error.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise UserInputError(f"{path}: not an unlearning certificate (not JSON)") from None
    if not isinstance(content, dict) or content.get("kind") != KIND or not isinstance(content.get("files"), dict):
        raise UserInputError(f"{path}: not an unlearning certificate")
    if content.get("format") not in READABLE_FORMATS:
        raise UserInputError(f"{path}: unknown certificate format {content.get('format')!r}")
    # the rest is taken as written: verification reports a malformed entry when it reaches it
    return path, cast(CertificateRecord, content)


def verify_certificate(path: Path, _chain: frozenset[Path] = frozenset()) -> VerifyResult:
    """Recompute the SHA-256 of every file a certificate names and compare, down the whole request chain.

    Checked: the unlearned checkpoint, the request copy, the metrics and audit quoted (missing: a failure),
    the original checkpoint and the forgotten cases' source files under the certificate's source_root
    (missing, or no source_root: skipped, since deleting them may be the point of the request). Relative
    paths are relative to the certificate's folder. A certificate of a request that started from an earlier
    request's model names that request's certificate and its SHA-256: it must match (a missing one fails),
    and it is verified in turn, so one call checks every link back to the trained original. Raises
    `UserInputError` for a file that is not a readable certificate.
    """
    path, content = read_certificate(path)
    try:
        checks = [
            _check(
                name.replace("_", " "),
                path.parent / entry["path"],
                entry["sha256"],
                required=name not in MAY_BE_DELETED,
            )
            for name, entry in content["files"].items()
        ]
        forgotten = content.get("forgotten") or {}
        sources = forgotten.get("source_files") or {}
        root = forgotten.get("source_root")
        if sources and root is None:
            checks.append(
                (
                    True,
                    "skipped  forgotten source files: the certificate has no source_root "
                    "(subjects.json was not found when it was written)",
                )
            )
        elif sources and root is not None:
            checks += [
                _check(f"source file {case} {key}", Path(root) / entry["path"], entry["sha256"], required=False)
                for case, record in sources.items()
                for key, entry in record["files"].items()
            ]
    except (KeyError, TypeError, AttributeError) as error:
        raise UserInputError(f"{path}: not an unlearning certificate (malformed entry: {error})") from None
    failed = sum(not ok for ok, _ in checks)
    checked = sum(not line.startswith("skipped") for _, line in checks)
    lines = [line for _, line in checks]
    lines.append(
        f"{path}: all {checked} checked files match"
        if not failed
        else f"{path}: {failed} of {checked} checked files changed or missing"
    )
    verdict_ok, verdict_lines = _verify_verdict(path, content, metrics_ok=not failed)
    chain_ok, chain_lines = _verify_previous(path, content, _chain | {path.resolve()})
    return VerifyResult(
        ok=not failed and verdict_ok and chain_ok,
        lines=lines + verdict_lines + chain_lines,
        verdict=_overall_of(content),
    )


def _verify_previous(path: Path, content: Mapping, chain: frozenset[Path]) -> tuple[bool, list[str]]:
    """(fine, lines) for the certificate of the previous request in the chain, indented under a header."""
    previous = content.get("previous")
    if not previous:
        return True, []
    earlier = Path(previous["certificate"])
    if earlier.resolve() in chain:
        return False, [f"CHAIN    {path}: names {earlier}, which is already in its own chain"]
    if not earlier.is_file():  # the file check above already failed for it; nothing more to follow
        return False, [f"CHAIN    previous request {previous['request_id']}: {earlier} missing, chain broken"]
    result = verify_certificate(earlier, chain)
    header = f"previous request {previous['request_id']} ({earlier}):"
    return result.ok, [header, *(f"  {line}" for line in result.lines)]


def _overall_of(content: Mapping) -> str | None:
    stated = content.get("verdict")
    return stated.get("overall") if isinstance(stated, Mapping) else None


def _verify_verdict(path: Path, content: Mapping, metrics_ok: bool) -> tuple[bool, list[str]]:
    """(fine, lines): the stated verdict per criterion, and whether the certified metrics still give it.

    Recomputed only when every file matched (the metrics are then the certified ones)."""
    stated = content.get("verdict")
    if not isinstance(stated, Mapping):
        return True, [f"verdict  none stated (a format-{content.get('format')} certificate)"]
    try:
        lines = [f"verdict  {name}: {c['verdict']}" for name, c in stated["criteria"].items()]
        lines.append(f"verdict  overall: {stated['overall']}")
        entry = content["files"]["metrics"]
        retrain_found = content["evidence"]["retrain_run"] is not None
    except (KeyError, TypeError, AttributeError) as error:
        raise UserInputError(f"{path}: not an unlearning certificate (malformed verdict: {error})") from None
    if not metrics_ok:
        return True, [*lines, "verdict  not recomputed: the certified files do not all match"]
    recomputed = verdict(json.loads((path.parent / entry["path"]).read_text()), retrain_found)
    changed = [
        name
        for name, c in recomputed["criteria"].items()
        if stated["criteria"].get(name, {}).get("verdict") != c["verdict"]
    ]
    if changed or recomputed["overall"] != stated["overall"]:
        which = ", ".join(f"{name}: {recomputed['criteria'][name]['verdict']}" for name in changed) or "overall"
        return False, [*lines, f"CHANGED  verdict: the certified metrics give {recomputed['overall']} ({which})"]
    return True, [*lines, "verdict  recomputed from the certified metrics: the same"]
