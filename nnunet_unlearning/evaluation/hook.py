"""The evaluation hook: Dice and MAE of the model on the forget, retain and held-out cases, and its
membership scores on each case (`subject_scores`: the per-subject membership test reads them).

Predicts each case's full preprocessed volume with nnU-Net's own sliding-window predictor and scores it
on the preprocessed grid (the configuration's spacing, cropped to the non-zero region), against the
preprocessed label map. Voxels outside the crop (-1) and ignore-label voxels are excluded. Test-time
mirroring is off and the tiles do not overlap (`nnunet.glue.EVALUATION_TILE_STEP`): the hook tracks the model
across training and compares models scored the same way; mirroring would multiply its cost by up to 8, and
nnU-Net's half-tile overlap by 1.8 on the CPU profile, without changing what it tracks. A Med3D network that
trains under CPU bf16 autocast is also evaluated under it (`med3d.cpu_precision.evaluation_precision`; each
record says which precision it used). For challenge-protocol numbers in the original image space, predict
with ``nnUNetv2_predict`` and score with ``nnunet-unlearning evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nnunet_unlearning.evaluation.clinical_risk import clinical_risk
from nnunet_unlearning.evaluation.kept_scores import KeptScores
from nnunet_unlearning.evaluation.metrics import CaseMetrics, case_metrics
from nnunet_unlearning.evaluation.subject_scores import case_membership, scored_voxels
from nnunet_unlearning.evaluation.summary import aggregate
from nnunet_unlearning.med3d.cpu_precision import evaluation_precision
from nnunet_unlearning.nnunet.glue import EVALUATION_TILE_STEP
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
    #: "fp32" or "bf16" (CPU autocast): the precision of the predictions (`med3d.cpu_precision`)
    precision: str = "fp32"
    #: the cases whose scores were reused from an earlier evaluation of the same checkpoint (`kept_scores`)
    reused: list[str] = field(default_factory=list)

    def to_json(self) -> EvaluationRecord:
        """The evaluation as unlearning_metrics.json records it."""
        record: EvaluationRecord = {
            "tag": self.tag,
            "epoch": self.epoch,
            "seconds": round(self.seconds, 3),
            "precision": self.precision,
            "sets": self.sets,
            "clinical_risk": self.clinical_risk,
            "cases": {k: {**v.to_dict(), "membership": self.membership[k]} for k, v in self.cases.items()},
        }
        if self.reused:
            record["reused_cases"] = self.reused
        return record


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
    def evaluate(self, network: torch.nn.Module, tag: str, epoch: int, kept: KeptScores | None = None) -> Evaluation:
        """Score ``network`` on every case of the sets. ``kept``: the scores kept for this very checkpoint
        (`kept_scores`; only for a network holding exactly those weights): cases found there are not predicted,
        and the cases predicted are added to it."""
        start = time.perf_counter()
        predict = self._predictor(network)
        cases = {}
        membership: dict[str, MembershipScores] = {}
        reused = []
        precision, context = evaluation_precision(network)
        variant = self.kept_variant(precision)
        for case in sorted({c for cases in self.case_sets.values() for c in cases}):
            found = kept.get(case, variant) if kept is not None else None
            if found is not None:
                cases[case], membership[case] = found
                reused.append(case)
                continue
            with context:
                logits, truth = predict(case)
            probabilities = torch.softmax(logits.float(), dim=0).cpu().numpy()
            cases[case] = case_metrics(
                truth,
                probabilities.argmax(0),
                self._labels,
                probabilities=probabilities,
                ignore_labels=self._ignored,
                spacing_mm=self._spacing_mm,
            )
            membership[case] = case_membership(probabilities, truth, scored_voxels(truth, self._ignore_label))
            if kept is not None:
                kept.put(case, variant, cases[case], membership[case])
        if kept is not None:
            kept.save()
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
            precision=precision,
            reused=reused,
        )

    def kept_variant(self, precision: str) -> str:
        """What, besides checkpoint and data, a kept score must share to stand in for this hook's
        (`kept_scores`): the predictions' precision ("fp32" or "bf16") and the sliding window's step, on whole
        volumes."""
        return f"{precision}, tiles at step {EVALUATION_TILE_STEP}"

    def _predictor(self, network: torch.nn.Module) -> Callable[[str], tuple[torch.Tensor, np.ndarray]]:
        """``case -> (logits (C, X, Y, Z), truth (X, Y, Z) int16)``: nnU-Net's sliding window over the case's
        whole preprocessed volume (called under the evaluation's precision context)."""
        predictor = self._make_predictor(network)

        def predict(case: str) -> tuple[torch.Tensor, np.ndarray]:
            data, seg, _, _ = self._dataset.load_case(case)
            logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(np.asarray(data)))
            return logits, np.asarray(seg)[0].astype(np.int16)

        return predict
