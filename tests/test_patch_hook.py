"""The evaluation hook on fixed patches (`evaluation.patch_hook`), on synthetic cases and a tiny network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunet_unlearning.evaluation.kept_scores import KeptScores
from nnunet_unlearning.evaluation.patch_hook import PatchHook, pad_to

PATCH = (4, 6, 6)
CLASSES = 3
IGNORE = 3


class _Dataset:
    """nnU-Net's dataset interface: ``load_case`` -> (data (C, X, Y, Z), seg (1, X, Y, Z), None, None).

    The image is the label map one-hot encoded (channel c = label c), so a network passing its input through
    segments perfectly."""

    def __init__(self, shapes: dict[str, tuple[int, int, int]]) -> None:
        self.seg = {}
        for case, shape in shapes.items():
            seg = np.random.default_rng(ord(case)).integers(0, CLASSES, shape).astype(np.int16)
            seg[0] = -1  # outside nnU-Net's crop
            seg[1, 0, 0] = IGNORE
            self.seg[case] = seg
        self.loads: list[str] = []

    def load_case(self, case: str):
        self.loads.append(case)
        seg = self.seg[case]
        data = np.stack([(seg == c).astype(np.float32) for c in range(CLASSES)])
        return data, seg[None], None, None


class _PassThrough(torch.nn.Module):
    """Logits 10 × the input (perfect on `_Dataset`), or their negation (always wrong) when ``wrong``."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(-10.0 if wrong else 10.0))
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        assert not self.training, "the patch hook predicts in eval mode"
        return self.scale * x


def _hook(dataset: _Dataset, n: int = 3, batch: int = 2) -> PatchHook:
    sets = {"forget": ["a"], "retain": ["b"], "heldout": ["c"]}
    return PatchHook(dataset, sets, [1, 2], IGNORE, [1.0, 1.0, 1.0], [2], None,
                     patch_size=PATCH, patches_per_case=n, batch_size=batch)  # fmt: skip


def test_each_case_is_scored_on_fixed_patches_predicted_in_batches():
    dataset = _Dataset({"a": (8, 10, 12), "b": (6, 9, 9), "c": (3, 5, 7)})  # c: smaller than a patch
    hook = _hook(dataset)
    network = _PassThrough()
    network.train()
    evaluation = hook.evaluate(network, "check", 1)
    assert network.training  # its mode restored
    # three patches per case in batches of two: 2 + 1 per case
    assert network.calls == [(2, CLASSES, *PATCH), (1, CLASSES, *PATCH)] * 3
    assert all(evaluation.cases[case].mean("dice") == pytest.approx(1.0) for case in "abc")
    assert evaluation.sets["forget"]["dice"] == pytest.approx(1.0) and evaluation.sets["forget"]["n_cases"] == 1
    assert evaluation.cases["a"].n_valid <= 3 * int(np.prod(PATCH))  # pooled voxels of 3 patches, none ignored
    # the patches are drawn once: a second evaluation loads nothing and sees the same voxels
    loads = list(dataset.loads)
    wrong = hook.evaluate(_PassThrough(wrong=True), "check", 2)
    assert dataset.loads == loads
    assert {c: wrong.cases[c].n_valid for c in "abc"} == {c: evaluation.cases[c].n_valid for c in "abc"}
    assert all(wrong.cases[case].mean("dice") == pytest.approx(0.0) for case in "abc")
    assert wrong.membership["a"]["loss"] > evaluation.membership["a"]["loss"]


def test_patches_centre_on_labelled_voxels_and_stay_inside_the_padded_case():
    dataset = _Dataset({"a": (8, 10, 12), "b": (6, 9, 9), "c": (3, 5, 7)})
    hook = _hook(dataset, n=5)
    for case in "abc":
        images, truth = hook.patches(case)
        assert images.shape == (5, CLASSES, *PATCH) and truth.shape == (5, *PATCH)
        assert images.dtype == np.float32 and truth.dtype == np.int16
        assert ((truth > 0) & (truth != IGNORE)).reshape(5, -1).any(axis=1).all()
    # the draw depends on the case, not on the order the cases are visited
    again = _hook(_Dataset({"c": (3, 5, 7), "b": (6, 9, 9), "a": (8, 10, 12)}), n=5)
    assert all(np.array_equal(again.patches(c)[1], hook.patches(c)[1]) for c in "cba")


def test_padding_marks_the_added_voxels_unscored():
    data, seg = np.ones((2, 3, 5, 7), np.float32), np.zeros((3, 5, 7), np.int16)
    padded, labels = pad_to(data, seg, PATCH)
    assert padded.shape == (2, 4, 6, 7) and labels.shape == (4, 6, 7)
    assert (labels[3] == -1).all() and (labels[:, 5] == -1).all() and (labels[:3, :5] == 0).all()
    assert (padded[:, 3] == 0).all() and (padded[:, :3, :5] == 1).all()
    assert pad_to(data, seg, (3, 5, 7))[1] is seg


def test_patch_scores_are_kept_apart_from_whole_volume_scores_and_reused_exactly(tmp_path):
    """Check 0 scores the original on patches: a later request against it reuses them, bit for bit, and only
    under the same patches and batch; whole-volume scores of the same case never stand in for them."""
    dataset = _Dataset({"a": (8, 10, 12), "b": (6, 9, 9), "c": (3, 5, 7)})
    kept = KeptScores(tmp_path, "0" * 64, tmp_path)
    first = _hook(dataset).evaluate(_PassThrough(), "start", 0, kept=kept)
    assert first.reused == []
    hook, network = _hook(dataset), _PassThrough()
    again = hook.evaluate(network, "start", 0, kept=KeptScores(tmp_path, "0" * 64, tmp_path))
    assert network.calls == [] and again.reused == ["a", "b", "c"]
    assert {c: again.cases[c].to_dict() for c in "abc"} == {c: first.cases[c].to_dict() for c in "abc"}
    assert again.membership == first.membership
    variant = hook.kept_variant("fp32")
    assert variant != "fp32" and KeptScores(tmp_path, "0" * 64, tmp_path).get("a", "fp32") is None
    for other in (_hook(dataset, n=4), _hook(dataset, batch=3)):
        assert other.kept_variant("fp32") != variant
        network = _PassThrough()
        assert other.evaluate(network, "start", 0, kept=KeptScores(tmp_path, "0" * 64, tmp_path)).reused == []
        assert network.calls


def test_a_patch_hook_needs_patches_and_batches():
    with pytest.raises(ValueError, match="must be ≥ 1"):
        PatchHook(None, {}, [1], None, [1.0] * 3, [], None, patch_size=PATCH, patches_per_case=0, batch_size=1)
