"""`nnunet-unlearning evaluate`: score a folder of predicted label maps against a folder of ground truth.

Cases are matched by file name (``<case>.nii.gz``). When nnU-Net was run with
``--save_probabilities`` the prediction folder also holds ``<case>.npz`` (key ``probabilities``,
shape (C, Z, Y, X) in SimpleITK's array order, as nnunetv2/inference/export_prediction.py writes
it); those give the soft MAE. Files are read with SimpleITK, so label maps and probabilities share
one axis order (Z, Y, X) and the spacing is taken in that order.

Writes per case and per class Dice, hard MAE, soft MAE, volume similarity, volumes and HD95 (mm)
as JSON, and the same rows as CSV beside it.
"""

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.metrics import METRICS, CaseMetrics, json_number
from nnunet_unlearning.evaluation.protocol import (
    MRBRAINS18_MASKED_LABELS,
    MRBRAINS_TISSUE_CLASSES,
    PROTOCOL_NAMES,
    Protocol,
    mrbrains18_protocol,
    plain_protocol,
)
from nnunet_unlearning.evaluation.summary import aggregate
from nnunet_unlearning.files import atomic_write_json, atomic_write_text

SUFFIX = ".nii.gz"
CSV_COLUMNS: tuple[str, ...] = (
    "case",
    "label",
    *METRICS,
    "n_gt",
    "n_pred",
    "volume_gt_ml",
    "volume_pred_ml",
)


