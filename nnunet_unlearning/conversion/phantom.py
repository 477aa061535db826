"""A deterministic synthetic stand-in for the MRBrainS18 release, for machines without the real data.

`write_phantom` writes the release layout the converter reads::

    OUT/README.txt                                 says the data are synthetic
    OUT/training/<id>/pre/{FLAIR,IR,reg_IR,reg_T1,T1}.nii.gz   bias-free ("bias-corrected") images
    OUT/training/<id>/orig/{FLAIR,IR,reg_T1}.nii.gz            the same images with a bias field
    OUT/training/<id>/segm.nii.gz                  official label values 1-8, 9 (infarction) in some subjects

Every image is 240 x 240 x 48 voxels of 0.958 x 0.958 x 3.0 mm in LPS orientation, with the header
convention of the real files (qform code 2, sform code 1, a tilt about the left-right axis). Dtypes are
those of the release: FLAIR and IR uint16, T1 int16, labels uint8. Anatomy is built from ellipsoids in
a head frame (+x left, +y posterior, +z superior, mm) that each subject scales, shifts and turns a little;
intensities follow the tissue means of the real release per channel, so the contrast is learnable.
The same seed gives byte-identical files.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from nnunet_unlearning.errors import UserInputError

SHAPE = (240, 240, 48)
SPACING = (0.958333, 0.958333, 3.0)
PUBLISHED_IDS = ("1", "4", "5", "7", "14", "070", "148")
# The real release has infarctions (label 9) in these subjects; further subjects get one by chance.
_INFARCT_IDS = ("070", "148")
_GRID_CENTRE = (120.0, 118.0, 24.0)  # voxel index of the head-frame origin

# Tissue classes: 0 air, 1-9 the official labels, then the two head layers that are label 0.
_SCALP, _BONE = 10, 11
_N_TISSUES = 12
# Mean intensity per tissue class (air, 1-9, scalp, bone) and noise sd per channel, taken from the
# per-label means of the real release (subject 1, orig/). IR there is stored inverted: air is 2047.
_MEANS = {
    "T1": (0, 138, 204, 209, 150, 57, 45, 160, 245, 80, 220, 15),
    "FLAIR": (0, 172, 173, 153, 285, 80, 50, 195, 184, 225, 160, 15),
    "IR": (2047, 1829, 1863, 1986, 1840, 1636, 1400, 1778, 1925, 1700, 1750, 2000),
}
_NOISE_SD = {"T1": 10.0, "FLAIR": 10.0, "IR": 35.0}
_DTYPES = {"T1": np.int16, "FLAIR": np.uint16, "IR": np.uint16}
# Output files per channel: pre/ holds the bias-free images, orig/ the biased ones (as N4 would undo).
_PRE_FILES = {"FLAIR": ("FLAIR",), "IR": ("IR", "reg_IR"), "T1": ("reg_T1", "T1")}
_ORIG_FILES = {"FLAIR": ("FLAIR",), "IR": ("IR",), "T1": ("reg_T1",)}

_README = """\
SYNTHETIC DATA - NOT MRBrainS18 AND NOT FROM ANY PERSON.

