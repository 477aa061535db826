"""The calibrated stopping rule on synthetic score streams: no nnU-Net, no model.

Held-out subjects score 0.5 and 0.6 Dice throughout (mean 0.55, sd 0.0707): with z = 1 and tolerance 0.05
the band is 0.55 ± 0.0982, i.e. [0.4518, 0.6482].
"""

from __future__ import annotations

import math

import pytest

from nnunet_unlearning.evaluation.calibration import (
    AcceptanceCriteria,
    Calibration,
    CalibrationSettings,
    StartScores,
    forgetting_test,
)

SETS = {"forget": ["f1"], "heldout": ["h1", "h2"]}
#: the held-out band (these streams have no retain cases, which the default memorisation reference needs)
CRITERIA = AcceptanceCriteria(reference="heldout")
HALF = 0.1 / math.sqrt(2) + 0.05 * 0.55


def _evaluation(epoch: int, forget: float, retain: float = 0.8, heldout: tuple = (0.5, 0.6)) -> dict:
    """An evaluation as the hook writes it: per-case means, per-set Dice (held-out's = mean of its cases)."""
    cases = {"f1": forget, "h1": heldout[0], "h2": heldout[1]}
    return {
        "tag": "start" if epoch == 0 else f"epoch_{epoch}",
        "epoch": epoch,
        "cases": {case: {"mean": {"dice": value, "hard_mae": 1 - value}} for case, value in cases.items()},
        "sets": {"retain": {"dice": retain}, "heldout": {"dice": sum(heldout) / 2}},
    }


def _run(stream: list[dict], last_is_end: bool = True, patience: int | None = None) -> tuple[Calibration, list]:
    """Feed ``stream`` (the first: the original) until the rule stops; return the calibration and decisions."""
    calibration = Calibration(CRITERIA, CalibrationSettings(enabled=True, patience=patience), SETS)
    decisions = []
    for i, evaluation in enumerate(stream):
        decision = calibration.add(
            evaluation, steps=10 * i, state=lambda i=i: f"state {i}", last=last_is_end and i == len(stream) - 1
        )
        decisions.append(decision)
        assert len(calibration._states) <= 2  # the newest and the closest within budget, no more
        if decision.stop:
            break
    return calibration, decisions


def test_band_and_states_for_dice_and_mae():
    test = forgetting_test([0.7], [0.5, 0.6], CRITERIA)
    assert test.heldout_sd == pytest.approx(0.1 / math.sqrt(2))
    assert test.half_width == pytest.approx(HALF)
    assert (test.gap, test.state) == (pytest.approx(0.15), "remembered")
    assert test.distance == pytest.approx(0.15 - HALF)
    assert forgetting_test([0.64], [0.5, 0.6], CRITERIA).state == "forgotten"
    assert forgetting_test([0.45], [0.5, 0.6], CRITERIA).state == "over_forgotten"
    # MAE: lower is better, so a low forget MAE is the remembered side
    mae = AcceptanceCriteria(score="hard_mae", tolerance=0.0, reference="heldout")
    assert forgetting_test([0.1], [0.4, 0.5], mae).state == "remembered"
    assert forgetting_test([0.8], [0.4, 0.5], mae).state == "over_forgotten"
    # one held-out subject: the tolerance alone; NaN left out
    single = forgetting_test([0.52, math.nan], [0.5], CRITERIA)
    assert (single.heldout_sd, single.half_width, single.state) == (0.0, pytest.approx(0.025), "forgotten")
    assert forgetting_test([0.53], [0.5], CRITERIA).state == "remembered"
    with pytest.raises(ValueError, match="no defined dice for the forget subjects"):
        forgetting_test([math.nan], [0.5], CRITERIA)


def test_stops_at_the_first_check_inside_the_band():
    calibration, decisions = _run([_evaluation(e, f) for e, f in enumerate([0.9, 0.8, 0.7, 0.64, 0.5])])
    assert [d.reason for d in decisions] == [None, None, None, "forgotten"]
    assert decisions[-1].keep == 3 and decisions[-1].target_reached
    assert calibration.kept_state() == "state 3"
    summary = calibration.to_json()["decision"]
    assert summary == {
        "reason": "forgotten",
        "target_reached": True,
        "stopped_at_epoch": 3,
        "kept_epoch": 3,
        "kept_tag": "epoch_3",
        "steps_used": 30,
        "steps_taken": 30,
        "rolled_back": False,
    }
    assert [c["state"] for c in calibration.to_json()["checks"]] == ["remembered"] * 3 + ["forgotten"]


