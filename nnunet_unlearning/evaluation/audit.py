"""``nnunet-unlearning audit``: a membership-inference audit of the original, unlearned and retrained models.

For each model, on the request's cases: predict every preprocessed volume with nnU-Net's sliding-window
predictor (no mirroring and the precision of the evaluation hook), sample the same patches for every model
(seeded by case), summarise the model's per-voxel loss, confidence and entropy per patch (`audit_features`), train an
attack to tell retain patches (members) from held-out patches (non-members) of THAT model, and judge the
forget patches (`audit_attack`). A perfect unlearner's forget patches look like the retrain oracle's.
Interpretation and formulas: docs/audit.md. Its table and the certificates that quote it are written by
``evidence/audit_table.py``.

Nothing here writes into the original model's folder; every file is written atomically.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from nnunet_unlearning.artifacts import (
    AUDIT_FILE,
    FINAL_CHECKPOINT,
    REQUEST_FILE,
    RETRAIN_PREFIX,
    SETS,
    ModelFolder,
    distinct_labels,
)
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.audit_attack import CI_LEVEL, CLASSIFIER, membership_attack
from nnunet_unlearning.evaluation.audit_features import (
    FEATURES,
    case_rng,
    patch_features,
    sample_patches,
    voxel_maps,
)
from nnunet_unlearning.evaluation.subject_scores import scored_voxels
from nnunet_unlearning.files import atomic_write_json, sha256_file
from nnunet_unlearning.med3d.cpu_precision import evaluation_precision
from nnunet_unlearning.nnunet.glue import trained_predictor
from nnunet_unlearning.records import AuditGap, AuditModelRecord, AuditRecord, MembershipAttack
from nnunet_unlearning.request import UnlearningRequest

FORMAT = 1
#: The sets in the order the audit measures them: the attack's members (retain) and non-members (held-out),
#: then the forget cases it judges.
AUDIT_SETS = (*(name for name in SETS if name != "forget"), "forget")


def _labels(runs: Sequence[ModelFolder]) -> list[str]:
    """ "retrain" for the oracle (the plain ``nnUNetTrainerRetrain``), else the trainer name; made distinct
    where that is ambiguous (`artifacts.distinct_labels`)."""
    short = ["retrain" if r.trainer == RETRAIN_PREFIX else r.trainer for r in runs]
    return distinct_labels(short, [r.path for r in runs])


def _check_request(request: UnlearningRequest) -> None:
    if not request.forget:
        raise UserInputError(f"request {request.request_id}: forgets no case")
    for name in ("retain", "heldout"):
        if len(getattr(request, name)) < 2:
            raise UserInputError(
                f"request {request.request_id}: the audit needs at least 2 {name} cases "
                f"(members and non-members), it has {len(getattr(request, name))}"
            )


def _preprocessed_folder(request: UnlearningRequest, predictor) -> Path:
    root = os.environ.get("nnUNet_preprocessed")
    if not root:
        raise UserInputError(
            "environment variable nnUNet_preprocessed is not set (the audit reads the preprocessed cases)"
        )
    folder = Path(root) / request.dataset_name / predictor.configuration_manager.data_identifier
    if not folder.is_dir():
        raise UserInputError(f"{folder}: preprocessed data not found (run nnUNetv2_plan_and_preprocess)")
    return folder


class _Cases:
    """The request's preprocessed cases and their patches: the same patches for every model."""

    def __init__(
        self,
        folder: Path,
        cases: Sequence[str],
        ignore_label: int | None,
        patch_size: Sequence[int],
        patches_per_case: int,
        seed: int,
    ) -> None:
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        dataset_class = infer_dataset_class(str(folder))
        missing = sorted(set(cases) - set(dataset_class.get_identifiers(str(folder))))
        if missing:
            raise UserInputError(f"case {missing[0]}: not in the preprocessed data {folder}")
        self.folder = folder
        self._dataset = dataset_class(str(folder), sorted(cases))
        self._ignore_label = ignore_label
        self.patch_size = tuple(int(p) for p in patch_size)
        self._n = patches_per_case
        self._seed = seed
        self._origins: dict[str, np.ndarray] = {}

    def load(self, case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image (C, x, y, z), truth (x, y, z), valid mask (x, y, z), patch origins (n, 3)) of a case."""
        data, seg, _, _ = self._dataset.load_case(case)
        truth = np.asarray(seg)[0].astype(np.int16)
        valid = scored_voxels(truth, self._ignore_label)
        if not valid.any():
            raise UserInputError(f"case {case}: no labelled voxel in the preprocessed data {self.folder}")
        if case not in self._origins:
            self._origins[case] = sample_patches(valid, self.patch_size, self._n, case_rng(self._seed, case))
        return np.asarray(data), truth, valid, self._origins[case]


@torch.no_grad()
def _features(predictor, cases: _Cases, case_ids: Sequence[str]) -> dict[str, np.ndarray]:
    features = {}
    _, context = evaluation_precision(predictor.network)
    for case in case_ids:
        data, truth, valid, origins = cases.load(case)
        with context:
            logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(data))
        features[case] = patch_features(voxel_maps(logits, truth, valid), valid, origins, cases.patch_size)
    return features


def _feature_means(features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    return {
        name: dict(zip(FEATURES, np.concatenate(list(per_case.values())).mean(axis=0).tolist()))
        for name, per_case in features.items()
    }


def audit_models(
    models: Mapping[str, Path],
    request: UnlearningRequest,
    *,
    patch_size: Sequence[int] | None = None,
    patches_per_case: int = 64,
    bootstrap: int = 1000,
    seed: int = 0,
    device: str = "cpu",
) -> AuditRecord:
    """Membership-inference audit of each model on the request's retain, held-out and forget cases.

    Args:
        models: label (e.g. "original", "retrain", a trainer name) -> fold folder holding checkpoint_final.pth;
            the label "retrain" marks the oracle that the others are compared to.
        request: the unlearning request (its dataset, fold and case sets); at least 2 retain and 2 held-out cases.
        patch_size: spatial patch size in voxels (x, y, z); default the first model's configuration patch size
            halved. Clipped to each volume.
        patches_per_case: patches sampled per case (centred on labelled voxels, seeded by seed and case id).
        bootstrap: bootstrap draws for the 95 % intervals (0: none).
        seed: seeds patch sampling, the classifier and the bootstrap.
        device: torch device for prediction ("cpu", "cuda", ...).

    Returns:
        The audit (JSON-ready): request, settings, and per model its folder, checkpoint SHA-256, the attack's
        estimates (see `audit_attack.membership_attack`), per-set feature means and, when a "retrain" model is
        given, the differences to it. Requires ``nnUNet_preprocessed``; adds our trainers to
        ``nnUNet_extTrainer`` (``nnunet/glue.trained_predictor``), so nnU-Net finds our trainer classes.
    """
    if patches_per_case < 1 or bootstrap < 0:
        raise UserInputError(
            f"patches per case must be >= 1 and bootstrap >= 0, got {patches_per_case} and {bootstrap}"
        )
    _check_request(request)
    runs = {label: ModelFolder.parse(path) for label, path in models.items()}
    for run in runs.values():
        plans = json.loads((run.path.parent / "plans.json").read_text())
        if plans.get("dataset_name") != request.dataset_name:
            raise UserInputError(
                f"{run.path}: model of {plans.get('dataset_name')}, the request is for {request.dataset_name}"
            )
        if run.fold != request.original.fold:
            raise UserInputError(f"{run.path}: fold {run.fold}, the request's split is fold {request.original.fold}")

    torch_device = torch.device(device)
    sets = {name: sorted(getattr(request, name)) for name in AUDIT_SETS}
    cases: _Cases | None = None
    results: dict[str, AuditModelRecord] = {}
    for label, run in runs.items():
        started = time.perf_counter()
        predictor = trained_predictor(run, torch_device)
        folder = _preprocessed_folder(request, predictor)
        if cases is None:
            size = patch_size or [max(1, int(p) // 2) for p in predictor.configuration_manager.patch_size]
            if len(size) != len(predictor.configuration_manager.patch_size) or min(size) < 1:
                raise UserInputError(
                    f"patch size {tuple(size)}: needs {len(predictor.configuration_manager.patch_size)} positive sizes"
                )
            cases = _Cases(
                folder,
                [c for v in sets.values() for c in v],
                predictor.label_manager.ignore_label,
                size,
                patches_per_case,
                seed,
            )
        elif folder != cases.folder:
            raise UserInputError(
                f"{run.path}: predicts on {folder.name}, the first model on {cases.folder.name}; "
                "an audit compares models on one preprocessed grid"
            )
        features = {name: _features(predictor, cases, ids) for name, ids in sets.items()}
        attack = membership_attack(
            features["retain"], features["heldout"], features["forget"], bootstrap=bootstrap, seed=seed
        )
        results[label] = {
            "folder": str(run.path),
            "trainer": run.trainer,
            "plans": run.plans,
            "configuration": run.configuration,
            "fold": run.fold,
            "checkpoint_sha256": sha256_file(run.path / FINAL_CHECKPOINT),
            "n_patches": {name: int(sum(len(f) for f in features[name].values())) for name in AUDIT_SETS},
            **attack,
            "feature_means": _feature_means(features),
            "seconds": round(time.perf_counter() - started, 3),
            "precision": evaluation_precision(predictor.network)[0],
        }
    if cases is None:
        raise ValueError("an audit needs at least one model")
    for entry in results.values():
        entry["gap_to_retrain"] = _gap(entry, results.get("retrain"))
    return {
        "format": FORMAT,
        "request_id": request.request_id,
        "dataset": request.dataset_name,
        "forget": sets["forget"],
        "retain": sets["retain"],
        "heldout": sets["heldout"],
        "settings": {
            "patch_size": list(cases.patch_size),
            "patches_per_case": patches_per_case,
            "bootstrap": bootstrap,
            "seed": seed,
            "ci_level": CI_LEVEL,
            "features": list(FEATURES),
            "classifier": CLASSIFIER,
            "device": device,
        },
        "models": results,
    }


def _gap(entry: MembershipAttack, retrain: MembershipAttack | None) -> AuditGap | None:
    """The model's estimate minus the retrain oracle's (0 for a perfect unlearner); None without an oracle."""
    if retrain is None:
        return None
    return {
        "mia_efficacy": entry["mia_efficacy"]["value"] - retrain["mia_efficacy"]["value"],
        "auc_forget_vs_heldout": entry["auc_forget_vs_heldout"]["value"] - retrain["auc_forget_vs_heldout"]["value"],
    }


def _find_request(runs: Sequence[ModelFolder], request_file: Path | None) -> UnlearningRequest:
    if request_file is None:
        request_file = next((r.path / REQUEST_FILE for r in runs if (r.path / REQUEST_FILE).is_file()), None)
        if request_file is None:
            raise UserInputError(f"no {REQUEST_FILE} in any run folder; pass the request with --request")
    elif not Path(request_file).is_file():
        raise UserInputError(f"{request_file}: request file not found")
    request = UnlearningRequest.from_file(Path(request_file))
    for run in runs:
        copy = run.path / REQUEST_FILE
        if copy.is_file() and UnlearningRequest.from_file(copy).request_id != request.request_id:
            raise UserInputError(f"{copy}: this run served another request than {request_file}")
    return request


def _original(request: UnlearningRequest) -> ModelFolder:
    if not Path(request.original.results_folder).is_dir():
        raise UserInputError(f"{request.original.results_folder}: the request's original model folder is missing")
    original = ModelFolder.parse(Path(request.original.results_folder))
    try:
        unchanged = sha256_file(original.path / FINAL_CHECKPOINT) == request.original.checkpoint_sha256
    except OSError as error:
        raise UserInputError(f"{original.path / FINAL_CHECKPOINT}: unreadable ({error.strerror})") from None
    if not unchanged:
        raise UserInputError(
            f"{original.path / FINAL_CHECKPOINT}: checkpoint changed since the request was written (SHA-256 differs)"
        )
    return original


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def run_audit(
    run_folders: Sequence[Path],
    out: Path | None = None,
    request_file: Path | None = None,
    *,
    patches_per_case: int = 64,
    bootstrap: int = 1000,
    seed: int = 0,
    patch_size: Sequence[int] | None = None,
    device: str = "cpu",
) -> Path:
    """Audit the original model of the request and the given runs; write the audit; return its JSON path.

    Writes ``unlearning_audit.json`` into ``out`` (default: the first run folder that is not the original
    model's) and a copy into every run folder, with ``"model"`` naming that folder's entry. The original
    model's folder is never written to. Its table, and the certificates that quote it, are the evidence's:
    ``evidence.audit_table.write_audit_evidence``.

    Args:
        run_folders: nnU-Net fold folders of unlearned or retrained models (``nnUNetTrainerRetrain`` is
            labelled "retrain"); the original model is always audited, labelled "original".
        out: output folder.
        request_file: the unlearning request; default the ``unlearning_request.json`` in the first run folder
            that has one. Every run folder's own request copy must be the same request.
        patches_per_case, bootstrap, seed, patch_size, device: see `audit_models`.
    """
    runs = [ModelFolder.parse(p) for p in run_folders]
    if not runs:
        raise UserInputError("no run folder given")
    paths = [r.path for r in runs]
    duplicate = next((p for p in paths if paths.count(p) > 1), None)
    if duplicate is not None:
        raise UserInputError(f"{duplicate}: given more than once")
    request = _find_request(runs, request_file)
    original = _original(request)
    runs = [r for r in runs if r.path != original.path]
    if out is None:
        if not runs:
            raise UserInputError(
                f"{original.path}: is the original model, whose folder is never written to; "
                "give an output folder with -o"
            )
        out = runs[0].path
    out = Path(out).resolve()
    if _inside(out, original.path):
        raise UserInputError(
            f"{out}: inside the original model's folder, which is never written to; choose another output folder"
        )

    labels = _labels(runs)
    content = audit_models(
        {"original": original.path, **dict(zip(labels, (r.path for r in runs)))},
        request,
        patch_size=patch_size,
        patches_per_case=patches_per_case,
        bootstrap=bootstrap,
        seed=seed,
        device=device,
    )
    for label, run in zip(labels, runs):
        atomic_write_json(run.path / AUDIT_FILE, {**content, "model": label})
    if out not in [r.path for r in runs]:
        atomic_write_json(out / AUDIT_FILE, {**content, "model": None})
    return out / AUDIT_FILE
