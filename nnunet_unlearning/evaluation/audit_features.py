"""Per-patch features for the membership-inference audit: loss, confidence and entropy of a model's output.

A model tends to be more confident, and to have a lower loss, on the cases it was trained on. The audit
samples patches from each case's preprocessed volume (the same patches for every model, seeded by case) and
summarises the model's per-voxel cross-entropy loss, confidence (largest class probability) and entropy
over the valid voxels of each patch. Arrays are channel-first; spatial axes are nnU-Net's (x, y, z) of the
preprocessed grid.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch

#: Feature names, in the column order of `patch_features`.
FEATURES: tuple[str, ...] = (
    "loss_mean",
    "loss_std",
    "confidence_mean",
    "confidence_std",
    "entropy_mean",
    "entropy_std",
)


def clip_patch_size(patch_size: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """``patch_size`` clipped to the volume ``shape`` (both spatial, same length)."""
    if len(patch_size) != len(shape):
        raise ValueError(f"patch size {tuple(patch_size)} does not match a volume of shape {tuple(shape)}")
    return tuple(min(int(p), int(s)) for p, s in zip(patch_size, shape))


def case_rng(seed: int, case: str) -> np.random.Generator:
    """A generator that depends only on the seed and the case id (not on the order cases are visited)."""
    return np.random.default_rng([seed, zlib.crc32(case.encode("utf-8"))])


def sample_patches(valid: np.ndarray, patch_size: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Origins of ``n`` patches, each centred on a valid voxel drawn uniformly (with replacement).

    A patch that would leave the volume is shifted inside it, so every patch lies fully in the volume
    and holds at least one valid voxel (its centre).

    Args:
        valid: boolean mask of the valid voxels, spatial shape (x, y, z); at least one True.
        patch_size: the patch's spatial size, at most the volume's.
        n: number of patches.
        rng: the case's generator (`case_rng`).

    Returns:
        (n, ndim) int64 array of patch origins (lowest corner, voxel indices).
    """
    shape = np.array(valid.shape)
    size = np.array(clip_patch_size(patch_size, valid.shape))
    candidates = np.flatnonzero(valid)
    if candidates.size == 0:
        raise ValueError("no valid voxel to sample a patch around")
    centres = np.stack(np.unravel_index(candidates[rng.integers(0, candidates.size, n)], valid.shape), axis=1)
    return np.clip(centres - size // 2, 0, shape - size).astype(np.int64)


@torch.no_grad()
def voxel_maps(logits: torch.Tensor, truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-voxel loss, confidence and entropy of a softmax model.

    Args:
        logits: (C, x, y, z) network output (channel c = label c).
        truth: integer label map (x, y, z); its values at valid voxels are in [0, C).
        valid: boolean mask (x, y, z) of the voxels scored; others get 0.

    Returns:
        (3, x, y, z) float32 array: cross-entropy -log p_truth (nats), max_c p_c, and -Σ_c p_c log p_c (nats).
    """
    log_p = torch.log_softmax(logits.float(), dim=0)
    target = torch.from_numpy(np.where(valid, truth, 0).astype(np.int64)).to(log_p.device)
    loss = -log_p.gather(0, target[None])[0]
    p = log_p.exp()
    confidence = p.amax(dim=0)
    # p log p is 0 where p underflows to 0 (log p = -inf would give NaN)
    entropy = -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(dim=0)
    maps = torch.stack([loss, confidence, entropy]).cpu().numpy()
    maps[:, ~valid] = 0
    return maps


def patch_features(maps: np.ndarray, valid: np.ndarray, origins: np.ndarray, patch_size: Sequence[int]) -> np.ndarray:
    """Mean and standard deviation, over each patch's valid voxels, of each voxel map.

    Args:
        maps: (M, x, y, z) voxel maps (`voxel_maps`: M = 3).
        valid: boolean mask (x, y, z).
        origins: (n, 3) patch origins (`sample_patches`).
        patch_size: the patch's spatial size.

    Returns:
        (n, 2 M) float64 array, columns per map: mean, std (population) — `FEATURES` for `voxel_maps`.
    """
    size = clip_patch_size(patch_size, valid.shape)
    rows = []
    for origin in origins:
        window = tuple(slice(int(o), int(o) + s) for o, s in zip(origin, size))
        keep = valid[window]
        values = maps[(slice(None), *window)][:, keep].astype(np.float64)  # (M, n_valid)
        rows.append(np.stack([values.mean(axis=1), values.std(axis=1)], axis=1).ravel())
    return np.asarray(rows, dtype=np.float64).reshape(len(origins), 2 * maps.shape[0])