def test_utility_budget_wins_and_returns_the_last_state_within_it():
    # retain Dice 0.8 -> 0.79 (98.75 %) -> 0.78 (97.5 %, below 98 %) while the forget case is inside the band
    stream = [_evaluation(0, 0.9), _evaluation(1, 0.75, retain=0.79), _evaluation(2, 0.6, retain=0.78)]
    calibration, decisions = _run(stream)
    assert decisions[-1].reason == "utility_budget" and not decisions[-1].target_reached
    assert calibration.kept_state() == "state 1"
    assert calibration.to_json()["decision"]["rolled_back"] is True
    # held-out Dice counts as much as retain Dice
    held = [_evaluation(0, 0.9), _evaluation(1, 0.6, heldout=(0.45, 0.6))]
    calibration, decisions = _run(held)
    assert (decisions[-1].reason, calibration.kept_state()) == ("utility_budget", "state 0")


def test_over_forgetting_stops_and_rolls_back_to_the_closest_state():
    calibration, decisions = _run([_evaluation(0, 0.9), _evaluation(1, 0.7), _evaluation(2, 0.2)])
    assert decisions[-1].reason == "over_forgotten" and not decisions[-1].target_reached
    assert calibration.kept_state() == "state 1"  # 0.7 lies 0.052 above the band, 0.2 lies 0.252 below it
    # when the over-forgotten state is the closer one, it is kept
    calibration, decisions = _run([_evaluation(0, 0.9), _evaluation(1, 0.8), _evaluation(2, 0.44)])
    assert (decisions[-1].reason, calibration.kept_state()) == ("over_forgotten", "state 2")


def test_schedule_end_keeps_the_closest_state_and_says_the_target_was_missed():
    calibration, decisions = _run([_evaluation(0, 0.9), _evaluation(1, 0.75), _evaluation(2, 0.8)])
    assert [d.reason for d in decisions] == [None, None, "schedule_end"]
    assert calibration.kept_state() == "state 1" and not decisions[-1].target_reached


def test_patience_gives_up_when_no_check_comes_closer_and_keeps_the_closest_state():
    # closest at check 1 (0.75); checks 2-4 lie farther from the band: with patience 3 the run stops at check 4
    forget = [0.9, 0.75, 0.8, 0.77, 0.76, 0.64]
    calibration, decisions = _run([_evaluation(e, f) for e, f in enumerate(forget)], patience=3)
    assert [d.reason for d in decisions] == [None, None, None, None, "stalled"]
    assert calibration.kept_state() == "state 1" and not decisions[-1].target_reached
    assert calibration.to_json()["decision"]["rolled_back"] is True
    # a check that comes closer starts the count again; the band reached wins over the count
    closer = [0.9, 0.75, 0.8, 0.74, 0.8, 0.8, 0.64]
    calibration, decisions = _run([_evaluation(e, f) for e, f in enumerate(closer)], patience=3)
    assert decisions[-1].reason == "forgotten" and calibration.kept_state() == "state 6"
    # without patience (the default) the same stream runs to the band
    calibration, decisions = _run([_evaluation(e, f) for e, f in enumerate(forget)])
    assert decisions[-1].reason == "forgotten" and len(decisions) == len(forget)
    # the budget and the schedule's end are decided before the count
    broken = [_evaluation(0, 0.9), _evaluation(1, 0.95), _evaluation(2, 0.95, retain=0.7)]
    assert _run(broken, patience=1)[1][-1].reason == "stalled"  # check 1 came no closer than the original
    assert _run(broken, patience=2)[1][-1].reason == "utility_budget"
    assert _run([_evaluation(0, 0.9), _evaluation(1, 0.95)], patience=1)[1][-1].reason == "schedule_end"


def test_an_original_already_inside_the_band_stops_before_any_step():
    calibration, decisions = _run([_evaluation(0, 0.6), _evaluation(1, 0.5)])
    assert len(decisions) == 1 and decisions[0].reason == "forgotten"
    assert calibration.to_json()["decision"]["steps_used"] == 0


def test_kept_state_before_a_decision_is_an_error():
    calibration, _ = _run([_evaluation(0, 0.9), _evaluation(1, 0.8)], last_is_end=False)
    assert calibration.decision is None and calibration.to_json()["decision"] is None
    with pytest.raises(RuntimeError, match="not decided"):
        calibration.kept_state()


