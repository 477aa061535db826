"""The membership-inference audit as a user files it: its Markdown table, and the certificates that quote it.

``evaluation/audit.py`` measures and writes ``unlearning_audit.json`` into every audited run folder;
:func:`write_audit_evidence` writes ``unlearning_audit.md`` beside it and issues again the certificate of every
audited run that has one, since a certificate pins its run's audit by SHA-256 (``certificate.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nnunet_unlearning.artifacts import AUDIT_TABLE, CERTIFICATE_JSON, SETS
from nnunet_unlearning.evidence.certificate import write_certificate
from nnunet_unlearning.files import atomic_write_text, read_json_object


def write_audit_evidence(audit: Path) -> Path:
    """Write the table of the audit in ``audit`` (an ``unlearning_audit.json`` that ``run_audit`` wrote) beside
    it, then write again the certificate of every audited run folder that holds one (never the original
    model's, whose folder is not written to); return the table's path."""
    content = read_json_object(audit, "membership-inference audit")
    table = Path(audit).with_name(AUDIT_TABLE)
    atomic_write_text(table, audit_table(content))
    for label, model in content["models"].items():
        folder = Path(model["folder"])
        if label != "original" and (folder / CERTIFICATE_JSON).is_file():
            write_certificate(folder)
    return table


def _ci(estimate: dict) -> str:
    low_high = estimate["ci95"]
    interval = "" if low_high is None else f" [{low_high[0]:.3f}, {low_high[1]:.3f}]"
    return f"{estimate['value']:.3f}{interval}"


def audit_table(content: Mapping) -> str:
    """The audit as a Markdown table (one row per model) with the settings beneath it."""
    lines = [
        "| model | MIA efficacy | AUC forget vs held-out | attack AUC (retain vs held-out) | "
        "held-out non-member rate | efficacy − retrain | loss forget / retain / held-out |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m in content["models"].items():
        gap = m["gap_to_retrain"]
        losses = " / ".join(f"{m['feature_means'][s]['loss_mean']:.4f}" for s in SETS)
        lines.append(
            f"| {label} | {_ci(m['mia_efficacy'])} | {_ci(m['auc_forget_vs_heldout'])} | "
            f"{_ci(m['attack_auc'])} | {_ci(m['heldout_nonmember_rate'])} | "
            f"{'n/a' if gap is None else format(gap['mia_efficacy'], '+.3f')} | {losses} |"
        )
    s = content["settings"]
    lines += [
        "",
        f"Request {content['request_id']} ({content['dataset']}): forget {', '.join(content['forget'])}; "
        f"{len(content['retain'])} retain (members), {len(content['heldout'])} held-out (non-members) cases.",
        f"{s['patches_per_case']} patches per case of {'×'.join(map(str, s['patch_size']))} voxels, "
        f"seed {s['seed']}; {int(100 * s['ci_level'])} % percentile-bootstrap intervals over patches "
        f"({s['bootstrap']} draws). A perfect unlearner matches the retrain oracle's efficacy; see "
        "docs/audit.md.",
    ]
    return "\n".join(lines) + "\n"
