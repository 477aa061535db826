"""The membership-inference attack of the audit: a classifier of patch features, its scores, bootstrap CIs.

The attacker learns, on one model, to tell patches of its training cases (members: the retain set) from
patches of cases it never saw (non-members: the held-out set), then judges the forget patches. A logistic
regression on standardised features with balanced class weights (scikit-learn) is the classifier; its
"member score" is the predicted member probability, and a patch is judged a member when the score is
above 1/2 (scikit-learn's ``predict``).

Held-out patches used to compare with the forget patches are scored out of fold: by a classifier fitted
without their case (leave one case out), so they are as unseen by the attacker as the forget patches are.
Confidence intervals are percentile bootstraps over patches (the classifiers stay fixed), with one set of
draws per call, so two models audited on the same patches with the same seed get the same draws.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from nnunet_unlearning.records import Estimate, MembershipAttack

#: The two-sided coverage of the reported bootstrap intervals.
CI_LEVEL = 0.95
CLASSIFIER = "StandardScaler + LogisticRegression(class_weight='balanced')"


def membership_classifier(seed: int) -> Pipeline:
    """A fresh, unfitted member (1) vs non-member (0) classifier of patch-feature rows."""
    return make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed)
    )


def judged_nonmember(member_score: np.ndarray) -> np.ndarray:
    """1.0 where the attack judges a patch a non-member (member score <= 1/2), else 0.0."""
    return (member_score <= 0.5).astype(float)


def weighted_auc(positive: np.ndarray, negative: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
    """AUC = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) with per-patch multiplicities, for many weightings at once.

    Exact (the Mann-Whitney statistic, ties counted one half), in O(B (n⁺ + n⁻)) after sorting.

    Args:
        positive: (n⁺,) scores of the positive patches; negative: (n⁻,) scores of the negative patches.
        w_pos: (B, n⁺) non-negative weights (bootstrap counts), w_neg: (B, n⁻) likewise; each row one draw.

    Returns:
        (B,) AUC per row.
    """
    order = np.argsort(negative, kind="stable")
    sorted_negative = negative[order]
    cumulative = np.zeros((w_neg.shape[0], negative.size + 1))
    np.cumsum(w_neg[:, order], axis=1, out=cumulative[:, 1:])
    below = cumulative[:, np.searchsorted(sorted_negative, positive, side="left")]
    up_to = cumulative[:, np.searchsorted(sorted_negative, positive, side="right")]
    wins = (w_pos * (below + 0.5 * (up_to - below))).sum(axis=1)
    return wins / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) over all pairs (equals scikit-learn's ``roc_auc_score``)."""
    return float(weighted_auc(positive, negative, np.ones((1, positive.size)), np.ones((1, negative.size)))[0])


def _interval(draws: np.ndarray) -> list[float] | None:
    if draws.size == 0:
        return None
    tail = 100 * (1 - CI_LEVEL) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return [float(low), float(high)]


def _estimate(value: float, draws: np.ndarray) -> Estimate:
    return {"value": float(value), "ci95": _interval(draws)}


def _stack(features: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, case index per row) of per-case feature arrays, cases in sorted order."""
    cases = sorted(features)
    rows = np.concatenate([features[c] for c in cases], axis=0)
    groups = np.concatenate([np.full(len(features[c]), i) for i, c in enumerate(cases)])
    return rows, groups


def membership_attack(
    members: Mapping[str, np.ndarray],
    nonmembers: Mapping[str, np.ndarray],
    forget: Mapping[str, np.ndarray],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> MembershipAttack:
    """Fit the attack on members vs non-members of one model and judge the forget patches.

    Args:
        members: case id -> (n_patches, F) features of a training case of the model (retain set).
        nonmembers: case id -> (n_patches, F) features of a case the model never saw (held-out set).
        forget: case id -> (n_patches, F) features of the forget cases.
        bootstrap: number of bootstrap draws for the intervals (0: no intervals).
        seed: seeds the classifier and the bootstrap draws.

    Returns:
        ``{"mia_efficacy", "auc_forget_vs_heldout", "attack_auc", "heldout_nonmember_rate"}``, each
        ``{"value": float, "ci95": [low, high] | None}``:

        - mia_efficacy: share of forget patches the attack judges non-members;
        - auc_forget_vs_heldout: AUC of the member score, forget patches (positive) vs out-of-fold
          held-out patches (negative); 1/2 = forget looks like never-seen data;
        - attack_auc: out-of-fold AUC of retain (positive) vs held-out patches: the attack's strength on
          this model (1/2 = it cannot tell members from non-members);
        - heldout_nonmember_rate: share of held-out patches judged non-members out of fold; what the
          efficacy is for data the model never saw.

    Raises:
        ValueError: fewer than 2 member or 2 non-member cases (leave-one-case-out needs both classes in
        every fit), or no forget patch.
    """
    if len(members) < 2 or len(nonmembers) < 2:
        raise ValueError(
            f"the attack needs at least 2 member and 2 non-member cases, got {len(members)} and {len(nonmembers)}"
        )
    member_rows, member_groups = _stack(members)
    nonmember_rows, nonmember_groups = _stack(nonmembers)
    forget_rows, _ = _stack(forget)
    if not len(forget_rows):
        raise ValueError("no forget patches")
    x = np.concatenate([member_rows, nonmember_rows])
    y = np.concatenate([np.ones(len(member_rows), int), np.zeros(len(nonmember_rows), int)])
    groups = np.concatenate([member_groups, nonmember_groups + len(members)])

    forget_score = membership_classifier(seed).fit(x, y).predict_proba(forget_rows)[:, 1]
    forget_nonmember = judged_nonmember(forget_score)

    out_of_fold = np.empty(len(x))
    for group in np.unique(groups):
        held = groups == group
        out_of_fold[held] = membership_classifier(seed).fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
    retain_score, heldout_score = out_of_fold[y == 1], out_of_fold[y == 0]
    heldout_nonmember = judged_nonmember(heldout_score)

    rng = np.random.default_rng(seed)
    draws = {
        name: rng.multinomial(n, np.full(n, 1 / n), size=bootstrap).astype(float)
        for name, n in (("forget", len(forget_rows)), ("retain", len(retain_score)), ("heldout", len(heldout_score)))
    }
    return {
        "mia_efficacy": _estimate(forget_nonmember.mean(), draws["forget"] @ forget_nonmember / len(forget_rows)),
        "auc_forget_vs_heldout": _estimate(
            auc(forget_score, heldout_score),
            weighted_auc(forget_score, heldout_score, draws["forget"], draws["heldout"]),
        ),
        "attack_auc": _estimate(
            auc(retain_score, heldout_score),
            weighted_auc(retain_score, heldout_score, draws["retain"], draws["heldout"]),
        ),
        "heldout_nonmember_rate": _estimate(
            heldout_nonmember.mean(), draws["heldout"] @ heldout_nonmember / len(heldout_score)
        ),
    }
