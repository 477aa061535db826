"""The per-subject membership test (offline LiRA against the retrain distribution) and its per-subject scores."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.subject_lira import (
    INDISTINGUISHABLE,
    MEMBER,
    OVER_FORGOTTEN,
    SEPARATE_MIN_K,
    fit_reference,
    judge,
    membership_power,
    subject_test,
)
from nnunet_unlearning.evaluation.subject_scores import (
    CLIP,
    MEMBER_HIGHER,
    case_membership,
    subject_score,
    voxel_scores,
)

# --- the test on synthetic Gaussians --------------------------------------------------------------------------


def _draws(seed: int, mean: float, k: int, std: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, k)


def test_member_like_score_is_flagged_out_like_is_not_and_far_below_is_over_forgotten():
    in_scores, out_scores = _draws(0, 5.0, 8), _draws(1, 0.0, 8)
    member = subject_test(in_scores, out_scores, 5.0, subject="MRBrainS18_070")
    retrained = subject_test(in_scores, out_scores, float(out_scores.mean()))
    over = subject_test(in_scores, out_scores, -6.0)

    assert member.verdict == MEMBER and member.log_likelihood_ratio > 0 and member.p_member < 0.025
    assert member.subject == "MRBrainS18_070" and member.p_value == pytest.approx(2 * member.p_member)
    assert retrained.verdict == INDISTINGUISHABLE and retrained.log_likelihood_ratio < 0
    assert retrained.p_member == pytest.approx(0.5) and retrained.p_value == pytest.approx(1.0)
    assert over.verdict == OVER_FORGOTTEN and over.p_over_forgotten < 0.025 and over.p_member > 0.975
    for test in (member, retrained, over):
        assert test.p_member + test.p_over_forgotten == pytest.approx(1.0)
    assert json.loads(json.dumps(member.to_dict()))["reference"]["variance"] == "fixed"


def test_loss_members_score_lower_so_the_member_side_flips():
    assert MEMBER_HIGHER == {
        "dice": True,
        "logit_confidence": True,
        "loss": False,
        "foreground_logit_confidence": True,
        "foreground_loss": False,
    }
    in_loss, out_loss = _draws(2, 0.2, 6, 0.05), _draws(3, 0.6, 6, 0.05)
    assert subject_test(in_loss, out_loss, 0.2, member_higher=False).verdict == MEMBER
    assert subject_test(in_loss, out_loss, 1.0, member_higher=False).verdict == OVER_FORGOTTEN
    # read with the wrong side, a member's low loss would look over-forgotten
    assert subject_test(in_loss, out_loss, 0.2, member_higher=True).verdict == OVER_FORGOTTEN
    fit = fit_reference(in_loss, out_loss, member_higher=False)
    assert fit.separation > 0  # "in" lies on the member side


def test_fixed_variance_at_k2_against_a_hand_computation():
    # in = {1, 3}, out = {0, 2}: pooled variance (1 + 1 + 1 + 1) / (2 + 2 − 2) = 2, 2 degrees of freedom
    fit = fit_reference([1.0, 3.0], [0.0, 2.0])
    assert (fit.variance, fit.dof, fit.k_in, fit.k_out) == ("fixed", 2, 2, 2)
    assert fit.std_in == fit.std_out == pytest.approx(math.sqrt(2))
    assert fit.separation == pytest.approx(1 / math.sqrt(2))
    score = 4.0
    test = judge(fit, score)
    # t with 2 degrees of freedom has the closed-form tail P(T > t) = 1/2 − t / (2 √(2 + t²))
    t = (score - 1.0) / (math.sqrt(2) * math.sqrt(1 + 1 / 2))
    assert test.p_member == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)), rel=1e-9)
    # log N(4; 2, 2) − log N(4; 1, 2) = ((4 − 1)² − (4 − 2)²) / (2 · 2)
    assert test.log_likelihood_ratio == pytest.approx((9 - 4) / 4)
    assert test.verdict == INDISTINGUISHABLE  # at K = 2 a score 3 σ̂ out is still ordinary (p ≈ 0.11)


def test_separate_variances_only_with_many_models_or_when_asked():
    small = fit_reference(_draws(4, 1.0, 5, 1.0), _draws(5, 0.0, 5, 3.0))
    assert small.variance == "fixed" and small.std_in == small.std_out
    many_in, many_out = _draws(6, 1.0, SEPARATE_MIN_K, 1.0), _draws(7, 0.0, SEPARATE_MIN_K, 3.0)
    large = fit_reference(many_in, many_out)
    assert large.variance == "separate" and large.dof == SEPARATE_MIN_K - 1
    assert large.std_in == pytest.approx(many_in.std(ddof=1)) and large.std_out == pytest.approx(many_out.std(ddof=1))
    assert fit_reference(many_in, many_out, variance="fixed").variance == "fixed"
    assert fit_reference([1.0, 2.0], [0.0, 1.0], variance="separate").dof == 1


def test_zero_variance_gives_a_finite_test():
    fit = fit_reference([5.0] * 3, [3.0] * 3)
    assert 0 < fit.std_out < 1e-4
    assert judge(fit, 3.0).verdict == INDISTINGUISHABLE and judge(fit, 3.0).p_member == pytest.approx(0.5)
    member = judge(fit, 5.0)
    assert member.verdict == MEMBER and math.isfinite(member.log_likelihood_ratio)
    same = subject_test([2.0] * 4, [2.0] * 4, 2.0)
    assert same.verdict == INDISTINGUISHABLE and same.log_likelihood_ratio == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: subject_test([1.0], [0.0, 1.0], 0.5, subject="MRBrainS18_1"), "MRBrainS18_1: needs at least 2 in"),
        (lambda: subject_test([1.0, 2.0], [0.0], 0.5), "at least 2 out model scores, got 1"),
        (lambda: subject_test([1.0, float("nan")], [0.0, 1.0], 0.5), "in model score is not a finite number"),
        (lambda: subject_test([1.0, 2.0], [0.0, 1.0], math.inf), "candidate model's score inf"),
        (lambda: subject_test([1.0, 2.0], [0.0, 1.0], 0.5, alpha=0.0), "strictly between 0 and 1"),
        (lambda: subject_test([1.0, 2.0], [0.0, 1.0], 0.5, variance="pooled"), "must be auto, fixed or separate"),  # type: ignore[arg-type]
        (lambda: membership_power({}), "at least one subject"),
        (lambda: membership_power({"s": ([1.0, 2.0], [0.0, 1.0, 2.0])}), "s: the power estimate leaves one model"),
    ],
)
def test_bad_input_is_refused_in_one_line(call, message):
    with pytest.raises(UserInputError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("k", "variance"), [(4, "fixed"), (SEPARATE_MIN_K, "separate")])
def test_p_value_is_calibrated_under_the_null(k, variance):
    """A candidate drawn from the out distribution: p_member uniform, a verdict other than
    "indistinguishable" at rate alpha. The plug-in Gaussian p-value would flag ≈ 13 % at K = 4."""
    rng = np.random.default_rng(11)
    draws = 3000
    p_member = np.empty(draws)
    flagged = 0
    for i in range(draws):
        in_scores, out_scores = rng.normal(2.0, 1.0, k), rng.normal(0.0, 1.0, k)
        test = subject_test(in_scores, out_scores, float(rng.normal(0.0, 1.0)), variance=variance)
        assert test.reference.variance == variance
        p_member[i] = test.p_member
        flagged += test.verdict != INDISTINGUISHABLE
    assert stats.kstest(p_member, "uniform").pvalue > 0.01
    # 3000 draws at rate 0.05: standard deviation 0.004, so ±0.015 is ±3.7 σ
    assert abs(flagged / draws - 0.05) < 0.015


# --- power --------------------------------------------------------------------------------------------------


def _subjects(effect: float, k: int = 5, n: int = 5, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """n subjects with their own baselines; in models score ``effect`` (in model-spread units) above out models."""
    rng = np.random.default_rng(seed)
    subjects = {}
    for s in range(n):
        base = rng.normal(3.0, 2.0)
        subjects[f"subject_{s}"] = (base + 0.3 * effect + rng.normal(0, 0.3, k), base + rng.normal(0, 0.3, k))
    return subjects


def test_power_is_found_where_members_score_higher():
    power = membership_power(_subjects(effect=6.0))
    assert power.has_power and power.sentence.startswith("the test has power at this K (K = 5 in / 5 out, 5 subjects)")
    assert power.member_trials == power.nonmember_trials == 25
    assert power.member_flag_rate > 0.8 and power.nonmember_flag_rate < 0.2
    assert power.auc > 0.95 and power.fisher_p < 1e-6 and power.mean_separation > 4
    as_json = json.loads(json.dumps(power.to_dict()))
    assert as_json["has_power"] is True and as_json["member_flags"] == power.member_flags
    assert power.member_flag_limit > 0.99 and as_json["member_flag_limit"] == power.member_flag_limit


def test_the_flag_limit_follows_the_separation_not_k():
    # separation 0.70 model spreads (the CPU benchmark's): P(Z > 1.96 - 0.70) = 10.4 % at alpha 0.05
    power = dataclasses.replace(membership_power(_subjects(effect=6.0)), mean_separation=0.70)
    assert power.member_flag_limit == pytest.approx(0.1038, abs=1e-4)
    assert power.sentence.endswith("this separation would flag 10 % of members against 2.5 % of non-members.")
    assert dataclasses.replace(power, mean_separation=0.0).member_flag_limit == pytest.approx(0.025)


def test_no_power_without_an_effect_or_with_the_wrong_side():
    # 20 subjects: without an effect, leaving one model out pulls the AUC a little below 1/2 (mean 0.46 over
    # 200 seeds of 5 subjects, standard deviation 0.12)
    none = membership_power(_subjects(effect=0.0, n=20))
    assert not none.has_power and none.sentence.startswith("the test has no")
    assert none.member_flag_rate < 0.1 and none.nonmember_flag_rate < 0.1 and 0.3 < none.auc < 0.6
    assert abs(none.mean_separation) < 0.5
    inverted = membership_power(_subjects(effect=6.0), member_higher=False)
    assert not inverted.has_power and inverted.member_flags == 0
    assert inverted.sentence.startswith("the test has no power at this K")
    assert inverted.mean_separation < -4 and "lie -" in inverted.sentence


def test_one_subject_at_k3_cannot_show_power():
    # K = 3 per side leaves 2 + 3 reference models (3 degrees of freedom): a member 3 spreads out is rarely
    # flagged at α/2, and 3 + 3 trials give Fisher p = 0.05 at best (all members flagged, no non-member)
    power = membership_power(_subjects(effect=3.0, k=3, n=1))
    assert not power.has_power and power.member_trials == power.nonmember_trials == 3
    assert power.sentence.startswith("the test has no")


# --- the per-subject scores ---------------------------------------------------------------------------------

IGNORE = 3


def _toy_case() -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (3, 1, 2, 3), truth (1, 2, 3)) with an outside-the-crop (−1) and an ignore-label voxel."""
    probabilities = np.zeros((3, 1, 2, 3), np.float32)
    probabilities[:, 0, 0, 0] = [0.7, 0.2, 0.1]  # truth 0
    probabilities[:, 0, 0, 1] = [0.25, 0.25, 0.5]  # truth 2
    probabilities[:, 0, 0, 2] = [1.0, 0.0, 0.0]  # truth 0, saturated: clipped
    probabilities[:, 0, 1, 0] = [0.1, 0.6, 0.3]  # truth 1
    probabilities[:, 0, 1, 1] = [0.0, 1.0, 0.0]  # outside the crop
    probabilities[:, 0, 1, 2] = [0.0, 0.0, 1.0]  # ignore label
    truth = np.array([[[0, 2, 0], [1, -1, IGNORE]]], np.int16)
    return probabilities, truth


