"""LearnOthers' data view: another subject's labels at the forget case's position, a sequence per worker."""

from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

from nnunet_unlearning.unlearning.other_subject_labels import OtherSubjectLabels, place_in_frame

#: nnU-Net's workers are forked on Linux; forking also keeps these worker processes quick to start.
FORK = multiprocessing.get_context("fork")


def _properties(origin, cropped_shape) -> dict:
    """The two properties place_in_frame reads: the crop box (original grid) and the shape it cut out."""
    return {
        "bbox_used_for_cropping": [[o, o + s] for o, s in zip(origin, cropped_shape)],
        "shape_after_cropping_and_before_resampling": list(cropped_shape),
    }


def _position_code(origin, shape, scale=(1, 1, 1)) -> np.ndarray:
    """A label map ``(1, *shape)`` whose value names the original-grid voxel each voxel came from."""
    grid = np.indices(shape)
    coords = [o + g // s for o, g, s in zip(origin, grid, scale)]
    return (1 + coords[0] + 100 * coords[1] + 10_000 * coords[2])[None].astype(np.int32)


def test_place_in_frame_puts_each_label_where_it_was_in_the_scanner_grid():
    frame_origin, frame_shape = (10, 20, 5), (8, 8, 4)
    seg_origin, seg_shape = (12, 18, 5), (5, 6, 6)
    seg = _position_code(seg_origin, seg_shape)
    out = place_in_frame(seg, _properties(seg_origin, seg_shape), _properties(frame_origin, frame_shape), frame_shape)
    assert out.shape == (1, *frame_shape) and out.dtype == seg.dtype
    expected = _position_code(frame_origin, frame_shape)
    seg_end = np.add(seg_origin, seg_shape)
    for index in np.ndindex(*frame_shape):
        scanner = np.add(frame_origin, index)
        inside = bool(np.all(scanner >= seg_origin) and np.all(scanner < seg_end))
        assert out[(0, *index)] == (expected[(0, *index)] if inside else -1), index


def test_place_in_frame_scales_the_offset_by_the_frame_case_resampling():
    # the frame case was resampled to twice as many voxels along z: one original voxel is two frame voxels
    frame_origin, cropped, frame_shape = (0, 0, 3), (4, 4, 4), (4, 4, 8)
    seg_origin, seg_cropped = (0, 0, 4), (4, 4, 4)
    seg = _position_code(seg_origin, (4, 4, 8), scale=(1, 1, 2))
    out = place_in_frame(seg, _properties(seg_origin, seg_cropped), _properties(frame_origin, cropped), frame_shape)
    assert bool((out[..., :2] == -1).all()), "original slice z=3 lies before the other subject's crop"
    assert np.array_equal(out[..., 2:], _position_code(frame_origin, frame_shape, scale=(1, 1, 2))[..., 2:])


def test_place_in_frame_without_overlap_is_all_outside():
    out = place_in_frame(
        np.ones((1, 4, 4, 4), np.int16),
        _properties((50, 0, 0), (4, 4, 4)),
        _properties((0, 0, 0), (4, 4, 4)),
        (4, 4, 4),
    )
    assert bool((out == -1).all())


class _Cases:
    """A stand-in for an nnU-Net dataset: ``load_case`` returns ``(data, seg, seg_prev, properties)``."""

    def __init__(self, cases: dict[str, tuple[np.ndarray, np.ndarray, dict]]) -> None:
        self._cases = cases
        self.identifiers = sorted(cases)

    def load_case(self, identifier: str):
        data, seg, properties = self._cases[identifier]
        return data, seg, None, properties


SHAPE = (6, 6, 4)


def _case(origin, label: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray, dict]:
    data = np.random.default_rng(label).normal(size=(2, *shape)).astype(np.float32)
    return data, np.full((1, *shape), label, dtype=np.int8), _properties(origin, shape)


FORGET = _Cases({"MRBrainS18_001": _case((3, 3, 0), label=9)})
OTHERS = _Cases({f"MRBrainS18_0{i}0": _case((3 + i, 3, 0), label=i) for i in range(1, 5)})


def _labels(seed: int = 0) -> OtherSubjectLabels:
    return OtherSubjectLabels(FORGET, OTHERS, seed=seed)


def _drawn(view: OtherSubjectLabels, n: int = 24) -> list[int]:
    """The other subject each of ``n`` loads gave the forget case, read off its labels (their own value)."""
    return [int(view.load_case("MRBrainS18_001")[1].max()) for _ in range(n)]


def test_the_other_subject_replaces_only_the_labels_at_the_same_position():
    data, seg, seg_prev, properties = _labels().load_case("MRBrainS18_001")
    own_data, _, own_prev, own_properties = FORGET.load_case("MRBrainS18_001")
    assert data is own_data and seg_prev is own_prev and properties is own_properties
    other = int(seg.max())
    _, other_seg, _, other_properties = OTHERS.load_case(f"MRBrainS18_0{other}0")
    assert np.array_equal(seg, place_in_frame(other_seg, other_properties, properties, data.shape[1:]))
    # other subject i was cropped i voxels further along x: its first i frame slices lie outside its map
    assert bool((seg[:, :other] == -1).all()) and bool((seg[:, other:] == other).all())


def test_never_the_forget_subjects_own_labels_and_every_other_subject_in_turn():
    drawn = _drawn(_labels(), n=200)
    assert 9 not in drawn
    assert set(drawn) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="MRBrainS18_001"):
        OtherSubjectLabels(FORGET, _Cases({**OTHERS._cases, "MRBrainS18_001": _case((3, 3, 0), 9)}))


def _draw_in_worker(view: OtherSubjectLabels, results) -> None:
    results.put((multiprocessing.current_process().name, _drawn(view)))


def _run_workers(view: OtherSubjectLabels, names: list[str | None]) -> dict[str, list[int]]:
    """``view`` handed to one forked worker per name (``None``: multiprocessing's own name), as the
    augmenter hands its dataloader to each worker; returns each worker's draws by its name."""
    results = FORK.Queue()
    workers = [FORK.Process(target=_draw_in_worker, args=(view, results), name=name) for name in names]
    for worker in workers:
        worker.start()
    drawn = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    return drawn


def test_each_worker_draws_its_own_sequence():
    view = _labels(seed=3)
    _drawn(view)  # the parent has drawn: its generator state travels with every copy
    first, second = _run_workers(pickle.loads(pickle.dumps(view)), [None, None]).values()
    assert first != second, "two workers repeat one sequence of other subjects"


def test_a_worker_draws_the_same_sequence_for_the_same_seed_and_a_new_one_for_another():
    parent_drew = _labels(seed=3)
    _drawn(parent_drew)
    again = _run_workers(parent_drew, ["Process-7"])["Process-7"]
    fresh = _run_workers(_labels(seed=3), ["Process-7"])["Process-7"]
    other_seed = _run_workers(_labels(seed=4), ["Process-7"])["Process-7"]
    assert again == fresh, "a worker's draws depend on what its parent drew before starting it"
    assert other_seed != fresh
