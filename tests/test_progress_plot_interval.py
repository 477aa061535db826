"""nnU-Net's progress plot and the unlearning record's redrawn at most once per interval, and at the end of training."""

from __future__ import annotations

import inspect
import json

import pytest
from nnunetv2.training.logging.nnunet_logger import MetaLogger
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_unlearning.artifacts import METRICS_FILE, PROGRESS_FILE
from nnunet_unlearning.nnunet import progress_plot_interval
from nnunet_unlearning.nnunet.progress_plot_interval import IntervalPlotLogger, ProgressPlotIntervalMixin
from nnunet_unlearning.nnunet.trainers_dir import find_trainer
from nnunet_unlearning.unlearning import run_record
from nnunet_unlearning.unlearning.base_trainer import nnUNetTrainerUnlearn
from nnunet_unlearning.unlearning.retrain_trainer import nnUNetTrainerRetrain
from nnunet_unlearning.unlearning.run_record import RunRecord


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Logger:
    """Records where nnU-Net's logger was asked to draw; answers get_value as nnU-Net's does."""

    def __init__(self) -> None:
        self.drawn: list[str] = []

    def plot_progress_png(self, output_folder: str) -> None:
        self.drawn.append(output_folder)

    def get_value(self, key: str, step: int) -> str:
        return f"{key}@{step}"


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(progress_plot_interval.time, "perf_counter", clock)
    return clock


def test_it_draws_once_per_interval_and_the_skipped_epochs_at_the_end(clock):
    inner = _Logger()
    logger = IntervalPlotLogger(inner, interval_s=60.0)
    for seconds, folder in ((10, "e0"), (59, "e1"), (61, "e2"), (100, "e3"), (125, "e4")):
        clock.now = 100.0 + seconds
        logger.plot_progress_png(folder)
    assert inner.drawn == ["e2", "e4"]  # 61 s after the start, then 64 s after that drawing
    logger.flush()
    assert inner.drawn == ["e2", "e4"]  # nothing skipped since e4
    clock.now += 1
    logger.plot_progress_png("e5")
    logger.flush()
    assert inner.drawn == ["e2", "e4", "e5"]
    assert logger.get_value("train_losses", -1) == "train_losses@-1"  # the rest is nnU-Net's logger


def test_an_interval_of_zero_draws_after_every_epoch(clock):
    inner = _Logger()
    logger = IntervalPlotLogger(inner, interval_s=0.0)
    for folder in ("e0", "e1", "e2"):
        logger.plot_progress_png(folder)
    logger.flush()
    assert inner.drawn == ["e0", "e1", "e2"]


