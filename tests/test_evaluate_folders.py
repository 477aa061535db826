"""`evaluate_folders` (`nnunet-unlearning evaluate`) end to end on tiny NIfTI files, and each user error."""

import csv
import hashlib
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.evaluate_folders import evaluate_folders

SHAPE = (3, 4, 5)  # (z, y, x) as SimpleITK returns arrays
SPACING_XYZ = (2.0, 0.5, 3.0)


def write_label_map(path, array, spacing=SPACING_XYZ, origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def case_a() -> tuple[np.ndarray, np.ndarray]:
    """Class 1: an 8-voxel block, predicted minus one voxel. Class 2: one voxel, predicted two
    voxels further along x (spacing 2 mm), so Dice 0 and HD95 4 mm."""
    gt = np.zeros(SHAPE, dtype=np.uint8)
    gt[0:2, 0:2, 0:2] = 1
    gt[2, 3, 1] = 2
    pred = gt.copy()
    pred[1, 1, 1] = 0
    pred[2, 3, 1] = 0
    pred[2, 3, 3] = 2
    return gt, pred


def case_b() -> np.ndarray:
    gt = np.zeros(SHAPE, dtype=np.uint8)
    gt[1:3, 1:4, 2:5] = 1
    gt[0, 0, 0] = 2
    return gt


@pytest.fixture()
def folders(tmp_path):
    """labelsTr + dataset.json (nnU-Net's raw layout) and a prediction folder; case A has probabilities."""
    gt_dir, pred_dir = tmp_path / "Dataset999_Toy" / "labelsTr", tmp_path / "pred"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir()
    (gt_dir.parent / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "one": 1, "two": 2}}))
    gt, pred = case_a()
    write_label_map(gt_dir / "toy_a.nii.gz", gt)
    write_label_map(pred_dir / "toy_a.nii.gz", pred)
    one_hot = np.eye(3, dtype=np.float32)[pred].transpose(3, 0, 1, 2)  # (C, z, y, x), as nnU-Net exports
    np.savez_compressed(pred_dir / "toy_a.npz", probabilities=one_hot)
    write_label_map(gt_dir / "toy_b.nii.gz", case_b())
    write_label_map(pred_dir / "toy_b.nii.gz", case_b())
    return gt_dir, pred_dir


def _digest(root) -> dict:
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_end_to_end_json_and_csv(folders):
    gt_dir, pred_dir = folders
    before = _digest(pred_dir.parent)
    out = evaluate_folders(gt_dir, pred_dir)
    assert out == pred_dir / "metrics.json"
    report = json.loads(out.read_text())

    assert report["protocol"]["name"] == "plain"
    assert report["protocol"]["labels"] == [1, 2]
    a, b = report["cases"]["toy_a"], report["cases"]["toy_b"]
    voxel_ml = 2.0 * 0.5 * 3.0 / 1000
    assert a["n_valid_voxels"] == 60
    assert a["classes"]["1"]["dice"] == pytest.approx(2 * 7 / (8 + 7))
    assert a["classes"]["1"]["hard_mae"] == pytest.approx(1 / 60)
    assert a["classes"]["1"]["soft_mae"] == pytest.approx(1 / 60)  # one-hot probabilities
    assert a["classes"]["1"]["volume_similarity"] == pytest.approx(1 - 1 / 15)
    assert a["classes"]["1"]["volume_gt_ml"] == pytest.approx(8 * voxel_ml)
    assert a["classes"]["2"]["dice"] == 0.0
    assert a["classes"]["2"]["hd95_mm"] == pytest.approx(4.0)  # x spacing, so the axes were kept apart
    assert a["mean"]["dice"] == pytest.approx((14 / 15 + 0.0) / 2)
    assert b["classes"]["1"]["dice"] == 1.0 and b["classes"]["1"]["hd95_mm"] == 0.0
    assert b["classes"]["2"]["soft_mae"] is None and b["mean"]["soft_mae"] is None
    assert report["mean"]["n_cases"] == 2
    assert report["mean"]["dice"] == pytest.approx((a["mean"]["dice"] + 1.0) / 2)
    assert report["mean"]["soft_mae"] is None  # case B has no probabilities
    assert report["mean"]["per_class"]["2"]["hd95_mm"] == pytest.approx(2.0)

    with open(pred_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case"], r["label"]) for r in rows] == [
        ("toy_a", "1"),
        ("toy_a", "2"),
        ("toy_a", "mean"),
        ("toy_b", "1"),
        ("toy_b", "2"),
        ("toy_b", "mean"),
    ]
    for row in rows:
        source = report["cases"][row["case"]]
        values = source["mean"] if row["label"] == "mean" else source["classes"][row["label"]]
        for metric in ("dice", "hard_mae", "soft_mae", "volume_similarity", "hd95_mm"):
            expected = values[metric]
            assert (row[metric] == "") if expected is None else float(row[metric]) == expected

    after = _digest(pred_dir.parent)
    assert set(after) - set(before) == {"pred/metrics.json", "pred/metrics.csv"}  # no temporary files left
    assert {name: after[name] for name in before} == before  # inputs untouched