Written by nnunet-unlearning `phantom` (write_phantom, seed={seed}, {n} subjects: {ids}).
It copies the layout, grid (240 x 240 x 48 voxels, 0.958 x 0.958 x 3.0 mm, LPS), dtypes and label
values of the MRBrainS18 training release so that the converter and the whole pipeline can run on a
machine without the real data. The anatomy is made of ellipsoids with noise, bias field and small
white-matter lesions; pre/T1 is a copy of pre/reg_T1 on the same grid (in the real release it is the
original 3D T1). Results on these files say nothing about real brains.
The real release: DataverseNL, doi:10.34894/E0U32Q, under the challenge's research terms.
"""


def subject_ids(n_subjects: int) -> list[str]:
    """Subject ids of a phantom with `n_subjects` subjects: the published ids first, then 201, 202, ..."""
    extra = [str(200 + i) for i in range(1, n_subjects - len(PUBLISHED_IDS) + 1)]
    return [*PUBLISHED_IDS, *extra][:n_subjects]


def write_phantom(out: Path, n_subjects: int = 7, seed: int = 0) -> list[str]:
    """Write the synthetic release to `out` (a new or empty folder) and return the subject ids.

    The release is written to a temporary folder beside `out` and renamed into place, so a failure
    leaves nothing behind. Raises UserInputError if `out` exists and is not empty or `n_subjects` < 1.
    """
    out = Path(out)
    if n_subjects < 1:
        raise UserInputError(f"phantom: --subjects must be at least 1, got {n_subjects}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"{out}: exists and is not an empty folder; choose a new output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = subject_ids(n_subjects)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for index, subject in enumerate(ids):
            _write_subject(tmp / "training" / subject, subject, np.random.default_rng([seed, index]))
        (tmp / "README.txt").write_text(_README.format(seed=seed, n=n_subjects, ids=" ".join(ids)))
        tmp.chmod(0o755)  # mkdtemp makes it private; the release is an ordinary folder
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ids


def _write_subject(folder: Path, subject: str, rng: np.random.Generator) -> None:
    """Generate one subject and write its nine files."""
    tissue = _anatomy(subject, rng)
    labels = np.where(tissue < _SCALP, tissue, 0).astype(np.uint8)
    affine = _affine(rng)
    pre, orig = _images(tissue, rng)
    for sub, files, images in (("pre", _PRE_FILES, pre), ("orig", _ORIG_FILES, orig)):
        (folder / sub).mkdir(parents=True)
        for channel, names in files.items():
            data = _nifti_gz(images[channel], affine)
            for name in names:
                (folder / sub / f"{name}.nii.gz").write_bytes(data)
    (folder / "segm.nii.gz").write_bytes(_nifti_gz(labels, affine))


def _affine(rng: np.random.Generator) -> np.ndarray:
    """Voxel-to-world (RAS mm) affine in the real files' convention: LPS axes, tilted about left-right."""
    tilt = np.deg2rad(rng.uniform(5.0, 20.0))
    cos, sin = np.cos(tilt), np.sin(tilt)
    direction = np.array([[-1.0, 0.0, 0.0], [0.0, -cos, -sin], [0.0, -sin, cos]])
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(SPACING)
    affine[:3, 3] = np.array([110.4, 114.3, -14.3]) + rng.uniform(-5.0, 5.0, 3)
    return affine


def _nifti_gz(array: np.ndarray, affine: np.ndarray) -> bytes:
    """Gzipped NIfTI-1 bytes with both qform (code 2) and sform (code 1) set, as in the real files.

    Compressing with mtime 0 (instead of saving through a file name) keeps the bytes deterministic.
    """
    image = nib.Nifti1Image(array, None)
    image.set_qform(affine, code=2)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


