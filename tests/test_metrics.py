"""Per-case metrics, HD95 and the set aggregation: exact values on hand-made arrays, cross-checks
against independent implementations (SimpleITK's erosion as the MRBrainS18 script uses it, brute
force distances), and nnU-Net's own Dice on the real MRBrainS18 label maps."""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.metrics import case_metrics, confusion_matrix
from nnunet_unlearning.evaluation.protocol import mrbrains18_protocol
from nnunet_unlearning.evaluation.summary import aggregate, unlearning_figures
from nnunet_unlearning.evaluation.surface import hd95_mm

# 12 voxels as (1, 3, 4). Class 1: TP 3, FN 1, FP 1. Class 2: TP 2, FN 0, FP 1. Class 3: absent.
GT = np.array([1, 1, 1, 1, 2, 2, 0, 0, 0, 0, 0, 0], dtype=np.uint8).reshape(1, 3, 4)
PRED = np.array([1, 1, 1, 0, 2, 2, 2, 1, 0, 0, 0, 0], dtype=np.uint8).reshape(1, 3, 4)


def test_confusion_matrix_counts_truth_by_prediction():
    gt = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 2, 2, 0])
    expected = np.zeros((3, 3), dtype=np.int64)
    for t, p in zip(gt, pred):
        expected[t, p] += 1
    cm = confusion_matrix(gt, pred, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)
    valid = np.array([True, True, False, True, True, False])
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 3, valid), confusion_matrix(gt[valid], pred[valid], 3))
    outside = np.where(valid, gt, -1)  # nnU-Net marks voxels outside its crop -1; ignored, they may
    np.testing.assert_array_equal(confusion_matrix(outside, pred, 3, valid), confusion_matrix(gt, pred, 3, valid))


def test_confusion_matrix_handles_many_classes():
    rng = np.random.default_rng(0)
    gt, pred = rng.integers(0, 300, 5000), rng.integers(0, 300, 5000)
    expected = np.zeros((300, 300), dtype=np.int64)
    np.add.at(expected, (gt, pred), 1)
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 300), expected)


@pytest.mark.parametrize(
    ("gt", "pred", "num_classes"),
    [
        (np.array([0, 3]), np.array([0, 1]), 3),
        (np.array([0, -1]), np.array([0, 1]), 3),
        (np.array([0.0, 1.0]), np.array([0, 1]), 3),
        (np.array([0, 1, 1]), np.array([0, 1]), 3),
    ],
)
def test_confusion_matrix_rejects_bad_label_maps(gt, pred, num_classes):
    with pytest.raises(ValueError):
        confusion_matrix(gt, pred, num_classes)


def test_case_metrics_exact_values():
    spacing = (2.0, 0.5, 1.5)  # 1.5 mm^3 per voxel
    m = case_metrics(GT, PRED, [1, 2, 3], spacing_mm=spacing)
    one, two, three = m.classes[1], m.classes[2], m.classes[3]
    assert m.n_valid == 12
    assert one.dice == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert two.dice == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert one.hard_mae == pytest.approx((1 + 1) / 12)
    assert two.hard_mae == pytest.approx((1 + 0) / 12)
    assert three.hard_mae == 0.0
    assert one.volume_similarity == pytest.approx(1 - abs(4 - 4) / (4 + 4))
    assert two.volume_similarity == pytest.approx(1 - abs(2 - 3) / (2 + 3))
    assert (one.n_gt, one.n_pred, two.n_gt, two.n_pred) == (4, 4, 2, 3)
    assert one.volume_gt_ml == pytest.approx(4 * 1.5 / 1000)
    assert two.volume_pred_ml == pytest.approx(3 * 1.5 / 1000)
    assert one.soft_mae is None and one.hd95_mm is None and m.mean("soft_mae") is None
    assert m.mean("dice") == pytest.approx((0.75 + 0.8) / 2)  # class 3 (NaN) left out
    assert m.mean("hard_mae") == pytest.approx((2 / 12 + 1 / 12 + 0) / 3)


def test_dice_of_a_class_absent_from_both_is_nan_and_left_out_of_means():
    m = case_metrics(GT, PRED, [3])
    assert math.isnan(m.classes[3].dice) and math.isnan(m.classes[3].volume_similarity)
    assert math.isnan(m.mean("dice"))
    assert m.to_dict()["classes"]["3"]["dice"] is None
    assert m.to_dict()["mean"]["dice"] is None


