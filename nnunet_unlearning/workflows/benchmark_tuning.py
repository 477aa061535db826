"""The benchmark's tuning: each strategy's learning-rate scale × schedule length chosen on one subject.

Every strategy runs a small grid (the profile's ``lr_scales`` × its two horizons) on the tuning subject only
(`benchmark_design.TUNING_SUBJECT`); the grid point whose forget Dice lies closest to the retrain
distribution's mean (in oracle SDs where the oracles have a spread, else in Dice), among those that keep
retain and held-out Dice ≥ `benchmark_distribution.UTILITY` × the original's, is chosen, and the strategy
runs with it, unchanged, on every other forget set. Nothing is tuned on a subject it is judged on. When no
grid point keeps the utility, the one that keeps most of it is chosen and the choice says so.

A grid point is the trainer a user runs (``nnUNetTrainerUnlearn<Strategy>_<N>epochs``) with a run config
(docs/unlearning.md) that sets the strategy's ``lr_scale``. A grid scale multiplies the strategy's own default
``lr_scale`` (1 for most strategies; SCRUB's is 0.025, GradientAscent's 0.1), so scale 1 is the trainer's
default and needs no config. Its runs train in ``nnUNet_results`` of their own per scale
(:func:`grid_results`), so the trainer folders do not collide. ``tuning.json`` records the default its scales
multiply, so a file stays valid after a default changes: reading it expresses its scales in today's defaults.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nnunet_unlearning.artifacts import load_run
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.retrain_distribution import cases_mean, gap_to_distribution
from nnunet_unlearning.files import atomic_write_json
from nnunet_unlearning.records import EvaluationRecord
from nnunet_unlearning.unlearning.run_config import LR_SCALE, STRATEGIES_KEY, strategy_parameters
from nnunet_unlearning.unlearning.strategies import STRATEGIES
from nnunet_unlearning.workflows.benchmark_distribution import UTILITY, json_ready
from nnunet_unlearning.workflows.benchmark_runs import Run


@dataclass(frozen=True)
class GridPoint:
    """One strategy setting: its learning-rate scale (× the strategy's default ``lr_scale``) and unlearning
    epochs."""

    strategy: str
    lr_scale: float
    epochs: int
    #: the scale its runs' folders are named by when it was tuned under another default ``lr_scale`` (the
    #: tuning file's own scale, `in_todays_default`), so that a workdir's runs are found after a default
    #: changed; None: ``lr_scale``
    folder_scale: float | None = None

    @property
    def folder_lr_scale(self) -> float:
        return self.lr_scale if self.folder_scale is None else self.folder_scale

    @property
    def trainer(self) -> str:
        return f"nnUNetTrainerUnlearn{self.strategy}_{self.epochs}epochs"

    @property
    def variant(self) -> str:
        """What tells the point from the trainer's default ("" at scale 1)."""
        return "" if self.lr_scale == 1 else f"lr×{self.lr_scale:g}"


def grid(strategies: Sequence[str], lr_scales: Sequence[float], horizons: Sequence[int]) -> list[GridPoint]:
    """Every strategy × learning-rate scale × horizon, in that order."""
    return [GridPoint(s, lr, e) for s in strategies for lr in lr_scales for e in horizons]


#: The run config section that makes a run calibrated (docs/unlearning.md): checked after every epoch, it
#: stops when the forget subjects score like unseen ones, within the horizon as its longest schedule.
CALIBRATION = {"enabled": True, "check_every": 1}
#: The calibrated twins of a judged run, by name, with the run config sections each writes: the held-out band
#: (checked on whole volumes: on the CPU profile it stops at check 0) and the memorisation reference (the
#: default), checked on patches (`evaluation.patch_hook`: a check costs a fraction of a whole-volume one).
#: Each names its reference, so a workdir's twins keep their meaning whatever the default.
CALIBRATIONS: dict[str, dict[str, dict]] = {
    "heldout": {"calibration": CALIBRATION, "acceptance": {"reference": "heldout"}},
    "memorisation_patches": {
        "calibration": {**CALIBRATION, "scores": "patches"},
        "acceptance": {"reference": "memorisation"},
    },
}


def grid_results(forget_folder: Path, lr_scale: float, calibration: str | None = None) -> Path:
    """``nnUNet_results`` of a forget set's runs at ``lr_scale`` (1, not calibrated: the forget set's own);
    ``calibration``: a key of :data:`CALIBRATIONS` for a calibrated twin."""
    if calibration is not None:
        reference = "" if calibration == "heldout" else f"{calibration}_"
        return forget_folder / f"calibrated_{reference}lr_{lr_scale:g}" / "nnUNet_results"
    return forget_folder / "nnUNet_results" if lr_scale == 1 else forget_folder / f"lr_{lr_scale:g}" / "nnUNet_results"


#: The key of a tuning.json entry that records the default ``lr_scale`` its scales multiply.
DEFAULT = "default_lr_scale"
#: The key of an entry read under another default than it was tuned under: the scale as tuned, which names
#: the folders of its runs (`GridPoint.folder_scale`).
FOLDER = "folder_lr_scale"


def default_lr_scale(strategy: str) -> float:
    """The ``lr_scale`` a strategy runs at when the run config does not set it (docs/strategies.md)."""
    strategy_class = next(s for s in STRATEGIES if s.name == strategy)
    return float(strategy_parameters(strategy_class)[LR_SCALE].default)


def run_config(point: GridPoint, forget_folder: Path, calibration: str | None = None) -> Path | None:
    """The run config of a grid point (written once beside its results), or None at scale 1 uncalibrated."""
    if point.lr_scale == 1 and calibration is None:
        return None
    path = grid_results(forget_folder, point.folder_lr_scale, calibration).parent / f"{point.strategy}.json"
    if not path.is_file():
        config: dict = {STRATEGIES_KEY: {point.strategy: {LR_SCALE: point.lr_scale * default_lr_scale(point.strategy)}}}
        if calibration is not None:
            config.update(CALIBRATIONS[calibration])
        atomic_write_json(path, config)
    return path


def point_run(point: GridPoint, forget_folder: Path, base: Run, calibration: str | None = None) -> Run:
    """The benchmark run of a grid point on a forget set, calibrated (``calibration``: a key of
    :data:`CALIBRATIONS`) or not; ``base`` gives dataset, plans, schedule, request and augmentation workers."""
    calibrated = (
        None
        if calibration is None
        else "calibrated"
        if calibration == "heldout"
        else f"calibrated {calibration.replace('_', ' ')}"
    )
    return Run(
        point.trainer,
        base.dataset_name,
        base.configuration,
        base.plans,
        point.epochs,
        base.iterations,
        grid_results(forget_folder, point.folder_lr_scale, calibration),
        base.request,
        run_config(point, forget_folder, calibration),
        " ".join(filter(None, (point.variant, calibrated))),
        base.augmentation_workers,
    )


def judged_runs(
    chosen: Sequence[GridPoint], forget_folder: Path, base: Run, longest: int, check_steps: int | None = None
) -> list[Run]:
    """Each chosen point as tuned, then its calibrated twins (one per :data:`CALIBRATIONS` entry) on a
    schedule of ``longest`` epochs (the profile's long horizon), or the tuned one where that is longer: a
    calibrated run stops itself, so its schedule only bounds it.

    ``check_steps``: steps between a twin's checks. A check follows every epoch, so the twin trains the same
    steps in epochs that long (``Profile.check_steps``; rounded up to whole epochs); None: the base's epochs.
    """
    runs = []
    for point in chosen:
        runs.append(point_run(point, forget_folder, base))
        twin = replace(point, epochs=max(point.epochs, longest))
        for calibration in CALIBRATIONS:
            run = point_run(twin, forget_folder, base, calibration)
            if check_steps is not None:
                steps = run.epochs * run.iterations
                run = replace(run, epochs=-(-steps // check_steps), iterations=check_steps)
            runs.append(run)
    return runs


def _utility(evaluation: EvaluationRecord, original: EvaluationRecord, sets: Mapping[str, Sequence[str]]) -> float:
    """The smaller of retain and held-out Dice as a fraction of the original's."""
    return min(cases_mean(evaluation, sets[s]) / cases_mean(original, sets[s]) for s in ("retain", "heldout"))


def choose(
    points: Sequence[tuple[GridPoint, Run]],
    oracles: Sequence[EvaluationRecord],
    original: EvaluationRecord,
    sets: Mapping[str, Sequence[str]],
) -> dict[str, dict]:
    """Per strategy, the chosen grid point and every point's numbers (for ``tuning.json``).

    Args:
        points: the finished grid runs on the tuning subject.
        oracles: the tuning subject's oracle replicates' end evaluations.
        original: the original's (replicate 0) evaluation.
        sets: the tuning forget set's forget / retain / heldout case ids.
    """
    by_strategy: dict[str, list[dict]] = {}
    for point, run in points:
        end = load_run(run.folder).evaluation("end")
        if end is None:
            continue
        forget = gap_to_distribution(end, oracles, {"forget": sets["forget"]})["forget"]
        in_sd, gap = forget["gap_in_sd"], float(forget["gap"] if forget["gap"] is not None else math.nan)
        distance = abs(float(in_sd)) if in_sd is not None else abs(gap)
        by_strategy.setdefault(point.strategy, []).append(
            {
                "lr_scale": point.lr_scale,
                "epochs": point.epochs,
                "dice_forget": forget["value"],
                "gap": gap,
                "gap_in_sd": in_sd,
                "distance": distance,
                "utility": _utility(end, original, sets),
            }
        )
    chosen = {}
    for strategy, rows in by_strategy.items():
        kept = [r for r in rows if r["utility"] >= UTILITY and not math.isnan(r["distance"])]
        if kept:
            best = min(kept, key=lambda r: (r["distance"], r["epochs"]))
            reason = f"closest to the oracles' forget Dice among the points keeping ≥ {UTILITY:.0%} utility"
        else:
            best = max(rows, key=lambda r: r["utility"])
            reason = f"no point kept {UTILITY:.0%} utility: the one keeping most of it"
        chosen[strategy] = {
            "lr_scale": best["lr_scale"],
            "epochs": best["epochs"],
            DEFAULT: default_lr_scale(strategy),
            "reason": reason,
            "grid": rows,
        }
    return chosen


def in_todays_default(strategy: str, entry: Mapping) -> dict:
    """A tuning.json entry (`choose`) with its chosen and grid scales multiplying the strategy's default
    ``lr_scale`` of today, so each point runs at the rate it was tuned at; when today's default differs,
    :data:`FOLDER` keeps the chosen scale as tuned, which names the folders its runs were written to (a workdir
    continued across the change finds them). An entry without :data:`DEFAULT` (written before it was
    recorded) is taken to be in today's default."""
    today = default_lr_scale(strategy)
    factor = float(entry.get(DEFAULT, today)) / today

    def rescaled(row: Mapping) -> dict:
        # 6 significant digits: 0.5 × 0.05 / 0.025 is scale 1, the trainer's default, not 1.0000000000000002
        return {**row, "lr_scale": float(f"{row['lr_scale'] * factor:.6g}")}

    grid_rows = [rescaled(row) for row in entry.get("grid", [])]
    read = {**rescaled(entry), DEFAULT: today, "grid": grid_rows}
    if factor != 1:
        read[FOLDER] = entry.get(FOLDER, entry["lr_scale"])  # its runs were written under the scale as tuned
    return read


def chosen_point(tuning: Mapping[str, dict], strategy: str) -> GridPoint | None:
    """The strategy's chosen grid point from ``choose``'s result, or None when none of its runs finished."""
    if strategy not in tuning:
        return None
    entry = tuning[strategy]
    return GridPoint(strategy, entry["lr_scale"], entry["epochs"], entry.get(FOLDER))


def write_tuning(path: Path, tuning: Mapping[str, dict], subject: str) -> None:
    """``tuning.json``: the tuning subject and, per strategy, the choice and its grid."""
    atomic_write_json(path, {"tuning_subject": subject, "strategies": json_ready(tuning)})


def read_tuning(path: Path, subject: str, strategies: Sequence[str]) -> dict[str, dict]:
    """Frozen settings from an earlier benchmark's ``tuning.json`` (`write_tuning`), for ``strategies``, their
    scales in today's defaults (`in_todays_default`).

    Raises:
        UserInputError: the file is missing or not a tuning.json, was tuned on another subject than
            ``subject``, or lacks a choice for one of ``strategies``.
    """
    try:
        content = json.loads(Path(path).read_text())
        chosen = content["strategies"]
        tuned_on = str(content["tuning_subject"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserInputError(f"--tuning {path}: not a benchmark tuning.json ({error})") from None
    if tuned_on != subject:
        raise UserInputError(f"--tuning {path}: tuned on subject {tuned_on}, the design tunes on subject {subject}")
    missing = [s for s in strategies if not {"lr_scale", "epochs"} <= set(chosen.get(s, {}))]
    if missing:
        raise UserInputError(f"--tuning {path}: no tuned setting for {', '.join(missing)}")
    return {s: in_todays_default(s, chosen[s]) for s in strategies}
