"""Substitute label maps for forget patches: voxel-wise noise, smooth noise, and class permutations.

Every function takes the per-scale targets of a batch (integer label maps ``(B, 1, *spatial)``, highest
resolution first, see ``nnunet_unlearning.unlearning.strategy``) and returns new ones of the same shapes
and dtypes. Classes are ``0..num_classes-1`` (0 is background); voxels equal to ``ignore_label`` stay
ignore. Random draws use ``generator`` on its own device and are moved to the targets' device; with
``generator=None`` they are drawn directly on that device from its default RNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_SMOOTH_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Where a draw must happen: a generator only fills tensors on its own device."""
    return generator.device if generator is not None else device


def to_scales(full: Tensor, targets: list[Tensor], ignore_label: int | None) -> list[Tensor]:
    """A full-resolution map ``full`` (shaped like ``targets[0]``) brought to every scale of ``targets``.

    Lower scales are nearest-neighbour resampled to each scale's own shape (which may be downsampled
    by different factors along different axes); voxels that are ``ignore_label`` in a scale's target
    stay ``ignore_label`` there.
    """
    scaled = []
    for target in targets:
        if target.shape[2:] == full.shape[2:]:
            label_map = full
        else:  # nearest interpolation is not implemented for integer tensors; labels are exact in float32
            label_map = F.interpolate(full.float(), size=target.shape[2:], mode="nearest")
        label_map = label_map.to(target.dtype)
        if ignore_label is not None:
            label_map = torch.where(target == ignore_label, target, label_map)
        scaled.append(label_map)
    return scaled


def voxelwise_random_labels(
    targets: list[Tensor], num_classes: int, ignore_label: int | None, generator: torch.Generator | None = None
) -> list[Tensor]:
    """Each full-resolution voxel gets a class drawn uniformly and independently from ``0..num_classes-1``."""
    full = targets[0]
    noise = torch.randint(
        0, num_classes, full.shape, generator=generator, dtype=full.dtype, device=_draw_device(generator, full.device)
    )
    return to_scales(noise.to(full.device), targets, ignore_label)


def smooth_random_labels(
    targets: list[Tensor],
    num_classes: int,
    ignore_label: int | None,
    blob_size: Sequence[float],
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Spatially coherent random label maps: blobs of random classes, about ``blob_size`` voxels across.

    Per patch and class, a Gaussian noise field is drawn on a coarse grid whose nodes span the patch
    (first and last voxel included) at most ``blob_size[d]`` voxels apart along axis ``d``, and
    interpolated (tri)linearly to the full-resolution patch; each voxel takes the class whose field is
    largest there. Every class is a priori equally likely at every voxel, as in
    :func:`voxelwise_random_labels`, but neighbouring voxels mostly agree; even a blob size larger than
    the patch leaves two nodes per axis, so a patch is never one class by construction.
    """
    full = targets[0]
    spatial = full.shape[2:]
    if len(blob_size) != len(spatial):
        raise ValueError(f"blob_size {tuple(blob_size)} has {len(blob_size)} axes, patches have {len(spatial)}")
    grid = [math.ceil((size - 1) / blob) + 1 for size, blob in zip(spatial, blob_size)]
    fields = torch.randn(
        full.shape[0], num_classes, *grid, generator=generator, device=_draw_device(generator, full.device)
    ).to(full.device)
    fields = F.interpolate(fields, size=spatial, mode=_SMOOTH_MODES[len(spatial)], align_corners=True)
    return to_scales(fields.argmax(dim=1, keepdim=True), targets, ignore_label)


def random_derangements(rows: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``rows`` independent permutations of ``0..n-1`` ``(rows, n)``, each uniform among those without a
    fixed point (derangements); plain identities when ``n < 2``, where no derangement exists.

    Drawn by rejection (about e ≈ 2.7 tries a row), on the generator's device (CPU by default).
    """
    device = _draw_device(generator, torch.device("cpu"))
    identity = torch.arange(n, device=device)
    if n < 2:
        return identity.repeat(rows, 1)
    perms = torch.empty(rows, n, dtype=torch.long, device=device)
    redraw = torch.ones(rows, dtype=torch.bool, device=device)
    while redraw.any():
        count = int(redraw.sum())
        perms[redraw] = torch.rand(count, n, generator=generator, device=device).argsort(dim=1)
        redraw = (perms == identity).any(dim=1)
    return perms


def permute_foreground(
    targets: list[Tensor],
    num_classes: int,
    ignore_label: int | None,
    generator: torch.Generator | None = None,
    fixed: Sequence[int] = (),
) -> list[Tensor]:
    """Each patch's labels under its own random derangement of the foreground classes ``1..num_classes-1``
    that are not ``fixed``.

    Background, ignore and ``fixed`` voxels keep their value, and no other class is mapped onto a
    ``fixed`` class: a voxel carries a fixed class afterwards exactly where it carried it before. The same
    permutation applies at every scale, so the scales still describe one (wrong) segmentation. With fewer
    than two permutable classes no derangement exists and those classes keep their labels too.
    """
    batch = targets[0].shape[0]
    table_size = num_classes if ignore_label is None else max(num_classes, ignore_label + 1)
    table = torch.arange(table_size).repeat(batch, 1)
    permutable = torch.tensor([c for c in range(1, num_classes) if c not in set(fixed)], dtype=torch.long)
    table[:, permutable] = permutable[random_derangements(batch, len(permutable), generator).cpu()]
    table = table.to(targets[0].device)
    return [torch.gather(table, 1, t.reshape(batch, -1).long()).reshape(t.shape).to(t.dtype) for t in targets]