def test_soft_mae_exact_and_against_a_voxel_loop():
    uniform = np.full((4, *GT.shape), 0.25, dtype=np.float32)
    m = case_metrics(GT, PRED, [1, 2, 3], probabilities=uniform)
    # |0.25 - 1| on the n_c voxels of class c, |0.25 - 0| on the others
    assert m.classes[1].soft_mae == pytest.approx((4 * 0.75 + 8 * 0.25) / 12)
    assert m.classes[3].soft_mae == pytest.approx(0.25)

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, *GT.shape))
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=0)).astype(np.float32)
    gt = GT.copy()
    gt[0, 2, 3] = 9  # ignored
    m = case_metrics(gt, PRED, [1, 2, 3], probabilities=probabilities, ignore_labels=[9])
    for c in (1, 2, 3):
        errors = [
            abs(float(probabilities[(c, *index)]) - float(gt[index] == c))
            for index in np.ndindex(gt.shape)
            if gt[index] != 9
        ]
        assert m.classes[c].soft_mae == pytest.approx(sum(errors) / len(errors))


def test_soft_mae_of_one_hot_probabilities_equals_hard_mae():
    one_hot = np.eye(4, dtype=np.float32)[PRED].transpose(3, 0, 1, 2)
    m = case_metrics(GT, PRED, [1, 2, 3], probabilities=one_hot)
    for c in (1, 2, 3):
        assert m.classes[c].soft_mae == pytest.approx(m.classes[c].hard_mae)


def test_ignored_voxels_are_left_out_of_every_metric():
    gt, pred = GT.copy(), PRED.copy()
    gt[0, 2, :2] = 9  # predicted 0 and 0 ...
    pred[0, 2, :2] = 1  # ... now class 1: would be two more false positives if counted
    gt[0, 2, 2] = 10
    m = case_metrics(gt, pred, [1, 2], ignore_labels=[9, 10])
    valid = (gt != 9) & (gt != 10)
    reference = case_metrics(gt[valid], pred[valid], [1, 2])
    assert m.n_valid == int(valid.sum()) == 9
    assert m.classes == reference.classes
    assert m.classes[1].dice == pytest.approx(6 / 8)
    # nnU-Net's preprocessed label maps mark voxels outside the crop with -1 (the hook ignores them too)
    gt_int = gt.astype(np.int16)
    gt_int[gt == 10] = -1
    assert case_metrics(gt_int, pred.astype(np.int64), [1, 2], ignore_labels=[-1, 9]).classes == m.classes


def test_case_metrics_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        case_metrics(GT, PRED[:, :2], [1])
    with pytest.raises(ValueError):
        case_metrics(GT, PRED, [1, 2], probabilities=np.zeros((2, *GT.shape)))  # no channel for label 2
    with pytest.raises(ValueError):
        case_metrics(GT, PRED, [1], hd95=True)  # no spacing
    with pytest.raises(ValueError):
        case_metrics(GT, PRED, [])


# --- HD95 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("slice_axis", [None, 0])
def test_hd95_of_two_voxels_with_anisotropic_spacing(slice_axis):
    gt = np.zeros((4, 6, 6), dtype=bool)
    pred = np.zeros_like(gt)
    gt[1, 2, 2] = True
    pred[2, 4, 2] = True  # one slice (3 mm) and two rows (2 x 0.5 mm) away
    assert hd95_mm(gt, pred, (3.0, 0.5, 0.7), slice_axis=slice_axis) == pytest.approx(math.sqrt(3.0**2 + 1.0**2))


def test_in_plane_hd95_of_a_block_shifted_by_one_slice():
    # A 3-slice 5x5 block and the same block one slice (3 mm) higher. In-plane boundaries are the
    # 16-voxel rims of every slice; the rims of the two shared slices coincide, and each unshared
    # rim is 3 mm from its neighbour: 32 distances of 0 and 16 of 3 mm each way, so P95 = 3 mm.
    gt = np.zeros((6, 9, 9), dtype=bool)
    gt[1:4, 2:7, 2:7] = True
    pred = np.roll(gt, 1, axis=0)
    assert hd95_mm(gt, pred, (3.0, 0.8, 0.8), slice_axis=0) == pytest.approx(3.0)


def test_in_plane_boundary_treats_the_image_border_as_foreground():
    # A block filling whole slices has no in-plane boundary (as with SimpleITK's BinaryErode).
    full = np.zeros((3, 4, 4), dtype=bool)
    full[1] = True
    assert math.isnan(hd95_mm(full, full, (3.0, 1.0, 1.0), slice_axis=0))
    assert hd95_mm(full, full, (3.0, 1.0, 1.0)) == 0.0  # MONAI's 3-D boundary exists


def test_hd95_of_an_empty_mask_is_nan():
    gt = np.zeros((3, 4, 4), dtype=bool)
    pred = gt.copy()
    pred[1, 1, 1] = True
    assert math.isnan(hd95_mm(gt, pred, (1.0, 1.0, 1.0)))
    assert math.isnan(hd95_mm(pred, gt, (1.0, 1.0, 1.0), slice_axis=0))


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], threshold: float) -> np.ndarray:
    return ndimage.gaussian_filter(rng.normal(size=shape), 1.5) > threshold


