"""A per-subject membership test against the retrain distribution: offline LiRA at subject level.

For one subject, K_in "in" models were trained with it (the original and its reseeded copies) and K_out
"out" models without it (retrain oracles). Each model has one score on the subject (`subject_scores`,
e.g. the mean logit-scaled confidence). The scores are modelled as Gaussians, N(μ_in, σ_in²) and
N(μ_out, σ_out²), and a candidate model's score x (an unlearned model) is judged against them:

- the log likelihood ratio Λ = log N(x; μ_in, σ_in²) − log N(x; μ_out, σ_out²) (Carlini et al. 2022,
  "Membership Inference Attacks From First Principles"; > 0: x is likelier under "in");
- the one-sided p-value under "out", p_member: how unusual x is, towards the member side, for a model
  that never saw the subject (offline LiRA; Hayes et al., "Inexact unlearning needs more careful
  evaluations to avoid a false sense of privacy", apply it to unlearning as U-LiRA). The member side is
  fixed in advance per score (`subject_scores.MEMBER_HIGHER`), not read from the data, which at small K
  may put μ_in on the wrong side by chance;
- a verdict at significance level α: "looks like a member" when p_member ≤ α/2, "looks over-forgotten"
  when p_over = 1 − p_member ≤ α/2 (the score is far on the non-member side: the subject is now *less*
  familiar than to a model that never saw them, which marks them too), otherwise "indistinguishable from
  retrained". The two tails share α, so a model whose score is a draw from the out distribution gets a
  verdict other than "indistinguishable" with probability α.

Variance. With a few models per side, a standard deviation from one side alone is too noisy (K = 4: ±41 %),
so the default, LiRA's fixed-variance variant, uses one σ for both sides: the pooled within-side standard
deviation (the models differ by seed only, so their spread is assumed the same with and without the
subject), with K_in + K_out − 2 degrees of freedom. Carlini et al. pool over all examples instead; here the
subjects differ too much in anatomy and label volumes to share one σ. Separate σ_in, σ_out are used when
asked, or by "auto" from `SEPARATE_MIN_K` models on each side. The p-value uses the Student-t predictive
distribution of a new out score, (x − μ̂_out) / (σ̂ √(1 + 1/K_out)) ~ t_ν, which is exact for Gaussian
scores (μ̂, σ̂ estimated from the same K models) and becomes LiRA's Gaussian as K grows. σ̂ is floored at
`STD_FLOOR` times the scale of the means, so identical scores (zero variance) give a finite test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.audit_attack import auc

Variance = Literal["auto", "fixed", "separate"]
#: One score per model, in any order.
Scores = Sequence[float] | np.ndarray

MEMBER = "looks like a member"
OVER_FORGOTTEN = "looks over-forgotten"
INDISTINGUISHABLE = "indistinguishable from retrained"

#: Default significance level of a verdict (both tails together) and of the power test.
ALPHA = 0.05
#: With "auto", models needed on each side before σ_in and σ_out are estimated separately; each is then
#: known to about ±13 % (relative standard error 1/√(2(K−1))).
SEPARATE_MIN_K = 32
#: Smallest σ̂, relative to max(1, |μ̂_in|, |μ̂_out|): float32 rounding of a score, not a spread between models.
STD_FLOOR = 1e-6


@dataclass(frozen=True)
class ReferenceFit:
    """The Gaussians of one subject's score under the K_in "in" and K_out "out" models.

    ``variance`` is "fixed" (std_in = std_out, pooled) or "separate"; ``dof`` the degrees of freedom of the
    out σ̂ (K_in + K_out − 2 pooled, K_out − 1 separate); ``separation`` = (μ_in − μ_out) / σ̄ with σ̄ the
    root mean square of std_in, std_out, signed so that > 0 means "in" lies on the member side.
    """

    mean_in: float
    mean_out: float
    std_in: float
    std_out: float
    k_in: int
    k_out: int
    variance: Literal["fixed", "separate"]
    dof: int
    member_higher: bool
    separation: float


@dataclass(frozen=True)
class SubjectTest:
    """A candidate model's score on one subject, judged against the subject's `ReferenceFit`."""

    subject: str
    score: float
    log_likelihood_ratio: float
    p_member: float
    p_over_forgotten: float
    p_value: float  # two-sided: min(1, 2 min(p_member, p_over_forgotten)); the verdict compares it to alpha
    alpha: float
    verdict: str
    reference: ReferenceFit

    def to_dict(self) -> dict[str, object]:
        """The test's fields, its reference fit as a nested dict."""
        return asdict(self)


