"""The comparison report of the runs of one unlearning request: one table (Markdown, CSV, JSON) and plots.

A row per model: the original (the "start" evaluation every unlearning run makes before its first step),
the retrain oracle (an ``nnUNetTrainerRetrain*`` run) and each unlearning run. Columns: Dice and hard MAE on
the forget, retain and held-out sets, the seed study's figures, the gap to the oracle per metric and its
average (Avg. Gap), the membership-inference result (``unlearning_audit.json``), clinical risk, wall time
and speed-up over retraining, and the run's seed and the settings it changed from their defaults.
Optionally the same per subgroup of cases (sex, age band, scanner).
Definitions: docs/report.md.

Values are fractions as in ``unlearning_metrics.json`` (Dice in [0, 1]); percentages say so in their name
(``_pct``); undefined values are None in Python and JSON and empty in CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.summary import gaps, unlearning_figures
from nnunet_unlearning.files import atomic_write_bytes, atomic_write_text

SETS = ("forget", "retain", "heldout")
METRICS_FILE = "unlearning_metrics.json"
REQUEST_FILE = "unlearning_request.json"
AUDIT_FILE = "unlearning_audit.json"
RETRAIN_PREFIX = "nnUNetTrainerRetrain"
#: Metrics compared with the retrain oracle (``gap_<metric>`` = run - oracle).
GAP_METRICS = ("dice_forget", "dice_retain", "dice_heldout", "mae_forget", "mae_retain", "mae_heldout", "mia_efficacy")
#: The metrics whose absolute gaps Avg. Gap averages (those defined for both the run and the oracle).
AVG_GAP_METRICS = ("dice_forget", "dice_retain", "dice_heldout", "mia_efficacy")
REPORT_FILES = {"markdown": "report.md", "csv": "report.csv", "json": "report.json", "groups": "report_groups.csv"}


@dataclass(frozen=True)
class RunFolder:
    """One run's output folder: its ``unlearning_metrics.json``, and its request copy and audit when present."""

    folder: Path
    metrics: dict
    request: dict | None
    audit: dict | None

    @property
    def trainer(self) -> str:
        return self.metrics["trainer"]

    @property
    def request_id(self) -> str:
        return self.metrics["request_id"]

    @property
    def is_retrain(self) -> bool:
        return self.trainer.startswith(RETRAIN_PREFIX)

    def evaluation(self, tag: str) -> dict | None:
        """The first evaluation tagged ``tag`` ("start", "end", "epoch_N"), or None."""
        return next((e for e in self.metrics["evaluations"] if e["tag"] == tag), None)

    @property
    def case_sets(self) -> dict[str, list[str]]:
        return {name: list(self.metrics[name]) for name in SETS}


def _read_json(path: Path, what: str) -> dict:
    try:
        content = json.loads(path.read_text())
    except OSError as error:
        raise UserInputError(f"{path}: cannot read the {what} ({error.strerror})") from None
    except ValueError as error:
        raise UserInputError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise UserInputError(f"{path}: not a {what} (expected a JSON object)")
    return content


def load_run(folder: Path) -> RunFolder:
    """Read a finished run's folder (``.../<trainer>__<plans>__<config>/fold_N``); one-line error otherwise."""
    folder = Path(folder)
    path = folder / METRICS_FILE
    if not folder.is_dir():
        raise UserInputError(f"{folder}: not a folder")
    if not path.is_file():
        raise UserInputError(f"{folder}: no {METRICS_FILE}; give the fold_N folder of an unlearning or retrain run")
    metrics = _read_json(path, "unlearning metrics")
    required = ("request_id", "trainer", "evaluations", "seconds", *SETS)
    missing = [key for key in required if key not in metrics]
    if missing:
        raise UserInputError(f"{path}: not an unlearning metrics file (no '{missing[0]}')")
    run = RunFolder(
        folder,
        metrics,
        _read_json(folder / REQUEST_FILE, "request copy") if (folder / REQUEST_FILE).is_file() else None,
        _read_json(folder / AUDIT_FILE, "audit") if (folder / AUDIT_FILE).is_file() else None,
    )
    if run.evaluation("end") is None:
        raise UserInputError(f"{path}: the run has not finished (no 'end' evaluation)")
    return run