def _physical_points(mask_zyx: np.ndarray, image: sitk.Image) -> np.ndarray:
    """World coordinates (mm) of the voxels of a (z, y, x) mask: origin + direction @ (index * spacing)."""
    index_xyz = np.argwhere(mask_zyx)[:, ::-1]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + (index_xyz * np.array(image.GetSpacing())) @ direction.T


def _challenge_hd95(gt: np.ndarray, pred: np.ndarray, image: sitk.Image) -> float:
    """The MRBrainS18 definition, independently: SimpleITK's in-plane erosion, world coordinates,
    nearest-neighbour distances from a k-d tree, as the challenge's script computes them."""

    def boundary_points(mask: np.ndarray) -> np.ndarray:
        binary = sitk.GetImageFromArray(mask.astype(np.uint8))
        binary.CopyInformation(image)
        edge = sitk.GetArrayFromImage(sitk.Subtract(binary, sitk.BinaryErode(binary, (1, 1, 0)))).astype(bool)
        return _physical_points(edge, image)

    gt_points, pred_points = boundary_points(gt), boundary_points(pred)
    gt_to_pred = cKDTree(pred_points).query(gt_points)[0]
    pred_to_gt = cKDTree(gt_points).query(pred_points)[0]
    return max(np.percentile(gt_to_pred, 95), np.percentile(pred_to_gt, 95))


