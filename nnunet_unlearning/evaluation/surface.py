"""95th-percentile Hausdorff distance (HD95) between two binary masks, in mm.

Two boundary definitions are offered; the distances themselves always come from MONAI
(`monai.metrics.utils.get_surface_distance`: exact Euclidean distance from each boundary voxel
centre of one mask to the nearest boundary voxel centre of the other, voxel spacing in mm).

- ``slice_axis=None`` (MONAI's convention): boundary = mask minus its 3-D erosion by the
  6-connected cross, voxels outside the image counting as background (`get_mask_edges`).
- ``slice_axis=k`` (the MRBrainS18 challenge's convention): boundary = mask minus its 2-D erosion
  by a 3x3 square within every slice perpendicular to axis ``k``, voxels outside the image counting
  as foreground. That is what SimpleITK's ``BinaryErode(image, (1, 1, 0))`` does, which the
  challenge's evaluation script applies to its images (x, y eroded, z not); in SimpleITK's array
  order (z, y, x), which nnU-Net also uses, the challenge's slice axis is 0.

HD95 = max(P95 of the distances pred->truth, P95 of the distances truth->pred), percentiles with
linear interpolation (``numpy.percentile``'s default), as both MONAI and the challenge define it.
"""

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def in_plane_boundary(mask: np.ndarray, slice_axis: int) -> np.ndarray:
    """Boundary voxels of ``mask`` under 2-D erosion within each slice perpendicular to ``slice_axis``.

    Args:
        mask: boolean array, any number of dimensions >= 2.
        slice_axis: the axis along which slices are stacked (not eroded).

    Returns:
        Boolean array of ``mask``'s shape: voxels of ``mask`` with at least one in-plane neighbour
        (8-connected in 2-D) outside ``mask``; the image border does not count as outside.
    """
    structure_shape = [3] * mask.ndim
    structure_shape[slice_axis] = 1
    eroded: np.ndarray = ndimage.binary_erosion(mask, structure=np.ones(structure_shape, dtype=bool), border_value=1)
    boundary: np.ndarray = mask & ~eroded
    return boundary


def _crop_to_union(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their union's bounding box plus one voxel (clipped to the image).

    The one-voxel margin keeps every boundary decision identical to the uncropped image: inside
    the image the margin is background, at the image border the crop ends where the image ends.
    """
    coords = np.nonzero(gt | pred)
    box = tuple(slice(max(int(c.min()) - 1, 0), int(c.max()) + 2) for c in coords)
    return gt[box], pred[box]


def hd95_mm(gt: np.ndarray, pred: np.ndarray, spacing_mm: Sequence[float], *, slice_axis: int | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance between two boolean masks, in mm.

    Args:
        gt: boolean ground-truth mask (e.g. shape (Z, Y, X)).
        pred: boolean predicted mask, same shape.
        spacing_mm: voxel spacing in mm, one value per axis of ``gt``, in the arrays' axis order.
        slice_axis: ``None`` for MONAI's 3-D boundary; an axis index for the MRBrainS18 challenge's
            in-plane boundary (see the module docstring).

    Returns:
        HD95 in mm; NaN when either mask (or its boundary) is empty, where no distance exists.
    """
    # MONAI pulls in much of its package on import (seconds); importing here keeps Dice-only users fast.
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    if gt.shape != pred.shape or len(spacing_mm) != gt.ndim:
        raise ValueError(f"shapes {gt.shape}, {pred.shape} and spacing {tuple(spacing_mm)} do not agree")
    if not gt.any() or not pred.any():
        return float("nan")
    if slice_axis is None:
        edges_pred, edges_gt = get_mask_edges(pred, gt, crop=True)
    else:
        gt, pred = _crop_to_union(gt, pred)
        edges_pred, edges_gt = in_plane_boundary(pred, slice_axis), in_plane_boundary(gt, slice_axis)
    if not edges_pred.any() or not edges_gt.any():
        return float("nan")
    spacing = [float(s) for s in spacing_mm]
    pred_to_gt = get_surface_distance(edges_pred, edges_gt, distance_metric="euclidean", spacing=spacing)
    gt_to_pred = get_surface_distance(edges_gt, edges_pred, distance_metric="euclidean", spacing=spacing)
    return float(max(np.percentile(pred_to_gt, 95), np.percentile(gt_to_pred, 95)))
