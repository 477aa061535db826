"""The comparison of the runs of one unlearning request: a row per model, compared with the retrain oracle.

A row per model: the original (the "start" evaluation every unlearning run makes before its first step),
the retrain oracle (an ``nnUNetTrainerRetrain*`` run) and each unlearning run. Columns: Dice and hard MAE on
the forget, retain and held-out sets, the seed study's figures, the gap to the oracle per metric and its
average (Avg. Gap), the membership-inference result (``unlearning_audit.json``), clinical risk, wall time
and speed-up over retraining, and the run's seed and the settings it changed from their defaults.
Definitions: docs/report.md.

Values are fractions as in ``unlearning_metrics.json`` (Dice in [0, 1]); percentages say so in their name
(``_pct``); undefined values are None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, cast

from nnunet_unlearning.artifacts import RETRAIN_PREFIX, SETS, RunFolder, distinct_labels, load_run
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.summary import gaps, unlearning_figures
from nnunet_unlearning.records import AuditModelRecord, EvaluationRecord, TableRow

#: Metrics compared with the retrain oracle (``gap_<metric>`` = run - oracle).
GAP_METRICS = ("dice_forget", "dice_retain", "dice_heldout", "mae_forget", "mae_retain", "mae_heldout", "mia_efficacy")
#: The metrics whose absolute gaps Avg. Gap averages (those defined for both the run and the oracle).
AVG_GAP_METRICS = ("dice_forget", "dice_retain", "dice_heldout", "mia_efficacy")


def _estimate(entry: Mapping, key: str) -> tuple[float | None, list[float] | None]:
    estimate = entry.get(key)
    if not isinstance(estimate, Mapping):
        return None, None
    return estimate.get("value"), estimate.get("ci95")


class MiaResult(TypedDict):
    """One model's membership-inference result, as the table's ``mia_*`` columns show it: the share of forget
    patches judged non-members, the AUC of forget vs held-out patches and the attack's own AUC (retain vs
    held-out), with 95 % intervals ([low, high]; None without bootstrap draws)."""

    mia_efficacy: float
    mia_efficacy_ci: list[float] | None
    auc: float | None
    auc_ci: list[float] | None
    attack_auc: float | None


def mia_result(entry: Mapping | None) -> MiaResult | None:
    """One model's result from its entry in an audit's ``models`` (see audit.py); None without an efficacy."""
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


def audited_models(runs: Sequence[RunFolder]) -> dict[str, AuditModelRecord]:
    """Checkpoint SHA-256 -> audit entry, over the audits of the runs (the first audit of a model wins).

    Entries are matched to models by the audited checkpoint's hash, so an audit of an earlier state of a
    run (a checkpoint since replaced) is never shown as evidence for the current model.
    """
    entries: dict[str, AuditModelRecord] = {}
    for run in runs:
        models = run.audit.get("models") if run.audit else None
        for entry in (models or {}).values():
            if isinstance(entry, Mapping) and entry.get("checkpoint_sha256"):
                entries.setdefault(entry["checkpoint_sha256"], entry.copy())
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


def oracle_gaps(
    values: Mapping[str, float | None], oracle: Mapping[str, float | None] | None
) -> dict[str, float | str | None]:
    """Gaps to the retrain oracle, per metric and on average (Avg. Gap; docs/report.md).

    ``gap_<metric>`` = value - oracle value for each of `GAP_METRICS`; ``avg_gap`` = mean of the absolute
    gaps over the metrics of `AVG_GAP_METRICS` defined for both (their names, joined by "+", in
    ``avg_gap_terms``). All None without an oracle.
    """
    deltas: dict[str, float | None] = {}
    for metric in GAP_METRICS:
        a, b = values.get(metric), (oracle or {}).get(metric)
        deltas[f"gap_{metric}"] = None if a is None or b is None else a - b
    defined = {m: gap for m in AVG_GAP_METRICS if (gap := deltas[f"gap_{m}"]) is not None}
    return {
        **deltas,
        "avg_gap": sum(abs(gap) for gap in defined.values()) / len(defined) if defined else None,
        "avg_gap_terms": "+".join(defined) if defined else None,
    }


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


def table_row(model: Model, oracle: Model | None) -> TableRow:
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

    def rows(self) -> list[TableRow]:
        return [table_row(model, self.oracle) for model in self.models]


def _models(runs: Sequence[RunFolder], original: RunFolder | None, oracle: RunFolder | None) -> tuple[Model, ...]:
    start = original.evaluation("start") if original is not None else None
    ordered = ([oracle] if oracle is not None else []) + [run for run in runs if run is not oracle]
    names = dict(zip(map(id, ordered), distinct_labels([r.trainer for r in ordered], [r.folder for r in ordered])))
    audits = audited_models(runs)
    models = []
    if original is not None and start is not None:
        original_model = original.request.get("original") if original.request else None
        models.append(
            Model(
                "original",
                "original",
                original_model.get("trainer") if original_model else None,
                None,
                original_model.get("results_folder") if original_model else None,
                start,
                start,
                (start,),
                mia_result(audits.get(original.metrics.get("original_checkpoint_sha256") or "")),
            )
        )
    for run in ordered:
        name = names[id(run)]
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
                end=cast(EvaluationRecord, run.evaluation("end")),
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
