"""The evaluation hook on fixed patches: a calibration check's cheap stand-in for the whole-volume hook.

A calibration check needs each case's score, again and again, for the same cases (``calibration``). The
whole-volume hook predicts every case with nnU-Net's sliding window (on the CPU profile 18 tiles of
16 × 48 × 48 per case, one at a time, ~14 s for 7 cases at fp32 on two threads); this hook scores each
case on ``n`` patches of the network's patch size instead, drawn once per run around the case's labelled
voxels (seeded by case, the same patches at every check) and predicted in batches, with no sliding window,
no Gaussian weighting and no mirroring. A case's metrics and membership scores are those of the hook
(`evaluation.hook`) computed over its patches' voxels pooled (a voxel in two patches counts twice).

What it changes: the scores are those of the patches, not of the volume (a patch sees less context at its
border than a sliding-window tile blended with its neighbours, and the patches favour labelled regions), so
a patch score is comparable only with patch scores drawn the same way. Calibration compares every check
with its own check 0 scored the same way, so the rule reads them consistently; the run's start and end are
still scored on whole volumes. Check 0 scores the original, whose patch scores are kept for the next request
against it as the start evaluation's are (`kept_scores`, under this hook's own `kept_variant`). Memory:
``n × channels × patch voxels × 4`` bytes per case, held for the run (on the CPU profile 8 × 2 × 36,864 × 4 B
= 2.4 MB per case).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from nnunet_unlearning.evaluation.audit_features import case_rng, sample_patches
from nnunet_unlearning.evaluation.hook import EvaluationHook
from nnunet_unlearning.evaluation.subject_scores import scored_voxels

#: Seed of the patch draw (with the case id, `audit_features.case_rng`): one fixed set of patches per case.
PATCH_SEED = 20261203


def pad_to(data: np.ndarray, seg: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``data`` (C, X, Y, Z) and ``seg`` (X, Y, Z) padded at the high end to at least ``size`` per spatial axis:
    images with 0 (nnU-Net's normalised background), labels with -1 (outside the crop: not scored)."""
    pad = [(0, max(int(s) - n, 0)) for s, n in zip(size, seg.shape, strict=True)]
    if not any(after for _, after in pad):
        return data, seg
    return np.pad(data, [(0, 0), *pad]), np.pad(seg, pad, constant_values=-1)


class PatchHook(EvaluationHook):
    """:class:`EvaluationHook` scoring each case on ``patches_per_case`` fixed patches of ``patch_size``
    (spatial, nnU-Net's axis order), predicted ``batch_size`` at a time; the other arguments are the hook's.
    The patches are drawn at the first evaluation and kept."""

    def __init__(
        self,
        *hook_arguments,
        patch_size: Sequence[int],
        patches_per_case: int,
        batch_size: int,
        **hook_keywords,
    ) -> None:
        super().__init__(*hook_arguments, **hook_keywords)
        if patches_per_case < 1 or batch_size < 1:
            raise ValueError(f"patches_per_case and batch_size must be ≥ 1, got {patches_per_case}, {batch_size}")
        self.patch_size = tuple(int(s) for s in patch_size)
        self.patches_per_case = patches_per_case
        self.batch_size = batch_size
        self._patches: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def kept_variant(self, precision: str) -> str:
        """Patch scores are kept apart from whole-volume ones, and from those of other patches or batches (a
        batch's size may change the convolution's arithmetic)."""
        size = "×".join(map(str, self.patch_size))
        return f"{precision}, patches {self.patches_per_case} of {size} seed {PATCH_SEED}, batch {self.batch_size}"

    def patches(self, case: str) -> tuple[np.ndarray, np.ndarray]:
        """The case's patches: images (n, C, *patch_size) float32 and labels (n, *patch_size) int16."""
        if case not in self._patches:
            data, seg, _, _ = self._dataset.load_case(case)
            data, truth = pad_to(np.asarray(data, dtype=np.float32), np.asarray(seg)[0].astype(np.int16),
                                 self.patch_size)  # fmt: skip
            scored = scored_voxels(truth, self._ignore_label)
            labelled = scored & (truth > 0)
            # centred on labelled voxels, so that every patch holds some of what Dice scores
            origins = sample_patches(labelled if labelled.any() else scored, self.patch_size,
                                     self.patches_per_case, case_rng(PATCH_SEED, case))  # fmt: skip
            windows = [tuple(slice(int(o), int(o) + s) for o, s in zip(origin, self.patch_size)) for origin in origins]
            self._patches[case] = (
                np.stack([data[(slice(None), *w)] for w in windows]),
                np.stack([truth[w] for w in windows]),
            )
        return self._patches[case]

    def _predictor(self, network: torch.nn.Module) -> Callable[[str], tuple[torch.Tensor, np.ndarray]]:
        """``case -> (logits (C, n·px, py, pz), truth (n·px, py, pz))``: the case's patches predicted in batches
        by ``network`` in eval mode (its mode restored after each case), pooled along the first spatial axis."""
        device = next(network.parameters()).device

        def predict(case: str) -> tuple[torch.Tensor, np.ndarray]:
            images, truth = self.patches(case)
            training = network.training
            network.eval()
            try:
                logits = torch.cat([
                    network(torch.from_numpy(images[i : i + self.batch_size]).to(device)).float().cpu()
                    for i in range(0, len(images), self.batch_size)
                ])  # fmt: skip
            finally:
                network.train(training)
            # (n, C, px, py, pz) -> (C, n·px, py, pz): one volume of patches stacked along x
            return torch.cat(list(logits), dim=1), np.concatenate(list(truth), axis=0)

        return predict
