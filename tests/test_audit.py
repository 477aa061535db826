"""The membership-inference audit: features, attack and bootstrap on synthetic arrays; the command end to end."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from nnunet_unlearning.artifacts import AUDIT_FILE, AUDIT_TABLE, CERTIFICATE_JSON, REQUEST_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.audit import audit_models, run_audit
from nnunet_unlearning.evaluation.audit_attack import auc, membership_attack, weighted_auc
from nnunet_unlearning.evaluation.audit_features import (
    FEATURES,
    case_rng,
    clip_patch_size,
    patch_features,
    sample_patches,
    voxel_maps,
)
from nnunet_unlearning.evidence.audit_table import audit_table, write_audit_evidence
from nnunet_unlearning.evidence.certificate import verify_certificate
from nnunet_unlearning.files import sha256_file
from nnunet_unlearning.request import UnlearningRequest

# --- features ------------------------------------------------------------------------------------------------


def test_patches_are_reproducible_inside_the_volume_and_on_labelled_voxels():
    valid = np.zeros((6, 20, 30), bool)
    valid[2:4, 5:9, 20:28] = True
    size = (4, 8, 8)
    origins = sample_patches(valid, size, 50, case_rng(0, "MRBrainS18_1"))
    assert origins.shape == (50, 3)
    assert np.array_equal(origins, sample_patches(valid, size, 50, case_rng(0, "MRBrainS18_1")))
    assert not np.array_equal(origins, sample_patches(valid, size, 50, case_rng(0, "MRBrainS18_4")))
    assert not np.array_equal(origins, sample_patches(valid, size, 50, case_rng(1, "MRBrainS18_1")))
    assert (origins >= 0).all() and (origins + size <= valid.shape).all()
    for o in origins:
        assert valid[o[0] : o[0] + 4, o[1] : o[1] + 8, o[2] : o[2] + 8].any()
    # a patch larger than the volume is clipped to it
    assert clip_patch_size((20, 8, 50), valid.shape) == (6, 8, 30)


def test_voxel_maps_loss_confidence_entropy():
    logits = torch.zeros(3, 1, 2, 2)
    logits[:, 0, 1, :] = torch.tensor([30.0, 0.0, 0.0])[:, None]  # second row: class 0 almost surely
    truth = np.array([[[2, 0], [0, 1]]])
    valid = np.array([[[True, True], [True, False]]])
    loss, confidence, entropy = voxel_maps(logits, truth, valid)
    assert loss[0, 0] == pytest.approx([np.log(3), np.log(3)], rel=1e-6)  # uniform prediction
    assert confidence[0, 0] == pytest.approx([1 / 3, 1 / 3], rel=1e-6)
    assert entropy[0, 0] == pytest.approx([np.log(3), np.log(3)], rel=1e-6)
    assert loss[0, 1, 0] == pytest.approx(0.0, abs=1e-6) and confidence[0, 1, 0] == pytest.approx(1.0)
    assert entropy[0, 1, 0] == pytest.approx(0.0, abs=1e-6)
    assert loss[0, 1, 1] == confidence[0, 1, 1] == entropy[0, 1, 1] == 0  # not valid


def test_patch_features_are_means_and_stds_over_valid_voxels():
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(3, 4, 6, 6)).astype(np.float32)
    valid = rng.random((4, 6, 6)) > 0.3
    origins = np.array([[0, 0, 0], [2, 3, 1]])
    features = patch_features(maps, valid, origins, (2, 3, 4))
    assert features.shape == (2, len(FEATURES))
    window = (slice(2, 4), slice(3, 6), slice(1, 5))
    values = maps[(slice(None), *window)][:, valid[window]].astype(np.float64)
    expected = np.stack([values.mean(1), values.std(1)], axis=1).ravel()
    assert features[1] == pytest.approx(expected, rel=1e-12)


# --- attack and bootstrap ----------------------------------------------------------------------------------------


def test_auc_equals_scikit_learn_with_ties_and_bootstrap_weights_equal_resampling():
    rng = np.random.default_rng(0)
    positive = rng.integers(0, 5, 40).astype(float)  # many ties
    negative = rng.integers(0, 4, 30).astype(float)
    labels = np.r_[np.ones(40), np.zeros(30)]
    assert auc(positive, negative) == pytest.approx(roc_auc_score(labels, np.r_[positive, negative]), abs=1e-12)
    take_p, take_n = rng.integers(0, 40, 40), rng.integers(0, 30, 30)
    w_pos = np.bincount(take_p, minlength=40)[None].astype(float)
    w_neg = np.bincount(take_n, minlength=30)[None].astype(float)
    expected = auc(positive[take_p], negative[take_n])
    assert weighted_auc(positive, negative, w_pos, w_neg)[0] == pytest.approx(expected, abs=1e-12)


def _features(rng, loss: float, cases: list[str], n: int = 40) -> dict[str, np.ndarray]:
    """Per case, n patch-feature rows whose loss mean is around ``loss`` (other features noise)."""
    out = {}
    for case in cases:
        rows = rng.normal(size=(n, len(FEATURES)))
        rows[:, 0] += loss
        out[case] = rows
    return out


def test_attack_calls_low_loss_patches_members_and_high_loss_patches_nonmembers():
    rng = np.random.default_rng(1)
    members = _features(rng, 0.0, ["r1", "r2", "r3", "r4"])
    nonmembers = _features(rng, 3.0, ["h1", "h2"])
    like_members, like_nonmembers = _features(rng, 0.0, ["f"]), _features(rng, 3.0, ["f"])
    remembered = membership_attack(members, nonmembers, like_members, bootstrap=200, seed=0)
    forgotten = membership_attack(members, nonmembers, like_nonmembers, bootstrap=200, seed=0)

    assert remembered["attack_auc"]["value"] > 0.9 and forgotten["attack_auc"]["value"] > 0.9
    assert remembered["mia_efficacy"]["value"] < 0.2 and remembered["auc_forget_vs_heldout"]["value"] > 0.9
    assert forgotten["mia_efficacy"]["value"] > 0.8
    assert forgotten["heldout_nonmember_rate"]["value"] > 0.8
    low, high = forgotten["auc_forget_vs_heldout"]["ci95"]
    assert low < 0.5 < high  # forget patches look like held-out ones
    for result in (remembered, forgotten):
        for estimate in result.values():
            low, high = estimate["ci95"]
            assert 0 <= low <= high <= 1
    # fixed seeds: the same call gives the same numbers, another seed other intervals
    assert remembered == membership_attack(members, nonmembers, like_members, bootstrap=200, seed=0)
    reseeded = membership_attack(members, nonmembers, like_members, bootstrap=200, seed=1)
    assert reseeded["attack_auc"]["ci95"] != remembered["attack_auc"]["ci95"]


def test_identical_distributions_give_auc_near_half_with_an_interval_covering_it():
    rng = np.random.default_rng(2)
    result = membership_attack(
        _features(rng, 0.0, ["r1", "r2", "r3"], 60),
        _features(rng, 0.0, ["h1", "h2"], 60),
        _features(rng, 0.0, ["f1"], 60),
        bootstrap=500,
        seed=0,
    )
    for key in ("attack_auc", "auc_forget_vs_heldout"):
        low, high = result[key]["ci95"]
        assert low < 0.5 < high and abs(result[key]["value"] - 0.5) < 0.15


def test_attack_needs_two_cases_of_each_kind_and_bootstrap_zero_gives_no_interval():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least 2 member and 2 non-member cases"):
        membership_attack(_features(rng, 0, ["r1", "r2"]), _features(rng, 1, ["h1"]), _features(rng, 0, ["f"]))
    result = membership_attack(
        _features(rng, 0, ["r1", "r2"]), _features(rng, 1, ["h1", "h2"]), _features(rng, 0, ["f"]), bootstrap=0
    )
    assert all(e["ci95"] is None for e in result.values())


# --- end to end on the shared nnU-Net world -------------------------------------------------------------------


def _folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_audit_of_original_unlearned_and_retrained_models(
    request_world, finished_run_copies, forget_request_file, tmp_path
):
    request = UnlearningRequest.from_file(forget_request_file)
    original = Path(request.original.results_folder)
    before = _folder_digest(original.parent)
    noisy, retrain = finished_run_copies["NoisyLabel"], finished_run_copies["Retrain"]

    certified = sha256_file(noisy / CERTIFICATE_JSON)
    path = run_audit([noisy, retrain], patches_per_case=16, bootstrap=50, seed=0)

    # measuring writes the audit only: its table and the certificates that quote it are the evidence's step
    assert path == noisy / AUDIT_FILE and not (noisy / AUDIT_TABLE).exists()
    assert sha256_file(noisy / CERTIFICATE_JSON) == certified
    assert write_audit_evidence(path) == noisy / AUDIT_TABLE and (noisy / AUDIT_TABLE).is_file()
    assert _folder_digest(original.parent) == before  # the original model's files are untouched
    audit = json.loads(path.read_text())
    assert audit["model"] == "nnUNetTrainerUnlearnNoisyLabel"
    assert list(audit["models"]) == ["original", "nnUNetTrainerUnlearnNoisyLabel", "retrain"]
    assert audit["forget"] == list(request.forget) and audit["request_id"] == request.request_id
    copy = json.loads((retrain / AUDIT_FILE).read_text())
    assert copy["model"] == "retrain" and copy["models"] == audit["models"]
    # the unlearning run's certificate was written again: it pins the new audit and still verifies
    certificate = json.loads((noisy / CERTIFICATE_JSON).read_text())
    assert certificate["files"]["audit"]["sha256"] == sha256_file(path)
    assert verify_certificate(noisy).ok
    for label, model in audit["models"].items():
        sets = ("retain", "heldout", "forget")
        assert model["n_patches"] == {name: 16 * len(getattr(request, name)) for name in sets}
        for key in ("mia_efficacy", "auc_forget_vs_heldout", "attack_auc", "heldout_nonmember_rate"):
            low, high = model[key]["ci95"]
            assert 0 <= low <= high <= 1 and 0 <= model[key]["value"] <= 1, (label, key)
        assert model["gap_to_retrain"]["mia_efficacy"] == pytest.approx(
            model["mia_efficacy"]["value"] - audit["models"]["retrain"]["mia_efficacy"]["value"]
        )
    assert audit["models"]["retrain"]["gap_to_retrain"] == {"mia_efficacy": 0.0, "auc_forget_vs_heldout": 0.0}
    assert audit["models"]["original"]["checkpoint_sha256"] == request.original.checkpoint_sha256
    # models differ, so their features differ; the patches are the same, so the counts are too
    losses = {label: m["feature_means"]["forget"]["loss_mean"] for label, m in audit["models"].items()}
    assert len(set(losses.values())) == 3

    # reproducible: the same seed gives the same estimates, here for the retrain oracle alone (under another
    # label, so there is no oracle to compare with)
    again = audit_models({"oracle": retrain}, request, patches_per_case=16, bootstrap=50, seed=0)
    keep = ("mia_efficacy", "auc_forget_vs_heldout", "attack_auc", "heldout_nonmember_rate", "feature_means")
    assert {k: again["models"]["oracle"][k] for k in keep} == {k: audit["models"]["retrain"][k] for k in keep}
    assert again["models"]["oracle"]["gap_to_retrain"] is None
    assert any(line.startswith("| oracle |") and "| n/a |" in line for line in audit_table(again).splitlines())


def _fake_run(root: Path, like: Path, with_checkpoint: bool = True) -> Path:
    """A fold folder with nnU-Net's plans and dataset.json copied from ``like`` (a real run) but no request."""
    folder = root / "Dataset501_MRBrainS18" / "nnUNetTrainerFake__nnUNetPlans__3d_fullres" / "fold_0"
    folder.mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copy(like.parent / name, folder.parent / name)
    if with_checkpoint:
        shutil.copy(like / "checkpoint_final.pth", folder / "checkpoint_final.pth")
    return folder