def test_labels_without_dataset_json_are_those_seen(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    gt, pred = case_a()
    pred[0, 3, 4] = 5  # a label only the prediction has
    write_label_map(gt_dir / "c.nii.gz", gt)
    write_label_map(pred_dir / "c.nii.gz", pred)
    report = json.loads(evaluate_folders(gt_dir, pred_dir, out=tmp_path / "m.json").read_text())
    assert report["protocol"]["labels"] == [1, 2, 5]
    assert report["cases"]["c"]["classes"]["5"]["dice"] == 0.0
    assert (tmp_path / "m.csv").is_file()
    explicit = json.loads(evaluate_folders(gt_dir, pred_dir, out=tmp_path / "m.json", labels=[2]).read_text())
    assert explicit["protocol"]["labels"] == [2]


def test_dataset_json_ignore_label_is_masked(folders):
    gt_dir, pred_dir = folders
    (gt_dir.parent / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "one": 1, "ignore": 2}}))
    report = json.loads(evaluate_folders(gt_dir, pred_dir).read_text())
    assert report["protocol"]["labels"] == [1]
    assert report["protocol"]["ignore_labels"] == [2]
    assert report["cases"]["toy_a"]["n_valid_voxels"] == 59


def test_mrbrains18_protocol_masks_9_and_10_and_scores_1_to_8(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    gt, pred = case_a()
    gt[2, 0, :] = 9
    gt[2, 1, :] = 10
    pred[2, 0:2, :] = 1  # would be 10 false positives of class 1 if counted
    write_label_map(gt_dir / "c.nii.gz", gt)
    write_label_map(pred_dir / "c.nii.gz", pred)
    report = json.loads(evaluate_folders(gt_dir, pred_dir, protocol="mrbrains18").read_text())
    assert report["protocol"]["labels"] == list(range(1, 9))
    assert report["protocol"]["ignore_labels"] == [9, 10]
    assert report["protocol"]["hd95_boundary"].startswith("in-plane")
    case = report["cases"]["c"]
    assert case["n_valid_voxels"] == 50
    assert case["classes"]["1"]["dice"] == pytest.approx(14 / 15)
    assert case["classes"]["3"]["dice"] is None  # absent from both
    assert math.isclose(case["mean"]["dice"], (14 / 15 + 0.0) / 2)


def _converted_dataset(tmp_path, label_set: str, labels: dict[str, int]):
    """gt and prediction folders under a dataset.json as our converter writes it."""
    gt_dir, pred_dir = tmp_path / "Dataset502_MRBrainS18" / "labelsTr", tmp_path / "pred"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir()
    content = {"labels": labels, "nnunet_unlearning": {"converter": "mrbrains18", "labels": label_set}}
    (gt_dir.parent / "dataset.json").write_text(json.dumps(content))
    return gt_dir, pred_dir


def test_mrbrains18_protocol_on_tissue_labels_scores_the_three_tissues(tmp_path):
    labels = {"background": 0, "grey_matter": 1, "white_matter": 2, "csf": 3, "ignore": 4}
    gt_dir, pred_dir = _converted_dataset(tmp_path, "tissue", labels)
    gt = np.zeros(SHAPE, dtype=np.uint8)
    gt[0, :, :] = 1
    gt[1, :, :] = 2
    gt[2, 0:2, :] = 3
    gt[2, 2:4, :] = 4  # cerebellum, brain stem, 9, 10: masked
    pred = gt.copy()
    pred[2, 2:4, :] = 1  # counted as 10 false positives of grey matter if the ignore label were not masked
    pred[0, 0, 0] = 2
    write_label_map(gt_dir / "c.nii.gz", gt)
    write_label_map(pred_dir / "c.nii.gz", pred)
    report = json.loads(evaluate_folders(gt_dir, pred_dir, protocol="mrbrains18").read_text())
    assert report["protocol"]["labels"] == [1, 2, 3]
    assert report["protocol"]["ignore_labels"] == [4]
    case = report["cases"]["c"]
    assert case["n_valid_voxels"] == 50
    assert case["classes"]["1"]["dice"] == pytest.approx(2 * 19 / (20 + 19))
    assert case["classes"]["2"]["dice"] == pytest.approx(2 * 20 / (20 + 21))
    assert case["classes"]["3"]["dice"] == pytest.approx(1.0)


def test_mrbrains18_protocol_refuses_the_brain_label_set(tmp_path):
    gt_dir, pred_dir = _converted_dataset(tmp_path, "brain", {"background": 0, "brain": 1})
    write_label_map(gt_dir / "c.nii.gz", case_b().clip(0, 1))
    write_label_map(pred_dir / "c.nii.gz", case_b().clip(0, 1))
    with pytest.raises(UserInputError, match="label set 'brain' has no MRBrainS18 classes"):
        evaluate_folders(gt_dir, pred_dir, protocol="mrbrains18")


def test_cli_evaluate(folders, capsys):
    gt_dir, pred_dir = folders
    assert main(["evaluate", "--gt", str(gt_dir), "--pred", str(pred_dir), "-o", str(pred_dir / "x.json")]) == 0
    assert (pred_dir / "x.json").is_file() and (pred_dir / "x.csv").is_file()
    (pred_dir / "toy_b.nii.gz").unlink()
    assert main(["evaluate", "--gt", str(gt_dir), "--pred", str(pred_dir)]) == 2
    assert "toy_b" in capsys.readouterr().err


# --- errors: one line, naming the case or file ---------------------------------------------------


def _break_missing_prediction(gt_dir, pred_dir):
    (pred_dir / "toy_b.nii.gz").unlink()
    return "toy_b"


def _break_extra_prediction(gt_dir, pred_dir):
    write_label_map(pred_dir / "toy_c.nii.gz", case_b())
    return "toy_c"


def _break_size(gt_dir, pred_dir):
    write_label_map(pred_dir / "toy_b.nii.gz", case_b()[:, :, :4])
    return "toy_b"


def _break_spacing(gt_dir, pred_dir):
    write_label_map(pred_dir / "toy_b.nii.gz", case_b(), spacing=(1.0, 0.5, 3.0))
    return "toy_b"


def _break_origin(gt_dir, pred_dir):
    write_label_map(pred_dir / "toy_b.nii.gz", case_b(), origin=(0.0, 5.0, 0.0))
    return "toy_b"


def _break_unreadable(gt_dir, pred_dir):
    (gt_dir / "toy_b.nii.gz").write_bytes(b"not a nifti file")
    return "toy_b"


def _break_fractional_labels(gt_dir, pred_dir):
    write_label_map(pred_dir / "toy_b.nii.gz", case_b().astype(np.float32) * 0.5)
    return "toy_b"


def _break_negative_labels(gt_dir, pred_dir):
    write_label_map(pred_dir / "toy_b.nii.gz", -case_b().astype(np.int16))
    return "toy_b"


def _break_probability_shape(gt_dir, pred_dir):
    np.savez_compressed(pred_dir / "toy_a.npz", probabilities=np.zeros((3, 5, 4, 3), dtype=np.float32))
    return "toy_a"


def _break_probability_channels(gt_dir, pred_dir):
    np.savez_compressed(pred_dir / "toy_a.npz", probabilities=np.zeros((2, *SHAPE), dtype=np.float32))
    return "toy_a"


def _break_probability_file(gt_dir, pred_dir):
    np.savez_compressed(pred_dir / "toy_a.npz", softmax=np.zeros((3, *SHAPE), dtype=np.float32))
    return "toy_a"


def _break_region_labels(gt_dir, pred_dir):
    (gt_dir.parent / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "whole": [1, 2]}}))
    return "dataset.json"


