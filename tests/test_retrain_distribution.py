"""A run against K reference models: set values and spreads from the hook's case records, the gap in oracle
SDs, which references are "in" and "out" for a subject, the membership test and its power."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.retrain_distribution import (
    ReferenceModel,
    cases_mean,
    gap_to_distribution,
    membership_score,
    membership_tests,
    power,
    spread,
)
from nnunet_unlearning.evaluation.subject_lira import INDISTINGUISHABLE, MEMBER, OVER_FORGOTTEN


def _evaluation(cases: dict[str, tuple[float | None, float, int]], tag: str = "end") -> dict:
    """An evaluation record with, per case, (mean Dice, logit confidence, scored voxels); the foreground scores
    are the same, over half the voxels."""
    return {
        "tag": tag,
        "cases": {
            case: {
                "n_valid_voxels": n,
                "mean": {"dice": dice},
                "classes": {},
                "membership": {
                    "logit_confidence": phi,
                    "loss": -phi,
                    "foreground_logit_confidence": phi,
                    "foreground_loss": -phi,
                    "n_foreground_voxels": n // 2,
                },
            }
            for case, (dice, phi, n) in cases.items()
        },
    }


def test_set_values_and_subject_scores_come_from_the_case_records():
    evaluation = _evaluation({"a": (0.8, 2.0, 100), "b": (0.6, 5.0, 300), "c": (None, 1.0, 10)})
    assert cases_mean(evaluation, ["a", "b", "c"]) == pytest.approx(0.7)  # undefined Dice left out
    assert math.isnan(cases_mean(evaluation, ["c"]))
    # the default score is the subject's Dice: the mean of its cases' Dice, as for a set
    assert membership_score(evaluation, ["a", "b"]) == pytest.approx(0.7)
    # the voxel scores are voxel-weighted, as subject_scores pools a subject's cases
    assert membership_score(evaluation, ["a", "b"], "logit_confidence") == pytest.approx((2.0 * 100 + 5.0 * 300) / 400)
    assert membership_score(evaluation, ["a"], "loss") == pytest.approx(-2.0)
    # the foreground scores are weighted by foreground voxels, a case without any is left out
    evaluation["cases"]["b"]["membership"].update(foreground_logit_confidence=7.0, n_foreground_voxels=50)
    evaluation["cases"]["c"]["membership"].update(foreground_logit_confidence=float("nan"), n_foreground_voxels=0)
    fg = "foreground_logit_confidence"
    assert membership_score(evaluation, ["a", "b", "c"], fg) == pytest.approx((2.0 * 50 + 7.0 * 50) / 100)
    assert math.isnan(membership_score(evaluation, ["c"], fg))
    with pytest.raises(UserInputError, match="case z: not scored by the evaluation 'end'"):
        cases_mean(evaluation, ["z"])
    without = {"tag": "end", "cases": {"a": {"n_valid_voxels": 1, "mean": {"dice": 0.5}, "classes": {}}}}
    with pytest.raises(
        UserInputError, match="case a: evaluation 'end' has no foreground_logit_confidence membership score"
    ):
        membership_score(without, ["a"], "foreground_logit_confidence")


def test_gap_in_oracle_standard_deviations():
    oracles = [_evaluation({"f": (d, 0.0, 1), "r": (0.9, 0.0, 1)}) for d in (0.60, 0.64, 0.62, 0.66)]
    run = _evaluation({"f": (0.50, 0.0, 1), "r": (0.9, 0.0, 1)})
    gaps = gap_to_distribution(run, oracles, {"forget": ["f"], "retain": ["r"]})
    sd = float(np.std([0.60, 0.64, 0.62, 0.66], ddof=1))
    assert gaps["forget"]["oracle_mean"] == pytest.approx(0.63) and gaps["forget"]["oracle_std"] == pytest.approx(sd)
    assert gaps["forget"]["gap"] == pytest.approx(-0.13) and gaps["forget"]["gap_in_sd"] == pytest.approx(-0.13 / sd)
    assert gaps["forget"]["k"] == 4
    # identical oracles: no spread, so no gap in SDs (not a division by zero)
    assert gaps["retain"]["gap"] == pytest.approx(0.0) and gaps["retain"]["gap_in_sd"] is None
    one = gap_to_distribution(run, oracles[:1], {"forget": ["f"]})["forget"]
    assert math.isnan(one["oracle_std"]) and one["gap_in_sd"] is None
    assert spread([]).k == 0 and math.isnan(spread([]).mean)


#: The voxel score the in/out bookkeeping tests use (their Dice is constant per side).
FG = "foreground_logit_confidence"


def _references(k: int, member_phi: float = 6.0, out_phi: float = 2.0) -> list[ReferenceModel]:
    """k originals trained on a and b (a's confidence high) and k oracles of a trained on b only."""
    rng = np.random.default_rng(0)
    originals = [
        ReferenceModel(
            f"original {i}",
            frozenset({"a", "b"}),
            _evaluation({"a": (0.8, member_phi + rng.normal(0, 0.3), 50), "b": (0.8, 5.0, 50)}),
        )
        for i in range(k)
    ]
    oracles = [
        ReferenceModel(
            f"oracle {i}",
            frozenset({"b"}),
            _evaluation({"a": (0.7, out_phi + rng.normal(0, 0.3), 50), "b": (0.8, 5.0, 50)}),
        )
        for i in range(k)
    ]
    return originals + oracles


def test_the_membership_test_reads_in_and_out_models_from_what_each_trained_on():
    references = _references(4)
    verdicts = {
        phi: membership_tests(_evaluation({"a": (0.7, phi, 50)}), references, {"A": ["a"]}, score=FG)["A"].verdict
        for phi in (6.0, 2.0, -3.0)
    }
    assert verdicts == {6.0: MEMBER, 2.0: INDISTINGUISHABLE, -3.0: OVER_FORGOTTEN}
    test = membership_tests(_evaluation({"a": (0.7, 2.0, 50)}), references, {"A": ["a"]}, score=FG)["A"]
    assert (test.reference.k_in, test.reference.k_out) == (4, 4)
    # subject B was in every reference model's training: no out model, no test
    assert membership_tests(_evaluation({"b": (0.8, 5.0, 50)}), references, {"B": ["b"]}, score=FG) == {"B": None}


def test_a_model_that_saw_part_of_a_subject_is_neither_in_nor_out():
    partial = ReferenceModel("partial", frozenset({"a1"}), _evaluation({"a1": (0.8, 9.0, 10), "a2": (0.8, 9.0, 10)}))
    inside = [
        ReferenceModel(
            f"in {i}", frozenset({"a1", "a2"}), _evaluation({"a1": (0.8, 5.0 + i, 10), "a2": (0.8, 5.0, 10)})
        )
        for i in range(2)
    ]
    outside = [
        ReferenceModel(f"out {i}", frozenset(), _evaluation({"a1": (0.8, 1.0 + i, 10), "a2": (0.8, 1.0, 10)}))
        for i in range(2)
    ]
    candidate = _evaluation({"a1": (0.8, 1.5, 10), "a2": (0.8, 1.0, 10)})
    test = membership_tests(candidate, [partial, *inside, *outside], {"A": ["a1", "a2"]}, score=FG)["A"]
    assert (test.reference.k_in, test.reference.k_out) == (2, 2)


def test_power_needs_three_models_a_side_and_finds_a_real_separation():
    assert power(_references(2), {"A": ["a"]}, score=FG) is None
    strong = power(_references(6), {"A": ["a"]}, score=FG)
    assert strong is not None and strong.has_power and strong.member_trials == 6 and strong.nonmember_trials == 6
    none = power(_references(6, member_phi=2.0), {"A": ["a"]}, score=FG)
    assert none is not None and not none.has_power


def test_the_default_score_is_the_subjects_dice_with_members_higher():
    """Members fit their subject better in Dice (0.80 ± 0.01 against 0.75 ± 0.01): the default test reads Dice,
    not the confidence, which here is the same for every model."""
    rng = np.random.default_rng(1)
    references = [
        ReferenceModel(f"{side} {i}", trained_on, _evaluation({"a": (dice + rng.normal(0, 0.01), 2.0, 50)}))
        for side, trained_on, dice in (("in", frozenset({"a"}), 0.80), ("out", frozenset(), 0.75))
        for i in range(6)
    ]
    verdicts = {
        dice: membership_tests(_evaluation({"a": (dice, 2.0, 50)}), references, {"A": ["a"]})["A"].verdict
        for dice in (0.80, 0.75, 0.68)
    }
    assert verdicts == {0.80: MEMBER, 0.75: INDISTINGUISHABLE, 0.68: OVER_FORGOTTEN}
    found = power(references, {"A": ["a"]})
    assert found is not None and found.has_power
    confidence = power(references, {"A": ["a"]}, score=FG)
    assert confidence is not None and not confidence.has_power
