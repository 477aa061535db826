"""nnU-Net's progress plot (``progress.png``) redrawn at most once a minute of a run, and at its end.

nnU-Net redraws ``progress.png`` after every epoch: three panels on a 30 × 54 inch canvas, about 1 s of one
CPU core each time (docs/benchmarks.md, "nnU-Net's progress plot, redrawn at most once a minute"). On a GPU
epoch of minutes that is nothing; on the CPU profile it is a large share of a short epoch: a calibrated run's
5-step epoch, an unlearning run's 20-step epoch, each of the original's ten. :class:`ProgressPlotIntervalMixin`
keeps the plot as nnU-Net draws it, from the same logger, but skips an epoch's redraw when the last one (or the
start of training) is less than ``progress_plot_interval_s`` ago, and draws the skipped epochs at the end of
training, so the finished run's ``progress.png`` shows every epoch, as nnU-Net's does. Every trainer of ours
mixes it in (the Med3D originals, the retrain oracle, the unlearning runs), so the models of one study pay the
plot alike.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

#: Seconds between two drawings of a progress plot while a run trains: nnU-Net's ``progress.png`` here, and the
#: unlearning record's own plot (`unlearning.run_record`); each run draws its plots once more at its end.
PLOT_INTERVAL_S = 60.0


class IntervalPlotLogger:
    """Stands in for nnU-Net's logger (``trainer.logger``): every call goes to it, except that
    ``plot_progress_png`` draws only when ``interval_s`` seconds have passed since the last drawing (or this
    object's creation); :meth:`flush` draws what was skipped."""

    def __init__(self, logger: Any, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last_drawn = time.perf_counter()
        self._skipped_folder: str | None = None  # where the newest skipped plot would have gone

    def __getattr__(self, name: str) -> Any:
        # only reached for what this class does not define: nnU-Net's log, get_value, checkpoints, ...
        return getattr(self._logger, name)

    def plot_progress_png(self, output_folder: str) -> None:
        if time.perf_counter() - self._last_drawn < self._interval_s:
            self._skipped_folder = output_folder
            return
        self.draw(output_folder)

    def flush(self) -> None:
        """Draw the plot if an epoch's drawing was skipped since the last one."""
        if self._skipped_folder is not None:
            self.draw(self._skipped_folder)

    def draw(self, output_folder: str) -> None:
        """Draw the plot now, whenever the last drawing was."""
        self._logger.plot_progress_png(output_folder)
        self._last_drawn = time.perf_counter()
        self._skipped_folder = None


class ProgressPlotIntervalMixin:
    """Mixed into an nnU-Net trainer (before it): ``progress.png`` redrawn at most every
    ``progress_plot_interval_s`` seconds from the start of training, and once more at its end when an epoch's
    drawing was skipped (before nnU-Net's ``on_train_end`` writes the final checkpoint)."""

    #: Seconds between two drawings of nnU-Net's progress plot during training; 0 draws after every epoch.
    progress_plot_interval_s: ClassVar[float] = PLOT_INTERVAL_S

    logger: Any
    local_rank: int
    output_folder: str

    # not in __init__: nnU-Net records a trainer's init arguments from the signature of its first __init__
    def on_train_start(self) -> None:
        super().on_train_start()  # type: ignore[misc]
        if not isinstance(self.logger, IntervalPlotLogger):
            self.logger = IntervalPlotLogger(self.logger, self.progress_plot_interval_s)

    def draw_progress_plot(self) -> None:
        """Draw ``progress.png`` now, whatever the interval (e.g. nnU-Net's empty plot for a run with no epoch)."""
        logger = self.logger
        (logger.draw if isinstance(logger, IntervalPlotLogger) else logger.plot_progress_png)(self.output_folder)

    def on_train_end(self) -> None:
        if self.local_rank == 0:  # nnU-Net draws on rank 0 only: the other ranks skipped nothing
            self.logger.flush()
        super().on_train_end()  # type: ignore[misc]