def evaluate_folders(
    gt_dir: Path,
    pred_dir: Path,
    protocol: str = "plain",
    out: Path | None = None,
    labels: Sequence[int] | None = None,
) -> Path:
    """Score every case of ``pred_dir`` against ``gt_dir`` and write ``out`` (JSON) and its CSV twin.

    Args:
        gt_dir: folder of ground-truth label maps ``<case>.nii.gz`` (e.g. nnU-Net's labelsTr).
        pred_dir: folder of predicted label maps with the same file names (nnU-Net's output folder),
            optionally with ``<case>.npz`` probabilities.
        protocol: ``"plain"`` or ``"mrbrains18"`` (see `protocol`).
        out: the JSON file to write (must end in .json); default ``pred_dir / "metrics.json"``.
            The CSV goes beside it, with suffix .csv.
        labels: plain protocol only: the classes to score. Default: the foreground labels of the
            dataset.json beside ``gt_dir`` (nnU-Net's layout), else every label > 0 seen in either
            folder.

    Returns:
        The path of the JSON file written.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    out = pred_dir / "metrics.json" if out is None else Path(out)
    if out.suffix != ".json":
        raise UserInputError(f"{out}: the metrics file must end in .json")
    gt_files, pred_files = _label_files(gt_dir, "ground-truth"), _label_files(pred_dir, "prediction")
    if missing := sorted(gt_files.keys() - pred_files.keys()):
        raise UserInputError(f"case {missing[0]}: no prediction {missing[0]}{SUFFIX} in {pred_dir}")
    if unmatched := sorted(pred_files.keys() - gt_files.keys()):
        raise UserInputError(f"case {unmatched[0]}: no ground truth {unmatched[0]}{SUFFIX} in {gt_dir}")

    chosen = _protocol(protocol, labels, gt_dir, gt_files, pred_files)
    cases = {}
    for case in sorted(gt_files):
        gt, pred, spacing = _read_case(case, gt_files[case], pred_files[case])
        probabilities = _read_probabilities(case, pred_dir / f"{case}.npz", gt.shape, chosen.labels)
        cases[case] = chosen.case_metrics(gt, pred, probabilities=probabilities, spacing_mm=spacing, hd95=True)

    report = {
        "protocol": {
            "name": chosen.name,
            "labels": list(chosen.labels),
            "ignore_labels": list(chosen.ignore_labels),
            "hd95_boundary": "3-D (MONAI)" if chosen.slice_axis is None else "in-plane (MRBrainS18)",
        },
        "gt_dir": str(gt_dir.resolve()),
        "pred_dir": str(pred_dir.resolve()),
        "mean": aggregate(cases, {"all": list(cases)})["all"],
        "cases": {case: metrics.to_dict() for case, metrics in cases.items()},
    }
    atomic_write_json(out, report)
    atomic_write_text(out.with_suffix(".csv"), _csv_text(cases))
    return out


def _label_files(folder: Path, what: str) -> dict[str, Path]:
    """Case id -> label file, for every ``*.nii.gz`` in ``folder``."""
    if not folder.is_dir():
        raise UserInputError(f"{folder}: {what} folder not found")
    files = {p.name[: -len(SUFFIX)]: p for p in folder.glob(f"*{SUFFIX}") if p.is_file()}
    if not files:
        raise UserInputError(f"{folder}: no {what} files *{SUFFIX}")
    return files


def _protocol(
    name: str, labels: Sequence[int] | None, gt_dir: Path, gt_files: dict[str, Path], pred_files: dict[str, Path]
) -> Protocol:
    """The protocol to score with, its classes resolved (see `evaluate_folders`)."""
    if name not in PROTOCOL_NAMES:
        raise UserInputError(f"unknown protocol '{name}' (choose from {', '.join(PROTOCOL_NAMES)})")
    dataset_json = gt_dir.parent / "dataset.json"
    dataset_labels, ignore_label, label_set = _dataset_json_labels(dataset_json)
    ignore_labels = () if ignore_label is None else (ignore_label,)
    if name == "mrbrains18":
        if labels is not None:
            raise UserInputError("--labels cannot be combined with --protocol mrbrains18 (it scores labels 1-8)")
        if label_set == "tissue":
            return mrbrains18_protocol(ignore_labels, classes=MRBRAINS_TISSUE_CLASSES)
        if label_set not in (None, "challenge", "full"):
            raise UserInputError(
                f"{dataset_json}: label set '{label_set}' has no MRBrainS18 classes; score it with --protocol plain"
            )
        # A dataset whose labels were converted with the challenge label set marks 9/10 with
        # nnU-Net's ignore label; mask it as well as the official values.
        return mrbrains18_protocol(tuple(sorted({*MRBRAINS18_MASKED_LABELS, *ignore_labels})))
    if labels is None:
        labels = dataset_labels
    if labels is None:
        labels = _labels_seen([*gt_files.values(), *pred_files.values()])
    labels = sorted({int(c) for c in labels} - set(ignore_labels))
    if not labels or labels[0] <= 0:
        raise UserInputError(f"labels to score must be foreground values > 0, got {labels or 'none'}")
    return plain_protocol(labels, ignore_labels)


def _dataset_json_labels(path: Path) -> tuple[list[int] | None, int | None, str | None]:
    """(foreground labels, ignore label, our converter's label set) from an nnU-Net dataset.json; Nones when
    absent (the label set is None for a dataset our converter did not write)."""
    if not path.is_file():
        return None, None, None
    try:
        content = json.loads(path.read_text())
        label_map = content["labels"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserInputError(f"{path}: cannot read its 'labels' ({type(e).__name__}: {e})") from None
    if not isinstance(label_map, dict) or not all(isinstance(v, int) for v in label_map.values()):
        raise UserInputError(f"{path}: 'labels' must map names to integer labels (regions are not supported)")
    ignore_label = label_map.get("ignore")
    converted = content.get("nnunet_unlearning")
    label_set = converted.get("labels") if isinstance(converted, dict) else None
    return sorted(v for k, v in label_map.items() if k != "ignore" and v > 0), ignore_label, label_set


def _labels_seen(files: Sequence[Path]) -> list[int]:
    """Every label > 0 in any of ``files`` (a read of each file before scoring, when no label set is known)."""
    seen: set[int] = set()
    for path in files:
        seen.update(np.unique(_read_label_map(path, path.name[: -len(SUFFIX)])[0]).tolist())
    return sorted(seen - {0})


def _read_label_map(path: Path, case: str) -> tuple[np.ndarray, sitk.Image]:
    """Integer label map (Z, Y, X) of ``path`` and its SimpleITK image (for the geometry)."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        raise UserInputError(f"case {case}: cannot read {path} ({reason})") from None
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise UserInputError(f"case {case}: {path} is not a 3-D label map with one value per voxel")
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise UserInputError(f"case {case}: {path} holds non-integer values, not labels")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise UserInputError(f"case {case}: {path} holds negative labels")
    return array, image


def _read_case(case: str, gt_path: Path, pred_path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Ground truth and prediction (Z, Y, X) of one case and the spacing in mm (Z, Y, X order);
    the two files must share one voxel grid."""
    gt, gt_image = _read_label_map(gt_path, case)
    pred, pred_image = _read_label_map(pred_path, case)
    for what, get, tolerance in (
        ("size", sitk.Image.GetSize, 0.0),
        ("spacing", sitk.Image.GetSpacing, 1e-4),
        ("origin", sitk.Image.GetOrigin, 1e-3),
        ("direction", sitk.Image.GetDirection, 1e-4),
    ):
        if not np.allclose(get(gt_image), get(pred_image), rtol=0.0, atol=tolerance):
            raise UserInputError(
                f"case {case}: prediction {what} {get(pred_image)} differs from ground truth {what} {get(gt_image)}"
            )
    return gt, pred, tuple(reversed(gt_image.GetSpacing()))


def _read_probabilities(case: str, path: Path, shape: tuple[int, ...], labels: Sequence[int]) -> np.ndarray | None:
    """nnU-Net's exported probabilities (C, Z, Y, X) for one case, or None when not exported."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as archive:
            probabilities = archive["probabilities"]
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise UserInputError(f"case {case}: cannot read 'probabilities' from {path} ({type(e).__name__})") from None
    if probabilities.ndim != len(shape) + 1 or probabilities.shape[1:] != shape:
        raise UserInputError(
            f"case {case}: probabilities in {path} have shape {probabilities.shape}, "
            f"expected (C, {', '.join(map(str, shape))})"
        )
    if probabilities.shape[0] <= max(labels):
        raise UserInputError(
            f"case {case}: probabilities in {path} have {probabilities.shape[0]} channels, "
            f"too few for label {max(labels)}"
        )
    return probabilities


def _csv_text(cases: dict[str, CaseMetrics]) -> str:
    """One row per case and class, then one row per case with its means (label "mean")."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for case, metrics in cases.items():
        classes: Mapping[str, Mapping[str, object]] = metrics.to_dict()["classes"]  # read by column name
        for label, row in classes.items():
            writer.writerow([case, label, *(_csv_value(row[column]) for column in CSV_COLUMNS[2:])])
        writer.writerow([case, "mean", *(_csv_value(json_number(metrics.mean(m))) for m in METRICS)])
    return buffer.getvalue()


def _csv_value(value: object) -> str:
    """Empty cell for undefined (NaN) or not computed values; full precision otherwise."""
    return "" if value is None else repr(value)
