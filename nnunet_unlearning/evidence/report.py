"""The comparison report of the runs of one unlearning request: one table (Markdown, CSV, JSON) and plots.

The rows are `comparison`'s (one per model: the original, the retrain oracle, each unlearning run), optionally
the same per subgroup of cases (`subgroups`); `table_format` renders them and `report_plots` draws the plots.
Definitions: docs/report.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.calibration import band_name
from nnunet_unlearning.evidence.comparison import Comparison, compare
from nnunet_unlearning.evidence.report_plots import report_plots
from nnunet_unlearning.evidence.subgroups import GROUP_KEYS, group_rows, read_groups
from nnunet_unlearning.evidence.table_format import TABLE_KEYS, TABLES, csv_text, markdown_table
from nnunet_unlearning.evidence.verdict import calibration_text
from nnunet_unlearning.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from nnunet_unlearning.records import GroupTable, ReportRecord

REPORT_FILES = {"markdown": "report.md", "csv": "report.csv", "json": "report.json", "groups": "report_groups.csv"}


def report_content(comparison: Comparison, groups: Path | None = None) -> ReportRecord:
    """What report.json holds (without the plot list): the request, the sets, the rows, the group rows."""
    first = comparison.runs[0]
    request = (comparison.original_from or first).request
    group_table: GroupTable | None = None
    if groups is not None:
        group_table = {
            "file": str(groups),
            "rows": group_rows(comparison.models, comparison.oracle, comparison.case_sets, read_groups(groups)),
        }
    return {
        "format": 1,
        "request_id": first.request_id,
        "dataset": request.get("dataset_name") if request else None,
        "case_sets": comparison.case_sets,
        "original_from": str(comparison.original_from.folder) if comparison.original_from else None,
        "retrain": str(comparison.oracle_run.folder) if comparison.oracle_run else None,
        "columns": list(TABLE_KEYS),
        "rows": comparison.rows(),
        "groups": group_table,
        "calibration": {
            str(run.folder): {"text": calibration_text(calibration), **calibration}
            for run in comparison.runs
            if (calibration := run.metrics.get("calibration"))
        },
    }


def _calibration_markdown(calibrated: Mapping[str, Mapping]) -> list[str]:
    """Per calibrated run: its stop in words and the forgetting test at every check (docs/unlearning.md)."""
    lines = []
    for folder, record in calibrated.items():
        lines += [f"### {folder}", "", record["text"] or "Calibrated run: undecided (interrupted).", ""]
        # records written before the memorisation reference have no "target": their band is the held-out one
        # every check of a run shares its reference (the original's memorisation, or none)
        band = band_name(record["checks"][0].get("memorisation") if record["checks"] else None)
        lines += [f"| check | steps | forget | {band} | state | retain % | held-out % |", "|" + "---|" * 7]
        lines += [
            f"| {c['tag']} | {c['steps']} | {c['forget_mean']:.4f} | {c.get('target', c['heldout_mean']):.4f} ± "
            f"{c['half_width']:.4f} | {c['state'].replace('_', ' ')} | {100 * c['retain_ratio']:.1f} | "
            f"{100 * c['heldout_ratio']:.1f} |"
            for c in record["checks"]
        ]
        lines.append("")
    return ["## Calibrated runs", "", *lines] if lines else []


def _markdown(content: ReportRecord, plots: Mapping[str, str]) -> str:
    rows = content["rows"]
    sets = content["case_sets"]
    lines = [f"# Unlearning report: request {content['request_id']}", ""]
    if content["dataset"]:
        lines.append(f"Dataset {content['dataset']}.")
    lines += [
        f"Forget: {', '.join(sets['forget'])} ({len(sets['forget'])} cases); retain {len(sets['retain'])} "
        f"cases; held-out {len(sets['heldout'])} cases.",
        "",
    ]
    lines.append(
        f"Original model: the 'start' evaluation of {content['original_from']}."
        if content["original_from"]
        else "Original model: not in the report (no unlearning run with a 'start' evaluation was given)."
    )
    lines.append(
        f"Retrain oracle: {content['retrain']}."
        if content["retrain"]
        else "Retrain oracle: none given, so gaps to the oracle and speed-ups are empty."
    )
    lines += [
        "",
        "Dice and MAE are means over each set's cases (MAE: hard MAE); figures are relative to the "
        "original model; Δ = run − oracle; Avg. Gap = mean |Δ| over Dice forget, retain, held-out and, where "
        "both are audited, MIA efficacy (docs/report.md).",
        "",
    ]
    for title, keys in TABLES.items():
        lines += [f"## {title}", "", markdown_table(rows, keys), ""]
    if content["groups"]:
        lines += [
            f"## Per group ({content['groups']['file']})",
            "",
            "Over each group's cases only; figures relative to the original's scores on the same cases, "
            "Δ to the oracle's.",
            "",
            markdown_table(content["groups"]["rows"], GROUP_KEYS),
            "",
        ]
    lines += _calibration_markdown(content.get("calibration") or {})
    lines += ["## Plots", ""] + [f"![{title}]({name})" for name, title in plots.items()] + [""]
    return "\n".join(lines)


def write_report(
    runs: Sequence[Path],
    out: Path,
    original: Path | None = None,
    retrain: Path | None = None,
    groups: Path | None = None,
) -> Path:
    """Compare the runs of one unlearning request; write the table and plots into ``out``; return report.md.

    Args:
        runs: run folders (``.../<trainer>__<plans>__<config>/fold_N`` holding unlearning_metrics.json) of one
            request: unlearning runs and, optionally, an ``nnUNetTrainerRetrain*`` run (the oracle).
        out: output folder (created if missing).
        original: the run whose "start" evaluation is the original model's row (default: the first run given
            that has one).
        retrain: the retrain oracle's run folder (default: the one retrain run among ``runs``).
        groups: optional CSV with columns ``case,group``: adds the per-group table (report_groups.csv).

    Writes report.md, report.csv, report.json, the plots (PNG) and, with ``groups``, report_groups.csv, each
    to a temporary name first. Raises `UserInputError` (one line) for a missing or unfinished run, runs of
    different requests, or an unreadable groups file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: exists and is not a folder")
    comparison = compare(runs, original, retrain)
    content = report_content(comparison, groups)
    plots = report_plots(comparison.models, comparison.case_sets)
    for name, (_, png) in plots.items():
        atomic_write_bytes(out / name, png)
    content["plots"] = list(plots)
    atomic_write_json(out / REPORT_FILES["json"], content)
    atomic_write_text(out / REPORT_FILES["csv"], csv_text(content["rows"], content["columns"]))
    if content["groups"]:
        atomic_write_text(out / REPORT_FILES["groups"], csv_text(content["groups"]["rows"], GROUP_KEYS))
    markdown = out / REPORT_FILES["markdown"]
    atomic_write_text(markdown, _markdown(content, {name: title for name, (title, _) in plots.items()}))
    return markdown
