"""A dataset view that gives each forget case the label map of a retain subject at the same position.

LearnOthers trains forget images toward another subject's anatomy. nnU-Net stores each case cropped to
its non-zero bounding box and resampled to the configuration's spacing, so "the same position" is found in
the original scanner grid: the other subject's label map is shifted by the difference of the two crop
boxes (converted to the resampled grid) and cropped or padded to the forget case's shape. For datasets
whose subjects share one acquisition grid (MRBrainS18: 240×240×48 at 0.958×0.958×3.0 mm) this places the
other subject's labels exactly where that subject's anatomy was in its own scan.
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Sequence

import numpy as np


def worker_identity() -> int:
    """A number that tells this process apart from the other data workers, the same in every run.

    batchgenerators tells a worker its index only through the dataloader (``set_thread_id``), never the
    dataset, so the process's name stands in for it: ``multiprocessing`` numbers the processes a parent
    starts in creation order (``Process-1``, ``Process-2``, …; the parent itself is ``MainProcess``), which
    is the same in every run that starts its loaders in the same order. CRC-32, not ``hash()``: Python
    salts string hashes per process.
    """
    return zlib.crc32(multiprocessing.current_process().name.encode())


class OtherSubjectLabels:
    """Wraps an nnU-Net dataset of forget cases; ``load_case`` swaps in a random retain subject's labels.

    ``dataset`` holds the forget cases, ``others`` the retain cases (both nnU-Net dataset objects of the
    same configuration, with no case in common). Data, properties (and hence nnU-Net's foreground sampling
    locations) stay the forget case's own; only the segmentation is replaced, by that of an ``others`` case
    drawn uniformly at every call and moved into the forget case's frame (:func:`place_in_frame`).

    Picklable, for nnU-Net's augmentation workers. Each process draws its own sequence of other subjects:
    the generator is (re-)seeded on the first draw in every process from ``seed`` and
    :func:`worker_identity`, so the copies a parent hands to its workers (pickled or forked, generator
    state included) do not repeat one another, and a worker's sequence depends on ``seed`` and the worker
    only, not on what the parent drew before starting it.
    """

    def __init__(self, dataset, others, seed: int = 0) -> None:
        shared = sorted(set(dataset.identifiers) & set(others.identifiers))
        if shared:
            raise ValueError(f"OtherSubjectLabels: cases {shared} are both forget cases and other subjects")
        if not others.identifiers:
            raise ValueError("OtherSubjectLabels: no other subject to take labels from")
        self._dataset = dataset
        self._others = others
        self._seed = seed
        self._rng: np.random.Generator | None = None
        self._rng_process: int | None = None
        self.identifiers: Sequence[str] = dataset.identifiers

    def __getitem__(self, identifier: str):
        return self.load_case(identifier)

    def _generator(self) -> np.random.Generator:
        """This process's generator; a process id other than the one it was seeded in means a new worker."""
        if self._rng is None or self._rng_process != os.getpid():
            self._rng = np.random.default_rng([self._seed, worker_identity()])
            self._rng_process = os.getpid()
        return self._rng

    def draw_other(self) -> str:
        """The identifier of the next other subject in this process's sequence."""
        return self._others.identifiers[self._generator().integers(len(self._others.identifiers))]

    def load_case(self, identifier: str):
        """``(data, seg, seg_prev, properties)`` of forget case ``identifier``, ``seg`` another subject's."""
        data, _, seg_prev, properties = self._dataset.load_case(identifier)
        _, other_seg, _, other_properties = self._others.load_case(self.draw_other())
        seg = place_in_frame(np.asarray(other_seg), other_properties, properties, data.shape[1:])
        return data, seg, seg_prev, properties


def place_in_frame(
    seg: np.ndarray, seg_properties: dict, frame_properties: dict, frame_shape: Sequence[int]
) -> np.ndarray:
    """Move a preprocessed label map ``(1, X, Y, Z)`` into another case's preprocessed frame.

    Both cases' ``bbox_used_for_cropping`` are in original-grid voxels; the offset between them is scaled
    by the resampling factor (original spacing / target spacing) of the frame case. Voxels that fall
    outside the other subject's map are labelled -1, nnU-Net's "outside the crop" value.
    """
    frame_shape = tuple(int(s) for s in frame_shape)
    scale = np.asarray(frame_shape, dtype=float) / np.asarray(
        frame_properties["shape_after_cropping_and_before_resampling"], dtype=float
    )
    frame_origin = np.array([b[0] for b in frame_properties["bbox_used_for_cropping"]], dtype=float)
    seg_origin = np.array([b[0] for b in seg_properties["bbox_used_for_cropping"]], dtype=float)
    offset = np.round((seg_origin - frame_origin) * scale).astype(int)

    out = np.full((seg.shape[0], *frame_shape), -1, dtype=seg.dtype)
    src, dst = [slice(None)], [slice(None)]
    for axis, size in enumerate(frame_shape):
        start = max(offset[axis], 0)
        stop = min(offset[axis] + seg.shape[axis + 1], size)
        if stop <= start:
            return out
        dst.append(slice(start, stop))
        src.append(slice(start - offset[axis], stop - offset[axis]))
    out[tuple(dst)] = seg[tuple(src)]
    return out
