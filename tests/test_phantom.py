"""The synthetic MRBrainS18 phantom: layout, grid, dtypes, labels, variation, contrast, determinism."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnunet_unlearning.conversion.phantom import PUBLISHED_IDS, SHAPE, SPACING, subject_ids, write_phantom
from nnunet_unlearning.errors import UserInputError

PRE = {"FLAIR": np.uint16, "IR": np.uint16, "reg_IR": np.uint16, "reg_T1": np.int16, "T1": np.int16}
ORIG = {"FLAIR": np.uint16, "IR": np.uint16, "reg_T1": np.int16}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> tuple[Path, list[str]]:
    """The default phantom (7 subjects, seed 0), written once for this module."""
    root = tmp_path_factory.mktemp("phantom") / "MRBrainS18"
    return root, write_phantom(root)


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_subject_ids_are_the_published_ones_first():
    assert subject_ids(7) == list(PUBLISHED_IDS)
    assert subject_ids(3) == ["1", "4", "5"]
    more = subject_ids(10)
    assert more[:7] == list(PUBLISHED_IDS)
    assert len(set(more)) == 10 and all(s.isdigit() for s in more[7:])


def test_release_layout_and_readme(phantom):
    root, ids = phantom
    assert ids == list(PUBLISHED_IDS)
    assert sorted(p.name for p in (root / "training").iterdir()) == sorted(ids)
    for subject in ids:
        folder = root / "training" / subject
        assert sorted(p.name for p in (folder / "pre").iterdir()) == sorted(f"{n}.nii.gz" for n in PRE)
        assert sorted(p.name for p in (folder / "orig").iterdir()) == sorted(f"{n}.nii.gz" for n in ORIG)
        assert (folder / "segm.nii.gz").is_file()
    assert "SYNTHETIC" in (root / "README.txt").read_text()


def test_grid_orientation_and_dtypes_match_the_release(phantom):
    root, ids = phantom
    for subject in ids[:2]:
        folder = root / "training" / subject
        files = {f"pre/{n}": d for n, d in PRE.items()} | {f"orig/{n}": d for n, d in ORIG.items()}
        files["segm"] = np.uint8
        affines = []
        for name, dtype in files.items():
            image = nib.load(folder / f"{name}.nii.gz")
            assert image.shape == SHAPE
            assert image.get_data_dtype() == dtype, name
            np.testing.assert_allclose(image.header.get_zooms(), SPACING, atol=1e-5)
            assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
            assert (int(image.header["qform_code"]), int(image.header["sform_code"])) == (2, 1)
            affines.append(image.affine)
        assert all(np.array_equal(a, affines[0]) for a in affines)


def test_labels_are_official_with_small_lesions_and_some_infarcts(phantom):
    root, ids = phantom
    with_infarct = []
    for subject in ids:
        counts = np.bincount(_array(root / "training" / subject / "segm.nii.gz").ravel(), minlength=11)
        assert counts.size == 11 and counts[10] == 0
        assert np.all(counts[1:9] > 0), f"subject {subject} lacks a label in 1-8: {counts}"
        # lesions are small: well under the white matter they sit in
        assert counts[4] < 0.2 * counts[3]
        if counts[9]:
            with_infarct.append(subject)
    assert 0 < len(with_infarct) < len(ids)


def test_subjects_vary_in_head_size_lesion_load_intensity_and_pose(phantom):
    root, ids = phantom
    brain, lesion, flair_wm, offsets = [], [], [], []
    for subject in ids:
        folder = root / "training" / subject
        labels = _array(folder / "segm.nii.gz")
        brain.append(np.count_nonzero(labels))
        lesion.append(np.count_nonzero(labels == 4))
        flair_wm.append(_array(folder / "pre" / "FLAIR.nii.gz")[labels == 3].mean())
        offsets.append(nib.load(folder / "segm.nii.gz").affine[:3, 3])
    assert np.std(brain) / np.mean(brain) > 0.02
    assert max(lesion) > 5 * min(lesion)
    assert np.std(flair_wm) / np.mean(flair_wm) > 0.02
    assert len({tuple(np.round(o, 3)) for o in offsets}) == len(ids)


def test_tissue_contrast_is_learnable_from_intensities(phantom):
    """A nearest-class-mean classifier on the three channels must separate the tissues well.

    Means come from one subject and are applied to another, so the contrast holds across subjects.
    """
    root, ids = phantom

    def features(subject):
        folder = root / "training" / subject
        labels = _array(folder / "segm.nii.gz")
        channels = [_array(folder / "pre" / f"{n}.nii.gz").astype(np.float32) for n in ("reg_T1", "IR", "FLAIR")]
        mask = (labels >= 1) & (labels <= 8)
        x = np.stack([c[mask] for c in channels], axis=1)
        return (x - x.mean(0)) / x.std(0), labels[mask]

    x_fit, y_fit = features(ids[0])
    x_test, y_test = features(ids[1])
    classes = np.unique(y_fit)
    means = np.stack([x_fit[y_fit == c].mean(0) for c in classes])
    predicted = classes[np.argmin(((x_test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)]
    # chance level for these class frequencies is below 0.4
    assert np.mean(predicted == y_test) > 0.6


def test_expected_intensity_order_per_channel(phantom):
    root, ids = phantom
    folder = root / "training" / ids[0]
    labels = _array(folder / "segm.nii.gz")

    def mean(channel, label):
        return _array(folder / "pre" / f"{channel}.nii.gz")[labels == label].mean()

    assert mean("reg_T1", 3) > mean("reg_T1", 1) > mean("reg_T1", 5)  # T1: WM > GM > CSF
    assert mean("FLAIR", 4) > mean("FLAIR", 3) > mean("FLAIR", 6)  # FLAIR: lesion > WM > ventricle
    assert mean("IR", 3) > mean("IR", 1) > mean("IR", 6)  # IR: WM > GM > ventricle


def test_orig_has_a_bias_field_that_pre_lacks(phantom):
    root, ids = phantom
    folder = root / "training" / ids[0]
    labels = _array(folder / "segm.nii.gz")
    pre = _array(folder / "pre" / "FLAIR.nii.gz").astype(np.float64)
    orig = _array(folder / "orig" / "FLAIR.nii.gz").astype(np.float64)
    white = labels == 3
    ratio = orig[white] / np.maximum(pre[white], 1)
    assert np.std(ratio) > 0.02
    # outside the head both keep the fill value of the real files
    assert pre[0, 0, 0] == orig[0, 0, 0] == 0
    assert _array(folder / "pre" / "IR.nii.gz")[0, 0, 0] == 2047


def test_same_seed_gives_identical_bytes_and_another_seed_differs(phantom, tmp_path):
    root, _ = phantom
    write_phantom(tmp_path / "again", n_subjects=1, seed=0)
    write_phantom(tmp_path / "other", n_subjects=1, seed=1)
    again = _files(tmp_path / "again" / "training")
    reference = _files(root / "training" / "1")
    assert again == {f"1/{k}": v for k, v in reference.items()}
    other = _files(tmp_path / "other" / "training")
    assert other["1/segm.nii.gz"] != again["1/segm.nii.gz"]


def test_refuses_a_non_empty_output_folder_and_no_subjects(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    with pytest.raises(UserInputError, match="not an empty folder"):
        write_phantom(tmp_path / "full", n_subjects=1)
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"
    with pytest.raises(UserInputError, match="at least 1"):
        write_phantom(tmp_path / "none", n_subjects=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