@pytest.mark.parametrize(
    "break_input",
    [
        _break_missing_prediction,
        _break_extra_prediction,
        _break_size,
        _break_spacing,
        _break_origin,
        _break_unreadable,
        _break_fractional_labels,
        _break_negative_labels,
        _break_probability_shape,
        _break_probability_channels,
        _break_probability_file,
        _break_region_labels,
    ],
)
def test_user_errors_name_the_case(folders, break_input):
    gt_dir, pred_dir = folders
    name = break_input(gt_dir, pred_dir)
    with pytest.raises(UserInputError) as error:
        evaluate_folders(gt_dir, pred_dir)
    message = str(error.value)
    assert name in message and "\n" not in message
    assert not (pred_dir / "metrics.json").exists()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"protocol": "brats"}, "unknown protocol"),
        ({"out": "metrics.txt"}, "must end in .json"),
        ({"protocol": "mrbrains18", "labels": [1]}, "--labels"),
        ({"labels": [0, 1]}, "> 0"),
    ],
)
def test_bad_arguments(folders, arguments, expected):
    gt_dir, pred_dir = folders
    with pytest.raises(UserInputError, match=expected):
        evaluate_folders(gt_dir, pred_dir, **arguments)


def test_missing_or_empty_folders(tmp_path, folders):
    gt_dir, pred_dir = folders
    with pytest.raises(UserInputError, match="not found"):
        evaluate_folders(tmp_path / "nowhere", pred_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no prediction files"):
        evaluate_folders(gt_dir, tmp_path / "empty")
