"""Substitute label maps for forget patches (strategies/ops/substitute_labels.py, and SalUnCRA's): what each
kind guarantees."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from toy import ToyNet, toy_context

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.unlearning.strategies.ops.substitute_labels import (
    permute_foreground,
    random_derangements,
    smooth_random_labels,
    to_scales,
    voxelwise_random_labels,
)
from nnunet_unlearning.unlearning.strategies.salun_cra import SalUnCRA
from nnunet_unlearning.unlearning.strategy import Batch

K = 4
IGNORE = K


def _targets(seed: int = 0, shape=(2, 1, 32, 32, 32), with_ignore: bool = True) -> list[torch.Tensor]:
    """Full-resolution labels plus an anisotropic lower scale (only the last two axes halved)."""
    g = torch.Generator().manual_seed(seed)
    full = torch.randint(0, K, shape, generator=g)
    if with_ignore:
        full[:, :, :3] = IGNORE
    half = F.interpolate(full.float(), size=(shape[2], shape[3] // 2, shape[4] // 2), mode="nearest").long()
    return [full, half]


def _neighbour_agreement(label_map: torch.Tensor) -> float:
    """Fraction of face-adjacent voxel pairs with the same label (spatial autocorrelation)."""
    pairs = [
        (label_map.narrow(a, 1, label_map.shape[a] - 1) == label_map.narrow(a, 0, label_map.shape[a] - 1))
        for a in (2, 3, 4)
    ]
    return float(torch.cat([p.flatten() for p in pairs]).float().mean())


def _check_common(new: list[torch.Tensor], old: list[torch.Tensor]) -> None:
    for n, o in zip(new, old):
        assert n.shape == o.shape and n.dtype == o.dtype
        assert torch.equal(n == IGNORE, o == IGNORE), "ignore voxels must stay ignore, and only they"
        assert int(n[o != IGNORE].min()) >= 0 and int(n[o != IGNORE].max()) < K


def test_to_scales_resamples_each_scale_to_its_own_shape():
    g = torch.Generator().manual_seed(1)
    coarse = torch.randint(0, K, (2, 1, 8, 8, 8), generator=g)
    full = coarse.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)  # (2, 1, 8, 16, 16)
    targets = [torch.zeros_like(full), torch.zeros_like(coarse)]
    targets[1][:, :, 0] = IGNORE
    scaled = to_scales(full, targets, IGNORE)
    assert torch.equal(scaled[0], full)
    assert torch.equal(scaled[1][:, :, 1:], coarse[:, :, 1:])
    assert bool((scaled[1][:, :, 0] == IGNORE).all())


def test_voxelwise_labels_are_uniform_fresh_and_keep_ignore():
    old = _targets()
    g = torch.Generator().manual_seed(0)
    first = voxelwise_random_labels(old, K, IGNORE, g)
    second = voxelwise_random_labels(old, K, IGNORE, g)
    _check_common(first, old)
    labelled = first[0][old[0] != IGNORE]
    shares = torch.bincount(labelled, minlength=K).float() / labelled.numel()
    assert torch.allclose(shares, torch.full((K,), 1 / K), atol=0.02)
    assert float((first[0] != second[0])[old[0] != IGNORE].float().mean()) > 0.6, "not redrawn per call"


def test_smooth_labels_are_far_more_coherent_than_voxelwise_ones():
    old = _targets(with_ignore=False)
    g = torch.Generator().manual_seed(0)
    smooth = smooth_random_labels(old, K, None, (8, 8, 8), g)
    noisy = voxelwise_random_labels(old, K, None, g)
    _check_common(smooth, old)
    assert _neighbour_agreement(noisy[0]) < 0.3  # independent voxels agree by chance: 1/K
    assert _neighbour_agreement(smooth[0]) > 0.85
    assert set(smooth[0].unique().tolist()) == set(range(K))
    larger = smooth_random_labels(old, K, None, (32, 32, 32), g)
    assert _neighbour_agreement(larger[0]) > _neighbour_agreement(smooth[0]), "blob size has no effect"


def test_smooth_labels_keep_ignore_and_follow_the_full_scale():
    old = _targets()
    new = smooth_random_labels(old, K, IGNORE, (4, 8, 8), torch.Generator().manual_seed(3))
    _check_common(new, old)
    expected_half = F.interpolate(new[0].float(), size=old[1].shape[2:], mode="nearest").long()
    keep = old[1] != IGNORE
    assert torch.equal(new[1][keep], expected_half[keep])


def test_derangements_have_no_fixed_point_and_cover_all_derangements():
    perms = random_derangements(400, 3, torch.Generator().manual_seed(0))
    assert bool((perms.sort(dim=1).values == torch.arange(3)).all()), "rows must be permutations"
    assert not bool((perms == torch.arange(3)).any())
    counts = {p: int((perms == torch.tensor(p)).all(dim=1).sum()) for p in [(1, 2, 0), (2, 0, 1)]}
    assert sum(counts.values()) == 400 and min(counts.values()) > 150
    assert torch.equal(random_derangements(2, 1), torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.parametrize("num_classes", [3, 4, 11])
def test_permute_foreground_is_one_derangement_per_patch_across_scales(num_classes):
    g = torch.Generator().manual_seed(num_classes)
    full = torch.randint(0, num_classes, (8, 1, 8, 8, 8), generator=g)
    full[:, :, 0] = num_classes  # ignore label just above the classes
    old = [full, full[:, :, ::2, ::2, ::2]]
    new = permute_foreground(old, num_classes, num_classes, g)
    for patch in range(8):
        mapping = {}
        for n, o in zip(new, old):
            for a, b in zip(o[patch].flatten().tolist(), n[patch].flatten().tolist()):
                assert mapping.setdefault(a, b) == b, "one class became two, or scales disagree"
        assert mapping[0] == 0 and mapping[num_classes] == num_classes, "background / ignore moved"
        assert all(mapping[c] != c for c in range(1, num_classes) if c in mapping), "a class kept its label"


def test_permute_foreground_draws_per_patch_and_per_call():
    g = torch.Generator().manual_seed(0)
    old = [torch.arange(8).repeat(8, 1).reshape(8, 1, 2, 2, 2)]  # every patch holds every class once
    first = permute_foreground(old, 8, None, g)
    second = permute_foreground(old, 8, None, g)
    assert len({tuple(p.flatten().tolist()) for p in first[0]}) > 1, "every patch got the same permutation"
    assert not torch.equal(first[0], second[0]), "not redrawn per call"


def _random_label_world(seed: int) -> tuple[list[torch.Tensor], int, tuple[int, ...], torch.Generator]:
    """Random per-scale label maps (ignore voxels included) over a random number of classes, and a random
    set of fixed (critical) foreground classes that leaves at least two others."""
    g = torch.Generator().manual_seed(seed)
    num_classes = int(torch.randint(3, 12, (1,), generator=g))
    foreground = torch.randperm(num_classes - 1, generator=g) + 1
    fixed = tuple(sorted(foreground[: int(torch.randint(0, num_classes - 2, (1,), generator=g))].tolist()))
    full = torch.randint(0, num_classes + 1, (3, 1, 6, 6, 6), generator=g)  # num_classes itself: ignore
    return [full, full[:, :, ::2, ::2, ::2]], num_classes, fixed, g


def _check_fixed_classes_untouched(
    new: list[torch.Tensor], old: list[torch.Tensor], num_classes: int, fixed: tuple[int, ...]
) -> None:
    for n, o in zip(new, old):
        was_fixed, is_fixed = torch.isin(o, torch.tensor(fixed)), torch.isin(n, torch.tensor(fixed))
        assert torch.equal(is_fixed, was_fixed), "a fixed class was created or removed"
        keep = was_fixed | (o == 0) | (o == num_classes)
        assert torch.equal(n[keep], o[keep]), "a fixed, background or ignore voxel changed"
        moved = n[~keep]
        assert bool((moved != o[~keep]).all()) and bool(((moved >= 1) & (moved < num_classes)).all())


@pytest.mark.parametrize("seed", range(40))
def test_permute_foreground_never_maps_a_class_onto_or_off_a_fixed_class(seed):
    old, num_classes, fixed, g = _random_label_world(seed)
    _check_fixed_classes_untouched(
        permute_foreground(old, num_classes, num_classes, g, fixed=fixed), old, num_classes, fixed
    )


@pytest.mark.parametrize("seed", range(40))
def test_salun_cra_never_gives_a_voxel_a_critical_label_it_did_not_have(seed):
    old, num_classes, critical, g = _random_label_world(seed)
    ctx = toy_context(num_classes=num_classes, ignore_label=num_classes, critical_classes=critical, generator=g)
    forget = Batch(data=torch.zeros(3, 2, 6, 6, 6), target=old, keys=["f1", "f2", "f3"])
    _check_fixed_classes_untouched(SalUnCRA().forget_target(forget, ctx), old, num_classes, critical)


def test_salun_cra_needs_two_non_critical_foreground_classes():
    with pytest.raises(UserInputError, match="SalUnCRA"):
        SalUnCRA().prepare(ToyNet(), toy_context(critical_classes=(2, 3)))  # foreground 1, 2, 3: one healthy
