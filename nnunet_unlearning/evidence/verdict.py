"""The certificate's verdict: each acceptance criterion met, not met or not measured, with its numbers.

Criteria (defaults in :class:`AcceptanceCriteria`, overridable in the run config's ``acceptance`` section):

- ``utility_retain``, ``utility_heldout``: the final model's mean Dice on the set ≥ ``utility_budget`` × the
  original's (the run's "start" evaluation); not measured without one (a retrain run).
- ``forgetting``: the forgetting test of ``calibration.py`` on the final evaluation: met when the forget
  cases lie within the band of the criteria's reference (by default their own start score less the
  original's memorisation; or the held-out band), not met when they lie above it (remembered) or below it
  (over-forgotten); not measured without a start evaluation under the default reference (a retrain run).
- ``membership_vs_retrain``: the per-subject membership test against the forget cases' scores under models
  retrained without them; no run records such a distribution yet, so it is always not measured, and not
  required.

Overall: "not met" when a required criterion is not met; else "not measured" when a required one is not
measured; else "met". Every sentence is chosen by the numbers it states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from nnunet_unlearning.evaluation.calibration import (
    AcceptanceCriteria,
    ForgettingTest,
    case_scores,
    forgetting_test,
    start_scores,
)
from nnunet_unlearning.records import CriterionRecord, VerdictRecord

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"
SET_NAMES = {"retain": "Retain", "heldout": "Held-out"}


def acceptance_of(metrics: Mapping) -> tuple[AcceptanceCriteria, str]:
    """The criteria a run recorded in its settings (the run config's, defaults filled in), and their source."""
    recorded = (metrics.get("settings") or {}).get("acceptance")
    if recorded:
        return AcceptanceCriteria(**recorded), "the run's settings"
    return AcceptanceCriteria(), "defaults"


def _evaluation(metrics: Mapping, tag: str) -> Mapping | None:
    return next((e for e in metrics.get("evaluations", []) if e["tag"] == tag), None)


def _criterion(verdict: str, text: str, numbers: Mapping | None = None, required: bool = True) -> CriterionRecord:
    return {"verdict": verdict, "required": required, "numbers": dict(numbers or {}), "text": text}


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def utility_criterion(start: Mapping | None, end: Mapping | None, name: str, budget: float) -> CriterionRecord:
    """The final mean Dice on set ``name`` against ``budget`` × the original's."""
    label = SET_NAMES[name]
    before = start["sets"][name].get("dice") if start else None
    after = end["sets"][name].get("dice") if end else None
    if before is None or after is None or not before:
        missing = "no 'start' evaluation of the original" if start is None else "an undefined Dice"
        return _criterion(NOT_MEASURED, f"{label} utility not measured: {missing} in this run.")
    ratio = after / before
    numbers = {"dice": after, "original_dice": before, "ratio": ratio, "budget": budget}
    head = f"{label} Dice {after:.4f} is {_percent(ratio)} of the original's {before:.4f}"
    if ratio >= budget:
        return _criterion(MET, f"{head}, within the {_percent(budget)} budget.", numbers)
    short = budget * before - after
    return _criterion(NOT_MET, f"{head}, below the {_percent(budget)} budget by {short:.4f} Dice.", numbers)


def _small_sample_note(n_heldout: int) -> str:
    if n_heldout == 1:
        return " With 1 held-out case the band is the tolerance alone; treat the result as a rough guide."
    if n_heldout == 2:
        return " With 2 held-out cases the spread rests on one difference; treat the result as a rough guide."
    return ""


def _band(test: ForgettingTest, criteria: AcceptanceCriteria) -> str:
    """The band the forget cases were tested against, in words."""
    if test.memorisation is None:
        return (
            f"the held-out band {test.target:.4f} ± {test.half_width:.4f} ({test.n_heldout} held-out cases, "
            f"z = {criteria.z:g}, tolerance {criteria.tolerance:g})"
        )
    return (
        f"the memorisation band {test.target:.4f} ± {test.half_width:.4f} (their score under the original less "
        f"its memorisation {test.memorisation:.4f}, the retain cases' advantage over the held-out ones; "
        f"tolerance {criteria.memorisation_tolerance:g} × the memorisation)"
    )


def forgetting_criterion(
    end: Mapping | None, case_sets: Mapping, criteria: AcceptanceCriteria, start: Mapping | None = None
) -> CriterionRecord:
    """The forgetting test on the final evaluation (``start``: the original's, for the memorisation reference)."""
    if end is None or not case_sets.get("heldout") or not case_sets.get("forget"):
        return _criterion(NOT_MEASURED, "Forgetting not measured: no final evaluation or no held-out cases.")
    try:
        test = forgetting_test(
            case_scores(end, case_sets["forget"], criteria.score),
            case_scores(end, case_sets["heldout"], criteria.score),
            criteria,
            None if start is None else start_scores(start, case_sets, criteria.score),
        )
    except ValueError as error:
        return _criterion(NOT_MEASURED, f"Forgetting not measured: {error}.")
    numbers = {**asdict(test), "distance": test.distance, "z": criteria.z, "tolerance": criteria.tolerance}
    band = _band(test, criteria)
    head = f"The forget cases' mean {criteria.score} {test.forget_mean:.4f}"
    note = _small_sample_note(test.n_heldout)
    if test.state == "forgotten":
        text = f"{head} lies within {band}: under this test they score like cases the model never saw.{note}"
        return _criterion(MET, text, numbers)
    side = (
        "on the side of training cases: the model still scores them better than cases it never saw"
        if test.state == "remembered"
        else "on the far side: the model scores them worse than cases it never saw, which itself marks them"
    )
    return _criterion(NOT_MET, f"{head} lies {test.distance:.4f} outside {band}, {side}.{note}", numbers)


def membership_criterion(retrain_found: bool) -> CriterionRecord:
    """Not measured: no distribution of the forget cases' scores under retrained models exists yet."""
    found = "one retrain run was found beside this run, which is not a distribution" if retrain_found else "none"
    return _criterion(
        NOT_MEASURED,
        "Per-subject membership test against a retrain distribution not measured: it needs the forget cases' "
        f"scores under several models retrained without them ({found}).",
        required=False,
    )


REASONS = {
    "forgotten": "the forget cases reached the band",
    "utility_budget": "retain or held-out Dice fell below the utility budget",
    "over_forgotten": "the forget cases fell below the band (over-forgetting)",
    "stalled": "the forget cases came no closer to the band in {patience} checks in a row",
    "schedule_end": "the schedule ended before the forget cases reached the band",
}


def calibration_text(calibration: Mapping | None) -> str | None:
    """One or two sentences on a calibrated run's stop, from its recorded decision (and what its checks scored);
    None for other runs."""
    decision = (calibration or {}).get("decision")
    if not decision:
        return None
    kept = f"the state after epoch {decision['kept_epoch']} ({decision['steps_used']} steps)"
    certifies = "it rolled back to and certifies" if decision["rolled_back"] else "it certifies"
    settings = (calibration or {}).get("settings") or {}
    scored = (
        f" Its checks scored {settings['patches_per_case']} fixed patches per case; the criteria judge the "
        "certified model on whole volumes."
        if settings.get("scores") == "patches"
        else ""
    )
    because = REASONS[decision["reason"]].format(patience=settings.get("patience"))
    return (
        f"Calibrated run: stopped at epoch {decision['stopped_at_epoch']} after {decision['steps_taken']} steps "
        f"because {because}; {certifies} {kept}; target "
        f"{'reached' if decision['target_reached'] else 'not reached'}.{scored}"
    )


def overall(criteria: Mapping[str, Mapping]) -> str:
    required = [c["verdict"] for c in criteria.values() if c["required"]]
    if NOT_MET in required:
        return NOT_MET
    return NOT_MEASURED if NOT_MEASURED in required or not required else MET


def overall_text(verdict: str, criteria: Mapping[str, Mapping]) -> str:
    names = [name for name, c in criteria.items() if c["required"] and c["verdict"] == verdict]
    if verdict == MET:
        return "Overall: met (every required criterion is met)."
    return f"Overall: {verdict} ({', '.join(names)})."


def verdict(metrics: Mapping, retrain_found: bool) -> VerdictRecord:
    """The verdict of a finished run from its ``unlearning_metrics.json`` content (module docstring)."""
    criteria, source = acceptance_of(metrics)
    start, end = _evaluation(metrics, "start"), _evaluation(metrics, "end")
    sets = {name: metrics.get(name, []) for name in ("forget", "retain", "heldout")}
    results = {
        "utility_retain": utility_criterion(start, end, "retain", criteria.utility_budget),
        "utility_heldout": utility_criterion(start, end, "heldout", criteria.utility_budget),
        "forgetting": forgetting_criterion(end, sets, criteria, start),
        "membership_vs_retrain": membership_criterion(retrain_found),
    }
    result = overall(results)
    return {
        "overall": result,
        "text": overall_text(result, results),
        "criteria": results,
        "acceptance": {**asdict(criteria), "source": source},
        "calibration": calibration_text(metrics.get("calibration")),
    }