def _estimate(entry: Mapping, key: str) -> tuple[float | None, list[float] | None]:
    estimate = entry.get(key)
    if not isinstance(estimate, Mapping):
        return None, None
    return estimate.get("value"), estimate.get("ci95")


def mia_result(entry: Mapping | None) -> dict | None:
    """One model's membership-inference result from its entry in an audit's ``models`` (see audit.py).

    Returns ``{"mia_efficacy", "mia_efficacy_ci", "auc", "auc_ci", "attack_auc"}``: the share of forget
    patches judged non-members, the AUC of forget vs held-out patches and the attack's own AUC (retain vs
    held-out), with 95 % intervals ([low, high] or None); None without an efficacy.
    """
    if not isinstance(entry, Mapping):
        return None
    efficacy, efficacy_ci = _estimate(entry, "mia_efficacy")
    if efficacy is None:
        return None
    auc, auc_ci = _estimate(entry, "auc_forget_vs_heldout")
    return {
        "mia_efficacy": efficacy,
        "mia_efficacy_ci": efficacy_ci,
        "auc": auc,
        "auc_ci": auc_ci,
        "attack_auc": _estimate(entry, "attack_auc")[0],
    }


def audited_models(runs: Sequence[RunFolder]) -> dict[str, dict]:
    """Checkpoint SHA-256 -> audit entry, over the audits of the runs (the first audit of a model wins).

    Entries are matched to models by the audited checkpoint's hash, so an audit of an earlier state of a
    run (a checkpoint since replaced) is never shown as evidence for the current model.
    """
    entries: dict[str, dict] = {}
    for run in runs:
        for entry in ((run.audit or {}).get("models") or {}).values():
            if isinstance(entry, Mapping) and entry.get("checkpoint_sha256"):
                entries.setdefault(entry["checkpoint_sha256"], dict(entry))
    return entries


@dataclass(frozen=True)
class Model:
    """One row of the comparison: a model's evaluation and what its figures are relative to.

    ``end`` is the evaluation that scores the model (``{"sets": {set: aggregate}, "cases": {...}}`` as in
    unlearning_metrics.json, optionally with ``clinical_risk``); ``before`` the evaluation of the original
    model this row's figures are relative to; ``history`` every evaluation of the run, in order.
    """

    name: str
    role: str  # "original", "oracle" (the retrain run compared with), "retrain" (another one) or "unlearned"
    trainer: str | None
    strategy: str | None
    folder: str | None
    end: Mapping
    before: Mapping | None
    history: tuple[Mapping, ...] = ()
    mia: Mapping | None = None
    wall_seconds: float | None = None
    settings: Mapping | None = None  # the run record's "settings" (seed, schedule, non-default values)


def scores(sets: Mapping[str, Mapping]) -> dict[str, float | None]:
    """``{"dice_<set>": mean Dice, "mae_<set>": mean hard MAE}`` for each set; None where undefined."""
    values = {}
    for name in SETS:
        aggregate = sets.get(name) or {}
        values[f"dice_{name}"] = aggregate.get("dice")
        values[f"mae_{name}"] = aggregate.get("hard_mae")
    return values


def _measured(model: Model) -> dict[str, float | None]:
    """The values compared with the oracle: Dice and MAE per set, and MIA efficacy."""
    return {**scores(model.end["sets"]), "mia_efficacy": (model.mia or {}).get("mia_efficacy")}


def oracle_gaps(values: Mapping[str, float | None], oracle: Mapping[str, float | None] | None) -> dict:
    """Gaps to the retrain oracle, per metric and on average (Avg. Gap; docs/report.md).

    ``gap_<metric>`` = value - oracle value for each of `GAP_METRICS`; ``avg_gap`` = mean of the absolute
    gaps over the metrics of `AVG_GAP_METRICS` defined for both (their names, joined by "+", in
    ``avg_gap_terms``). All None without an oracle.
    """
    result: dict = {}
    for metric in GAP_METRICS:
        a, b = values.get(metric), (oracle or {}).get(metric)
        result[f"gap_{metric}"] = None if a is None or b is None else a - b
    terms = [m for m in AVG_GAP_METRICS if result[f"gap_{m}"] is not None]
    result["avg_gap"] = sum(abs(result[f"gap_{m}"]) for m in terms) / len(terms) if terms else None
    result["avg_gap_terms"] = "+".join(terms) if terms else None
    return result


