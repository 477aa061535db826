"""Mirroring augmentation along the axes a plans configuration names (``mirror_axes``), e.g. left-right only.

nnU-Net mirrors every 3D training patch along all three axes, and stores the same axes as the ones test-time
mirroring may use. A head is close to symmetric left to right, not head to foot or front to back: a mirrored
patch along those axes shows anatomy that never occurs, which a short schedule pays for (docs/benchmarks.md,
"Mirroring left-right only"). ``plan-med3d --mirror left-right`` writes the images' left-right axis into the
configuration (:func:`left_right_axis`, from the geometry nnU-Net's image reader stored for every
preprocessed case); :class:`PlannedMirroringMixin` makes a trainer mirror along the planned axes only. Every
trainer of ours mixes it in (the Med3D originals, the retrain oracle, the unlearning runs), so all the models
of one unlearning study augment alike; nnU-Net's own trainers ignore the key.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_unlearning.errors import UserInputError

#: The plans configuration's key: the axes (preprocessed order) training may mirror along.
PLANS_KEY = "mirror_axes"
#: How much of a voxel axis' direction must lie along the patient's left-right axis for it to be that axis:
#: cos 30°. Mirroring along a voxel axis tilted further from left-right would show a head no scan shows, and
#: near 45° two axes are equally (un)suited.
MIN_ALIGNMENT = 0.866


def _index_directions(properties: dict[str, Any]) -> np.ndarray | None:
    """(3, 3) array whose column i is the unit direction, in patient coordinates (x: left-right in both
    SimpleITK's LPS and nibabel's RAS), of the reader's voxel index axis i; None when the reader kept none."""
    if "sitk_stuff" in properties:
        direction = np.asarray(properties["sitk_stuff"]["direction"], dtype=float)
        if direction.size == 16:  # a 4D file (channels along the 4th axis, which nnU-Net puts first): x, y, z
            return direction.reshape(4, 4)[:3, :3]
        return direction.reshape(3, 3) if direction.size == 9 else None
    if "nibabel_stuff" in properties:
        stuff = properties["nibabel_stuff"]
        affine = np.asarray(stuff.get("reoriented_affine", stuff["original_affine"]), dtype=float)[:3, :3]
        return affine / np.linalg.norm(affine, axis=0)
    return None


def case_left_right_axis(properties: dict[str, Any], transpose_forward: Sequence[int], case: str) -> int:
    """The preprocessed axis (nnU-Net's order after ``transpose_forward``) along which ``case`` runs left to
    right. Both readers index (x, y, z) and hand nnU-Net the array as (z, y, x), so reader axis i is array axis
    2 - i. Raises :class:`UserInputError` (naming the case) when the geometry is missing or no voxel axis lies
    within 30° of left-right."""
    directions = _index_directions(properties)
    if directions is None:
        raise UserInputError(
            f"{case}: its preprocessed properties carry no 3D orientation (image reader without one); use --mirror all"
        )
    alignment = np.abs(directions[0])
    reader_axis = int(np.argmax(alignment))
    if alignment[reader_axis] < MIN_ALIGNMENT:
        off = float(np.degrees(np.arccos(alignment[reader_axis])))
        raise UserInputError(
            f"{case}: no voxel axis runs left to right (the closest is {off:.0f}° off, more than 30°); use --mirror all"
        )
    return list(transpose_forward).index(2 - reader_axis)


def left_right_axis(preprocessed: Path, transpose_forward: Sequence[int]) -> int:
    """The left-right axis shared by every case preprocessed into ``preprocessed`` (nnU-Net's
    ``<dataset>/<data_identifier>`` folder, one ``<case>.pkl`` of properties per case).

    Raises :class:`UserInputError` when the folder has no cases or the cases disagree (mixed orientations:
    nnU-Net does not reorient, so the same axis is not left-right in every case).
    """
    files = sorted(Path(preprocessed).glob("*.pkl"))
    if not files:
        raise UserInputError(f"{preprocessed}: no preprocessed cases (run nnUNetv2_preprocess first)")
    axes: dict[int, str] = {}
    for path in files:
        with path.open("rb") as handle:
            properties = pickle.load(handle)  # nnU-Net's own file, written by its preprocessing
        axes.setdefault(case_left_right_axis(properties, transpose_forward, path.stem), path.stem)
    if len(axes) > 1:
        found = ", ".join(f"axis {axis} in {case}" for axis, case in sorted(axes.items()))
        raise UserInputError(
            f"{preprocessed}: the cases run left to right along different axes ({found}); reorient the images "
            "alike or use --mirror all"
        )
    return next(iter(axes))


def planned_mirroring(configuration: Mapping[str, Any]) -> str:
    """How our trainers mirror under a plans configuration, in words for logs and reports."""
    axes = configuration.get(PLANS_KEY)
    if axes is None:
        return "nnU-Net's, along every axis"
    return f"along axis {', '.join(str(a) for a in axes)} only (the plans' {PLANS_KEY})"


class PlannedMirroringMixin:
    """Mixed into an nnU-Net trainer (before it): mirror along the configuration's ``mirror_axes`` when the
    plans name them (nnU-Net's choice otherwise). nnU-Net saves the axes in the checkpoint as the ones
    ``nnUNetv2_predict``'s test-time mirroring may use, so prediction follows them too."""

    configuration_manager: Any
    inference_allowed_mirroring_axes: tuple[int, ...] | None

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
        rotation, dummy_2d, initial_patch_size, mirror_axes = (
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # type: ignore[misc]
        )
        planned = self.configuration_manager.configuration.get(PLANS_KEY)
        if planned is not None:
            mirror_axes = tuple(int(axis) for axis in planned)
            self.inference_allowed_mirroring_axes = mirror_axes
        return rotation, dummy_2d, initial_patch_size, mirror_axes
