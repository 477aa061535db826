"""MRBrainS18 → nnU-Net raw conversion: layout, geometry, label sets, provenance, every bad input, real data."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnunet_unlearning.conversion.mrbrains18 import convert_mrbrains18
from nnunet_unlearning.conversion.phantom import write_phantom
from nnunet_unlearning.errors import UserInputError

PHANTOM_SUBJECTS = ["1", "4", "5"]
# header fields that together fix voxel grid, orientation and position
GEOMETRY_FIELDS = (
    "dim",
    "pixdim",
    "qform_code",
    "sform_code",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "qoffset_y",
    "qoffset_z",
    "srow_x",
    "srow_y",
    "srow_z",
)
# a small hand-made release: LPS, tilted like the real files
AFFINE = np.array([[-0.958333, 0, 0, 110.4], [0, -0.9188, -0.8530, 114.3], [0, -0.2725, 2.8762, -14.3], [0, 0, 0, 1]])
SMALL = (6, 5, 4)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """A 3-subject phantom release (subjects 1, 4, 5), written once for this module."""
    root = tmp_path_factory.mktemp("phantom") / "MRBrainS18"
    assert write_phantom(root, n_subjects=len(PHANTOM_SUBJECTS), seed=0) == PHANTOM_SUBJECTS
    return root


@pytest.fixture(scope="module")
def converted(phantom, tmp_path_factory) -> Path:
    """The phantom converted with the defaults (pre/, T1 IR FLAIR, challenge labels)."""
    return convert_mrbrains18(phantom, 501, raw_root=tmp_path_factory.mktemp("raw"))


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root → (SHA-256, mtime in ns): changes if anything is written."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def _assert_same_geometry(path: Path, source: Path) -> None:
    out, src = nib.load(path).header, nib.load(source).header
    for field in GEOMETRY_FIELDS:
        np.testing.assert_array_equal(out[field], src[field], err_msg=f"{path.name}: {field}")


def _write_nii(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    image = nib.Nifti1Image(data, None)
    image.set_qform(affine, code=2)
    image.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def _small_labels() -> np.ndarray:
    """Every official value 0-10 at least once, uint8."""
    return (np.arange(np.prod(SMALL)) % 11).reshape(SMALL).astype(np.uint8)


def _make_release(root: Path, training=("1", "070"), test=()) -> Path:
    """A tiny release in the official layout: pre/ and orig/ images for every subject, segm for training."""
    rng = np.random.default_rng(0)
    for split, subjects in (("training", training), ("test", test)):
        for subject in subjects:
            folder = root / split / subject
            for name in ("pre/reg_T1", "pre/reg_IR", "pre/FLAIR", "orig/reg_T1", "orig/IR", "orig/FLAIR"):
                dtype = np.int16 if "T1" in name else np.uint16
                _write_nii(folder / f"{name}.nii.gz", rng.integers(0, 900, SMALL).astype(dtype))
            if split == "training":
                _write_nii(folder / "segm.nii.gz", _small_labels())
    return root


@pytest.fixture()
def release(tmp_path) -> Path:
    return _make_release(tmp_path / "release")


# ---------------------------------------------------------------- layout, dataset.json, geometry


def test_writes_the_nnunet_raw_layout_and_dataset_json(converted):
    assert converted.name == "Dataset501_MRBrainS18"
    cases = [f"MRBrainS18_{s}" for s in PHANTOM_SUBJECTS]
    assert sorted(p.name for p in (converted / "imagesTr").iterdir()) == sorted(
        f"{c}_{i:04d}.nii.gz" for c in cases for i in range(3)
    )
    assert sorted(p.name for p in (converted / "labelsTr").iterdir()) == sorted(f"{c}.nii.gz" for c in cases)
    assert not (converted / "imagesTs").exists()
    dataset = json.loads((converted / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "T1", "1": "IR", "2": "FLAIR"}
    assert dataset["labels"] == {
        "background": 0,
        "cortical_grey_matter": 1,
        "basal_ganglia": 2,
        "white_matter": 3,
        "white_matter_lesions": 4,
        "extracerebral_csf": 5,
        "ventricles": 6,
        "cerebellum": 7,
        "brain_stem": 8,
        "ignore": 9,
    }
    assert dataset["numTraining"] == 3 and dataset["file_ending"] == ".nii.gz"
    assert dataset["nnunet_unlearning"]["source"] == "pre"
    assert "doi:10.34894/E0U32Q" in dataset["reference"]
    # nothing but the dataset is left in the raw folder (no temporary folders)
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]


def test_ignore_label_follows_nnunet_rules(converted):
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    manager = LabelManager(json.loads((converted / "dataset.json").read_text())["labels"], None)
    assert manager.has_ignore_label and manager.ignore_label == 9
    assert manager.all_labels == list(range(9))


def test_images_and_labels_keep_source_voxels_and_geometry(phantom, converted):
    for subject in PHANTOM_SUBJECTS:
        case = f"MRBrainS18_{subject}"
        for channel, name in enumerate(("reg_T1", "reg_IR", "FLAIR")):
            out = converted / "imagesTr" / f"{case}_{channel:04d}.nii.gz"
            source = phantom / "training" / subject / "pre" / f"{name}.nii.gz"
            np.testing.assert_array_equal(_array(out), _array(source))
            assert nib.load(out).get_data_dtype() == nib.load(source).get_data_dtype()
            _assert_same_geometry(out, source)
        label, source = converted / "labelsTr" / f"{case}.nii.gz", phantom / "training" / subject / "segm.nii.gz"
        assert nib.load(label).get_data_dtype() == np.uint8
        np.testing.assert_array_equal(_array(label), _array(source))  # phantom labels are 0-9: unchanged
        _assert_same_geometry(label, source)


def test_source_orig_and_modality_order(phantom, tmp_path):
    folder = convert_mrbrains18(
        phantom, 7, modalities=("FLAIR", "T1"), source="orig", subjects=["4"], raw_root=tmp_path
    )
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "FLAIR", "1": "T1"} and dataset["numTraining"] == 1
    assert folder.name == "Dataset007_MRBrainS18"
    orig = phantom / "training" / "4" / "orig"
    assert (folder / "imagesTr" / "MRBrainS18_4_0000.nii.gz").read_bytes() == (orig / "FLAIR.nii.gz").read_bytes()
    assert (folder / "imagesTr" / "MRBrainS18_4_0001.nii.gz").read_bytes() == (orig / "reg_T1.nii.gz").read_bytes()
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "MRBrainS18_4_0000.nii.gz",
        "MRBrainS18_4_0001.nii.gz",
    ]


def test_pre_reads_reg_ir(phantom, tmp_path):
    folder = convert_mrbrains18(phantom, 8, modalities=("IR",), subjects=["5"], raw_root=tmp_path)
    assert (folder / "imagesTr" / "MRBrainS18_5_0000.nii.gz").read_bytes() == (
        phantom / "training" / "5" / "pre" / "reg_IR.nii.gz"
    ).read_bytes()


def test_subjects_json_names_every_source_file_and_its_hash(phantom, converted):
    record = json.loads((converted / "subjects.json").read_text())
    assert record["format"] == 1 and record["source"] == "pre" and record["labels"] == "challenge"
    assert Path(record["source_root"]) == phantom.resolve()
    assert list(record["cases"]) == [f"MRBrainS18_{s}" for s in PHANTOM_SUBJECTS]
    case = record["cases"]["MRBrainS18_4"]
    assert case["subject"] == "4" and case["split"] == "training"
    assert {k: v["path"] for k, v in case["files"].items()} == {
        "T1": "training/4/pre/reg_T1.nii.gz",
        "IR": "training/4/pre/reg_IR.nii.gz",
        "FLAIR": "training/4/pre/FLAIR.nii.gz",
        "label": "training/4/segm.nii.gz",
    }
    for entry in case["files"].values():
        assert entry["sha256"] == hashlib.sha256((phantom / entry["path"]).read_bytes()).hexdigest()


def test_source_tree_is_never_written(phantom, tmp_path):
    before = _tree(phantom)
    convert_mrbrains18(phantom, 9, labels="full", source="orig", raw_root=tmp_path)
    with pytest.raises(UserInputError):
        convert_mrbrains18(phantom, 9, raw_root=tmp_path)
    assert _tree(phantom) == before


# ---------------------------------------------------------------- label sets


@pytest.mark.parametrize(
    ("labels", "lut", "names"),
    [
        ("challenge", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9], {"ignore": 9}),
        ("full", list(range(11)), {"infarction": 9, "other": 10}),
        (
            "tissue",
            [0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4],
            {"background": 0, "grey_matter": 1, "white_matter": 2, "csf": 3, "ignore": 4},
        ),
        ("brain", [0] + [1] * 10, {"background": 0, "brain": 1}),
    ],
)
def test_label_sets(release, tmp_path, labels, lut, names):
    folder = convert_mrbrains18(release, 11, labels=labels, raw_root=tmp_path)
    source = release / "training" / "070" / "segm.nii.gz"
    written = folder / "labelsTr" / "MRBrainS18_070.nii.gz"
    assert nib.load(written).get_data_dtype() == np.uint8
    np.testing.assert_array_equal(_array(written), np.asarray(lut, np.uint8)[_small_labels()])
    _assert_same_geometry(written, source)
    label_dict = json.loads((folder / "dataset.json").read_text())["labels"]
    assert names.items() <= label_dict.items()
    assert sorted(set(label_dict.values())) == sorted(set(lut))


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_labels_stored_as_other_dtypes_are_written_as_uint8(release, tmp_path, dtype):
    _write_nii(release / "training" / "1" / "segm.nii.gz", _small_labels().astype(dtype))
    folder = convert_mrbrains18(release, 12, labels="full", raw_root=tmp_path)
    written = folder / "labelsTr" / "MRBrainS18_1.nii.gz"
    assert nib.load(written).get_data_dtype() == np.uint8
    np.testing.assert_array_equal(_array(written), _small_labels())


# ---------------------------------------------------------------- subjects, test split, overwrite, ids


def test_case_ids_keep_published_ids_and_subset(release, tmp_path):
    folder = convert_mrbrains18(release, 13, subjects=["070"], raw_root=tmp_path)
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["MRBrainS18_070.nii.gz"]
    assert list(json.loads((folder / "subjects.json").read_text())["cases"]) == ["MRBrainS18_070"]


def test_test_subjects_go_to_images_ts(tmp_path):
    src = _make_release(tmp_path / "release", training=("1",), test=("2", "3"))
    folder = convert_mrbrains18(src, 14, modalities=("IR", "FLAIR"), raw_root=tmp_path / "raw")
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [
        "MRBrainS18_2_0000.nii.gz",
        "MRBrainS18_2_0001.nii.gz",
        "MRBrainS18_3_0000.nii.gz",
        "MRBrainS18_3_0001.nii.gz",
    ]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["MRBrainS18_1.nii.gz"]
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 1
    case = json.loads((folder / "subjects.json").read_text())["cases"]["MRBrainS18_2"]
    assert case["split"] == "test" and set(case["files"]) == {"IR", "FLAIR"}


def test_existing_dataset_is_refused_then_replaced_with_overwrite(release, tmp_path):
    raw = tmp_path / "raw"
    folder = convert_mrbrains18(release, 15, raw_root=raw)
    before = _tree(folder)
    with pytest.raises(UserInputError, match="--overwrite"):
        convert_mrbrains18(release, 15, modalities=("FLAIR",), raw_root=raw)
    assert _tree(folder) == before
    assert convert_mrbrains18(release, 15, modalities=("FLAIR",), overwrite=True, raw_root=raw) == folder
    assert json.loads((folder / "dataset.json").read_text())["channel_names"] == {"0": "FLAIR"}
    assert len(list((folder / "imagesTr").iterdir())) == 2
    assert [p.name for p in raw.iterdir()] == [folder.name]


def test_dataset_id_taken_by_another_dataset_is_refused(release, tmp_path):
    (tmp_path / "Dataset016_Other").mkdir()
    with pytest.raises(UserInputError, match="Dataset016_Other"):
        convert_mrbrains18(release, 16, raw_root=tmp_path)


def test_raw_root_defaults_to_nnunet_raw(release, tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert convert_mrbrains18(release, 17) == (tmp_path / "raw" / "Dataset017_MRBrainS18").resolve()
    monkeypatch.delenv("nnUNet_raw")
    with pytest.raises(UserInputError, match="nnUNet_raw is not set"):
        convert_mrbrains18(release, 18)


# ---------------------------------------------------------------- bad input: one line, nothing left behind


def _replace(relpath: str, data: np.ndarray | bytes, affine: np.ndarray = AFFINE) -> Callable[[Path], None]:
    """A change to the release: replace one file by a NIfTI of `data` or by raw bytes."""

    def change(root: Path) -> None:
        path = root / relpath
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            _write_nii(path, data, affine)

    return change


def _truncate(relpath: str, keep: int) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        path = root / relpath
        path.write_bytes(path.read_bytes()[:keep])

    return change


def _short_nifti(root: Path) -> None:
    """A valid gzip stream whose NIfTI data is shorter than its header says."""
    path = root / "training" / "070" / "pre" / "FLAIR.nii.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:400]))


def _scale(relpath: str, slope: float) -> Callable[[Path], None]:
    """Set a file's scl_slope (bytes 112-115 of the NIfTI-1 header), keeping its stored voxels."""

    def change(root: Path) -> None:
        path = root / relpath
        raw = bytearray(gzip.decompress(path.read_bytes()))
        raw[112:116] = np.float32(slope).tobytes()
        path.write_bytes(gzip.compress(bytes(raw)))

    return change