def _clinical_risk(end: Mapping) -> dict[str, float | None]:
    sets = (end.get("clinical_risk") or {}).get("sets") or {}
    return {f"clinical_risk_{name}": (sets.get(name) or {}).get("risk") for name in SETS}


def non_default_text(settings: Mapping | None) -> str | None:
    """The settings a run changed from their defaults, as ``key=value; ...`` ("defaults" when none; None for
    a run that records no settings, such as the retrain oracle)."""
    if settings is None:
        return None
    changed = settings.get("non_default") or {}
    return "; ".join(f"{key}={value}" for key, value in sorted(changed.items())) or "defaults"


def table_row(model: Model, oracle: Model | None) -> dict:
    """One row of the table (see `COLUMNS`) for ``model``, compared with the retrain ``oracle`` when known."""
    sets = model.end["sets"]
    figures = unlearning_figures(model.before["sets"], sets) if model.before is not None else None
    after = gaps(sets)
    mia = model.mia or {}
    oracle_wall = oracle.wall_seconds if oracle is not None else None
    return {
        "run": model.name,
        "role": model.role,
        "trainer": model.trainer,
        "strategy": model.strategy,
        "seed": (model.settings or {}).get("seed"),
        "non_default_settings": non_default_text(model.settings),
        **scores(sets),
        "forget_drop_pct": figures["forget_drop_pct"] if figures else None,
        "retain_retention_pct": figures["retain_retention_pct"] if figures else None,
        "dice_gap": after["dice_gap"],
        "mae_gap": after["hard_mae_gap"],
        **oracle_gaps(_measured(model), _measured(oracle) if oracle is not None else None),
        "mia_efficacy": mia.get("mia_efficacy"),
        "mia_efficacy_ci": mia.get("mia_efficacy_ci"),
        "mia_auc": mia.get("auc"),
        "mia_auc_ci": mia.get("auc_ci"),
        "mia_attack_auc": mia.get("attack_auc"),
        **_clinical_risk(model.end),
        "wall_s": model.wall_seconds,
        "speedup": oracle_wall / model.wall_seconds if oracle_wall and model.wall_seconds else None,
        "folder": model.folder,
    }


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


# --- subgroups --------------------------------------------------------------------------------------------


