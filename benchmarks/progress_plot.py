"""What one drawing of nnU-Net's progress plot costs, beside the run record's own plot.

nnU-Net redraws ``progress.png`` after every epoch (`nnUNetTrainer.on_epoch_end`); our trainers redraw it at
most every ``ProgressPlotIntervalMixin.progress_plot_interval_s`` seconds (`nnunet/progress_plot_interval.py`).
This fills nnU-Net's own logger with ``--epochs`` epochs of values and times ``plot_progress_png`` into a
temporary folder, and the run record's ``unlearning_progress.png`` (`evaluation/progress_plot.py`) with three
evaluations, each ``--repeats`` times after one unmeasured drawing (matplotlib's import and font cache).
Prints the medians in seconds. Measures, asserts nothing.

    .venv/bin/python benchmarks/progress_plot.py [--epochs 5 10 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable

from nnunetv2.training.logging.nnunet_logger import MetaLogger

from nnunet_unlearning.evaluation.progress_plot import plot_progress


def nnunet_logger(folder: str, epochs: int) -> MetaLogger:
    """nnU-Net's logger holding ``epochs`` epochs of what its trainer logs (3 foreground classes)."""
    logger = MetaLogger(folder, False)
    for epoch in range(epochs):
        for key, value in (("mean_fg_dice", 0.7), ("train_losses", -0.5), ("val_losses", -0.4)):  # it derives the EMA
            logger.log(key, value, epoch)
        logger.log("dice_per_class_or_region", [0.7, 0.8, 0.6], epoch)
        logger.log("lrs", 0.01, epoch)
        logger.log("epoch_start_timestamps", 10.0 * epoch, epoch)
        logger.log("epoch_end_timestamps", 10.0 * epoch + 9.0, epoch)
    return logger


def median_seconds(draw: Callable[[], object], repeats: int) -> float:
    draw()  # unmeasured: imports, font cache
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        draw()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 10, 50], help="epochs in nnU-Net's logger")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    evaluations = [
        {"epoch": e, "sets": {"forget": {"dice": 0.77}, "retain": {"dice": 0.77}, "heldout": {"dice": 0.76}}}
        for e in (0, 5, 10)
    ]
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for epochs in args.epochs:
            draw = functools.partial(nnunet_logger(folder, epochs).plot_progress_png, folder)
            result[f"nnunet_progress_png_{epochs}_epochs_s"] = median_seconds(draw, args.repeats)
    result["unlearning_progress_png_s"] = median_seconds(
        lambda: plot_progress(evaluations, "nnUNetTrainerUnlearnL1Sparse"), args.repeats
    )
    print(json.dumps({k: round(v, 3) for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
