"""The original's per-case scores kept across requests: a later start evaluation of the same checkpoint reuses
them exactly, under the same key only, and erasing a case removes its entries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunet_fixture import load_trainer, shorten

from nnunet_unlearning.artifacts import METRICS_FILE
from nnunet_unlearning.evaluation.hook import EvaluationHook
from nnunet_unlearning.evaluation.kept_scores import SCORES_ENV, KeptScores, scores_folder, without_cases
from nnunet_unlearning.evaluation.metrics import case_metrics
from nnunet_unlearning.unlearning.schedules import trainer_family
from nnunet_unlearning.unlearning.strategies import NoisyLabel


def _case():
    truth = np.array([[[0, 1, 1], [2, 0, 0]]], np.int16)
    probabilities = np.full((4, *truth.shape), 0.1, np.float32)
    probabilities[0] = 0.7
    # label 2 is never predicted: its Dice is 0, and a class absent from both maps gets NaN
    metrics = case_metrics(truth, probabilities.argmax(0), [1, 2, 3], probabilities=probabilities)
    membership = {"logit_confidence": -1.5, "loss": 1.6, "foreground_logit_confidence": float("nan")}
    return metrics, membership


def test_kept_scores_round_trip_exactly_under_their_key_only(tmp_path):
    metrics, membership = _case()
    assert math.isnan(metrics.classes[3].dice)
    kept = KeptScores(tmp_path, "ab" * 32, tmp_path / "data")
    assert kept.get("case_1", "bf16") is None
    kept.put("case_1", "bf16", metrics, membership)
    kept.save()
    again = KeptScores(tmp_path, "ab" * 32, tmp_path / "data").get("case_1", "bf16")
    assert again is not None
    assert again[0].to_dict() == metrics.to_dict() and again[0].n_valid == metrics.n_valid
    assert math.isnan(again[0].classes[3].dice) and math.isnan(again[1]["foreground_logit_confidence"])
    assert again[1]["loss"] == 1.6
    # another precision, another data folder or another checkpoint: nothing to reuse
    assert KeptScores(tmp_path, "ab" * 32, tmp_path / "data").get("case_1", "fp32") is None
    assert KeptScores(tmp_path, "ab" * 32, tmp_path / "other").get("case_1", "bf16") is None
    assert KeptScores(tmp_path, "cd" * 32, tmp_path / "data").get("case_1", "bf16") is None
    # a second writer adds its cases without dropping the first's
    other = KeptScores(tmp_path, "ab" * 32, tmp_path / "data")
    other.put("case_2", "bf16", metrics, membership)
    other.save()
    fresh = KeptScores(tmp_path, "ab" * 32, tmp_path / "data")
    assert fresh.get("case_1", "bf16") is not None and fresh.get("case_2", "bf16") is not None
    # a file cut short is ignored, then rewritten
    kept.path.write_text("{")
    assert fresh.get("case_1", "bf16") is None


def test_erasing_a_case_drops_its_entries(tmp_path):
    metrics, membership = _case()
    kept = KeptScores(tmp_path, "ab" * 32, tmp_path / "data")
    for case in ("case_1", "case_2"):
        kept.put(case, "fp32", metrics, membership)
    kept.save()
    assert without_cases(kept.path, {"case_9"}) is None
    text = without_cases(kept.path, {"case_1"})
    assert text is not None and "case_1" not in text and "case_2" in text
    kept.path.write_text(text)
    assert kept.get("case_2", "fp32") is not None and kept.get("case_1", "fp32") is None


class _Predictor:
    """nnU-Net's predictor interface over a one-hot image: perfect logits; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_sliding_window_return_logits(self, data):
        self.calls += 1
        return 10 * data


class _OneCase:
    """nnU-Net's dataset interface for one case: the label map one-hot as image."""

    def load_case(self, case: str):
        seg = np.array([[[0, 1], [2, 1]]], np.int16)
        return np.stack([(seg == c).astype(np.float32) for c in range(3)]), seg[None], None, None


def test_whole_volume_scores_of_overlapping_tiles_are_not_reused(tmp_path):
    """Scores kept by a version that predicted with nnU-Net's half-tile overlap (variant "fp32") score another
    prediction than today's hook makes (`nnunet.glue.EVALUATION_TILE_STEP`): predicted again, then kept anew."""
    metrics, membership = _case()
    kept = KeptScores(tmp_path, "ab" * 32, tmp_path / "data")
    kept.put("a", "fp32", metrics, membership)
    kept.save()
    predictor = _Predictor()
    hook = EvaluationHook(_OneCase(), {"forget": ["a"]}, [1, 2], None, [1.0] * 3, [], lambda network: predictor)
    first = hook.evaluate(torch.nn.Identity(), "start", 0, kept=kept)
    assert first.reused == [] and predictor.calls == 1 and first.cases["a"].mean("dice") == pytest.approx(1.0)
    again = hook.evaluate(torch.nn.Identity(), "start", 0, kept=KeptScores(tmp_path, "ab" * 32, tmp_path / "data"))
    assert again.reused == ["a"] and predictor.calls == 1


def test_the_folder_is_the_results_dataset_folder_unless_set(tmp_path, monkeypatch):
    monkeypatch.delenv(SCORES_ENV, raising=False)
    assert scores_folder(tmp_path / "Dataset501_X") == tmp_path / "Dataset501_X" / "nnunet_unlearning_scores"
    monkeypatch.setenv(SCORES_ENV, str(tmp_path / "shared"))
    assert scores_folder(tmp_path / "Dataset501_X") == tmp_path / "shared"


@pytest.mark.slow
def test_a_second_request_against_the_same_original_reuses_its_start_scores(request_world, finished_runs):
    """finished_runs' NoisyLabel run scored the original first; this run's start evaluation predicts nothing and
    records exactly the same cases."""
    first = json.loads((finished_runs["NoisyLabel"] / METRICS_FILE).read_text())["evaluations"][0]
    trainer = load_trainer(
        trainer_family(NoisyLabel, __name__)["nnUNetTrainerUnlearnNoisyLabel_2epochs"], request_world
    )
    shorten(trainer, epochs=1, iterations=1)
    trainer.run_training()
    evaluations = json.loads((Path(trainer.output_folder) / METRICS_FILE).read_text())["evaluations"]
    start, end = evaluations[0], evaluations[-1]
    assert start["tag"] == "start" and start["reused_cases"] == sorted(start["cases"])
    assert start["cases"] == first["cases"] and start["sets"] == first["sets"]
    assert "reused_cases" not in end  # the trained weights are predicted afresh
