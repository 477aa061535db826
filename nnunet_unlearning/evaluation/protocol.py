"""Evaluation protocols: which classes are scored, which ground-truth values are masked out, and
which boundary HD95 uses.

- ``plain``: the classes the caller names (by default the dataset's foreground labels), masking
  only the dataset's ignore label if it has one; MONAI's 3-D boundary for HD95.
- ``mrbrains18``: the MRBrainS18 challenge's rules. Classes 1-8 are scored; voxels whose ground
  truth is 9 (infarction) or 10 (other) are removed from both ground truth and prediction; HD95
  uses the boundary of a 2-D (in-plane) erosion, in world mm. When a dataset was converted with
  the "challenge" label set, nnU-Net's ignore label already stands for 9 and 10: pass that value
  as ``ignore_labels``. For the "tissue" label set the same rules score MRBrainS13's three classes
  (1-3: grey matter, white matter, CSF), masking the ignore label that stands for 7-10.

Arrays are in SimpleITK's / nnU-Net's axis order (slice axis first: Z, Y, X) with the spacing in
the same order (nnU-Net's ``properties['spacing']``).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_unlearning.evaluation.metrics import CaseMetrics, case_metrics

MRBRAINS18_CLASSES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
MRBRAINS18_MASKED_LABELS: tuple[int, ...] = (9, 10)
#: The tissue label set's classes (converter ``--labels tissue``): grey matter, white matter, CSF.
MRBRAINS_TISSUE_CLASSES: tuple[int, ...] = (1, 2, 3)
PROTOCOL_NAMES: tuple[str, ...] = ("plain", "mrbrains18")


@dataclass(frozen=True)
class Protocol:
    """How a case is scored.

    Attributes:
        name: ``"plain"`` or ``"mrbrains18"``.
        labels: the scored classes (label values), ascending.
        ignore_labels: ground-truth values whose voxels are removed from truth and prediction.
        slice_axis: ``None`` for MONAI's 3-D HD95 boundary, else the axis not eroded when the
            in-plane boundary is taken (0 in SimpleITK / nnU-Net axis order).
    """

    name: str
    labels: tuple[int, ...]
    ignore_labels: tuple[int, ...] = ()
    slice_axis: int | None = None

    def case_metrics(
        self,
        gt: np.ndarray,
        pred: np.ndarray,
        *,
        probabilities: np.ndarray | None = None,
        spacing_mm: Sequence[float] | None = None,
        hd95: bool = False,
    ) -> CaseMetrics:
        """Score one case under this protocol (see `metrics.case_metrics` for shapes and units)."""
        return case_metrics(
            gt,
            pred,
            self.labels,
            probabilities=probabilities,
            ignore_labels=self.ignore_labels,
            spacing_mm=spacing_mm,
            hd95=hd95,
            slice_axis=self.slice_axis,
        )


def plain_protocol(labels: Sequence[int], ignore_labels: Sequence[int] = ()) -> Protocol:
    """Score ``labels`` (foreground label values), masking ``ignore_labels``; MONAI's HD95 boundary."""
    return Protocol("plain", tuple(sorted(int(c) for c in labels)), tuple(int(c) for c in ignore_labels))


def mrbrains18_protocol(
    ignore_labels: Sequence[int] = MRBRAINS18_MASKED_LABELS, classes: Sequence[int] = MRBRAINS18_CLASSES
) -> Protocol:
    """The MRBrainS18 challenge's protocol: ``classes`` (1-8), ``ignore_labels`` masked, in-plane HD95.

    Args:
        ignore_labels: ground-truth values to mask: (9, 10) for the official labels; nnU-Net's
            ignore label (e.g. (9,)) for a dataset converted with the "challenge" label set.
        classes: the scored classes: 1-8 for the official and challenge label sets,
            `MRBRAINS_TISSUE_CLASSES` for the tissue label set.
    """
    return Protocol("mrbrains18", tuple(classes), tuple(int(c) for c in ignore_labels), slice_axis=0)