def _image_with(*values: float, dtype: type = np.float32) -> np.ndarray:
    """A SMALL image of `dtype`, 100 everywhere but `values` in its first voxels."""
    data = np.full(SMALL, 100, dtype)
    data.flat[: len(values)] = values
    return data


def _remove(*relpaths: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        for relpath in relpaths:
            (root / relpath).unlink()

    return change


_SHIFTED = AFFINE.copy()
_SHIFTED[0, 3] += 0.5
_SPACED = AFFINE.copy()
_SPACED[:3, 2] *= 1.1
_PRE_FLAIR = "training/070/pre/FLAIR.nii.gz"
_SEGM = "training/070/segm.nii.gz"
_PRE_IR_1 = "training/1/pre/reg_IR.nii.gz"

BAD_INPUTS = {
    # name: (change to the release, convert keyword arguments, words the one-line message must contain)
    "missing modality": (
        _remove("training/1/pre/reg_T1.nii.gz", "training/070/pre/reg_T1.nii.gz"),
        {},
        ["subjects 1, 070", "pre/reg_T1.nii.gz", "T1"],
    ),
    "missing label": (_remove(_SEGM), {}, ["070", "segm.nii.gz"]),
    "shape": (_replace(_PRE_FLAIR, np.zeros((6, 5, 3), np.uint16)), {}, ["subject 070", _PRE_FLAIR, "shape"]),
    "spacing": (_replace(_PRE_FLAIR, np.zeros(SMALL, np.uint16), _SPACED), {}, ["subject 070", _PRE_FLAIR, "spacing"]),
    "affine": (_replace(_PRE_FLAIR, np.zeros(SMALL, np.uint16), _SHIFTED), {}, ["subject 070", _PRE_FLAIR, "affine"]),
    "label grid": (_replace(_SEGM, _small_labels(), _SHIFTED), {}, ["subject 070", _SEGM, "affine"]),
    "4-D image": (_replace(_PRE_FLAIR, np.zeros((*SMALL, 2), np.uint16)), {}, ["subject 070", _PRE_FLAIR, "4-D"]),
    "not gzip": (_replace(_PRE_FLAIR, b"this is not a nifti file"), {}, ["subject 070", _PRE_FLAIR, "readable"]),
    "truncated gzip": (_truncate(_PRE_FLAIR, 60), {}, ["subject 070", _PRE_FLAIR, "readable"]),
    "truncated data": (_short_nifti, {}, ["subject 070", _PRE_FLAIR, "truncated"]),
    "not nifti": (_replace(_PRE_FLAIR, gzip.compress(b"x" * 500)), {}, ["subject 070", _PRE_FLAIR, "NIfTI"]),
    "label 11": (_replace(_SEGM, np.full(SMALL, 11, np.uint8)), {}, ["subject 070", _SEGM, "11", "0-10"]),
    "negative label": (_replace(_SEGM, np.full(SMALL, -1, np.int16)), {}, ["subject 070", _SEGM, "-1"]),
    "fractional label": (_replace(_SEGM, np.full(SMALL, 1.5, np.float32)), {}, ["subject 070", _SEGM, "integer"]),
    "NaN label": (
        _replace(_SEGM, _image_with(np.nan, 1, np.inf)),
        {},
        ["subject 070", _SEGM, "NaN or Inf label values (2 voxels)"],
    ),
    "NaN voxels": (
        _replace(_PRE_IR_1, _image_with(np.nan, np.nan, -np.inf)),
        {},
        ["subject 1", _PRE_IR_1, "NaN or Inf in float32 (2 NaN, 1 Inf)", "normalisation"],
    ),
    "Inf in last channel": (_replace(_PRE_FLAIR, _image_with(np.inf)), {}, ["subject 070", _PRE_FLAIR, "(1 Inf)"]),
    "beyond float32": (
        _replace(_PRE_FLAIR, _image_with(1e39, -1e39, dtype=np.float64)),
        {},
        ["subject 070", _PRE_FLAIR, "(2 beyond float32's range)"],
    ),
    "scaled beyond float32": (
        _scale(_PRE_FLAIR, 1e37),
        {},
        ["subject 070", _PRE_FLAIR, "NaN or Inf in float32", "beyond"],
    ),
    "id 0": (None, {"dataset_id": 0}, ["dataset id", "1-999"]),
    "id 1000": (None, {"dataset_id": 1000}, ["dataset id", "1-999"]),
    "unknown subject": (None, {"subjects": ["1", "70"]}, ["70", "available: 1 070"]),
    "unknown modality": (None, {"modalities": ("T2",)}, ["T2"]),
    "repeated modality": (None, {"modalities": ("IR", "IR")}, ["IR"]),
    "unknown source": (None, {"source": "raw"}, ["raw", "pre, orig"]),
    "unknown label set": (None, {"labels": "all"}, ["all", "challenge"]),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_nothing(release, tmp_path, name):
    change, kwargs, words = BAD_INPUTS[name]
    if change is not None:
        change(release)
    before = _tree(release)
    raw = tmp_path / "raw"
    raw.mkdir()
    kwargs = {"dataset_id": 501, **kwargs}
    with pytest.raises(UserInputError) as caught:
        convert_mrbrains18(release, kwargs.pop("dataset_id"), raw_root=raw, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert list(raw.iterdir()) == []
    assert _tree(release) == before


def test_finite_float_and_scaled_images_are_accepted_and_copied_as_is(release, tmp_path):
    _write_nii(release / _PRE_FLAIR, _image_with(-3e38, 0.25, 3e38))
    _scale(_PRE_IR_1, 0.5)(release)
    folder = convert_mrbrains18(release, 22, raw_root=tmp_path)
    assert (folder / "imagesTr" / "MRBrainS18_070_0002.nii.gz").read_bytes() == (release / _PRE_FLAIR).read_bytes()
    assert (folder / "imagesTr" / "MRBrainS18_1_0001.nii.gz").read_bytes() == (release / _PRE_IR_1).read_bytes()


def test_missing_or_wrong_release_folder(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        convert_mrbrains18(tmp_path / "nowhere", 1, raw_root=tmp_path / "raw")
    (tmp_path / "flat").mkdir()
    with pytest.raises(UserInputError, match="no training/ folder"):
        convert_mrbrains18(tmp_path / "flat", 1, raw_root=tmp_path / "raw")
    (tmp_path / "flat" / "training").mkdir()
    with pytest.raises(UserInputError, match="no subject folders"):
        convert_mrbrains18(tmp_path / "flat", 1, raw_root=tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_target_inside_the_source_tree_is_refused(release):
    with pytest.raises(UserInputError, match="never written"):
        convert_mrbrains18(release, 19, raw_root=release / "nnUNet_raw")
    assert not (release / "nnUNet_raw").exists()


# ---------------------------------------------------------------- command line


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnunet_unlearning.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_remove("training/070/orig/reg_T1.nii.gz"), ["070", "orig/reg_T1.nii.gz"]),
        # nibabel logs header problems to stderr; the CLI must still print only our line
        (_replace("training/070/orig/FLAIR.nii.gz", gzip.compress(b"x" * 500)), ["070", "orig/FLAIR.nii.gz"]),
        # found after nnUNet_raw and the temporary dataset folder were made: both must go again
        (_replace("training/070/orig/IR.nii.gz", _image_with(np.nan)), ["subject 070", "orig/IR.nii.gz", "(1 NaN)"]),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(release, tmp_path, change, words):
    change(release)
    result = _cli(
        "convert-mrbrains18", str(release), "-d", "20", "--source", "orig", env={"nnUNet_raw": str(tmp_path / "raw")}
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(word in result.stderr for word in words)
    assert not (tmp_path / "raw").exists()


def test_cli_phantom_then_convert(tmp_path):
    assert _cli("phantom", str(tmp_path / "release"), "--subjects", "1", "--seed", "3").returncode == 0
    result = _cli(
        "convert-mrbrains18",
        str(tmp_path / "release"),
        "-d",
        "21",
        "--modalities",
        "FLAIR",
        "--labels",
        "brain",
        env={"nnUNet_raw": str(tmp_path / "raw")},
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "raw" / "Dataset021_MRBrainS18"
    assert json.loads((folder / "dataset.json").read_text())["labels"] == {"background": 0, "brain": 1}
    assert set(np.unique(_array(folder / "labelsTr" / "MRBrainS18_1.nii.gz"))) == {0, 1}


# ---------------------------------------------------------------- real MRBrainS18 (skipped when absent)


def _sha256sums_hold(root: Path) -> bool:
    """`sha256sum -c SHA256SUMS`, in Python: every listed file still has its listed hash."""
    for line in (root / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        if hashlib.sha256((root / name.lstrip("*")).read_bytes()).hexdigest() != digest:
            return False
    return True


def test_real_missing_t1_names_all_subjects_in_one_line(mrbrains18_root, tmp_path):
    with pytest.raises(UserInputError) as caught:
        convert_mrbrains18(mrbrains18_root, 501, source="orig", raw_root=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "subjects 7, 070, 148 have no training/<id>/orig/reg_T1.nii.gz (T1)" in message
    assert list(tmp_path.iterdir()) == []


def test_real_conversion_keeps_voxels_geometry_and_sources(mrbrains18_root, tmp_path):
    folder = convert_mrbrains18(mrbrains18_root, 501, source="orig", modalities=("IR", "FLAIR"), raw_root=tmp_path)
    cases = json.loads((folder / "subjects.json").read_text())["cases"]
    assert list(cases) == [f"MRBrainS18_{s}" for s in ("1", "4", "5", "7", "14", "070", "148")]
    for case, record in cases.items():
        subject = mrbrains18_root / "training" / record["subject"]
        for channel, name in enumerate(("IR", "FLAIR")):
            out = folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz"
            np.testing.assert_array_equal(_array(out), _array(subject / "orig" / f"{name}.nii.gz"))
            _assert_same_geometry(out, subject / "orig" / f"{name}.nii.gz")
        label = folder / "labelsTr" / f"{case}.nii.gz"
        assert nib.load(label).get_data_dtype() == np.uint8
        source_labels = _array(subject / "segm.nii.gz")
        np.testing.assert_array_equal(_array(label), np.where(source_labels == 10, 9, source_labels))
        _assert_same_geometry(label, subject / "segm.nii.gz")
    assert _sha256sums_hold(mrbrains18_root)


# MRBrainS13's tissue classes, written out from the official label table (README of the release)
TISSUE_GROUPS = {
    1: ("cortical_grey_matter", "basal_ganglia"),
    2: ("white_matter", "white_matter_lesions"),
    3: ("extracerebral_csf", "ventricles"),
    4: ("cerebellum", "brain_stem", "infarction", "other"),  # the ignore label
}


def test_real_tissue_labels_group_the_source_labels(mrbrains18_root, tmp_path):
    from nnunet_unlearning.conversion.mrbrains18 import OFFICIAL_LABELS

    folder = convert_mrbrains18(
        mrbrains18_root,
        502,
        source="orig",
        modalities=("FLAIR",),
        labels="tissue",
        subjects=["1", "148"],
        raw_root=tmp_path,
    )
    for case, subject in (("MRBrainS18_1", "1"), ("MRBrainS18_148", "148")):
        source = _array(mrbrains18_root / "training" / subject / "segm.nii.gz")
        tissue = _array(folder / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_array_equal(tissue == 0, source == 0)
        for value, names in TISSUE_GROUPS.items():
            members = np.isin(source, [OFFICIAL_LABELS[name] for name in names])
            np.testing.assert_array_equal(tissue == value, members)
            assert int((tissue == value).sum()) == sum(int((source == OFFICIAL_LABELS[n]).sum()) for n in names)
    # subject 148 has infarction (9), which must not count as any tissue
    assert int((_array(mrbrains18_root / "training" / "148" / "segm.nii.gz") == 9).sum()) > 0


@pytest.mark.slow
def test_real_conversion_passes_nnunet_plan_and_preprocess(mrbrains18_root, tmp_path):
    raw, preprocessed, results = (tmp_path / n for n in ("raw", "preprocessed", "results"))
    convert_mrbrains18(mrbrains18_root, 501, source="orig", modalities=("IR", "FLAIR"), raw_root=raw)
    # nnUNet_n_proc_DA must be positive here: the 2.8 planner passes it to torch.set_num_threads
    env = {
        **os.environ,
        "nnUNet_raw": str(raw),
        "nnUNet_preprocessed": str(preprocessed),
        "nnUNet_results": str(results),
        "nnUNet_n_proc_DA": "1",
    }
    command = [
        str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"),
        "-d",
        "501",
        "-c",
        "3d_fullres",
        "--verify_dataset_integrity",
        "-np",
        "2",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verify_dataset_integrity Done" in result.stdout
    assert "Error" not in result.stdout and "WARNING" not in result.stdout
    dataset = preprocessed / "Dataset501_MRBrainS18"
    assert (dataset / "nnUNetPlans.json").is_file()
    assert len(list((dataset / "gt_segmentations").iterdir())) == 7
    assert _sha256sums_hold(mrbrains18_root)