def test_refusals_are_one_line(request_world, finished_run_copies, forget_request_file, tmp_path):
    noisy = finished_run_copies["NoisyLabel"]
    request = UnlearningRequest.from_file(forget_request_file)
    cases = [
        ([tmp_path / "nowhere"], {}, "run folder not found"),
        ([_fake_run(tmp_path / "a", noisy, with_checkpoint=False)], {}, "checkpoint_final.pth: missing"),
        ([_fake_run(tmp_path / "b", noisy)], {}, f"no {REQUEST_FILE} in any run folder"),
        ([noisy], {"out": Path(request.original.results_folder) / "audit"}, "inside the original model's folder"),
        ([noisy, noisy], {}, "given more than once"),
        ([Path(request.original.results_folder)], {"request_file": forget_request_file}, "give an output folder"),
    ]
    for folders, kwargs, message in cases:
        with pytest.raises(UserInputError, match=message) as error:
            run_audit(folders, **kwargs)
        assert "\n" not in str(error.value)

    other = tmp_path / "other_request.json"
    other.write_text(dataclasses.replace(request, dataset_name="Dataset502_Other").to_json())
    with pytest.raises(UserInputError, match="the request is for Dataset502_Other"):
        audit_models({"x": noisy}, UnlearningRequest.from_file(other))
    with pytest.raises(UserInputError, match="served another request"):
        run_audit([noisy], request_file=other)
