"""Per-case segmentation metrics: Dice, hard and soft MAE, volume similarity, volumes, and (optionally) HD95.

Dice, hard MAE, volume similarity and volumes all come from one confusion matrix, built in one pass
over the voxels (``np.bincount`` of ``gt * K + pred``), not from one pass per class. The exact
formulas and conventions are in docs/metrics.md; in short, for a scored class c over the valid
voxels (those whose ground truth is not an ignored label):

- Dice = 2 TP / (2 TP + FP + FN); NaN when c is absent from both truth and prediction.
- hard MAE = mean |1[pred = c] - 1[gt = c]| = (FP + FN) / N_valid.
- soft MAE = mean |p_c - 1[gt = c]|, p_c the predicted probability (softmax) of c.
- volume similarity = 1 - |FN - FP| / (2 TP + FP + FN); NaN when c is absent from both.
- HD95 in mm (see `surface.hd95_mm`), with ignored voxels set to background in both maps.

Case means are taken over the scored classes, leaving out NaN values.

Label maps are integer arrays of one shape (e.g. (Z, Y, X)); probabilities are channel-first
(C, Z, Y, X) with channel c holding the probability of label c; spacing is in mm, in the arrays'
axis order.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np

from nnunet_unlearning.evaluation.surface import hd95_mm
from nnunet_unlearning.records import CaseRecord, ClassMetricsRecord, MetricMeans

#: The per-class metrics, in the order reports and CSV files list them.
METRICS: tuple[str, ...] = ("dice", "hard_mae", "soft_mae", "volume_similarity", "hd95_mm")


def nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN; NaN when there are none (no warning, unlike numpy)."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def json_number(value: float | None) -> float | None:
    """``value`` as JSON can hold it: NaN (undefined) becomes None (null)."""
    return None if value is None or math.isnan(value) else float(value)


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Confusion matrix of two label maps in one pass over the voxels.

    Args:
        gt: integer label map (ground truth), any shape, values in [0, num_classes).
        pred: integer label map (prediction), same shape and value range.
        num_classes: K, the number of label values (largest label + 1).
        valid: optional boolean mask of gt's shape; only voxels where it is True are counted (and
            need to hold labels in range: ignored voxels may hold anything, e.g. nnU-Net's -1).

    Returns:
        (K, K) int64 array; entry [i, j] counts voxels with truth i and prediction j
        (rows = truth, columns = prediction).
    """
    if gt.shape != pred.shape or (valid is not None and valid.shape != gt.shape):
        shapes = (gt.shape, pred.shape) + (() if valid is None else (valid.shape,))
        raise ValueError(f"label maps (and mask) must share one shape, got {shapes}")
    if valid is not None:
        gt, pred = gt[valid], pred[valid]
    for name, labels in (("gt", gt), ("pred", pred)):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{name} must be an integer label map, got dtype {labels.dtype}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    # The smallest unsigned type that holds gt * K + pred keeps the pass over the voxels cheap
    # (uint8 for up to 16 labels).
    dtype = np.min_scalar_type(num_classes * num_classes - 1)
    index = gt.astype(dtype)
    index *= num_classes
    index += pred.astype(dtype, copy=False)
    counts = np.bincount(index.ravel(), minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one class in one case (NaN = undefined, None = not computed).

    Attributes:
        dice: Dice coefficient; NaN when the class is absent from truth and prediction.
        hard_mae: mean |1[pred = c] - 1[gt = c]| over valid voxels, = (FP + FN) / N_valid.
        soft_mae: mean |p_c - 1[gt = c]| over valid voxels; None without probabilities.
        volume_similarity: 1 - |V_gt - V_pred| / (V_gt + V_pred); NaN when both are 0.
        hd95_mm: 95th-percentile Hausdorff distance in mm; None when not asked for, NaN when
            the class is absent from truth or prediction.
        n_gt: valid voxels labelled c in the ground truth.
        n_pred: valid voxels labelled c in the prediction.
        volume_gt_ml: n_gt times the voxel volume, in ml; None without spacing.
        volume_pred_ml: n_pred times the voxel volume, in ml; None without spacing.
    """

    dice: float
    hard_mae: float
    soft_mae: float | None
    volume_similarity: float
    hd95_mm: float | None
    n_gt: int
    n_pred: int
    volume_gt_ml: float | None
    volume_pred_ml: float | None


@dataclass(frozen=True)
class CaseMetrics:
    """Metrics of one case: one `ClassMetrics` per scored class, and their means.

    Attributes:
        classes: scored label value -> its metrics, in ascending label order.
        n_valid: voxels scored (all voxels minus those whose ground truth is an ignored label).
    """

    classes: dict[int, ClassMetrics]
    n_valid: int

    def mean(self, metric: str) -> float | None:
        """Mean of ``metric`` (one of `METRICS`) over the scored classes, NaN values left out.

        None when the metric was not computed (soft MAE without probabilities, HD95 not asked for);
        NaN when every class is NaN.
        """
        values = [getattr(m, metric) for m in self.classes.values()]
        return None if any(v is None for v in values) else nanmean(values)

    def to_dict(self) -> CaseRecord:
        """JSON-ready form: ``{"n_valid_voxels", "mean": {metric: value}, "classes": {label: {...}}}``,
        undefined values (NaN) as None."""
        # keyed by METRICS and ClassMetrics' fields, which are the keys of the two records
        return {
            "n_valid_voxels": self.n_valid,
            "mean": cast(MetricMeans, {metric: json_number(self.mean(metric)) for metric in METRICS}),
            "classes": {
                str(label): cast(
                    ClassMetricsRecord,
                    {name: json_number(v) if isinstance(v, float) else v for name, v in asdict(m).items()},
                )
                for label, m in self.classes.items()
            },
        }


def case_metrics(
    gt: np.ndarray,
    pred: np.ndarray,
    labels: Sequence[int],
    *,
    probabilities: np.ndarray | None = None,
    ignore_labels: Sequence[int] = (),
    spacing_mm: Sequence[float] | None = None,
    hd95: bool = False,
    slice_axis: int | None = None,
) -> CaseMetrics:
    """Score one case: Dice, hard/soft MAE, volume similarity, volumes and optionally HD95 per class.

    Args:
        gt: integer ground-truth label map, e.g. (Z, Y, X).
        pred: integer predicted label map, same shape (e.g. the argmax of the probabilities).
        labels: the scored classes (label values; background 0 normally left out).
        probabilities: optional (C, *gt.shape) softmax probabilities, channel c = label c,
            C > max(labels); gives the soft MAE.
        ignore_labels: ground-truth values whose voxels are left out of every metric (nnU-Net's
            ignore label; MRBrainS18's 9 and 10). For HD95 they count as background in both maps.
        spacing_mm: voxel spacing in mm, in the arrays' axis order; gives volumes in ml and is
            required for HD95.
        hd95: whether to compute the 95th-percentile Hausdorff distance (the slow part).
        slice_axis: HD95 boundary: None for MONAI's 3-D boundary, an axis index for the MRBrainS18
            in-plane boundary (see `surface.hd95_mm`).

    Returns:
        `CaseMetrics` with one entry per label in ``labels`` (ascending).
    """
    labels = sorted({int(c) for c in labels})
    if not labels or labels[0] < 0:
        raise ValueError(f"labels must be a non-empty set of label values >= 0, got {labels}")
    if gt.shape != pred.shape or gt.size == 0:
        raise ValueError(f"gt and pred must be non-empty and of one shape, got {gt.shape} and {pred.shape}")
    if spacing_mm is not None and len(spacing_mm) != gt.ndim:
        raise ValueError(f"spacing_mm {tuple(spacing_mm)} does not match arrays of shape {gt.shape}")
    if hd95 and spacing_mm is None:
        raise ValueError("hd95 needs spacing_mm")
    if probabilities is not None and (probabilities.shape[1:] != gt.shape or probabilities.shape[0] <= labels[-1]):
        raise ValueError(
            f"probabilities of shape {probabilities.shape} do not fit label maps of shape {gt.shape} "
            f"with labels up to {labels[-1]}"
        )

    # One comparison per ignored value is several times faster than np.isin for the few values there are.
    valid = np.logical_and.reduce([gt != v for v in ignore_labels]) if ignore_labels else None
    num_classes = max(int(gt.max()), int(pred.max()), labels[-1]) + 1  # ignored values may lie above
    cm = confusion_matrix(gt, pred, num_classes, valid)
    n_valid = int(cm.sum())
    n_gt, n_pred, tp = cm.sum(axis=1).tolist(), cm.sum(axis=0).tolist(), np.diag(cm).tolist()
    voxel_ml = None if spacing_mm is None else float(np.prod(spacing_mm)) / 1000.0
    gt_surface, pred_surface = gt, pred
    if hd95 and valid is not None:
        # A surface needs a label everywhere: ignored voxels become background in both maps, as the
        # MRBrainS18 challenge does.
        gt_surface, pred_surface = np.where(valid, gt, 0), np.where(valid, pred, 0)

    classes = {}
    for c in labels:
        both = n_gt[c] + n_pred[c]  # 2 TP + FP + FN
        classes[c] = ClassMetrics(
            dice=2 * tp[c] / both if both else math.nan,
            hard_mae=(both - 2 * tp[c]) / n_valid if n_valid else math.nan,
            soft_mae=None if probabilities is None else _soft_mae(probabilities[c], gt == c, valid, n_valid),
            volume_similarity=1 - abs(n_gt[c] - n_pred[c]) / both if both else math.nan,
            hd95_mm=(
                hd95_mm(gt_surface == c, pred_surface == c, spacing_mm, slice_axis=slice_axis)
                if hd95 and spacing_mm is not None  # hd95 without spacing_mm was refused above
                else None
            ),
            n_gt=n_gt[c],
            n_pred=n_pred[c],
            volume_gt_ml=None if voxel_ml is None else n_gt[c] * voxel_ml,
            volume_pred_ml=None if voxel_ml is None else n_pred[c] * voxel_ml,
        )
    return CaseMetrics(classes, n_valid)


def _soft_mae(probability: np.ndarray, truth: np.ndarray, valid: np.ndarray | None, n_valid: int) -> float:
    """Mean over valid voxels of |p_c - 1[gt = c]| (probability and truth of one class, one shape)."""
    if not n_valid:
        return math.nan
    error = np.abs(probability - truth)
    return float(np.sum(error, where=True if valid is None else valid, dtype=np.float64) / n_valid)
