"""What an unlearning run leaves in its output folder besides nnU-Net's own files.

``unlearning_request.json`` (a copy of the request), ``unlearning_metrics.json`` (every evaluation,
the seed study's figures, wall times, a calibrated run's checks and decision), ``unlearning_progress.png``
and, for masked strategies, ``unlearning_update_mask.pt``. Metrics are rewritten after every evaluation,
so an interrupted run keeps what it measured, and a resumed run (``--c``) continues the same record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch

from nnunet_unlearning.artifacts import MASK_FILE, METRICS_FILE, PROGRESS_FILE, REQUEST_FILE, SETS
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.clinical_risk import risk_change
from nnunet_unlearning.evaluation.progress_plot import plot_progress
from nnunet_unlearning.evaluation.summary import unlearning_figures
from nnunet_unlearning.files import atomic_write_bytes, atomic_write_text, sha256_file
from nnunet_unlearning.nnunet.progress_plot_interval import PLOT_INTERVAL_S
from nnunet_unlearning.records import (
    CalibrationRecord,
    EvaluationRecord,
    FiguresRecord,
    MetricsRecord,
    RunningStatisticsRecord,
    ScheduleRecord,
)
from nnunet_unlearning.request import UnlearningRequest
from nnunet_unlearning.unlearning.run_config import RunSettings
from nnunet_unlearning.unlearning.strategy import Strategy


def guard_output_folder(output_folder: str | Path, request: UnlearningRequest, continue_training: bool) -> None:
    """Refuse a results folder that holds a run of a different request: it is never overwritten."""
    existing = Path(output_folder) / REQUEST_FILE
    if not existing.is_file():
        return
    previous = UnlearningRequest.from_file(existing)
    if previous.request_id != request.request_id:
        raise UserInputError(
            f"{existing}: this results folder holds a run of another request ({previous.request_id}, "
            f"forgetting {', '.join(previous.forget)}); move it away or use another -tr/-p/fold"
        )


def guard_settings(output_folder: str | Path, settings: RunSettings) -> None:
    """Refuse to resume (``--c``) a run under other settings than it started with: one record, one setting."""
    path = Path(output_folder) / METRICS_FILE
    previous = json.loads(path.read_text()).get("settings") if path.is_file() else None
    if previous is None:
        return
    before, now = _flat_settings(previous), _flat_settings(settings.to_json())
    changed = [key for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]
    if changed:
        key = changed[0]
        raise UserInputError(
            f"{path}: the run started with {key} = {before.get(key, 'its default')}, the run "
            f"config now gives {now.get(key, 'its default')}; resume with the same settings or "
            "start afresh without --c"
        )


def _flat_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's settings and every non-default value in one mapping (the source left out; a section's
    values through their non-default entries, so a record from before a section existed still compares)."""
    top = {k: v for k, v in settings.items() if k not in ("non_default", "source") and not isinstance(v, dict)}
    return top | settings.get("non_default", {})