def _head_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head-frame coordinates (mm) of every voxel, each (240, 240, 48) float32.

    Each subject's head is shifted by up to 4 mm and turned by up to 5 degrees about z and x.
    """
    axes = [
        (np.arange(n, dtype=np.float32) - c - shift / s) * s
        for n, c, s, shift in zip(SHAPE, _GRID_CENTRE, SPACING, rng.uniform(-4.0, 4.0, 3))
    ]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    yaw, pitch = np.deg2rad(rng.uniform(-5.0, 5.0, 2))
    x, y = np.cos(yaw) * x - np.sin(yaw) * y, np.sin(yaw) * x + np.cos(yaw) * y
    y, z = np.cos(pitch) * y - np.sin(pitch) * z, np.sin(pitch) * y + np.cos(pitch) * z
    frame = [np.broadcast_to(a, SHAPE).astype(np.float32) for a in (x, y, z)]
    return frame[0], frame[1], frame[2]


def _smooth_noise(rng: np.random.Generator, coarse: tuple[int, int, int]) -> np.ndarray:
    """A smooth random field on the full grid (unit sd), from noise on a `coarse` grid upsampled linearly."""
    field = ndimage.zoom(
        rng.standard_normal(coarse).astype(np.float32),
        [n / c for n, c in zip(SHAPE, coarse)],
        order=1,
        grid_mode=True,
        mode="nearest",
    )
    return field / field.std()


class _Head:
    """One subject's head frame: voxel coordinates (mm) and a head-size scale per axis."""

    def __init__(self, rng: np.random.Generator):
        self.x, self.y, self.z = _head_frame(rng)
        self.scale = rng.uniform(0.92, 1.06, 3)

    def r2(self, centre: tuple[float, float, float], radii: tuple[float, float, float]) -> np.ndarray:
        """(x-c)²/r² summed over axes: < 1 inside the ellipsoid; centre and radii in mm before scaling."""
        c = np.asarray(centre) * self.scale
        r = np.asarray(radii) * self.scale
        return ((self.x - c[0]) / r[0]) ** 2 + ((self.y - c[1]) / r[1]) ** 2 + ((self.z - c[2]) / r[2]) ** 2


def _anatomy(subject: str, rng: np.random.Generator) -> np.ndarray:
    """Tissue class per voxel, (240, 240, 48) uint8: 0 air, 1-9 official labels, 10 scalp, 11 bone."""
    head = _Head(rng)
    atrophy = rng.uniform(0.0, 1.0)
    tissue = np.zeros(SHAPE, np.uint8)
    intracranial = head.r2((0, 2, 4), (67, 88, 62)) < 1
    tissue[head.r2((0, 2, 4), (79, 100, 74)) < 1] = _SCALP
    tissue[head.r2((0, 2, 4), (74, 95, 69)) < 1] = _BONE
    tissue[intracranial] = 5

    cerebellum = head.r2((0, 48, -38), (54, 32, 26))
    stem = head.r2((0, 20, -50), (13, 13, 36))
    shrink = 1.0 - 0.07 * atrophy
    cerebrum_r2 = head.r2((0, 0, 8), (63 * shrink, 84 * shrink, 56 * shrink))
    # Gyri: the outer surface undulates by a few mm; sulci are CSF sheets along the zero set of a
    # second smooth field, reaching ~20 mm deep; the falx splits the hemispheres above the callosum.
    surface = 1.0 + 0.035 * _smooth_noise(rng, (24, 24, 10))
    depth_mm = (1.0 - np.sqrt(cerebrum_r2) / surface) * 60.0
    sulci = (np.abs(_smooth_noise(rng, (28, 28, 12))) < 0.16) & (depth_mm < 20.0)
    falx = (np.abs(head.x) < 1.6) & ((head.z > 22) | (np.abs(head.y) > 45))
    cerebrum = (depth_mm > 0) & ~sulci & ~falx & (cerebellum > 1.25**2) & (stem > 1.15**2) & intracranial
    thickness_mm = rng.uniform(3.4, 4.2) - 0.4 * atrophy
    cortex = ndimage.distance_transform_edt(cerebrum, sampling=SPACING) <= thickness_mm
    tissue[cerebrum] = 3
    tissue[cerebrum & cortex] = 1
    tissue[(cerebellum < 1) & intracranial] = 7
    tissue[(stem < 1.4**2) & (tissue >= _SCALP)] = 5  # CSF around the stem where it leaves the skull
    tissue[stem < 1] = 8

    white = tissue == 3
    for side in (-1, 1):
        tissue[white & (head.r2((21 * side, -10, 0), (12, 20, 13)) < 1)] = 2
    ventricle_size = 0.8 + 0.8 * atrophy
    ventricles_r2 = np.minimum(
        *(head.r2((8 * side, -6, 12), (7 * ventricle_size, 30, 12 * ventricle_size)) for side in (-1, 1))
    )
    tissue[cerebrum & (ventricles_r2 < 1)] = 6

    white = tissue == 3
    _add_lesions(tissue, white, white & (ventricles_r2 < 2.5**2), head, rng)
    if subject in _INFARCT_IDS or (subject not in PUBLISHED_IDS and rng.uniform() < 0.3):
        _add_infarct(tissue, cerebrum & (depth_mm > 3) & (depth_mm < 25), head, rng)
    return tissue