MEMORISATION = AcceptanceCriteria()
#: retain and held-out subjects for the memorisation reference: under the original the two retain subjects
#: score 0.78 and 0.80 (mean 0.79), the held-out ones 0.76 and 0.78 (mean 0.77): memorisation 0.02
START = StartScores(forget=[0.80], retain=[0.78, 0.80], heldout=[0.76, 0.78])


def test_memorisation_reference_centres_the_band_on_the_start_score_less_the_memorisation():
    test = forgetting_test([0.80], [0.76, 0.78], MEMORISATION, START)
    assert test.memorisation == pytest.approx(0.02)
    assert test.target == pytest.approx(0.78)
    assert test.half_width == pytest.approx(0.01)  # memorisation_tolerance 0.5 × 0.02
    # the original itself lies a whole memorisation above its target, so a calibrated run must take steps,
    # although it lies inside the held-out band
    assert (test.gap, test.state) == (pytest.approx(0.02), "remembered")
    assert forgetting_test([0.80], [0.76, 0.78], CRITERIA).state == "forgotten"
    assert forgetting_test([0.785], [0.76, 0.78], MEMORISATION, START).state == "forgotten"
    assert forgetting_test([0.765], [0.76, 0.78], MEMORISATION, START).state == "over_forgotten"


def test_memorisation_reference_without_memorisation_certifies_the_start_and_follows_the_score_direction():
    # held-out subjects score better than retain ones under the original: nothing measurable to remove
    none = StartScores(forget=[0.80], retain=[0.70], heldout=[0.75, 0.77])
    test = forgetting_test([0.80], [0.75, 0.77], MEMORISATION, none)
    assert (test.memorisation, test.target, test.half_width, test.state) == (0.0, pytest.approx(0.80), 0.0, "forgotten")
    # MAE, lower is better: retain 0.1 against held-out 0.2 is a memorisation of 0.1, so the target is 0.1 higher
    mae = AcceptanceCriteria(score="hard_mae", reference="memorisation")
    start = StartScores(forget=[0.1], retain=[0.1], heldout=[0.2, 0.2])
    test = forgetting_test([0.1], [0.2, 0.2], mae, start)
    assert (test.memorisation, test.target, test.state) == (pytest.approx(0.1), pytest.approx(0.2), "remembered")
    assert forgetting_test([0.3], [0.2, 0.2], mae, start).state == "over_forgotten"
    with pytest.raises(ValueError, match="needs the original model's scores"):
        forgetting_test([0.1], [0.2, 0.2], mae)
    with pytest.raises(ValueError, match="heldout, memorisation"):
        AcceptanceCriteria(reference="oracle")


def test_the_default_reference_is_the_memorisation_one_and_names_the_way_out_without_a_start():
    assert AcceptanceCriteria().reference == "memorisation"
    with pytest.raises(ValueError, match=r"the 'start' evaluation.*acceptance\.reference \"heldout\""):
        forgetting_test([0.80], [0.76, 0.78], AcceptanceCriteria())


def test_memorisation_reference_stream_takes_steps_and_stops_inside_its_band():
    sets = {"forget": ["f1"], "retain": ["r1", "r2"], "heldout": ["h1", "h2"]}

    def evaluation(epoch: int, forget: float) -> dict:
        cases = {"f1": forget, "r1": 0.78, "r2": 0.80, "h1": 0.76, "h2": 0.78}
        return {
            "tag": "start" if epoch == 0 else f"epoch_{epoch}",
            "epoch": epoch,
            "cases": {case: {"mean": {"dice": value}} for case, value in cases.items()},
            "sets": {"retain": {"dice": 0.79}, "heldout": {"dice": 0.77}},
        }

    calibration = Calibration(MEMORISATION, CalibrationSettings(enabled=True), sets)
    reasons = [calibration.add(evaluation(e, f), steps=10 * e, state=lambda e=e: e).reason
               for e, f in enumerate((0.80, 0.795, 0.787))]  # fmt: skip
    assert reasons == [None, None, "forgotten"]
    assert calibration.kept_state() == 2
    record = calibration.to_json()["checks"][0]
    assert (record["target"], record["memorisation"], record["state"]) == (
        pytest.approx(0.78),
        pytest.approx(0.02),
        "remembered",
    )
