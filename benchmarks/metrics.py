"""Time our one-pass Dice/MAE/volumes against nnU-Net's `compute_metrics`, side by side, on the real
MRBrainS18 label maps; and, for information, our HD95 under the MRBrainS18 protocol.

For every subject the "prediction" is an in-memory perturbed copy of its label map (shifted by one
voxel in-plane). Both sides get the same uint8 arrays from memory (nnU-Net through a reader that
returns them), so only the computation is timed; both score labels 1-8 with label 9 ignored. The
runs alternate, and medians are reported. HD95 (all 8 classes, in-plane boundary) is timed once per
subject, after MONAI has been imported. Measures, never asserts.

    .venv/bin/python benchmarks/metrics.py [--repeats 15] [--data ../shared/data/MRBrainS18]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import SimpleITK as sitk
from nnunetv2.evaluation.evaluate_predictions import compute_metrics
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter

from nnunet_unlearning.evaluation.metrics import case_metrics
from nnunet_unlearning.evaluation.protocol import MRBRAINS18_CLASSES, mrbrains18_protocol

IGNORE_LABEL = 9
T = TypeVar("T")


class InMemoryReader(BaseReaderWriter):
    """Hands nnU-Net's `compute_metrics` arrays that are already in memory, keyed by 'file' name."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def read_images(self, image_fnames):
        raise NotImplementedError

    def read_seg(self, seg_fname):
        return self.arrays[seg_fname][None], {}

    def write_seg(self, seg, output_fname, properties):
        raise NotImplementedError


def _seconds(function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/MRBrainS18")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    labels = list(MRBRAINS18_CLASSES)
    paths = sorted((args.data / "training").glob("*/segm.nii.gz"))
    if not paths:
        raise SystemExit(f"no MRBrainS18 label maps under {args.data / 'training'}")
    protocol = mrbrains18_protocol()
    import monai.metrics  # noqa: F401 (imported once up front so that no HD95 timing includes it)

    print(f"{'subject':>8} {'nnU-Net ms':>11} {'ours ms':>8} {'ratio':>6} {'max |dDice|':>12} {'HD95 s':>7}")
    ours_all, theirs_all, hd95_all = [], [], []
    for path in paths:
        image = sitk.ReadImage(str(path))
        gt = sitk.GetArrayFromImage(image)
        pred = np.roll(gt, 1, axis=1)
        reader = InMemoryReader({"gt": gt, "pred": pred})
        ours_times, theirs_times = [], []
        for _ in range(args.repeats):
            t, theirs = _seconds(compute_metrics, "gt", "pred", reader, labels, ignore_label=IGNORE_LABEL)
            theirs_times.append(t)
            t, ours = _seconds(case_metrics, gt, pred, labels, ignore_labels=(IGNORE_LABEL,))
            ours_times.append(t)
        difference = max(abs(ours.classes[c].dice - theirs["metrics"][c]["Dice"]) for c in labels)
        hd95_s, _ = _seconds(protocol.case_metrics, gt, pred, spacing_mm=image.GetSpacing()[::-1], hd95=True)
        theirs_ms, ours_ms = 1e3 * statistics.median(theirs_times), 1e3 * statistics.median(ours_times)
        theirs_all.append(theirs_ms)
        ours_all.append(ours_ms)
        hd95_all.append(hd95_s)
        print(
            f"{path.parent.name:>8} {theirs_ms:11.1f} {ours_ms:8.1f} {theirs_ms / ours_ms:6.1f} {difference:12.2e}"
            f" {hd95_s:7.2f}"
        )
    theirs_ms, ours_ms, hd95_s = (statistics.median(v) for v in (theirs_all, ours_all, hd95_all))
    print(f"{'median':>8} {theirs_ms:11.1f} {ours_ms:8.1f} {theirs_ms / ours_ms:6.1f} {'':>12} {hd95_s:7.2f}")


if __name__ == "__main__":
    main()