# φ = log(p / (1 − p)) and loss = −log p of the true label, over the four scored voxels
_PHI = [math.log(0.7 / 0.3), math.log(0.5 / 0.5), math.log(1 / CLIP), math.log(0.6 / 0.4)]
_LOSS = [-math.log(0.7), -math.log(0.5), 0.0, -math.log(0.6)]


def test_voxel_scores_against_a_hand_computation():
    probabilities, truth = _toy_case()
    valid = (truth >= 0) & (truth != IGNORE)
    phi, loss = voxel_scores(probabilities, truth, valid)
    assert phi == pytest.approx(_PHI, rel=1e-6) and loss == pytest.approx(_LOSS, abs=1e-7)


def test_case_membership_means_over_all_scored_and_over_foreground_voxels():
    probabilities, truth = _toy_case()
    scores = case_membership(probabilities, truth, (truth >= 0) & (truth != IGNORE))
    assert scores["logit_confidence"] == pytest.approx(np.mean(_PHI), rel=1e-6)
    assert scores["loss"] == pytest.approx(np.mean(_LOSS), abs=1e-7)
    # the foreground voxels are the second (truth 2) and the fourth (truth 1) scored voxel
    assert scores["n_foreground_voxels"] == 2
    assert scores["foreground_logit_confidence"] == pytest.approx((_PHI[1] + _PHI[3]) / 2, rel=1e-6)
    assert scores["foreground_loss"] == pytest.approx((_LOSS[1] + _LOSS[3]) / 2, abs=1e-7)
    background = case_membership(probabilities, np.zeros_like(truth), truth >= 0)
    assert background["n_foreground_voxels"] == 0 and math.isnan(background["foreground_logit_confidence"])


