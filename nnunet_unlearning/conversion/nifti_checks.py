"""Read a source .nii.gz once (bytes, SHA-256, header) and check it, raising one-line UserInputErrors.

The bytes are kept so that an image that needs no change can be copied as is: its voxels, affine,
spacing and direction then stay bit-for-bit those of the source, and the file is read only once.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from nnunet_unlearning.errors import UserInputError

# Files that must share one voxel grid may differ by this much, absolute and relative, in spacing and
# affine entries (mm): the real release stores one grid with differences of up to 5e-4 mm in origins
# of ~110 mm and ~1e-6 mm in spacings between modalities and labels.
GRID_TOLERANCE = 1e-4
# nnU-Net reads every image as float32 (an unsafe cast: larger values become Inf) and z-scores it with the
# image's mean and standard deviation, so one NaN or Inf voxel makes every voxel of that channel NaN.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class SourceFile:
    """One source file of one subject, read once."""

    subject: str
    name: str  # path relative to the release root, e.g. "training/070/orig/IR.nii.gz"
    data: bytes  # the gzip bytes as stored
    sha256: str  # of `data`
    image: nib.Nifti1Image  # parsed from the decompressed bytes, voxels not yet loaded

    @property
    def where(self) -> str:
        """How messages name the file: "subject 070: training/070/orig/IR.nii.gz"."""
        return f"subject {self.subject}: {self.name}"


def read_source(root: Path, name: str, subject: str) -> SourceFile:
    """Read, hash and parse the gzipped NIfTI-1 file `root/name`; UserInputError if unreadable or truncated.

    Decompressing the whole file checks the gzip CRC, so corruption anywhere in it is caught here.
    """
    where = f"subject {subject}: {name}"
    path = root / name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserInputError(f"{where}: cannot be read ({error.strerror})") from error
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise UserInputError(f"{where}: not a readable .nii.gz file ({error})") from error
    try:
        with _quiet_nibabel():
            image = nib.Nifti1Image.from_bytes(raw)
    except Exception as error:  # nibabel raises several types for a broken header
        raise UserInputError(f"{where}: not a readable NIfTI-1 file ({error})") from error
    proxy = cast(ArrayProxy, image.dataobj)  # from_bytes images are backed by an array proxy
    needed = proxy.offset + int(np.prod(image.shape)) * image.get_data_dtype().itemsize
    if len(raw) < needed:
        raise UserInputError(f"{where}: truncated, {len(raw)} bytes where the header needs {needed}")
    return SourceFile(subject, name, data, hashlib.sha256(data).hexdigest(), image)


@contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's header-check log lines (to stderr): our one-line error says what is wrong."""
    logger = nib.imageglobals.logger
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def check_3d(source: SourceFile) -> None:
    """UserInputError unless the image is 3-D (a volume, not a series or a slice)."""
    shape = source.image.shape
    if len(shape) != 3:
        raise UserInputError(f"{source.where}: is {len(shape)}-D with shape {shape}; expected a 3-D image")


def check_same_grid(source: SourceFile, reference: SourceFile) -> None:
    """UserInputError unless `source` has the shape, spacing (mm) and affine of `reference`.

    Spacing and affine entries may differ by GRID_TOLERANCE absolute plus GRID_TOLERANCE relative,
    i.e. ~0.01 mm for an origin 100 mm from the scanner centre, far below a voxel.
    """
    image, ref = source.image, reference.image
    if image.shape != ref.shape:
        problem = f"shape {image.shape}, but {reference.name} has {ref.shape}"
    elif not np.allclose(image.header.get_zooms(), ref.header.get_zooms(), GRID_TOLERANCE, GRID_TOLERANCE):
        problem = (
            f"spacing {_mm(image.header.get_zooms())} mm, but {reference.name} has {_mm(ref.header.get_zooms())} mm"
        )
    elif not np.allclose(image.affine, ref.affine, GRID_TOLERANCE, GRID_TOLERANCE):
        worst = float(np.abs(image.affine - ref.affine).max())
        problem = f"an affine that differs from that of {reference.name} by up to {worst:.3g} mm"
    else:
        return
    raise UserInputError(f"{source.where}: has {problem}")


def check_finite(source: SourceFile) -> None:
    """UserInputError unless every voxel value (as nibabel scales it) is a finite float32 number, |v| <= 3.4e38.

    Integers stored without scaling always are, so their voxels are not read; any other image is checked in
    one pass over its voxels.
    """
    image = source.image
    proxy = cast(ArrayProxy, image.dataobj)
    if np.issubdtype(image.get_data_dtype(), np.integer) and proxy.slope == 1 and proxy.inter == 0:
        return
    values = np.asanyarray(proxy)
    bad = values[~(np.abs(values) <= FLOAT32_MAX)]  # NaN fails every comparison, so it is caught too
    if bad.size:
        n_nan, n_inf = int(np.isnan(bad).sum()), int(np.isinf(bad).sum())
        kinds = {"NaN": n_nan, "Inf": n_inf, "beyond float32's range": bad.size - n_nan - n_inf}
        found = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
        raise UserInputError(
            f"{source.where}: has voxel values that are NaN or Inf in float32 ({found}); "
            f"nnU-Net reads images as float32 and its intensity normalisation needs finite values"
        )


def label_values(source: SourceFile, max_value: int) -> np.ndarray:
    """The label map as an integer array (same shape), or UserInputError if any value is not in 0..max_value."""
    labels = np.asanyarray(source.image.dataobj)
    if not np.issubdtype(labels.dtype, np.integer):
        non_finite = np.count_nonzero(~np.isfinite(labels))
        if non_finite:
            raise UserInputError(
                f"{source.where}: has NaN or Inf label values ({non_finite} voxels); expected integers 0-{max_value}"
            )
        if np.any(labels != np.round(labels)):
            raise UserInputError(f"{source.where}: has non-integer label values; expected integers 0-{max_value}")
    outside = (labels < 0) | (labels > max_value)
    if outside.any():
        found = np.unique(labels[outside])
        shown = ", ".join(f"{v:g}" for v in found[:5]) + (", ..." if found.size > 5 else "")
        raise UserInputError(f"{source.where}: has label values {shown} outside 0-{max_value}")
    return labels.astype(np.intp, copy=False) if labels.dtype.kind == "f" else labels


def _mm(values) -> str:
    return " x ".join(f"{float(v):.4g}" for v in values)
