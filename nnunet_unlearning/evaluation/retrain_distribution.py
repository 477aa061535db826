"""A run judged against the retrain distribution: K reference models instead of one oracle.

One retrained model's Dice varies from seed to seed by more than the few points unlearning has to remove, so
a run is compared with K retrained models (the oracles, trained without the forget cases) and K originals
(trained with them), each scored by the evaluation hook on the same cases (``EvaluationRecord``):

- Dice (or any metric of the hook) per set: the oracles' mean and standard deviation, and the run's gap to
  the mean in absolute terms and in units of that standard deviation (`gap_to_distribution`);
- the per-subject membership test (`subject_lira`, offline LiRA): for each forget subject, the run's
  membership score judged against the subject's scores under the reference models that trained on it ("in")
  and those that did not ("out") (`membership_tests`), and the test's power over every subject that has
  both (`power`).

A reference model is "in" for a subject when its training cases include all of the subject's cases, "out"
when they include none (a model that saw some of a subject's cases is neither). With leave-one-subject-out
oracles, each oracle is "out" for its forgotten subject and "in" for the others; originals are "in" for every
training subject. Scores come from the hook's per-case records: a subject's Dice (also the membership test's
default score) is the mean of its cases' mean Dice, a voxel membership score the voxel-weighted mean over its
cases (as `subject_scores.subject_score`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.subject_lira import ALPHA, Power, SubjectTest, membership_power, subject_test
from nnunet_unlearning.evaluation.subject_scores import MEMBER_HIGHER
from nnunet_unlearning.records import EvaluationRecord

#: The membership score the test uses by default: the subject's Dice, the quantity unlearning has to move. Chosen
#: after the stop-31 collection of the CPU benchmark measured the test's power on every score (docs/audit.md,
#: "The score"): on the same 28 models Dice flagged 18 of 76 members against 0 of 36 non-members, the
#: logit-scaled foreground confidence (the default before) 7 of 76 against 0 of 36.
SCORE = "dice"
#: Every score the benchmark measures the test's power with, the default first.
SCORES = (SCORE, "foreground_logit_confidence", "foreground_loss", "logit_confidence")
#: Scores read from a case's metrics (the hook's ``mean``) rather than from its ``membership`` record.
METRIC_SCORES = ("dice",)


@dataclass(frozen=True)
class ReferenceModel:
    """A model of the retrain distribution: its name, the case ids it trained on, its evaluation."""

    name: str
    trained_on: frozenset[str]
    evaluation: EvaluationRecord


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (ddof 1; NaN below 2 models) of a value over ``k`` models."""

    mean: float
    std: float
    k: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _case(evaluation: EvaluationRecord, case: str) -> Mapping:
    try:
        return evaluation["cases"][case]
    except KeyError:
        raise UserInputError(f"case {case}: not scored by the evaluation {evaluation['tag']!r}") from None


def cases_mean(evaluation: EvaluationRecord, cases: Sequence[str], metric: str = "dice") -> float:
    """The mean over ``cases`` of each case's mean ``metric`` over its classes (the hook's set value);
    NaN when no case defines it."""
    values = [_case(evaluation, c)["mean"][metric] for c in cases]
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else math.nan


def membership_score(evaluation: EvaluationRecord, cases: Sequence[str], score: str = SCORE) -> float:
    """A subject's membership ``score`` under the evaluated model: for ``dice`` the mean of its cases' Dice
    (`cases_mean`), for the voxel scores the voxel-weighted mean over its cases (the foreground scores weighted
    by foreground voxels; cases without any left out)."""
    if score in METRIC_SCORES:
        return cases_mean(evaluation, cases, score)
    records = [_case(evaluation, c) for c in cases]
    missing = next((c for c, r in zip(cases, records) if score not in r.get("membership", {})), None)
    if missing is not None:
        raise UserInputError(f"case {missing}: evaluation {evaluation['tag']!r} has no {score} membership score")
    if score.startswith("foreground_"):
        weights = np.array([r["membership"]["n_foreground_voxels"] for r in records], dtype=np.float64)
    else:
        weights = np.array([r["n_valid_voxels"] for r in records], dtype=np.float64)
    values = np.array([r["membership"][score] for r in records], dtype=np.float64)
    kept = weights > 0
    if not kept.any():
        return math.nan
    return float((weights[kept] * values[kept]).sum() / weights[kept].sum())