class _Predictor:
    """Returns log-probabilities as logits, so the softmax gives the case's probabilities back."""

    def __init__(self, probabilities: dict[str, np.ndarray]) -> None:
        self._logits = {k: torch.log(torch.from_numpy(p).double().clamp_min(1e-300)) for k, p in probabilities.items()}
        self.seen: list[tuple[int, ...]] = []

    def predict_sliding_window_return_logits(self, data: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(data.shape))
        return self._logits[str(int(data.flatten()[0]))]


class _Dataset:
    def __init__(self, truths: dict[str, np.ndarray]) -> None:
        self._truths = truths

    def load_case(self, case: str):
        truth = self._truths[case]
        # the image's first voxel names the case for the fake predictor
        return np.full((2, *truth.shape), float(case), np.float32), truth[None], None, {}


def test_subject_score_pools_the_voxels_of_its_cases_and_leaves_out_crop_and_ignore():
    probabilities, truth = _toy_case()
    second = np.array([[[[0.2, 0.6]]], [[[0.6, 0.2]]], [[[0.2, 0.2]]]], np.float32)  # (3, 1, 1, 2)
    second_truth = np.array([[[0, 1]]], np.int16)  # p_g = 0.2 at both voxels
    predictor = _Predictor({"1": probabilities, "2": second})
    score = subject_score(predictor, _Dataset({"1": truth, "2": second_truth}), ["1", "2"], IGNORE)

    phi = [*_PHI, math.log(0.2 / 0.8), math.log(0.2 / 0.8)]
    loss = [*_LOSS, -math.log(0.2), -math.log(0.2)]
    assert score.n_voxels == 6 and predictor.seen == [(2, 1, 2, 3), (2, 1, 1, 2)]
    assert score.logit_confidence == pytest.approx(np.mean(phi), rel=1e-6)
    assert score.loss == pytest.approx(np.mean(loss), rel=1e-6)

    # what the model says outside the crop or at the ignore label does not count
    probabilities[:, 0, 1, 1:] = [[0.9, 0.05], [0.05, 0.9], [0.05, 0.05]]
    again = subject_score(_Predictor({"1": probabilities}), _Dataset({"1": truth}), ["1"], IGNORE)
    assert again.logit_confidence == pytest.approx(np.mean(_PHI), rel=1e-6) and again.n_voxels == 4