def _scores(values: Scores, what: str, subject: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise UserInputError(f"subject {subject}: needs at least 2 {what} model scores, got {array.size}")
    if not np.isfinite(array).all():
        raise UserInputError(f"subject {subject}: a {what} model score is not a finite number")
    return array


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise UserInputError(f"significance level {alpha}: must lie strictly between 0 and 1")


def fit_reference(
    in_scores: Scores,
    out_scores: Scores,
    *,
    member_higher: bool = True,
    variance: Variance = "auto",
    subject: str = "?",
) -> ReferenceFit:
    """Fit the subject's in and out Gaussians from K_in ≥ 2 and K_out ≥ 2 model scores.

    Args:
        in_scores: the subject's score under each model trained with it.
        out_scores: the subject's score under each model trained without it (retrained).
        member_higher: whether members score higher (`subject_scores.MEMBER_HIGHER`).
        variance: "fixed" (one pooled σ), "separate" (σ_in, σ_out), or "auto" (separate from
            `SEPARATE_MIN_K` models on each side, else fixed).
        subject: the subject's name, for error messages.
    """
    x_in = _scores(in_scores, "in", subject)
    x_out = _scores(out_scores, "out", subject)
    if variance not in ("auto", "fixed", "separate"):
        raise UserInputError(f"variance {variance!r}: must be auto, fixed or separate")
    separate = variance == "separate" or (variance == "auto" and min(x_in.size, x_out.size) >= SEPARATE_MIN_K)
    mean_in, mean_out = float(x_in.mean()), float(x_out.mean())
    floor = STD_FLOOR * max(1.0, abs(mean_in), abs(mean_out))
    if separate:
        std_in = max(float(x_in.std(ddof=1)), floor)
        std_out = max(float(x_out.std(ddof=1)), floor)
        dof = x_out.size - 1
    else:
        dof = x_in.size + x_out.size - 2
        squares = float(((x_in - mean_in) ** 2).sum() + ((x_out - mean_out) ** 2).sum())
        std_in = std_out = max(math.sqrt(squares / dof), floor)
    side = 1.0 if member_higher else -1.0
    return ReferenceFit(
        mean_in=mean_in,
        mean_out=mean_out,
        std_in=std_in,
        std_out=std_out,
        k_in=int(x_in.size),
        k_out=int(x_out.size),
        variance="separate" if separate else "fixed",
        dof=dof,
        member_higher=member_higher,
        separation=side * (mean_in - mean_out) / math.sqrt((std_in**2 + std_out**2) / 2),
    )


def judge(reference: ReferenceFit, score: float, *, alpha: float = ALPHA, subject: str = "?") -> SubjectTest:
    """Judge a candidate model's score on the subject against the subject's fitted in/out Gaussians."""
    _check_alpha(alpha)
    if not math.isfinite(score):
        raise UserInputError(f"subject {subject}: the candidate model's score {score} is not a finite number")
    r = reference
    log_lr = float(stats.norm.logpdf(score, r.mean_in, r.std_in) - stats.norm.logpdf(score, r.mean_out, r.std_out))
    t = (score - r.mean_out) / (r.std_out * math.sqrt(1 + 1 / r.k_out))
    # each tail from its own function: 1 − p loses the small p of the other tail to rounding
    above, below = float(stats.t.sf(t, r.dof)), float(stats.t.cdf(t, r.dof))
    p_member, p_over = (above, below) if r.member_higher else (below, above)
    p_value = min(1.0, 2 * min(p_member, p_over))
    if p_value > alpha:
        verdict = INDISTINGUISHABLE
    elif p_member < p_over:
        verdict = MEMBER
    else:
        verdict = OVER_FORGOTTEN
    return SubjectTest(
        subject=subject,
        score=float(score),
        log_likelihood_ratio=log_lr,
        p_member=p_member,
        p_over_forgotten=p_over,
        p_value=p_value,
        alpha=alpha,
        verdict=verdict,
        reference=reference,
    )


def subject_test(
    in_scores: Scores,
    out_scores: Scores,
    score: float,
    *,
    member_higher: bool = True,
    alpha: float = ALPHA,
    variance: Variance = "auto",
    subject: str = "?",
) -> SubjectTest:
    """The membership test of one candidate score on one subject (`fit_reference`, then `judge`).

    Raises:
        UserInputError: fewer than 2 scores on a side, a score that is not finite, alpha outside (0, 1) or an
        unknown variance mode; the message names the subject.
    """
    reference = fit_reference(in_scores, out_scores, member_higher=member_higher, variance=variance, subject=subject)
    return judge(reference, score, alpha=alpha, subject=subject)


@dataclass(frozen=True)
class Power:
    """How often the test flags models on subjects they trained on (members) and on subjects they never saw.

    Every in and every out model of every subject is the candidate once, judged against the subject's other
    models (leave one model out), so K_in ≥ 3 and K_out ≥ 3 are needed. ``k_in``, ``k_out``: the fewest
    models given on a side for one subject (a fit then uses K − 1 on the candidate's side). A flag is the
    verdict "looks like a member". ``fisher_p``: one-sided Fisher exact test that members are flagged more
    often than non-members; ``auc``: of the log likelihood ratio, members (positive) vs non-members
    (negative), which is blind to the side (an AUC near 1 with no flags means the score moves the other
    way); ``mean_separation``: mean over subjects of `ReferenceFit.separation` from all their models
    (> 0: in models lie on the member side).
    """

    k_in: int
    k_out: int
    subjects: int
    member_trials: int
    member_flags: int
    nonmember_trials: int
    nonmember_flags: int
    auc: float
    fisher_p: float
    mean_separation: float
    alpha: float

    @property
    def member_flag_rate(self) -> float:
        return self.member_flags / self.member_trials

    @property
    def nonmember_flag_rate(self) -> float:
        return self.nonmember_flags / self.nonmember_trials

    @property
    def has_power(self) -> bool:
        """Members flagged more often than non-members, significantly at alpha."""
        return self.member_flag_rate > self.nonmember_flag_rate and self.fisher_p <= self.alpha

    @property
    def member_flag_limit(self) -> float:
        """The member flag rate the test tends to as K grows, at this separation: P(Z > z_{1−α/2} − separation)
        for Gaussian scores of one spread on both sides (the fixed-variance test's model, μ and σ then known);
        non-members are flagged at α/2 however large K is. More models cannot raise power beyond this: only a
        larger separation (a model that memorises more) can."""
        return float(stats.norm.sf(stats.norm.isf(self.alpha / 2) - self.mean_separation))

    @property
    def sentence(self) -> str:
        """The reading, chosen by the numbers."""
        if self.member_flag_rate <= self.nonmember_flag_rate:
            reading = "the test has no power at this K"
        elif not self.has_power:
            reading = "the test has no demonstrated power at this K"
        else:
            reading = "the test has power at this K"
        significance = ">" if self.fisher_p > self.alpha else "≤"
        return (
            f"{reading} (K = {self.k_in} in / {self.k_out} out, {self.subjects} "
            f"subject{'' if self.subjects == 1 else 's'}): it flags {self.member_flags}/{self.member_trials} "
            f"models on subjects they trained on ({100 * self.member_flag_rate:.0f} %) and "
            f"{self.nonmember_flags}/{self.nonmember_trials} on subjects they never saw "
            f"({100 * self.nonmember_flag_rate:.0f} %), one-sided Fisher exact p = {self.fisher_p:.3g} "
            f"{significance} α = {self.alpha}; in models lie {self.mean_separation:+.2f} model spreads towards "
            f"the member side of out models, AUC of the log likelihood ratio {self.auc:.2f}. With many models "
            f"(K → ∞) this separation would flag {100 * self.member_flag_limit:.0f} % of members against "
            f"{100 * self.alpha / 2:.1f} % of non-members."
        )

    def to_dict(self) -> dict[str, object]:
        """The fields, then the derived rates, ``has_power`` and the sentence."""
        derived = ("member_flag_rate", "nonmember_flag_rate", "member_flag_limit", "has_power", "sentence")
        return {**asdict(self), **{name: getattr(self, name) for name in derived}}


def _leave_one_out(
    in_scores: np.ndarray, out_scores: np.ndarray, subject: str, alpha: float, member_higher: bool, variance: Variance
) -> tuple[list[SubjectTest], list[SubjectTest]]:
    """(tests of each in model, tests of each out model), each against the subject's other models."""

    def test(reference_in: np.ndarray, reference_out: np.ndarray, score: float) -> SubjectTest:
        return subject_test(
            reference_in,
            reference_out,
            score,
            member_higher=member_higher,
            alpha=alpha,
            variance=variance,
            subject=subject,
        )

    members = [test(np.delete(in_scores, i), out_scores, float(x)) for i, x in enumerate(in_scores)]
    nonmembers = [test(in_scores, np.delete(out_scores, i), float(x)) for i, x in enumerate(out_scores)]
    return members, nonmembers


def membership_power(
    subjects: Mapping[str, tuple[Scores, Scores]],
    *,
    member_higher: bool = True,
    alpha: float = ALPHA,
    variance: Variance = "auto",
) -> Power:
    """Whether the test tells models that trained on a subject from models that did not, at this K.

    Args:
        subjects: subject -> (its scores under the models trained with it, under the models trained
            without it). Leave-one-subject-out folds give both: each fold's model is "in" for the subjects it
            trained on and "out" for the one held out of it; originals are "in" for all training subjects.
        member_higher, alpha, variance: as for `subject_test`.

    Raises:
        UserInputError: no subject, or a subject with fewer than 3 scores on a side.
    """
    _check_alpha(alpha)
    if not subjects:
        raise UserInputError("the power estimate needs at least one subject with in and out model scores")
    members: list[SubjectTest] = []
    nonmembers: list[SubjectTest] = []
    k_in = k_out = math.inf
    separations = []
    for subject, (in_scores, out_scores) in subjects.items():
        x_in, x_out = _scores(in_scores, "in", subject), _scores(out_scores, "out", subject)
        if min(x_in.size, x_out.size) < 3:
            raise UserInputError(
                f"subject {subject}: the power estimate leaves one model out and needs at least 3 in and 3 out "
                f"model scores, got {x_in.size} and {x_out.size}"
            )
        tested = _leave_one_out(x_in, x_out, subject, alpha, member_higher, variance)
        members += tested[0]
        nonmembers += tested[1]
        k_in, k_out = min(k_in, x_in.size), min(k_out, x_out.size)
        separations.append(
            fit_reference(x_in, x_out, member_higher=member_higher, variance=variance, subject=subject).separation
        )
    member_flags = sum(t.verdict == MEMBER for t in members)
    nonmember_flags = sum(t.verdict == MEMBER for t in nonmembers)
    table = [[member_flags, len(members) - member_flags], [nonmember_flags, len(nonmembers) - nonmember_flags]]
    return Power(
        k_in=int(k_in),
        k_out=int(k_out),
        subjects=len(subjects),
        member_trials=len(members),
        member_flags=member_flags,
        nonmember_trials=len(nonmembers),
        nonmember_flags=nonmember_flags,
        auc=auc(
            np.array([t.log_likelihood_ratio for t in members]), np.array([t.log_likelihood_ratio for t in nonmembers])
        ),
        fisher_p=float(stats.fisher_exact(table, alternative="greater").pvalue),
        mean_separation=float(np.mean(separations)),
        alpha=alpha,
    )
