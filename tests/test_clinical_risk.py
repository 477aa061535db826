"""Clinical risk of the critical classes: exact values on hand-made label maps and counts."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.clinical_risk import clinical_risk, critical_classes, risk_change
from nnunet_unlearning.evaluation.metrics import CaseMetrics, ClassMetrics, case_metrics

LABELS = (1, 4, 9)
SPACING = (2.0, 1.0, 1.0)  # 2 mm³ per voxel = 0.002 mL
VOXEL_ML = 0.002


def _case(
    gt_counts: dict[int, int], found: dict[int, int], false_positive: dict[int, int], spacing=SPACING
) -> CaseMetrics:
    """A 1×10×10 case: per class c, ``gt_counts[c]`` true voxels of which ``found[c]`` are predicted c, and
    ``false_positive[c]`` background voxels predicted c (all else background / label 1 filler)."""
    gt = np.zeros(100, np.int16)
    pred = np.zeros(100, np.int16)
    position = 0
    for c, n in gt_counts.items():
        gt[position : position + n] = c
        pred[position : position + found.get(c, 0)] = c  # the rest of this class is predicted background
        position += n
    for c, n in false_positive.items():
        pred[position : position + n] = c
        position += n
    return case_metrics(gt.reshape(1, 10, 10), pred.reshape(1, 10, 10), LABELS, spacing_mm=spacing)


@pytest.fixture()
def cases() -> dict[str, CaseMetrics]:
    return {
        # class 4: 10 true, 6 found (FN 4), 2 false positives; class 9: 5 true, all found
        "A": _case({4: 10, 9: 5}, {4: 6, 9: 5}, {4: 2}),
        # class 4: 3 true, none found (a missed case); one false positive of class 9
        "B": _case({4: 3}, {}, {9: 1}),
        # no critical tissue; one false positive of class 4, and a healthy class that does not count
        "C": _case({1: 20}, {1: 20}, {4: 1}),
    }


def test_exact_risk_rates_and_volumes(cases):
    result = clinical_risk(cases, {"forget": ["B"], "retain": ["A", "B"], "heldout": ["C"]}, critical=(4, 9))
    assert result["critical_classes"] == [4, 9]
    assert result["weights"] == {"fn": 5.0, "fp": 1.0}
    retain = result["sets"]["retain"]
    # summed over classes 4 and 9 and cases A, B: G = 10 + 5 + 3, FN = 4 + 3, FP = 2 + 1
    assert (retain["gt_voxels"], retain["tp_voxels"], retain["fn_voxels"], retain["fp_voxels"]) == (18, 11, 7, 3)
    assert retain["risk"] == pytest.approx((5 * 7 + 3) / 18, rel=1e-12)
    assert retain["false_negative_rate"] == pytest.approx(7 / 18, rel=1e-12)
    assert retain["under_segmented_ml"] == pytest.approx(7 * VOXEL_ML, rel=1e-12)
    assert retain["under_segmented_ml_per_case"] == pytest.approx(7 * VOXEL_ML / 2, rel=1e-12)
    assert (retain["n_cases"], retain["cases_with_critical"], retain["cases_missed"]) == (2, 2, 1)

    lesions = retain["per_class"][4]
    assert (lesions["gt_voxels"], lesions["fn_voxels"], lesions["fp_voxels"]) == (13, 7, 2)
    assert lesions["risk"] == pytest.approx((5 * 7 + 2) / 13, rel=1e-12)
    assert lesions["false_negative_rate"] == pytest.approx(7 / 13, rel=1e-12)
    infarction = retain["per_class"][9]
    assert (infarction["gt_voxels"], infarction["fn_voxels"], infarction["fp_voxels"]) == (5, 0, 1)
    assert infarction["risk"] == pytest.approx(1 / 5, rel=1e-12)
    assert infarction["under_segmented_ml"] == 0.0
    assert (infarction["cases_with_critical"], infarction["cases_missed"]) == (1, 0)

    forget = result["sets"]["forget"]
    assert forget["false_negative_rate"] == 1.0 and forget["cases_missed"] == 1
    assert forget["risk"] == pytest.approx((5 * 3 + 1) / 3, rel=1e-12)

    # no critical ground truth: ratios undefined, false positives still counted
    heldout = result["sets"]["heldout"]
    assert heldout["risk"] is None and heldout["false_negative_rate"] is None
    assert (heldout["fp_voxels"], heldout["cases_with_critical"], heldout["under_segmented_ml"]) == (1, 0, 0.0)


def test_weights_are_configurable_and_a_silent_model_scores_fn_weight(cases):
    sets = {"retain": ["A", "B"]}
    without_fp = clinical_risk(cases, sets, critical=(4, 9), fn_weight=2.0, fp_weight=0.0)["sets"]["retain"]
    assert without_fp["risk"] == pytest.approx(2.0 * 7 / 18, rel=1e-12)
    silent = {"S": _case({4: 10, 9: 5}, {}, {})}
    assert clinical_risk(silent, {"s": ["S"]}, critical=(4, 9))["sets"]["s"]["risk"] == 5.0
    with pytest.raises(UserInputError, match="weights"):
        clinical_risk(cases, sets, critical=(4,), fn_weight=0.0)


def test_a_case_found_in_one_critical_class_is_not_missed():
    case = {"D": _case({4: 4, 9: 4}, {9: 2}, {})}
    result = clinical_risk(case, {"s": ["D"]}, critical=(4, 9))["sets"]["s"]
    assert result["cases_missed"] == 0
    assert result["per_class"][4]["cases_missed"] == 1


def test_true_positives_are_recovered_exactly_from_large_counts():
    n_gt, n_pred, tp = 10_000_019, 9_999_991, 9_876_543
    metrics = ClassMetrics(
        dice=2 * tp / (n_gt + n_pred),
        hard_mae=0.0,
        soft_mae=None,
        volume_similarity=0.0,
        hd95_mm=None,
        n_gt=n_gt,
        n_pred=n_pred,
        volume_gt_ml=n_gt * 0.001,
        volume_pred_ml=n_pred * 0.001,
    )
    result = clinical_risk({"big": CaseMetrics({4: metrics}, 3 * n_gt)}, {"s": ["big"]}, critical=(4,))["sets"]["s"]
    assert (result["tp_voxels"], result["fn_voxels"], result["fp_voxels"]) == (tp, n_gt - tp, n_pred - tp)
    assert result["under_segmented_ml"] == pytest.approx((n_gt - tp) * 0.001, rel=1e-9)


def test_without_spacing_missed_volume_is_undefined_and_rates_are_not(cases):
    no_spacing = {"A": _case({4: 10}, {4: 6}, {}, spacing=None)}
    result = clinical_risk(no_spacing, {"s": ["A"]}, critical=(4,))["sets"]["s"]
    assert result["under_segmented_ml"] is None and result["under_segmented_ml_per_case"] is None
    assert result["false_negative_rate"] == pytest.approx(0.4, rel=1e-12)


def test_refuses_inconsistent_counts_unscored_classes_and_unknown_cases(cases):
    bad = ClassMetrics(
        dice=0.9,
        hard_mae=0.0,
        soft_mae=None,
        volume_similarity=1.0,
        hd95_mm=None,
        n_gt=1,
        n_pred=0,
        volume_gt_ml=None,
        volume_pred_ml=None,
    )
    with pytest.raises(UserInputError, match="case X: class 4 has Dice"):
        clinical_risk({"X": CaseMetrics({4: bad}, 10)}, {"s": ["X"]}, critical=(4,))
    with pytest.raises(UserInputError, match="critical class 5 was not scored"):
        clinical_risk(cases, {"s": ["A"]}, critical=(5,))
    with pytest.raises(UserInputError, match="no metrics for case Z"):
        clinical_risk(cases, {"s": ["Z"]}, critical=(4,))


def test_no_critical_classes_gives_undefined_risk(cases):
    result = clinical_risk(cases, {"s": ["A"]}, critical=())["sets"]["s"]
    assert result["risk"] is None and result["per_class"] == {} and result["gt_voxels"] == 0


def test_risk_change_after_minus_before(cases):
    sets = {"retain": ["A"]}
    before = clinical_risk(cases, sets, critical=(4, 9))
    worse = {"A": _case({4: 10, 9: 5}, {4: 2, 9: 5}, {4: 2})}
    after = clinical_risk(worse, sets, critical=(4, 9))
    change = risk_change(before, after)["retain"]
    assert change["false_negative_rate"] == pytest.approx(4 / 15, rel=1e-12)
    assert change["risk"] == pytest.approx(5 * 4 / 15, rel=1e-12)
    assert change["under_segmented_ml"] == pytest.approx(4 * VOXEL_ML, rel=1e-12)
    none = risk_change(clinical_risk(cases, {"retain": ["C"]}, critical=(4,)), after)["retain"]
    assert none["risk"] is None


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # the converter's "challenge" label set: infarction is the ignore label, only lesions are critical
        ({"background": 0, "cortical_gray_matter": 1, "white_matter_lesions": 4, "brain_stem": 8, "ignore": 9}, (4,)),
        ({"background": 0, "white_matter_lesions": 4, "infarction": 9, "other": 10}, (4, 9)),
        # no names: the MRBrainS18 values where they are foreground labels
        ({"background": 0, "a": 1, "b": 4, "c": 9}, (4, 9)),
        ({"background": 0, "a": 1, "b": 4, "ignore": 9}, (4,)),
        ({"background": 0, "brain": 1}, ()),
    ],
)
def test_critical_classes_by_name_then_value(labels, expected):
    assert critical_classes({"labels": labels}) == expected