def read_groups(path: Path) -> dict[str, str]:
    """Case id -> group from a CSV with the columns ``case`` and ``group`` (others ignored)."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"case", "group"} <= {f.strip() for f in reader.fieldnames}:
                raise UserInputError(
                    f"{path}: needs the columns 'case' and 'group' (found: "
                    f"{', '.join(reader.fieldnames or []) or 'none'})"
                )
            groups: dict[str, str] = {}
            for line, record in enumerate(reader, start=2):
                record = {(k or "").strip(): (v or "").strip() for k, v in record.items()}
                case, group = record["case"], record["group"]
                if not case or not group:
                    raise UserInputError(f"{path}: line {line} has an empty case or group")
                if case in groups:
                    raise UserInputError(f"{path}: case {case} is listed more than once")
                groups[case] = group
    except OSError as error:
        raise UserInputError(f"{path}: cannot read the groups file ({error.strerror})") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise UserInputError(f"{path}: not a readable CSV ({error})") from None
    return groups


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values (None: undefined, e.g. a case's NaN Dice); None when there are none."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


#: The metrics `restrict_evaluation` aggregates (those the table and `summary.gaps` read).
RESTRICTED_METRICS = ("dice", "hard_mae", "soft_mae")


def restrict_evaluation(evaluation: Mapping, case_sets: Mapping[str, Sequence[str]], members: set[str]) -> dict:
    """An evaluation's Dice, hard and soft MAE per set over only the cases in ``members``.

    Per set: the mean over its member cases of each case's mean (``cases.<id>.mean``), undefined values left
    out, as `summary.aggregate` does; ``n_cases`` counts the member cases. Keeps ``cases`` for the members.
    """
    sets = {}
    for name in SETS:
        chosen = [c for c in case_sets.get(name, ()) if c in members]
        means = [evaluation["cases"][c]["mean"] for c in chosen]
        sets[name] = {"n_cases": len(chosen), **{k: _mean([m.get(k) for m in means]) for k in RESTRICTED_METRICS}}
    return {
        "tag": evaluation.get("tag"),
        "sets": sets,
        "cases": {c: v for c, v in evaluation["cases"].items() if c in members},
    }


#: The columns of the subgroup table (no MIA, clinical risk or time: those are measured per model, not per case).
GROUP_KEYS = (
    "group",
    "run",
    "n_forget",
    "n_retain",
    "n_heldout",
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
    "gap_dice_forget",
    "gap_dice_retain",
    "gap_dice_heldout",
    "avg_gap",
)


def group_rows(
    models: Sequence[Model], oracle: Model | None, case_sets: Mapping[str, Sequence[str]], groups: Mapping[str, str]
) -> list[dict]:
    """The table's rows per subgroup: each model's scores, figures and oracle gaps over the group's cases.

    Cases of the runs that the groups file does not list form the group "(unlisted)".
    """
    every_case = {c for cases in case_sets.values() for c in cases}
    if not every_case & set(groups):
        raise UserInputError(f"the groups file lists none of the runs' cases ({', '.join(sorted(every_case))})")
    membership = {case: groups.get(case, "(unlisted)") for case in every_case}
    rows = []
    for group in sorted(set(membership.values())):
        members = {case for case, g in membership.items() if g == group}

        def narrow(model: Model, members: set[str] = members) -> Model:
            before = None if model.before is None else restrict_evaluation(model.before, case_sets, members)
            return replace(
                model,
                end=restrict_evaluation(model.end, case_sets, members),
                before=before,
                mia=None,
                wall_seconds=None,
            )

        group_oracle = narrow(oracle) if oracle is not None else None
        for model in models:
            narrowed = narrow(model)
            row = table_row(narrowed, group_oracle) | {"group": group}
            row |= {f"n_{name}": narrowed.end["sets"][name]["n_cases"] for name in SETS}
            rows.append({key: row.get(key) for key in GROUP_KEYS})
    return rows


# --- putting it together --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The runs of one request and the report's models: the original first, then the oracle, then the others."""

    runs: tuple[RunFolder, ...]
    original_from: RunFolder | None  # the run whose "start" evaluation scored the original model
    oracle_run: RunFolder | None
    models: tuple[Model, ...]

    @property
    def oracle(self) -> Model | None:
        return next((m for m in self.models if m.role == "oracle"), None)

    @property
    def case_sets(self) -> dict[str, list[str]]:
        return self.runs[0].case_sets

    def rows(self) -> list[dict]:
        return [table_row(model, self.oracle) for model in self.models]


def _models(runs: Sequence[RunFolder], original: RunFolder | None, oracle: RunFolder | None) -> tuple[Model, ...]:
    start = original.evaluation("start") if original is not None else None
    names = [run.trainer for run in runs]
    audits = audited_models(runs)
    models = []
    if original is not None and start is not None:
        original_model = (original.request or {}).get("original") or {}
        models.append(
            Model(
                "original",
                "original",
                original_model.get("trainer"),
                None,
                original_model.get("results_folder"),
                start,
                start,
                (start,),
                mia_result(audits.get(original.metrics.get("original_checkpoint_sha256") or "")),
            )
        )
    for run in ([oracle] if oracle is not None else []) + [run for run in runs if run is not oracle]:
        name = run.trainer if names.count(run.trainer) == 1 else f"{run.folder.parent.name}/{run.folder.name}"
        own_start = run.evaluation("start")
        role = "oracle" if run is oracle else "retrain" if run.is_retrain else "unlearned"
        models.append(
            Model(
                name=f"{name} (oracle)" if run is oracle else name,
                role=role,
                trainer=run.trainer,
                # load_run refuses a run without an "end" evaluation
                strategy=run.metrics.get("strategy"),
                folder=str(run.folder),
                end=cast(dict, run.evaluation("end")),
                before=own_start if own_start is not None else start,
                history=tuple(run.metrics["evaluations"]),
                mia=mia_result(audits.get(run.metrics.get("unlearned_checkpoint_sha256") or "")),
                wall_seconds=run.metrics["seconds"].get("wall"),
                settings=run.metrics.get("settings"),
            )
        )
    return tuple(models)