def _add_lesions(
    tissue: np.ndarray, white: np.ndarray, periventricular: np.ndarray, head: _Head, rng: np.random.Generator
) -> None:
    """White-matter lesions (label 4): 2 to 120 ellipsoids of 1.5-7 mm radii, most beside the ventricles.

    One draw, the lesion load, sets both their number and their size.
    """
    load = rng.uniform()
    n_lesions = round(2 * 60**load)
    pools = [np.flatnonzero(periventricular), np.flatnonzero(white)]
    for _ in range(n_lesions):
        pool = pools[0] if rng.uniform() < 0.7 and pools[0].size else pools[1]
        centre = np.unravel_index(pool[rng.integers(pool.size)], SHAPE)
        radii = rng.uniform(1.5, 2.5 + 4.5 * load, 3)
        _paint_blob(tissue, white, centre, radii, head, 4)


def _add_infarct(tissue: np.ndarray, region: np.ndarray, head: _Head, rng: np.random.Generator) -> None:
    """One infarction (label 9): an ellipsoid of 7-13 mm radii in the cortex and white matter below it."""
    candidates = np.flatnonzero(region)
    centre = np.unravel_index(candidates[rng.integers(candidates.size)], SHAPE)
    _paint_blob(tissue, np.isin(tissue, (1, 3, 4)), centre, rng.uniform(7.0, 13.0, 3), head, 9)


def _paint_blob(
    tissue: np.ndarray, allowed: np.ndarray, centre: tuple[int, ...], radii_mm: np.ndarray, head: _Head, value: int
) -> None:
    """Set `value` where an ellipsoid around voxel `centre` (radii in mm) meets `allowed`, in a local box."""
    half = np.ceil(radii_mm / np.asarray(SPACING)).astype(int)
    box = tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(centre, half))
    inside = sum(((axis[box] - axis[centre]) / r) ** 2 for axis, r in zip((head.x, head.y, head.z), radii_mm)) < 1
    tissue[box][inside & allowed[box]] = value


def _images(tissue: np.ndarray, rng: np.random.Generator) -> tuple[dict, dict]:
    """Bias-free (pre) and biased (orig) images per channel, in the channel's release dtype.

    Per subject: a gain per channel, a jitter of each tissue mean, a shared anatomical texture,
    partial-volume blur, Gaussian noise inside the head (air stays constant, as in the real files)
    and a smooth multiplicative bias field of 10-25 % for orig/.
    """
    head = tissue > 0
    texture = 1.0 + 0.03 * _smooth_noise(rng, (60, 60, 24))
    bias = np.exp(rng.uniform(0.1, 0.25) * _smooth_noise(rng, (3, 3, 2)))
    pre, orig = {}, {}
    for channel, means in _MEANS.items():
        lut = np.asarray(means, np.float32) * rng.uniform(0.85, 1.15)
        lut[1:] *= rng.uniform(0.96, 1.04, _N_TISSUES - 1)
        lut[0] = means[0]  # air is a fixed fill value in the real files
        clean = ndimage.gaussian_filter(lut[tissue] * texture, sigma=(0.6, 0.6, 0.2))
        noisy = np.where(head, clean + _NOISE_SD[channel] * rng.standard_normal(SHAPE, np.float32), lut[0])
        info = np.iinfo(_DTYPES[channel])
        pre[channel] = np.clip(np.rint(noisy), info.min, info.max).astype(_DTYPES[channel])
        biased = np.where(head, noisy * bias, noisy)
        orig[channel] = np.clip(np.rint(biased), info.min, info.max).astype(_DTYPES[channel])
    return pre, orig
