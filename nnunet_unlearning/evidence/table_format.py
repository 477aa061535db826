"""Tables of rows (dicts): the report's columns, and their Markdown and CSV forms.

A column is a key of the rows with a Markdown header and a number format (a ``format`` spec, ``"s"`` for text,
``"ci"`` for a ``[low, high]`` interval). Used by the report, the certificate, the benchmark and the demo.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

#: Every column of the table (CSV and JSON order): key -> (Markdown header, number format).
COLUMNS: dict[str, tuple[str, str]] = {
    "run": ("run", "s"),
    "role": ("role", "s"),
    "trainer": ("trainer", "s"),
    "strategy": ("strategy", "s"),
    "seed": ("seed", "d"),
    "non_default_settings": ("non-default settings", "s"),
    "dice_forget": ("Dice forget", ".4f"),
    "dice_retain": ("Dice retain", ".4f"),
    "dice_heldout": ("Dice held-out", ".4f"),
    "mae_forget": ("MAE forget", ".5f"),
    "mae_retain": ("MAE retain", ".5f"),
    "mae_heldout": ("MAE held-out", ".5f"),
    "forget_drop_pct": ("forget drop %", ".1f"),
    "retain_retention_pct": ("retain retention %", ".1f"),
    "dice_gap": ("Dice gap", ".4f"),
    "mae_gap": ("MAE gap", ".5f"),
    "gap_dice_forget": ("Δ Dice forget", "+.4f"),
    "gap_dice_retain": ("Δ Dice retain", "+.4f"),
    "gap_dice_heldout": ("Δ Dice held-out", "+.4f"),
    "gap_mae_forget": ("Δ MAE forget", "+.5f"),
    "gap_mae_retain": ("Δ MAE retain", "+.5f"),
    "gap_mae_heldout": ("Δ MAE held-out", "+.5f"),
    "gap_mia_efficacy": ("Δ MIA efficacy", "+.4f"),
    "avg_gap": ("Avg. Gap", ".4f"),
    "avg_gap_terms": ("Avg. Gap over", "s"),
    "mia_efficacy": ("MIA efficacy", ".3f"),
    "mia_efficacy_ci": ("MIA efficacy CI", "ci"),
    "mia_auc": ("MIA AUC forget vs held-out", ".3f"),
    "mia_auc_ci": ("MIA AUC CI", "ci"),
    "mia_attack_auc": ("attack AUC retain vs held-out", ".3f"),
    "clinical_risk_forget": ("clinical risk forget", ".4f"),
    "clinical_risk_retain": ("clinical risk retain", ".4f"),
    "clinical_risk_heldout": ("clinical risk held-out", ".4f"),
    "wall_s": ("wall s", ".1f"),
    "speedup": ("speed-up ×", ".2f"),
    "folder": ("folder", "s"),
    # subgroup tables only
    "group": ("group", "s"),
    "n_forget": ("n forget", "d"),
    "n_retain": ("n retain", "d"),
    "n_heldout": ("n held-out", "d"),
}
#: The Markdown tables of report.md: title -> columns.
TABLES: dict[str, tuple[str, ...]] = {
    "Scores": (
        "run",
        "dice_forget",
        "dice_retain",
        "dice_heldout",
        "mae_forget",
        "mae_retain",
        "mae_heldout",
        "forget_drop_pct",
        "retain_retention_pct",
        "dice_gap",
        "mae_gap",
    ),
    "Gap to the retrain oracle (run − oracle)": (
        "run",
        "gap_dice_forget",
        "gap_dice_retain",
        "gap_dice_heldout",
        "gap_mae_forget",
        "gap_mae_retain",
        "gap_mae_heldout",
        "gap_mia_efficacy",
        "avg_gap",
    ),
    "Membership inference, clinical risk and cost": (
        "run",
        "mia_efficacy",
        "mia_efficacy_ci",
        "mia_auc",
        "mia_auc_ci",
        "mia_attack_auc",
        "clinical_risk_forget",
        "clinical_risk_retain",
        "clinical_risk_heldout",
        "wall_s",
        "speedup",
    ),
    "Settings (seed, and every value that differs from its default)": ("run", "seed", "non_default_settings"),
}
TABLE_KEYS = tuple(k for k in COLUMNS if k not in ("group", "n_forget", "n_retain", "n_heldout"))


def format_value(value, spec: str) -> str:
    """``value`` in the format ``spec``; "–" for None."""
    if value is None:
        return "–"
    if spec == "ci":
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return format(value, spec)


def markdown_table(
    rows: Sequence[Mapping], keys: Sequence[str], columns: Mapping[str, tuple[str, str]] = COLUMNS
) -> str:
    """The rows as a Markdown table of the columns ``keys`` (``columns``: key -> (header, number format))."""
    lines = ["| " + " | ".join(columns[k][0] for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(format_value(row.get(k), columns[k][1]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(rows: Sequence[Mapping], keys: Sequence[str]) -> str:
    """CSV of the rows with the given columns; None empty, confidence intervals as ``low;high``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:
        writer.writerow(
            [
                "" if row.get(k) is None else ";".join(map(repr, row[k])) if isinstance(row[k], list) else row[k]
                for k in keys
            ]
        )
    return buffer.getvalue()