def compare(runs: Sequence[Path], original: Path | None = None, retrain: Path | None = None) -> Comparison:
    """Load the run folders (and ``original``, ``retrain``), check they serve one request, pick the oracle."""
    loaded: list[RunFolder] = []
    for folder in [*runs, *(f for f in (original, retrain) if f is not None)]:
        if all(r.folder.resolve() != Path(folder).resolve() for r in loaded):
            loaded.append(load_run(folder))
    if not loaded:
        raise UserInputError("no run folders given")
    by_path = {r.folder.resolve(): r for r in loaded}
    first = loaded[0]
    for run in loaded[1:]:
        if run.request_id != first.request_id:
            raise UserInputError(
                f"{run.folder}: a run of request {run.request_id}, but {first.folder} is of request "
                f"{first.request_id}; a report compares the runs of one request"
            )
    oracle: RunFolder | None
    source: RunFolder | None
    if retrain is not None:
        oracle = by_path[Path(retrain).resolve()]
        if not oracle.is_retrain:
            raise UserInputError(
                f"{oracle.folder}: --retrain needs an {RETRAIN_PREFIX}* run (this is {oracle.trainer})"
            )
    else:
        retrains = [run for run in loaded if run.is_retrain]
        if len(retrains) > 1:
            raise UserInputError(f"{retrains[1].folder}: a second retrain run; choose the oracle with --retrain")
        oracle = retrains[0] if retrains else None
    if original is not None:
        source = by_path[Path(original).resolve()]
        if source.evaluation("start") is None:
            raise UserInputError(
                f"{source.folder}: --original needs an unlearning run (it has no 'start' "
                "evaluation of the original model)"
            )
    else:
        source = next((run for run in loaded if run.evaluation("start") is not None), None)
    return Comparison(tuple(loaded), source, oracle, _models(loaded, source, oracle))


def report_content(comparison: Comparison, groups: Path | None = None) -> dict:
    """What report.json holds (without the plot list): the request, the sets, the rows, the group rows."""
    first = comparison.runs[0]
    request = (comparison.original_from or first).request or {}
    group_table = None
    if groups is not None:
        group_table = {
            "file": str(groups),
            "rows": group_rows(comparison.models, comparison.oracle, comparison.case_sets, read_groups(groups)),
        }
    return {
        "format": 1,
        "request_id": first.request_id,
        "dataset": request.get("dataset_name"),
        "case_sets": comparison.case_sets,
        "original_from": str(comparison.original_from.folder) if comparison.original_from else None,
        "retrain": str(comparison.oracle_run.folder) if comparison.oracle_run else None,
        "columns": list(TABLE_KEYS),
        "rows": comparison.rows(),
        "groups": group_table,
    }


def _markdown(content: dict, plots: Mapping[str, str]) -> str:
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
    from nnunet_unlearning.evaluation.report_plots import report_plots

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out}: exists and is not a folder")
    comparison = compare(runs, original, retrain)
    content = report_content(comparison, groups)
    plots = report_plots(comparison.models, comparison.case_sets)
    for name, (_, png) in plots.items():
        atomic_write_bytes(out / name, png)
    content["plots"] = list(plots)
    atomic_write_text(out / REPORT_FILES["json"], json.dumps(content, indent=2) + "\n")
    atomic_write_text(out / REPORT_FILES["csv"], csv_text(content["rows"], content["columns"]))
    if content["groups"]:
        atomic_write_text(out / REPORT_FILES["groups"], csv_text(content["groups"]["rows"], GROUP_KEYS))
    markdown = out / REPORT_FILES["markdown"]
    atomic_write_text(markdown, _markdown(content, {name: title for name, (title, _) in plots.items()}))
    return markdown
