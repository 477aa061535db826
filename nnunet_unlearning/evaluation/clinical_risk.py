"""Clinical risk: how much clinically critical tissue a model misses (or invents), per set of cases.

Computed from the per-case, per-class voxel counts of :class:`~nnunet_unlearning.evaluation.metrics.CaseMetrics`
(the evaluation hook's output), so an unlearning run can report, before and after, whether forgetting a
patient made the model miss lesions in the others. Missing a lesion (a false negative) costs more than
marking healthy tissue as lesion (a false positive); the weights are configurable. Formulas: docs/metrics.md,
section "Clinical risk".

Every value returned is JSON-ready: undefined numbers (no critical tissue in a set, volumes without spacing)
are None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.metrics import CaseMetrics, ClassMetrics
from nnunet_unlearning.records import ClinicalRiskRecord, LabelKey, RiskChange, RiskCounts, RiskSet

#: The clinically critical classes, by their label name in dataset.json (MRBrainS18: 4 and 9).
CRITICAL_LABEL_NAMES: tuple[str, ...] = ("white_matter_lesions", "infarction")
#: Their MRBrainS18 label values, used only when dataset.json names none of them.
CRITICAL_LABEL_VALUES: tuple[int, ...] = (4, 9)


def critical_classes(dataset_json: Mapping) -> tuple[int, ...]:
    """The critical label values of a dataset: those named in `CRITICAL_LABEL_NAMES`, ascending.

    Only plain (non-region) labels count, and never the ignore label (MRBrainS18's "challenge" label set
    maps infarction to the ignore label, so there only white-matter lesions, 4, are critical). When
    dataset.json names none of the critical classes, the MRBrainS18 values 4 and 9 are taken where they
    are foreground labels of the dataset.

    Args:
        dataset_json: nnU-Net's dataset.json content (``{"labels": {name: value, ...}, ...}``).
    """
    labels = dataset_json.get("labels", {})
    ignore = labels.get("ignore")
    plain = {
        name: int(value)
        for name, value in labels.items()
        if isinstance(value, int) and name != "ignore" and int(value) != ignore
    }
    if any(name in labels for name in CRITICAL_LABEL_NAMES):
        return tuple(sorted(plain[name] for name in CRITICAL_LABEL_NAMES if name in plain))
    foreground = {value for value in plain.values() if value > 0}
    return tuple(value for value in CRITICAL_LABEL_VALUES if value in foreground)


class _Counts(NamedTuple):
    """Voxel counts of critical tissue in one case: TP, FN, FP, and the FN volume in mL (None: no spacing)."""

    tp: int
    fn: int
    fp: int
    fn_ml: float | None


def _counts(case: str, label: int, m: ClassMetrics) -> _Counts:
    """The counts of one class of one case, from its integer voxel counts and Dice.

    Dice = 2 TP / (n_gt + n_pred) is a ratio of integers, so TP = Dice (n_gt + n_pred) / 2 rounds back to the
    exact integer (the float error is far below 1/2 for any voxel count a volume can have). The voxel
    volume is volume_gt_ml / n_gt; FN is 0 where n_gt is 0.
    """
    both = m.n_gt + m.n_pred
    half = m.dice * both / 2 if both else 0.0
    tp = round(half)
    if abs(half - tp) > 1e-3 or not 0 <= tp <= min(m.n_gt, m.n_pred):
        raise UserInputError(
            f"case {case}: class {label} has Dice {m.dice} inconsistent with its voxel counts "
            f"(n_gt {m.n_gt}, n_pred {m.n_pred})"
        )
    fn = m.n_gt - tp
    fn_ml = 0.0 if fn == 0 else (None if m.volume_gt_ml is None else fn * m.volume_gt_ml / m.n_gt)
    return _Counts(tp, fn, m.n_pred - tp, fn_ml)


def clinical_risk(
    cases: Mapping[str, CaseMetrics],
    sets: Mapping[str, Sequence[str]],
    critical: Sequence[int],
    fn_weight: float = 5.0,
    fp_weight: float = 1.0,
) -> ClinicalRiskRecord:
    """Per set: false-negative rate, under-segmented volume and asymmetric-cost risk of the critical classes.

    Over the cases k of a set and a critical class c (voxel counts over valid voxels, as in `case_metrics`):

        FN_c = Σ_k FN_kc,  FP_c = Σ_k FP_kc,  G_c = Σ_k (TP_kc + FN_kc)
        risk_c = (fn_weight · FN_c + fp_weight · FP_c) / G_c,   FNR_c = FN_c / G_c
        under-segmented volume_c = Σ_k FN_kc · v_k (mL, v_k the case's voxel volume)

    and for the set, summed over the critical classes:
    risk = (fn_weight · Σ_c FN_c + fp_weight · Σ_c FP_c) / Σ_c G_c, FNR = Σ_c FN_c / Σ_c G_c.
    Risk 0 is perfect; a model that marks no critical voxel at all scores ``fn_weight``.

    Args:
        cases: case id -> its metrics (all critical classes scored, e.g. the evaluation hook's output).
        sets: set name (forget, retain, heldout) -> case ids.
        critical: the critical label values (see `critical_classes`); may be empty.
        fn_weight: cost of one missed critical voxel (> 0).
        fp_weight: cost of one falsely marked critical voxel (>= 0).

    Returns:
        A `ClinicalRiskRecord`: ``{"critical_classes": [...], "weights": {"fn", "fp"}, "sets": {set: {"n_cases",
        "risk", "false_negative_rate", "under_segmented_ml", "under_segmented_ml_per_case", "gt_voxels",
        "tp_voxels", "fn_voxels", "fp_voxels", "cases_with_critical", "cases_missed", "per_class": {label: {same
        keys}}}}}``.
        Ratios are None when the set has no critical ground-truth voxel; volumes are None when a case with
        missed critical voxels has no volume (metrics computed without spacing). ``cases_missed`` counts
        the cases with critical tissue of which not one voxel was found.
    """
    if fn_weight <= 0 or fp_weight < 0:
        raise UserInputError(f"clinical risk weights must be fn > 0 and fp >= 0, got fn {fn_weight}, fp {fp_weight}")
    critical = sorted({int(c) for c in critical})
    result: dict[str, RiskSet] = {}
    for set_name, case_ids in sets.items():
        missing = [case for case in case_ids if case not in cases]
        if missing:
            raise UserInputError(f"set '{set_name}': no metrics for case {missing[0]}")
        counts = {
            case: {label: _counts(case, label, _scored(cases[case], case, label)) for label in critical}
            for case in case_ids
        }
        per_class: dict[LabelKey, RiskCounts] = {
            label: _pooled([counts[case][label] for case in case_ids], fn_weight, fp_weight) for label in critical
        }
        # Over all critical classes, a case is "missed" only when not one of its critical voxels was found.
        summary = _pooled([_sum_classes(counts[case].values()) for case in case_ids], fn_weight, fp_weight)
        result[set_name] = {"n_cases": len(case_ids), **summary, "per_class": per_class}
    return {"critical_classes": critical, "weights": {"fn": fn_weight, "fp": fp_weight}, "sets": result}


def _scored(metrics: CaseMetrics, case: str, label: int) -> ClassMetrics:
    if label not in metrics.classes:
        raise UserInputError(f"case {case}: critical class {label} was not scored")
    return metrics.classes[label]


def _sum_classes(per_class) -> _Counts:
    """One case's counts over several classes (TP, FN, FP summed, FN volume summed)."""
    per_class = list(per_class)
    fn_ml = [c.fn_ml for c in per_class]
    return _Counts(
        sum(c.tp for c in per_class),
        sum(c.fn for c in per_class),
        sum(c.fp for c in per_class),
        None if any(v is None for v in fn_ml) else sum(fn_ml),
    )


def _pooled(per_case: Sequence[_Counts], fn_weight: float, fp_weight: float) -> RiskCounts:
    """The summary of counts pooled over cases."""
    tp, fn, fp = (sum(getattr(c, k) for c in per_case) for k in ("tp", "fn", "fp"))
    gt = tp + fn
    fn_ml = [c.fn_ml for c in per_case if c.fn_ml is not None]
    under = sum(fn_ml) if len(fn_ml) == len(per_case) else None
    with_critical = [c for c in per_case if c.tp + c.fn]
    return {
        "risk": (fn_weight * fn + fp_weight * fp) / gt if gt else None,
        "false_negative_rate": fn / gt if gt else None,
        "under_segmented_ml": under,
        "under_segmented_ml_per_case": None if under is None or not per_case else under / len(per_case),
        "gt_voxels": gt,
        "tp_voxels": tp,
        "fn_voxels": fn,
        "fp_voxels": fp,
        "cases_with_critical": len(with_critical),
        "cases_missed": sum(1 for c in with_critical if c.tp == 0),
    }


def risk_change(before: Mapping, after: Mapping) -> dict[str, RiskChange]:
    """After minus before, per set, of risk, false-negative rate and under-segmented volume.

    Args:
        before, after: two `clinical_risk` results (e.g. the run's start and end evaluations).

    Returns:
        ``{set: {"risk": Δ, "false_negative_rate": Δ, "under_segmented_ml": Δ}}``, each None where either
        side is None; positive = the model got riskier.
    """
    change: dict[str, RiskChange] = {}
    for set_name, b in before["sets"].items():
        a = after["sets"].get(set_name)
        if a is None:
            continue
        change[set_name] = {
            "risk": _difference(a["risk"], b["risk"]),
            "false_negative_rate": _difference(a["false_negative_rate"], b["false_negative_rate"]),
            "under_segmented_ml": _difference(a["under_segmented_ml"], b["under_segmented_ml"]),
        }
    return change


def _difference(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before