def _brute_force_3d_hd95(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> float:
    """MONAI's definition, independently: 6-connected 3-D erosion, voxels outside the image
    background, all-pairs distances."""
    cross = ndimage.generate_binary_structure(3, 1)

    def points(mask: np.ndarray) -> np.ndarray:
        return np.argwhere(mask & ~ndimage.binary_erosion(mask, cross, border_value=0)) * np.asarray(spacing)

    distances = cdist(points(gt), points(pred))
    return max(np.percentile(distances.min(axis=1), 95), np.percentile(distances.min(axis=0), 95))


@pytest.mark.parametrize("seed", range(4))
def test_hd95_matches_independent_implementations(seed):
    rng = np.random.default_rng(seed)
    shape = (5, 14, 13)
    spacing_xyz = (0.9, 0.7, 3.0)
    gt, pred = _blobs(rng, shape, 0.1), _blobs(rng, shape, 0.1)
    image = sitk.GetImageFromArray(np.zeros(shape, dtype=np.uint8))
    image.SetSpacing(spacing_xyz)
    image.SetOrigin((10.0, -4.0, 7.0))
    angle = 0.3  # a rotated grid: distances must not depend on the direction cosines
    image.SetDirection((math.cos(angle), -math.sin(angle), 0.0, math.sin(angle), math.cos(angle), 0.0, 0.0, 0.0, 1.0))
    spacing_zyx = spacing_xyz[::-1]

    assert hd95_mm(gt, pred, spacing_zyx, slice_axis=0) == pytest.approx(_challenge_hd95(gt, pred, image), rel=1e-5)
    assert hd95_mm(gt, pred, spacing_zyx) == pytest.approx(_brute_force_3d_hd95(gt, pred, spacing_zyx), rel=1e-5)


def test_mrbrains18_protocol_masks_9_and_10_before_taking_surfaces():
    rng = np.random.default_rng(7)
    shape = (4, 12, 12)
    gt = rng.integers(0, 11, shape).astype(np.uint8)
    gt = np.where(_blobs(rng, shape, 0.0), gt, 0).astype(np.uint8)
    pred = np.roll(gt, 1, axis=2)
    pred[rng.random(shape) < 0.1] = 3
    image = sitk.GetImageFromArray(gt)
    image.SetSpacing((0.958, 0.958, 3.0))
    m = mrbrains18_protocol().case_metrics(gt, pred, spacing_mm=(3.0, 0.958, 0.958), hd95=True)
    # The challenge's getImages: voxels whose truth is 9 or 10 become background in both images.
    kept = (gt < 9) | (gt > 10)
    gt_masked, pred_masked = np.where(kept, gt, 0), np.where(kept, pred, 0)
    for c in range(1, 9):
        expected = _challenge_hd95(gt_masked == c, pred_masked == c, image)
        assert m.classes[c].hd95_mm == pytest.approx(expected, rel=1e-5)


def test_protocol_takes_the_ignore_label_as_an_argument():
    gt, pred = GT.copy(), PRED.copy()
    gt[0, 2, :2] = 9
    pred[0, 2, :2] = 1
    challenge = mrbrains18_protocol(ignore_labels=[9]).case_metrics(gt, pred)
    assert list(challenge.classes) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert challenge.classes[1].dice == pytest.approx(6 / 8)
    unmasked = mrbrains18_protocol(ignore_labels=[]).case_metrics(gt, pred)
    assert unmasked.classes[1].dice == pytest.approx(6 / 10)


# --- real data -----------------------------------------------------------------------------------


def test_dice_equals_nnunet_compute_metrics_on_real_data(mrbrains18_root, tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    path = mrbrains18_root / "training" / "070" / "segm.nii.gz"  # has infarction (label 9)
    image = sitk.ReadImage(str(path))
    gt = sitk.GetArrayFromImage(image)
    pred = np.roll(gt, (1, 2), axis=(1, 2))
    pred[::7, ::5, ::3] = 4  # sprinkled lesion labels
    perturbed = sitk.GetImageFromArray(pred)
    perturbed.CopyInformation(image)
    pred_path = tmp_path / "pred.nii.gz"
    sitk.WriteImage(perturbed, str(pred_path))

    labels = list(range(1, 9))
    theirs = compute_metrics(str(path), str(pred_path), SimpleITKIO(), labels, ignore_label=9)
    ours = case_metrics(gt, pred, labels, ignore_labels=[9])
    for c in labels:
        assert ours.classes[c].dice == theirs["metrics"][c]["Dice"]
        assert ours.classes[c].n_gt == theirs["metrics"][c]["n_ref"]
        assert ours.classes[c].n_pred == theirs["metrics"][c]["n_pred"]
        fp_fn = theirs["metrics"][c]["FP"] + theirs["metrics"][c]["FN"]
        assert ours.classes[c].hard_mae == pytest.approx(fp_fn / ours.n_valid)
    assert ours.n_valid == int((gt != 9).sum())


def test_hd95_equals_the_challenge_definition_on_real_data(mrbrains18_root):
    image = sitk.ReadImage(str(mrbrains18_root / "training" / "148" / "segm.nii.gz"))
    gt = sitk.GetArrayFromImage(image)
    pred = np.roll(gt, (1, 2, -3), axis=(0, 1, 2))
    m = mrbrains18_protocol().case_metrics(gt, pred, spacing_mm=image.GetSpacing()[::-1], hd95=True)
    kept = gt < 9
    for c in range(1, 9):
        expected = _challenge_hd95(np.where(kept, gt, 0) == c, np.where(kept, pred, 0) == c, image)
        assert m.classes[c].hd95_mm == pytest.approx(expected, rel=1e-5)


# --- aggregation ---------------------------------------------------------------------------------


def test_aggregate_means_over_cases_and_classes():
    a = case_metrics(GT, PRED, [1, 2, 3])  # Dice 0.75, 0.8, NaN
    b = case_metrics(GT, GT, [1, 2, 3])  # Dice 1, 1, NaN; MAE 0
    with_soft = case_metrics(GT, GT, [1, 2, 3], probabilities=np.eye(4, dtype=np.float32)[GT].transpose(3, 0, 1, 2))
    summary = aggregate({"a": a, "b": b, "c": with_soft}, {"forget": ["a"], "retain": ["a", "b"], "soft": ["c"]})
    retain = summary["retain"]
    assert retain["n_cases"] == 2
    assert retain["dice"] == pytest.approx((a.mean("dice") + 1.0) / 2)
    assert retain["hard_mae"] == pytest.approx((a.mean("hard_mae") + 0.0) / 2)
    assert retain["soft_mae"] is None  # no probabilities
    assert retain["hd95_mm"] is None  # not asked for
    assert retain["per_class"][2]["dice"] == pytest.approx((0.8 + 1.0) / 2)
    assert retain["per_class"][3]["dice"] is None  # absent from every case
    assert summary["soft"]["soft_mae"] == 0.0
    with pytest.raises(UserInputError, match="held"):
        aggregate({"a": a}, {"held": ["zzz"]})


def test_unlearning_figures():
    def set_summary(dice: float, mae: float) -> dict:
        return {"dice": dice, "hard_mae": mae, "soft_mae": None}

    before = {"forget": set_summary(0.8, 0.02), "retain": set_summary(0.85, 0.015)}
    after = {"forget": set_summary(0.6, 0.05), "retain": set_summary(0.8, 0.02)}
    figures = unlearning_figures(before, after)
    assert figures["forget_drop_pct"] == pytest.approx(100 * (1 - 0.6 / 0.8))
    assert figures["retain_retention_pct"] == pytest.approx(100 * 0.8 / 0.85)
    assert figures["after"]["dice_gap"] == pytest.approx(0.8 - 0.6)
    assert figures["after"]["hard_mae_gap"] == pytest.approx(0.05 - 0.02)
    assert figures["before"]["dice_gap"] == pytest.approx(0.85 - 0.8)
    assert figures["after"]["soft_mae_gap"] is None
    before["forget"]["dice"] = 0.0
    assert unlearning_figures(before, after)["forget_drop_pct"] is None
    with pytest.raises(UserInputError, match="heldout"):
        unlearning_figures(before, after, forget="heldout")
