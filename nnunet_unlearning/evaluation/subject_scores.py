"""Per-subject membership scores of one model: how well it fits one subject's labelled voxels.

A model trained on a subject tends to be more confident in that subject's true labels than a model that
never saw them. The subject-level membership test (`subject_lira`) compares one model's score on a subject
with the scores of models trained with and without the subject. The scores, over the subject's scored
voxels v (label ≥ 0, i.e. inside nnU-Net's crop, and not the ignore label), with p_g(v) the softmax
probability of the true label g:

- ``logit_confidence`` = mean_v φ(v), φ = log p_g − log(1 − p_g), LiRA's logit scaling (Carlini et al.
  2022), which makes a confidence close to Gaussian across models; 1 − p_g is computed as Σ_{c≠g} p_c
  (no cancellation near p_g = 1), and both p_g and 1 − p_g are clipped below at ``clip``, which bounds φ
  to ±log(1/clip) so that a few saturated voxels cannot dominate the mean;
- ``loss`` = mean_v −log p_g(v), the cross-entropy in nats, with p_g clipped the same way;
- ``foreground_logit_confidence`` and ``foreground_loss``: the same means over the scored voxels whose true
  label is not background (label > 0). In a brain MRI most scored voxels are background that every model
  predicts with near certainty; their φ varies from seed to seed by more than the memorisation of a subject
  moves it (measured: docs/benchmarks.md), so the foreground scores carry the membership signal.

A subject with several cases is scored over all its voxels together (a voxel-weighted mean). Arrays are
channel-first, in nnU-Net's axis order of the preprocessed grid; channel c is label c.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.records import MembershipScores

#: Lower clip of p_g and 1 − p_g: |φ| ≤ log(1e12) ≈ 27.6 and the loss ≤ 27.6 nats per voxel.
CLIP = 1e-12

#: Per score, whether members (models trained on the subject) tend to score higher: the side of the
#: one-sided membership test in `subject_lira`, fixed before seeing any data. ``dice`` is not computed here:
#: it is the evaluation hook's per-case Dice (mean over the scored classes), a subject's Dice the mean over
#: its cases (`retrain_distribution.membership_score`).
MEMBER_HIGHER = {
    "dice": True,
    "logit_confidence": True,
    "loss": False,
    "foreground_logit_confidence": True,
    "foreground_loss": False,
}


def case_membership(probabilities: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> MembershipScores:
    """A model's membership scores on one case (see the module docstring).

    Args:
        probabilities: (C, X, Y, Z) softmax output, channel c = label c.
        truth: integer label map (X, Y, Z).
        valid: boolean mask (X, Y, Z) of the voxels scored (`scored_voxels`).

    Returns:
        The four means and the number of foreground voxels they average over (the all-voxel means average over
        ``valid.sum()``); a case without foreground gets NaN foreground means and a count of 0.
    """
    phi, loss = voxel_scores(probabilities, truth, valid)
    foreground = truth[valid] > 0
    n_foreground = int(foreground.sum())
    return {
        "logit_confidence": float(phi.mean()),
        "loss": float(loss.mean()),
        "foreground_logit_confidence": float(phi[foreground].mean()) if n_foreground else float("nan"),
        "foreground_loss": float(loss[foreground].mean()) if n_foreground else float("nan"),
        "n_foreground_voxels": n_foreground,
    }


@dataclass(frozen=True)
class SubjectScore:
    """One model's scores on one subject: means over ``n_voxels`` scored voxels (see the module docstring)."""

    logit_confidence: float
    loss: float
    n_voxels: int

    def to_dict(self) -> dict[str, float | int]:
        return {"logit_confidence": self.logit_confidence, "loss": self.loss, "n_voxels": self.n_voxels}


def scored_voxels(truth: np.ndarray, ignore_label: int | None) -> np.ndarray:
    """Boolean mask (X, Y, Z) of the voxels scored: label ≥ 0 (inside nnU-Net's crop), not the ignore label."""
    valid = truth >= 0
    if ignore_label is not None:
        valid &= truth != ignore_label
    return valid


def voxel_scores(
    probabilities: np.ndarray, truth: np.ndarray, valid: np.ndarray, clip: float = CLIP
) -> tuple[np.ndarray, np.ndarray]:
    """φ and the loss at each valid voxel.

    Args:
        probabilities: (C, X, Y, Z) softmax output, channel c = label c.
        truth: integer label map (X, Y, Z); values at valid voxels in [0, C).
        valid: boolean mask (X, Y, Z) of the voxels scored.
        clip: lower clip of p_g and 1 − p_g, in (0, 1/2).

    Returns:
        (φ, loss), each (n_valid,) float64, in the order of ``np.flatnonzero(valid)``.
    """
    p = probabilities[:, valid].astype(np.float64)  # (C, n_valid)
    g = truth[valid].astype(np.int64)
    p_true = np.take_along_axis(p, g[None], axis=0)[0]
    p_rest = p.sum(axis=0) - p_true
    p_true, p_rest = np.maximum(p_true, clip), np.maximum(p_rest, clip)
    return np.log(p_true) - np.log(p_rest), -np.log(p_true)


def _check_labels(case: str, truth: np.ndarray, valid: np.ndarray, n_classes: int) -> None:
    if not valid.any():
        raise UserInputError(f"case {case}: no labelled voxel to score (all outside the crop or ignored)")
    largest = int(truth[valid].max())
    if largest >= n_classes:
        raise UserInputError(
            f"case {case}: label {largest} at a scored voxel, but the model predicts {n_classes} classes"
        )


@torch.no_grad()
def subject_score(
    predictor,
    dataset,
    cases: Sequence[str],
    ignore_label: int | None,
    clip: float = CLIP,
) -> SubjectScore:
    """Score a model on one subject's preprocessed cases, each predicted whole by nnU-Net's sliding window.

    Args:
        predictor: an initialised ``nnUNetPredictor`` of a label (softmax, not region) model, e.g. the
            audit's, which loads a run folder's final checkpoint with mirroring off; its
            ``predict_sliding_window_return_logits`` gives (C, X, Y, Z) logits.
        dataset: an nnU-Net dataset over (at least) these cases; ``load_case`` gives the preprocessed image
            (C_in, X, Y, Z) and label map (1, X, Y, Z), -1 outside the crop.
        cases: the subject's case ids (one or more).
        ignore_label: nnU-Net's ignore label of the dataset, or None.
        clip: see `voxel_scores`.

    Returns:
        The subject's voxel-weighted mean φ and loss over all its scored voxels.
    """
    if not cases:
        raise ValueError("a subject needs at least one case")
    phi_sum = loss_sum = 0.0
    n = 0
    for case in cases:
        data, seg, _, _ = dataset.load_case(case)
        logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(np.asarray(data)))
        probabilities = torch.softmax(logits.float(), dim=0).cpu().numpy()
        truth = np.asarray(seg)[0]
        valid = scored_voxels(truth, ignore_label)
        _check_labels(case, truth, valid, probabilities.shape[0])
        phi, loss = voxel_scores(probabilities, truth, valid, clip)
        phi_sum += float(phi.sum())
        loss_sum += float(loss.sum())
        n += phi.size
    return SubjectScore(logit_confidence=phi_sum / n, loss=loss_sum / n, n_voxels=n)