class RunRecord:
    """Accumulates one run's evaluations and timings, and writes them into the output folder."""

    def __init__(
        self, request: UnlearningRequest, trainer: str, strategy: Strategy | None, settings: RunSettings | None = None
    ) -> None:
        self.request = request
        self.trainer = trainer
        self.strategy = strategy
        #: the run config's values the run uses (seed, schedule, hyperparameters); None for the retrain oracle
        self.settings = settings
        self.evaluations: list[EvaluationRecord] = []
        #: the schedule the run trained with (a `ScheduleRecord`), set by the trainer
        self.schedule: dict | None = None
        self.prepare_seconds = 0.0
        self.train_seconds = 0.0
        #: seconds of calibration checks not in ``evaluations``: the scoring of patch checks (`patch_hook`) and
        #: every check's copy of the network, recalibration and kept state
        self.check_seconds = 0.0
        #: epochs at which ``--c`` continued an interrupted run (empty for an uninterrupted one)
        self.resumed_at_epochs: list[int] = []
        #: what the run did to the running statistics of normalisation layers (a `RunningStatisticsRecord`), set at
        #: the end
        self.running_statistics: dict | None = None
        #: optimizer steps taken and the strategy's resumable state when the run ended
        self.steps_taken: int | None = None
        self.strategy_state: dict[str, object] = {}
        #: a calibrated run's trajectory and decision (``Calibration.to_json``); None for other runs
        self.calibration: CalibrationRecord | None = None
        #: when the progress plot was last drawn (``time.perf_counter``); None before the first write
        self._plotted_at: float | None = None
        self._started = time.perf_counter()
        self._earlier_wall_seconds = 0.0

    def write_request_copy(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.request.to_json())

    def resume(self, output_folder: str | Path, epoch: int) -> None:
        """Continue the record of an interrupted run of the same request, at ``epoch``."""
        path = Path(output_folder) / METRICS_FILE
        if path.is_file():
            previous = json.loads(path.read_text())
            self.evaluations = previous["evaluations"]
            seconds = previous["seconds"]
            self.prepare_seconds, self.train_seconds = seconds["prepare"], seconds["train"]
            self._earlier_wall_seconds = seconds["wall"]
            self.resumed_at_epochs = list(previous.get("resumed_at_epochs", []))
        self.resumed_at_epochs.append(int(epoch))

    def hyperparameters(self) -> dict[str, object]:
        """Every setting of the strategy's section, as the strategy reports it where it does (a bound's rule,
        SSD's α as chosen) and as the run config resolved it otherwise."""
        resolved = self.settings.hyperparameters() if self.settings else {}
        return {**resolved, **(self.strategy.hyperparameters() if self.strategy else {})}

    def save(self, output_folder: str | Path) -> None:
        """Write the record as it stands (timings included), so an interruption keeps it. Its progress plot is
        redrawn only when :data:`PLOT_INTERVAL_S` seconds have passed since the last drawing (a drawing took
        0.4–0.6 s on the CPU profile: a calibrated run writes its record at every check); :meth:`finish` always
        draws it."""
        self._write(Path(output_folder))

    def add(self, evaluation: EvaluationRecord, output_folder: str | Path) -> None:
        self.evaluations.append(evaluation)
        self._write(Path(output_folder))

    def save_update_mask(self, output_folder: str | Path, masks: Mapping[str, torch.Tensor] | None) -> None:
        if masks is not None:
            path = Path(output_folder) / MASK_FILE
            tmp = path.with_name(f".{path.name}.tmp")
            torch.save({k: v.cpu() for k, v in masks.items()}, tmp)
            tmp.replace(path)

    def saved_update_mask(self, output_folder: str | Path) -> dict[str, torch.Tensor] | None:
        path = Path(output_folder) / MASK_FILE
        return torch.load(path, weights_only=True) if path.is_file() else None

    def finish(self, output_folder: str | Path, checkpoint: str | Path) -> None:
        """Final write: adds the unlearned checkpoint's SHA-256."""
        self._write(Path(output_folder), checkpoint_sha256=sha256_file(checkpoint), final=True)

    def content(self, checkpoint_sha256: str | None = None) -> MetricsRecord:
        evaluations = self.evaluations
        figures: FiguresRecord | None = None
        if len(evaluations) >= 2 and evaluations[0]["tag"] == "start" and evaluations[-1]["tag"] == "end":
            figures = unlearning_figures(evaluations[0]["sets"], evaluations[-1]["sets"])
            figures["clinical_risk_change"] = risk_change(
                evaluations[0]["clinical_risk"], evaluations[-1]["clinical_risk"]
            )
        evaluation_seconds = sum(e["seconds"] for e in evaluations) + self.check_seconds
        return {
            "request_id": self.request.request_id,
            "trainer": self.trainer,
            "strategy": self.strategy.name if self.strategy else None,
            "hyperparameters": self.hyperparameters(),
            "settings": self.settings.to_json() if self.settings else None,
            "forget": list(self.request.forget),
            "retain": list(self.request.retain),
            "heldout": list(self.request.heldout),
            # the trainer builds these two with nnunet/glue.schedule_of and base_trainer._recalibrated, which type
            # them as plain dicts
            "schedule": cast(ScheduleRecord | None, self.schedule),
            "resumed_at_epochs": list(self.resumed_at_epochs),
            "running_statistics": cast(RunningStatisticsRecord | None, self.running_statistics),
            "steps_taken": self.steps_taken,
            "strategy_state": self.strategy_state,
            "calibration": self.calibration,
            "original_checkpoint_sha256": self.request.original.checkpoint_sha256,
            "unlearned_checkpoint_sha256": checkpoint_sha256,
            "seconds": {
                "wall": round(self._earlier_wall_seconds + time.perf_counter() - self._started, 3),
                # to the microsecond: a strategy with nothing to prepare (SCRUB) takes well under a millisecond,
                # and 0.0 would read as "not measured"
                "prepare": round(self.prepare_seconds, 6),
                "train": round(self.train_seconds, 3),
                "evaluation": round(evaluation_seconds, 3),
            },
            "figures": figures,
            "evaluations": evaluations,
        }

    def _write(self, folder: Path, checkpoint_sha256: str | None = None, final: bool = False) -> None:
        content = self.content(checkpoint_sha256)
        atomic_write_text(folder / METRICS_FILE, json.dumps(content, indent=2, allow_nan=True) + "\n")
        now = time.perf_counter()
        if final or self._plotted_at is None or now - self._plotted_at >= PLOT_INTERVAL_S:
            atomic_write_bytes(
                folder / PROGRESS_FILE, plot_progress(content["evaluations"], self.trainer, content["calibration"])
            )
            self._plotted_at = now

    @staticmethod
    def brief(evaluation: EvaluationRecord) -> str:
        parts = []
        for name in SETS:
            stats = evaluation["sets"].get(name)
            if stats and stats.get("n_cases"):
                parts.append(f"{name} Dice {_fmt(stats['dice'])} MAE {_fmt(stats['hard_mae'], 5)}")
        return " | ".join(parts)

    def table(self) -> str:
        """A short Markdown table (start vs end per set, and the seed study's figures) for the log."""
        lines = ["| set | Dice start | Dice end | MAE start | MAE end |", "|---|---|---|---|---|"]
        if not self.evaluations:
            return ""
        first, last = self.evaluations[0]["sets"], self.evaluations[-1]["sets"]
        for name in SETS:
            if name in first and first[name]["n_cases"]:
                lines.append(
                    f"| {name} | {_fmt(first[name]['dice'])} | {_fmt(last[name]['dice'])} | "
                    f"{_fmt(first[name]['hard_mae'], 5)} | {_fmt(last[name]['hard_mae'], 5)} |"
                )
        figures = self.content()["figures"]
        if figures:
            lines.append("")
            lines.append(
                f"forget drop {_fmt(figures['forget_drop_pct'], 1)} %, retain retention "
                f"{_fmt(figures['retain_retention_pct'], 1)} %, Dice gap after "
                f"{_fmt(figures['after']['dice_gap'])}, MAE gap after "
                f"{_fmt(figures['after']['hard_mae_gap'], 5)}"
            )
        return "\n".join(lines)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