def test_the_final_plot_is_nnunets_own_with_every_epoch(tmp_path, clock):
    """Through nnU-Net's real logger: the flush at the end writes the progress.png it would have written."""
    meta = MetaLogger(str(tmp_path), False)
    logger = IntervalPlotLogger(meta, interval_s=60.0)
    for epoch in range(3):
        for key, value in (("mean_fg_dice", 0.5), ("train_losses", 1.0), ("val_losses", 1.0)):
            logger.log(key, value, epoch)
        logger.log("dice_per_class_or_region", [0.5, 0.4], epoch)
        logger.log("lrs", 0.01, epoch)
        logger.log("epoch_start_timestamps", float(epoch), epoch)
        logger.log("epoch_end_timestamps", epoch + 1.0, epoch)
        logger.plot_progress_png(str(tmp_path))
    assert not (tmp_path / "progress.png").exists()
    logger.flush()
    assert (tmp_path / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert logger.get_checkpoint()["train_losses"] == [1.0, 1.0, 1.0]


class _NnunetTrainer:
    """nnU-Net's calls the mixin meets: on_train_start, one plot per epoch end, on_train_end."""

    def __init__(self, rank: int) -> None:
        self.local_rank = rank
        self.logger = _Logger()
        self.ended_with: list[str] = []

    def on_train_start(self) -> None:
        pass

    def on_epoch_end(self) -> None:
        self.logger.plot_progress_png("fold_0")

    def on_train_end(self) -> None:
        self.ended_with = list(inner_logger(self).drawn)  # what was drawn before the final checkpoint


class _Trainer(ProgressPlotIntervalMixin, _NnunetTrainer):
    pass


def inner_logger(trainer) -> _Logger:
    logger = trainer.logger
    return logger._logger if isinstance(logger, IntervalPlotLogger) else logger


@pytest.mark.parametrize("rank, drawn", [(0, ["fold_0"]), (1, [])])
def test_the_mixin_draws_the_skipped_epochs_on_rank_0_before_nnunets_end(clock, rank, drawn):
    trainer = _Trainer(rank)
    trainer.on_train_start()
    trainer.on_train_start()  # wrapping twice would not draw the skipped epochs of the outer wrapper's
    assert isinstance(trainer.logger, IntervalPlotLogger) and not isinstance(trainer.logger._logger, IntervalPlotLogger)
    for _ in range(3):
        clock.now += 5
        trainer.on_epoch_end()
    assert inner_logger(trainer).drawn == []
    trainer.on_train_end()
    assert trainer.ended_with == drawn


def test_a_run_that_took_no_epoch_gets_its_plot_whatever_the_interval(clock):
    trainer = _Trainer(0)
    trainer.output_folder = "fold_0"
    trainer.on_train_start()
    trainer.draw_progress_plot()
    assert inner_logger(trainer).drawn == ["fold_0"]


@pytest.mark.parametrize("name", ["nnUNetTrainerMed3D", "nnUNetTrainerMed3D_cpu", "nnUNetTrainerUnlearnFineTune"])
def test_every_trainer_of_ours_draws_at_an_interval(name):
    for cls in (find_trainer(name), nnUNetTrainerRetrain, nnUNetTrainerUnlearn):
        assert cls.on_train_start is not nnUNetTrainer.on_train_start
        assert cls.__mro__.index(ProgressPlotIntervalMixin) < cls.__mro__.index(nnUNetTrainer)
        assert cls.progress_plot_interval_s == 60.0


def test_nnunet_still_draws_through_its_logger_at_every_epoch_end():
    """The interval works only while nnU-Net draws through ``self.logger.plot_progress_png``."""
    assert "self.logger.plot_progress_png(self.output_folder)" in inspect.getsource(nnUNetTrainer.on_epoch_end)


def test_the_unlearning_record_redraws_its_own_plot_once_per_interval_and_always_at_its_finish(tmp_path, monkeypatch):
    """A calibrated run writes its record at every check; the record's plot is drawn at the first write, then
    only after the interval, and by the final write whatever the interval. The JSON is written every time."""
    clock, drawn = _Clock(), []
    monkeypatch.setattr(run_record.time, "perf_counter", clock)
    monkeypatch.setattr(run_record, "plot_progress", lambda evaluations, *_: drawn.append(len(evaluations)) or b"png")
    monkeypatch.setattr(run_record, "sha256_file", lambda path: "0" * 64)
    monkeypatch.setattr(
        RunRecord, "content", lambda self, *_: {"evaluations": list(self.evaluations), "calibration": None}
    )
    record = RunRecord(None, "nnUNetTrainerUnlearnNoisyLabel", None)  # type: ignore[arg-type]
    for seconds, evaluation in ((0, None), (30, "start"), (61, None), (70, "check"), (71, None)):
        clock.now = 100.0 + seconds
        if evaluation is None:
            record.save(tmp_path)
        else:
            record.add({"tag": evaluation}, tmp_path)  # type: ignore[typeddict-item]
        assert len(json.loads((tmp_path / METRICS_FILE).read_text())["evaluations"]) == len(record.evaluations)
    assert drawn == [0, 1]  # the first write, then 61 s after it
    record.finish(tmp_path, tmp_path / "checkpoint_final.pth")
    assert drawn == [0, 1, 2] and (tmp_path / PROGRESS_FILE).read_bytes() == b"png"