def spread(values: Sequence[float]) -> Spread:
    """The mean and standard deviation of ``values``, undefined (NaN) values left out."""
    kept = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if kept.size == 0:
        return Spread(math.nan, math.nan, 0)
    return Spread(float(kept.mean()), float(kept.std(ddof=1)) if kept.size > 1 else math.nan, int(kept.size))


def gap_to_distribution(
    evaluation: EvaluationRecord,
    oracles: Sequence[EvaluationRecord],
    sets: Mapping[str, Sequence[str]],
    metric: str = "dice",
) -> dict[str, dict[str, float | int | None]]:
    """Per set: the run's value, the oracles' mean, SD and K, the gap (run − mean) and the gap in SDs.

    The gap in SDs is None when the SD is undefined (fewer than 2 oracles) or zero.
    """
    result: dict[str, dict[str, float | int | None]] = {}
    for name, cases in sets.items():
        value = cases_mean(evaluation, cases, metric)
        oracle = spread([cases_mean(o, cases, metric) for o in oracles])
        gap = value - oracle.mean
        defined_sd = not math.isnan(oracle.std) and oracle.std > 0
        result[name] = {
            "value": value,
            "oracle_mean": oracle.mean,
            "oracle_std": oracle.std,
            "k": oracle.k,
            "gap": gap,
            "gap_in_sd": gap / oracle.std if defined_sd and not math.isnan(gap) else None,
        }
    return result


def _sides(references: Sequence[ReferenceModel], cases: Sequence[str], score: str) -> tuple[list[float], list[float]]:
    """The subject's scores under the reference models that trained on it, and under those that did not."""
    inside, outside = [], []
    for model in references:
        seen = [c in model.trained_on for c in cases]
        if all(seen):
            inside.append(membership_score(model.evaluation, cases, score))
        elif not any(seen):
            outside.append(membership_score(model.evaluation, cases, score))
    return inside, outside


def membership_tests(
    evaluation: EvaluationRecord,
    references: Sequence[ReferenceModel],
    subjects: Mapping[str, Sequence[str]],
    *,
    score: str = SCORE,
    alpha: float = ALPHA,
) -> dict[str, SubjectTest | None]:
    """The membership test of the evaluated model on each subject (subject → its case ids): its score against
    the subject's in and out reference models; None for a subject with fewer than 2 models on a side."""
    tests: dict[str, SubjectTest | None] = {}
    for subject, cases in subjects.items():
        inside, outside = _sides(references, cases, score)
        if min(len(inside), len(outside)) < 2:
            tests[subject] = None
            continue
        tests[subject] = subject_test(
            inside,
            outside,
            membership_score(evaluation, cases, score),
            member_higher=MEMBER_HIGHER[score],
            alpha=alpha,
            subject=subject,
        )
    return tests


def power(
    references: Sequence[ReferenceModel],
    subjects: Mapping[str, Sequence[str]],
    *,
    score: str = SCORE,
    alpha: float = ALPHA,
) -> Power | None:
    """The membership test's power over the subjects with at least 3 in and 3 out reference models
    (`subject_lira.membership_power`); None when no subject has them."""
    usable = {}
    for subject, cases in subjects.items():
        inside, outside = _sides(references, cases, score)
        if min(len(inside), len(outside)) >= 3:
            usable[subject] = (inside, outside)
    if not usable:
        return None
    return membership_power(usable, member_higher=MEMBER_HIGHER[score], alpha=alpha)