def test_subject_score_refuses_labels_the_model_cannot_predict_and_cases_without_labels():
    probabilities, truth = _toy_case()
    with pytest.raises(UserInputError, match="case 1: label 3 at a scored voxel, but the model predicts 3 classes"):
        subject_score(_Predictor({"1": probabilities}), _Dataset({"1": truth}), ["1"], ignore_label=None)
    empty = np.full_like(truth, -1)
    with pytest.raises(UserInputError, match="case 1: no labelled voxel"):
        subject_score(_Predictor({"1": probabilities}), _Dataset({"1": empty}), ["1"], IGNORE)


@pytest.mark.slow
def test_subject_score_of_a_trained_nnunet_model_matches_the_audit_loss(world, original_checkpoint):
    """End to end with nnU-Net's predictor, loaded as the audit loads it, on a real preprocessed case."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    from nnunet_unlearning.artifacts import ModelFolder
    from nnunet_unlearning.evaluation.audit_features import voxel_maps
    from nnunet_unlearning.evaluation.subject_scores import scored_voxels
    from nnunet_unlearning.nnunet.glue import trained_predictor

    predictor = trained_predictor(ModelFolder.parse(original_checkpoint.parent), torch.device("cpu"))
    folder = world.preprocessed / "Dataset501_MRBrainS18" / predictor.configuration_manager.data_identifier
    dataset_class = infer_dataset_class(str(folder))
    case = sorted(dataset_class.get_identifiers(str(folder)))[0]
    dataset = dataset_class(str(folder), [case])
    ignore = predictor.label_manager.ignore_label
    score = subject_score(predictor, dataset, [case], ignore)

    data, seg, _, _ = dataset.load_case(case)
    truth = np.asarray(seg)[0]
    valid = scored_voxels(truth, ignore)
    logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(np.asarray(data)))
    audit_loss = voxel_maps(logits, truth, valid)[0][valid]
    assert score.n_voxels == int(valid.sum()) > 0
    assert score.loss == pytest.approx(float(audit_loss.astype(np.float64).mean()), rel=1e-4)
    assert math.isfinite(score.logit_confidence)
