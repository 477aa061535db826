"""Aggregation of per-case metrics over sets of cases (forget / retain / held-out), and the figures
of an unlearning run computed from a before and an after aggregate. Formulas: docs/metrics.md.

Every value returned here is JSON-ready: undefined numbers (no defined case, a metric not computed
for every case, a division by zero) are None.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.metrics import METRICS, CaseMetrics, json_number, nanmean
from nnunet_unlearning.records import FiguresRecord, Gaps, SetScores, SetSummary


def _mean_over_cases(values: Sequence[float | None]) -> float | None:
    """Mean over cases leaving out NaN; None when any case lacks the metric or none defines it."""
    known = [v for v in values if v is not None]
    if not values or len(known) < len(values):
        return None
    return json_number(nanmean(known))


def mean_of_defined(values: Iterable[float | None]) -> float | None:
    """Mean of the defined values (None: undefined, e.g. a case's NaN Dice); None when there are none."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def aggregate(cases: Mapping[str, CaseMetrics], sets: Mapping[str, Sequence[str]]) -> dict[str, SetSummary]:
    """Per set of cases: the number of cases, mean metrics and per-class means.

    A set's mean of a metric is the mean over its cases of each case's mean over the scored classes
    (cases whose mean is NaN left out); a class mean is the mean over the cases of that class's value
    (NaN left out). A metric not computed for every case of the set (soft MAE without probabilities,
    HD95 not asked for) is None.

    Args:
        cases: case id -> its metrics; all cases score the same classes.
        sets: set name (e.g. "forget", "retain", "heldout") -> case ids.

    Returns:
        set name → its `SetSummary`: ``{"n_cases", "dice", "hard_mae", "soft_mae", "volume_similarity",
        "hd95_mm", "per_class": {label: {metric: ...}}}``.
    """
    class_sets = {tuple(m.classes) for m in cases.values()}
    if len(class_sets) > 1:
        raise ValueError(f"cases score different classes: {sorted(class_sets)}")
    labels = class_sets.pop() if class_sets else ()
    result: dict[str, SetSummary] = {}
    for set_name, case_ids in sets.items():
        missing = [case for case in case_ids if case not in cases]
        if missing:
            raise UserInputError(f"set '{set_name}': no metrics for case {missing[0]}")
        members = [cases[case] for case in case_ids]
        summary: dict = {"n_cases": len(members)}
        summary.update({metric: _mean_over_cases([m.mean(metric) for m in members]) for metric in METRICS})
        summary["per_class"] = {
            label: {
                metric: _mean_over_cases([getattr(m.classes[label], metric) for m in members]) for metric in METRICS
            }
            for label in labels
        }
        result[set_name] = cast(SetSummary, summary)  # keyed by METRICS, the keys of MetricMeans
    return result


def _ratio_pct(numerator: float | None, denominator: float | None) -> float | None:
    """100 * numerator / denominator; None when either is undefined or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return 100.0 * numerator / denominator


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def gaps(summary: Mapping[str, SetScores], forget: str = "forget", retain: str = "retain") -> Gaps:
    """Gaps between the retain and forget sets of one aggregate (see `aggregate`).

    Returns:
        ``{"dice_gap": Dice_retain - Dice_forget, "hard_mae_gap": MAE_forget - MAE_retain,
        "soft_mae_gap": soft MAE_forget - soft MAE_retain}`` (each None where undefined).
    """
    f, r = _set(summary, forget), _set(summary, retain)
    return {
        "dice_gap": _difference(r["dice"], f["dice"]),
        "hard_mae_gap": _difference(f["hard_mae"], r["hard_mae"]),
        "soft_mae_gap": _difference(f["soft_mae"], r["soft_mae"]),
    }


def unlearning_figures(
    before: Mapping[str, SetScores], after: Mapping[str, SetScores], forget: str = "forget", retain: str = "retain"
) -> FiguresRecord:
    """The seed study's figures from the aggregates (see `aggregate`) before and after unlearning.

    Returns:
        ``{"forget_drop_pct": 100 * (1 - Dice_after / Dice_before) on the forget set,
        "retain_retention_pct": 100 * Dice_after / Dice_before on the retain set,
        "before": gaps(before), "after": gaps(after)}`` (each None where undefined).
    """
    forget_kept = _ratio_pct(_set(after, forget)["dice"], _set(before, forget)["dice"])
    return {
        "forget_drop_pct": None if forget_kept is None else 100.0 - forget_kept,
        "retain_retention_pct": _ratio_pct(_set(after, retain)["dice"], _set(before, retain)["dice"]),
        "before": gaps(before, forget, retain),
        "after": gaps(after, forget, retain),
    }


def _set(summary: Mapping[str, SetScores], name: str) -> SetScores:
    if name not in summary:
        raise UserInputError(f"no set '{name}' in the aggregate (sets: {', '.join(summary) or 'none'})")
    return summary[name]
