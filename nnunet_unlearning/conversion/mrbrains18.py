"""MRBrainS18 release → nnU-Net v2 raw dataset, with a provenance record of every source file.

Reads the official release layout::

    SRC/training/<id>/pre/{reg_T1,reg_IR,FLAIR}.nii.gz     bias-corrected, registered to FLAIR (default)
    SRC/training/<id>/orig/{reg_T1,IR,FLAIR}.nii.gz        original intensities (--source orig)
    SRC/training/<id>/segm.nii.gz                          labels 0-10
    SRC/test/<id>/...                                      optional, images only

and writes ``$nnUNet_raw/Dataset<ID>_MRBrainS18/`` with ``imagesTr/MRBrainS18_<id>_<XXXX>.nii.gz``
(channel XXXX in the order of `modalities`), ``labelsTr/``, ``imagesTs/`` for test subjects,
``dataset.json`` and ``subjects.json`` (case → subject, source files and their SHA-256).

Images are copied byte for byte (voxels, affine, spacing and direction stay those of the source);
labels are remapped to the chosen label set and written as uint8 with the source header. Everything
is written to a temporary folder beside the target and renamed into place at the end.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from nnunet_unlearning import __version__
from nnunet_unlearning.conversion.nifti_checks import (
    SourceFile,
    check_3d,
    check_finite,
    check_same_grid,
    label_values,
    read_source,
)
from nnunet_unlearning.errors import UserInputError

MODALITIES = ("T1", "IR", "FLAIR")
SOURCES = ("pre", "orig")
LABEL_SETS = ("challenge", "full", "tissue", "brain")
DATASET_NAME = "MRBrainS18"
CASE_PREFIX = "MRBrainS18_"
SPLITS = {"training": ("imagesTr", "labelsTr"), "test": ("imagesTs", None)}
SOURCE_FILES = {
    "pre": {"T1": "pre/reg_T1.nii.gz", "IR": "pre/reg_IR.nii.gz", "FLAIR": "pre/FLAIR.nii.gz"},
    "orig": {"T1": "orig/reg_T1.nii.gz", "IR": "orig/IR.nii.gz", "FLAIR": "orig/FLAIR.nii.gz"},
}
LABEL_FILE = "segm.nii.gz"
# The official label values of the release (0-10).
OFFICIAL_LABELS = {
    "background": 0,
    "cortical_grey_matter": 1,
    "basal_ganglia": 2,
    "white_matter": 3,
    "white_matter_lesions": 4,
    "extracerebral_csf": 5,
    "ventricles": 6,
    "cerebellum": 7,
    "brain_stem": 8,
    "infarction": 9,
    "other": 10,
}
_SCORED = dict(list(OFFICIAL_LABELS.items())[:9])  # 0-8: what the challenge scores
# label set → (dataset.json "labels", lookup table official value → written value)
_LABEL_SETS: dict[str, tuple[dict[str, int], np.ndarray]] = {
    # The challenge masks 9 and 10 out of scoring; nnU-Net's ignore label (highest value, named
    # "ignore") does the same in training and evaluation.
    "challenge": ({**_SCORED, "ignore": 9}, np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9], np.uint8)),
    "full": (OFFICIAL_LABELS, np.arange(11, dtype=np.uint8)),
    # MRBrainS13's three tissue classes, as that challenge groups the labels: grey matter = cortical grey
    # matter + basal ganglia, white matter = white matter + its lesions, CSF = extracerebral CSF +
    # ventricles. MRBrainS13 leaves cerebellum and brain stem out of its evaluation, and 9/10 are masked
    # as in the challenge set, so all four become the ignore label.
    "tissue": (
        {"background": 0, "grey_matter": 1, "white_matter": 2, "csf": 3, "ignore": 4},
        np.array([0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4], np.uint8),
    ),
    "brain": ({"background": 0, "brain": 1}, np.array([0] + [1] * 10, np.uint8)),
}
_SUBJECT_ID = re.compile(r"^[A-Za-z0-9]+$")
# nnU-Net's folder variables (mixed case, as nnU-Net spells them); a dataset id must be unique across them
_NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def convert_mrbrains18(
    src: Path,
    dataset_id: int,
    *,
    modalities: Sequence[str] = ("T1", "IR", "FLAIR"),
    source: str = "pre",
    labels: str = "challenge",
    subjects: Sequence[str] | None = None,
    overwrite: bool = False,
    raw_root: Path | None = None,
) -> Path:
    """Convert an MRBrainS18 release at `src` into nnU-Net raw dataset `dataset_id` (1-999).

    `modalities`: channels in order (any subset of MODALITIES); `source`: "pre" or "orig" folder;
    `labels`: "challenge" (1-8, 9 and 10 → ignore label 9), "full" (0-10 as published), "tissue"
    (MRBrainS13's grey matter 1 = 1+2, white matter 2 = 3+4, CSF 3 = 5+6; 7-10 → ignore label 4) or
    "brain" (every label > 0 → 1); `subjects`: ids as published (e.g. "070"), default all; `overwrite`:
    replace an existing Dataset<ID>_MRBrainS18. Returns the written dataset folder, which lies in
    `raw_root` (default: environment variable nnUNet_raw). UserInputError on any bad input, with
    nothing written. The source tree is only read.
    """
    modalities = _check_options(dataset_id, modalities, source, labels)
    src = Path(src).resolve()
    raw_root = _raw_root(raw_root)
    target = raw_root / f"Dataset{dataset_id:03d}_{DATASET_NAME}"
    cases = _select_cases(src, [subjects] if isinstance(subjects, str) else subjects)
    plan = {case: _case_files(split, subject, modalities, source) for case, (split, subject) in cases.items()}
    _check_files_exist(src, cases, plan)
    _check_target(target, src, dataset_id, overwrite)

    created = _make_folders(raw_root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=raw_root))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is an ordinary folder
        label_dict, lut = _LABEL_SETS[labels]
        records = {case: _convert_case(src, tmp, case, *cases[case], plan[case], modalities, lut) for case in cases}
        n_training = sum(split == "training" for split, _ in cases.values())
        provenance = {
            "format": 1,
            "source_root": str(src),
            "source": source,
            "labels": labels,
            "modalities": list(modalities),
            "cases": records,
        }
        # plain writes: the whole folder is published by one rename (`_publish`), and its files keep ordinary
        # permissions (an atomic write's temporary file is private to its owner)
        for name, content in (
            ("dataset.json", _dataset_json(modalities, label_dict, n_training, source, labels)),
            ("subjects.json", provenance),
        ):
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise
    return target


def case_id(subject: str) -> str:
    """nnU-Net case identifier of a subject, with the id as published: "070" → "MRBrainS18_070"."""
    return CASE_PREFIX + subject


def _check_options(dataset_id: int, modalities: Sequence[str], source: str, labels: str) -> tuple[str, ...]:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise UserInputError(f"dataset id {dataset_id!r} is not an integer in 1-999")
    modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities or len(set(modalities)) != len(modalities):
        raise UserInputError(
            f"--modalities {' '.join(modalities) or '(none)'}: give each of "
            f"{', '.join(MODALITIES)} at most once, at least one"
        )
    if source not in SOURCES:
        raise UserInputError(f"--source {source}: expected one of {', '.join(SOURCES)}")
    if labels not in LABEL_SETS:
        raise UserInputError(f"--labels {labels}: expected one of {', '.join(LABEL_SETS)}")
    return modalities


def _raw_root(raw_root: Path | None) -> Path:
    if raw_root is None:
        value = os.environ.get(_NNUNET_FOLDERS[0])
        if not value:
            raise UserInputError("nnUNet_raw is not set: export nnUNet_raw=<folder for nnU-Net raw datasets>")
        raw_root = Path(value)
    return Path(raw_root).resolve()


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and any missing parents; return the ones created, deepest first."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove `folders` in order where they are empty: a refused conversion leaves no trace, not even nnUNet_raw."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty: someone else wrote there meanwhile, which is theirs to keep
            return


def _subjects_in(folder: Path) -> list[str]:
    """Subject folders of one split, ordered by their number ("1" < "14" < "070" < "148")."""
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for name in names:
        if not _SUBJECT_ID.match(name):
            raise UserInputError(f"{folder / name}: subject folder names must be letters and digits only")
    return sorted(names, key=lambda s: (int(s) if s.isdigit() else float("inf"), s))


def _select_cases(src: Path, subjects: Sequence[str] | None) -> dict[str, tuple[str, str]]:
    """Case id → (split, subject) for the requested subjects, training first, in release order."""
    if not src.is_dir():
        raise UserInputError(f"{src}: MRBrainS18 release folder not found")
    if not (src / "training").is_dir():
        raise UserInputError(
            f"{src}: has no training/ folder; expected the MRBrainS18 release layout "
            f"training/<id>/{{pre,orig}}/*.nii.gz"
        )
    found = {split: _subjects_in(src / split) for split in SPLITS}
    if not found["training"]:
        raise UserInputError(f"{src / 'training'}: contains no subject folders")
    both = sorted(set(found["training"]) & set(found["test"]))
    if both:
        raise UserInputError(f"{src}: subjects {', '.join(both)} are in both training/ and test/")
    available = [(split, s) for split in SPLITS for s in found[split]]
    if subjects is not None:
        known = [s for _, s in available]
        unknown = [s for s in dict.fromkeys(subjects) if s not in known]
        if unknown:
            raise UserInputError(f"--subjects: {', '.join(unknown)} not in {src} (available: {' '.join(known)})")
        available = [(split, s) for split, s in available if s in subjects]
    cases = {case_id(s): (split, s) for split, s in available}
    if not any(split == "training" for split, _ in cases.values()):
        raise UserInputError("--subjects: select at least one training subject (nnU-Net needs labelled cases)")
    return cases


def _check_target(target: Path, src: Path, dataset_id: int, overwrite: bool) -> None:
    """Refuse a target inside the source tree, an existing target without overwrite, and a taken id."""
    if target.is_relative_to(src):
        raise UserInputError(f"{target}: lies inside the source release {src}, which is never written to")
    if target.exists() and not overwrite:
        raise UserInputError(f"{target}: already exists; pass --overwrite to replace it")
    for variable in _NNUNET_FOLDERS:
        root = target.parent if variable == _NNUNET_FOLDERS[0] else os.environ.get(variable)
        if not root or not Path(root).is_dir():
            continue
        for other in Path(root).glob(f"Dataset{dataset_id:03d}_*"):
            if other.name != target.name:
                raise UserInputError(
                    f"{other}: dataset id {dataset_id} is already taken by another dataset; choose another -d"
                )


def _case_files(split: str, subject: str, modalities: Sequence[str], source: str) -> dict[str, str]:
    """Modality (and "label" for training) → path relative to the release root, posix style."""
    files = {m: f"{split}/{subject}/{SOURCE_FILES[source][m]}" for m in modalities}
    if split == "training":
        files["label"] = f"{split}/{subject}/{LABEL_FILE}"
    return files


def _check_files_exist(src: Path, cases: dict[str, tuple[str, str]], plan: dict[str, dict[str, str]]) -> None:
    """One UserInputError naming every subject that lacks a requested file, grouped by file."""
    missing: dict[str, list[str]] = {}
    for case, files in plan.items():
        split, subject = cases[case]
        for key, relpath in files.items():
            if not (src / relpath).is_file():
                name = relpath.split("/", 2)[2]
                what = f"{split}/<id>/{name}" + (f" ({key})" if key != "label" else " (labels)")
                missing.setdefault(what, []).append(subject)
    if missing:
        groups = "; ".join(
            f"subject {s[0]} has no {what}" if len(s) == 1 else f"subjects {', '.join(s)} have no {what}"
            for what, s in missing.items()
        )
        raise UserInputError(f"{src}: {groups}")


def _convert_case(
    src: Path,
    out: Path,
    case: str,
    split: str,
    subject: str,
    files: dict[str, str],
    modalities: Sequence[str],
    lut: np.ndarray,
) -> dict:
    """Check and write one case's images (and label); return its subjects.json record."""
    sources = {key: read_source(src, rel, subject) for key, rel in files.items()}
    reference = sources[modalities[0]]
    for item in sources.values():
        check_3d(item)
        check_same_grid(item, reference)
    for modality in modalities:
        check_finite(sources[modality])
    images_name, labels_name = SPLITS[split]
    images_dir, labels_dir = out / images_name, (out / labels_name if labels_name else None)
    images_dir.mkdir(exist_ok=True)
    for channel, modality in enumerate(modalities):
        (images_dir / f"{case}_{channel:04d}.nii.gz").write_bytes(sources[modality].data)
    if labels_dir is not None:
        labels_dir.mkdir(exist_ok=True)
        (labels_dir / f"{case}.nii.gz").write_bytes(_label_bytes(sources["label"], lut))
    return {
        "subject": subject,
        "split": split,
        "files": {key: {"path": rel, "sha256": sources[key].sha256} for key, rel in files.items()},
    }


def _label_bytes(source: SourceFile, lut: np.ndarray) -> bytes:
    """The label file remapped through `lut`, as uint8 .nii.gz with the source's header and geometry.

    A uint8 source that the label set leaves unchanged is copied as is.
    """
    labels = label_values(source, max_value=len(lut) - 1)
    mapped = lut[labels]
    if labels.dtype == np.uint8 and np.array_equal(mapped, labels):
        return source.data
    header = source.image.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(None, None)
    image = nib.Nifti1Image(mapped, None, header)
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


def _dataset_json(
    modalities: Sequence[str], label_dict: dict[str, int], n_training: int, source: str, labels: str
) -> dict:
    return {
        "name": DATASET_NAME,
        "description": f"MRBrainS18 brain MRI (UMC Utrecht, 3T), {source}/ images, label set '{labels}'",
        "reference": "MRBrainS18 challenge, https://mrbrains18.isi.uu.nl; data: DataverseNL doi:10.34894/E0U32Q",
        "licence": "MRBrainS18 research terms, see the release",
        "channel_names": {str(i): m for i, m in enumerate(modalities)},
        "labels": label_dict,
        "numTraining": n_training,
        "file_ending": ".nii.gz",
        "nnunet_unlearning": {
            "converter": "mrbrains18",
            "version": __version__,
            "source": source,
            "labels": labels,
            "subjects_file": "subjects.json",
        },
    }


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished `tmp` folder to `target`, replacing an existing target only at the last step."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / target.name)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old / target.name, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
