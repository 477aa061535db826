"""The certificate's verdict on synthetic metrics: each criterion, the overall rule, words chosen by numbers."""

from __future__ import annotations

import pytest

from nnunet_unlearning.evidence.verdict import MET, NOT_MEASURED, NOT_MET, calibration_text, verdict


def _evaluation(tag: str, forget: float, retain: float, heldout: tuple = (0.5, 0.6)) -> dict:
    cases = {"f1": forget, "h1": heldout[0], "h2": heldout[1]}
    return {
        "tag": tag,
        "epoch": 0,
        "cases": {case: {"mean": {"dice": value}} for case, value in cases.items()},
        "sets": {"retain": {"dice": retain}, "heldout": {"dice": sum(heldout) / 2}},
    }


#: the held-out band: these synthetic runs have no retain cases, which the default memorisation reference needs
HELDOUT = {"acceptance": {"reference": "heldout"}}


def _metrics(end_forget: float, end_retain: float = 0.8, start: bool = True, settings: dict | None = HELDOUT) -> dict:
    evaluations = [_evaluation("start", 0.9, 0.8)] if start else []
    evaluations.append(_evaluation("end", end_forget, end_retain))
    return {"forget": ["f1"], "heldout": ["h1", "h2"], "evaluations": evaluations, "settings": settings}


def test_met_when_utility_kept_and_forget_inside_the_band():
    result = verdict(_metrics(0.6), retrain_found=False)
    assert result["overall"] == MET and result["text"].startswith("Overall: met")
    criteria = result["criteria"]
    assert {name: c["verdict"] for name, c in criteria.items()} == {
        "utility_retain": MET,
        "utility_heldout": MET,
        "forgetting": MET,
        "membership_vs_retrain": NOT_MEASURED,
    }
    assert not criteria["membership_vs_retrain"]["required"]
    assert criteria["utility_retain"]["numbers"]["ratio"] == pytest.approx(1.0)
    assert "lies within the held-out band 0.5500 ± 0.0982" in criteria["forgetting"]["text"]
    assert "With 2 held-out cases" in criteria["forgetting"]["text"]
    assert result["acceptance"]["source"] == "the run's settings" and result["calibration"] is None


def test_not_met_says_which_side_and_by_how_much():
    remembered = verdict(_metrics(0.9), retrain_found=True)["criteria"]["forgetting"]
    assert remembered["verdict"] == NOT_MET and "better than cases it never saw" in remembered["text"]
    assert "0.2518 outside" in remembered["text"]
    over = verdict(_metrics(0.3), retrain_found=True)
    assert over["overall"] == NOT_MET and "(forgetting)" in over["text"]
    assert "worse than cases it never saw, which itself marks them" in over["criteria"]["forgetting"]["text"]
    assert "one retrain run was found" in over["criteria"]["membership_vs_retrain"]["text"]

    poor = verdict(_metrics(0.6, end_retain=0.7), retrain_found=False)
    retain = poor["criteria"]["utility_retain"]
    assert (poor["overall"], retain["verdict"]) == (NOT_MET, NOT_MET)
    assert "87.50 % of the original's 0.8000, below the 98.00 % budget by 0.0840 Dice" in retain["text"]


def test_budget_from_the_run_settings_and_not_measured_without_a_start():
    settings = {
        "acceptance": {"utility_budget": 0.85, "score": "dice", "z": 1.0, "tolerance": 0.05, "reference": "heldout"}
    }
    lenient = verdict(_metrics(0.6, end_retain=0.7, settings=settings), retrain_found=False)
    assert lenient["overall"] == MET and lenient["acceptance"]["source"] == "the run's settings"
    retrain = verdict(_metrics(0.6, start=False), retrain_found=False)
    assert retrain["criteria"]["utility_retain"]["verdict"] == NOT_MEASURED
    assert retrain["overall"] == NOT_MEASURED and "utility_retain, utility_heldout" in retrain["text"]


def test_calibration_sentence_follows_the_recorded_decision():
    decision = {
        "reason": "over_forgotten",
        "target_reached": False,
        "stopped_at_epoch": 4,
        "kept_epoch": 3,
        "kept_tag": "epoch_3",
        "steps_used": 30,
        "steps_taken": 40,
        "rolled_back": True,
    }
    text = calibration_text({"decision": decision})
    assert text is not None and "over-forgetting" in text and "rolled back to" in text and "not reached" in text
    reached = calibration_text({"decision": {**decision, "reason": "forgotten", "target_reached": True}})
    assert reached is not None and "reached the band" in reached and "target reached" in reached
    assert calibration_text(None) is None and calibration_text({"decision": None}) is None
    stalled = calibration_text({"decision": {**decision, "reason": "stalled"}, "settings": {"patience": 4}})
    assert stalled is not None and "came no closer to the band in 4 checks in a row" in stalled
    # checks on patches: the sentence says what the decision was taken on
    patches = calibration_text({"decision": decision, "settings": {"scores": "patches", "patches_per_case": 8}})
    assert patches is not None and patches.endswith(
        "Its checks scored 8 fixed patches per case; the criteria judge the certified model on whole volumes."
    )
    assert "patches" not in (calibration_text({"decision": decision, "settings": {"scores": "volumes"}}) or "")


def test_memorisation_reference_judges_the_forget_cases_against_their_own_start():
    # under the original the retain case scores 0.9 and the held-out ones 0.8 and 0.9: memorisation 0.05,
    # so forget cases that scored 0.9 should score 0.85 ± 0.025
    settings = None  # the defaults: the memorisation reference

    def metrics(end_forget: float) -> dict:
        def evaluation(tag: str, forget: float) -> dict:
            cases = {"f1": forget, "r1": 0.9, "h1": 0.8, "h2": 0.9}
            return {"tag": tag, "epoch": 0, "cases": {c: {"mean": {"dice": v}} for c, v in cases.items()},
                    "sets": {"retain": {"dice": 0.9}, "heldout": {"dice": 0.85}}}  # fmt: skip

        evaluations = [evaluation("start", 0.9), evaluation("end", end_forget)]
        return {"forget": ["f1"], "retain": ["r1"], "heldout": ["h1", "h2"], "evaluations": evaluations,
                "settings": settings}  # fmt: skip

    kept = verdict(metrics(0.9), retrain_found=False)["criteria"]["forgetting"]
    assert kept["verdict"] == NOT_MET and "0.0250 outside the memorisation band 0.8500 ± 0.0250" in kept["text"]
    assert "its memorisation 0.0500" in kept["text"]
    assert verdict(metrics(0.86), retrain_found=False)["criteria"]["forgetting"]["verdict"] == MET
    # the held-out band would have certified the original
    assert (
        verdict({**metrics(0.9), "settings": HELDOUT}, retrain_found=False)["criteria"]["forgetting"]["verdict"] == MET
    )
    # a run without a start evaluation (a retrain) cannot be tested against its own start: the text says how
    retrain = verdict({**metrics(0.86), "evaluations": metrics(0.86)["evaluations"][1:]}, retrain_found=False)
    forgetting = retrain["criteria"]["forgetting"]
    assert forgetting["verdict"] == NOT_MEASURED and 'acceptance.reference "heldout"' in forgetting["text"]
