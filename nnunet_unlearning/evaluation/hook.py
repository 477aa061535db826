"""The evaluation hook: Dice and MAE of the model on the forget, retain and held-out cases, and its
membership scores on each case (`subject_scores`: the per-subject membership test reads them).

Predicts each case's full preprocessed volume with nnU-Net's own sliding-window predictor and scores it
on the preprocessed grid (the configuration's spacing, cropped to the non-zero region), against the
preprocessed label map. Voxels outside the crop (-1) and ignore-label voxels are excluded. Test-time
mirroring is off: the hook tracks the model across training, and mirroring would multiply its cost by up to
8 without changing what it tracks. For challenge-protocol numbers in the original image space, predict with
``nnUNetv2_predict`` and score with ``nnunet-unlearning evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nnunet_unlearning.evaluation.clinical_risk import clinical_risk
from nnunet_unlearning.evaluation.metrics import CaseMetrics, case_metrics
from nnunet_unlearning.evaluation.subject_scores import scored_voxels, voxel_scores
from nnunet_unlearning.evaluation.summary import aggregate
from nnunet_unlearning.records import ClinicalRiskRecord, EvaluationRecord, MembershipScores, SetSummary


@dataclass
class Evaluation:
    """One evaluation of a model: when, per-case metrics and membership scores, per-set aggregates, and its
    cost in seconds."""

    tag: str
    epoch: int
    cases: dict[str, CaseMetrics]
    sets: dict[str, SetSummary]
    clinical_risk: ClinicalRiskRecord
    seconds: float
    membership: dict[str, MembershipScores]

    def to_json(self) -> EvaluationRecord:
        """The evaluation as unlearning_metrics.json records it."""
        return {
            "tag": self.tag,
            "epoch": self.epoch,
            "seconds": round(self.seconds, 3),
            "sets": self.sets,
            "clinical_risk": self.clinical_risk,
            "cases": {k: {**v.to_dict(), "membership": self.membership[k]} for k, v in self.cases.items()},
        }


class EvaluationHook:
    """Scores a network on named case sets; built once per run, called at the start, end, every N epochs.

    ``dataset`` is an nnU-Net dataset object over all cases of the sets (``load_case`` gives the
    preprocessed image ``(C, X, Y, Z)`` and label map ``(1, X, Y, Z)``); ``labels`` the classes scored
    (foreground, ignore label excluded); ``spacing_mm`` the voxel spacing of the preprocessed grid (for
    volumes in mL); ``critical`` the clinically critical classes (for the clinical risk);
    ``make_predictor(network)`` returns an initialised
    ``nnUNetPredictor`` for the network.
    """

    def __init__(
        self,
        dataset,
        case_sets: Mapping[str, Sequence[str]],
        labels: Sequence[int],
        ignore_label: int | None,
        spacing_mm: Sequence[float],
        critical: Sequence[int],
        make_predictor,
    ) -> None:
        self._dataset = dataset
        self.case_sets = {name: list(cases) for name, cases in case_sets.items()}
        self._labels = list(labels)
        # -1 marks voxels outside nnU-Net's crop of the case
        self._ignored = (-1,) if ignore_label is None else (-1, ignore_label)
        self._ignore_label = ignore_label
        self._spacing_mm = list(spacing_mm)
        self._critical = tuple(critical)
        self._make_predictor = make_predictor

    @torch.no_grad()
    def evaluate(self, network: torch.nn.Module, tag: str, epoch: int) -> Evaluation:
        start = time.perf_counter()
        predictor = self._make_predictor(network)
        cases = {}
        membership: dict[str, MembershipScores] = {}
        for case in sorted({c for cases in self.case_sets.values() for c in cases}):
            data, seg, _, _ = self._dataset.load_case(case)
            logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(np.asarray(data)))
            probabilities = torch.softmax(logits.float(), dim=0).cpu().numpy()
            truth = np.asarray(seg)[0].astype(np.int16)
            cases[case] = case_metrics(
                truth,
                probabilities.argmax(0),
                self._labels,
                probabilities=probabilities,
                ignore_labels=self._ignored,
                spacing_mm=self._spacing_mm,
            )
            phi, loss = voxel_scores(probabilities, truth, scored_voxels(truth, self._ignore_label))
            membership[case] = {"logit_confidence": float(phi.mean()), "loss": float(loss.mean())}
        sets = aggregate(cases, self.case_sets)
        risk = clinical_risk(cases, self.case_sets, self._critical)
        return Evaluation(
            tag=tag,
            epoch=epoch,
            cases=cases,
            sets=sets,
            clinical_risk=risk,
            seconds=time.perf_counter() - start,
            membership=membership,
        )
