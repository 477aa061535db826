"""``nnunet-unlearning export``: a certified unlearned model as a zip that plain nnU-Net installs and serves.

The zip has nnU-Net's own model layout (``<Dataset>/<Trainer>__<Plans>__<Configuration>/{dataset.json,
plans.json, fold_N/checkpoint_final.pth}``), so ``nnUNetv2_install_pretrained_model_from_zip`` installs it and
``nnUNetv2_predict -tr <Trainer>`` runs it. It carries nothing that names or reproduces a forgotten patient:

- the checkpoint keeps the weights and what inference reads (``init_args``, ``inference_allowed_mirroring_axes``),
  and drops the optimizer state (momentum built from the last steps' gradients, forget batches included), the
  training log and epoch counters; its ``trainer_name`` becomes the nnU-Net class whose network builder the run
  used, so nnU-Net finds it without this plugin;
- no ``debug.json`` (nnU-Net's dump of the trainer, which holds the request and its case ids), no
  ``validation/`` predictions, no ``splits_final.json``, no ``dataset_fingerprint.json`` (per-case shapes and
  spacings), no other checkpoint, no logs;
- every file written is scanned for the case ids of everyone the lineage forgot; a hit refuses the export.

``fold_N/unlearning_export.json`` names the request, the certificate (SHA-256), both checkpoints' SHA-256 and
what still derives from the patients (the plans' intensity statistics and the preprocessing they fix).

``strict``: the plans (``plans.json`` and the checkpoint's copy in ``init_args``) get the intensity statistics
fingerprinted without the lineage's forgotten cases (``strict_fingerprint.py``), and the manifest says so. Refused
when a channel's normalisation reads those statistics (``CTNormalization``) and they change: the model would get
other inputs than it was trained on; a model trained on the strict plans of its request exports unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, FINAL_CHECKPOINT, REQUEST_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import sha256_file, target_mode
from nnunet_unlearning.request import UnlearningRequest
from nnunet_unlearning.workflows.strict_fingerprint import StrictFingerprint, strict_fingerprint

EXPORT_MANIFEST = "unlearning_export.json"
#: Checkpoint entries nnU-Net's predictor reads; everything else stays behind.
INFERENCE_KEYS = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes")
#: ``init_args`` entries kept (nnU-Net's trainer constructor arguments, minus the training device).
INIT_ARGS = ("plans", "configuration", "fold", "dataset_json")
#: Packages whose network classes a plain nnU-Net installation has.
NNUNET_NETWORK_PACKAGES = ("dynamic_network_architectures", "nnunetv2")
DERIVED_STATEMENT = (
    "The plans' intensity statistics (foreground mean, standard deviation and percentiles per channel) were "
    "computed by nnU-Net's fingerprint over every training case, the forgotten ones included, and fix the "
    "preprocessing this model expects; the export carries them unchanged."
)
STRICT_STATEMENT = (
    "The plans' intensity statistics were fingerprinted again without every case the request's lineage forgot "
    "(strict_fingerprint). The plans' median spacing and shape, and the target spacing, patch size and network "
    "topology planned from them, were computed over every training case, the forgotten ones included; they fix "
    "the grid and the network the model works with and are kept."
)


@dataclass(frozen=True)
class Export:
    """What `export_run` wrote: the zip, the names inside it, the network class when plain nnU-Net lacks it, and
    a strict export's fingerprint (what the strict statistics change)."""

    path: Path
    members: tuple[str, ...]
    needs_plugin: str | None
    strict: StrictFingerprint | None = None


def plugin_network(plans: Mapping, configuration: str) -> str | None:
    """The configuration's network class when a plain nnU-Net installation cannot import it (Med3D), else None."""
    architecture = plans["configurations"][configuration].get("architecture", {})
    name = str(architecture.get("network_class_name", ""))
    return None if name.startswith(NNUNET_NETWORK_PACKAGES) else name


def nnunet_base_trainer(trainer_name: str) -> str:
    """The nnU-Net trainer class (from the ``nnunetv2`` package) that ``trainer_name`` derives from: our trainers
    change training, never how the network is built, so nnU-Net's predictor builds it with this class."""
    from nnunet_unlearning.nnunet.trainers_dir import find_trainer

    for cls in find_trainer(trainer_name).__mro__:
        if cls.__module__.startswith("nnunetv2."):
            return cls.__name__
    raise UserInputError(f"trainer {trainer_name}: derives from no nnU-Net trainer class")


def case_mentions(files: Mapping[str, bytes], cases: Iterable[str]) -> dict[str, list[str]]:
    """``{file name: [case ids it contains]}`` over the raw bytes of ``files``; files without any are left out.

    Case ids are searched as UTF-8 text, which is how JSON files, logs and the pickled strings of a torch
    checkpoint hold them, as whole ids: ``MRBrainS18_1`` is not found inside ``MRBrainS18_14``, but is inside a
    file name such as ``MRBrainS18_1_0000.nii.gz``.
    """
    patterns = {
        case: re.compile(rb"(?<![0-9A-Za-z])" + re.escape(case.encode()) + rb"(?![0-9A-Za-z])") for case in cases
    }
    found = {}
    for name, content in files.items():
        hits = sorted(case for case, pattern in patterns.items() if pattern.search(content))
        if hits:
            found[name] = hits
    return found


def zip_contents(path: Path) -> dict[str, bytes]:
    """Every file in a zip, name → bytes, with the members of zips inside it (`expanded`)."""
    with zipfile.ZipFile(path) as archive:
        return expanded({name: archive.read(name) for name in archive.namelist()})


def expanded(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """``files`` plus the members of any zip among them as ``<name>!<member>`` (a torch checkpoint is a zip whose
    pickle may be compressed), so that a search reaches every byte."""
    result = dict(files)
    for name, data in files.items():
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                result.update({f"{name}!{member}": inner.read(member) for member in inner.namelist()})
    return result


def _stripped_checkpoint(path: Path, plans: Mapping | None) -> tuple[bytes, str]:
    """(the checkpoint with only what inference reads, the nnU-Net trainer class it now names). The run's class
    is the one its checkpoint names (a chained request's folder name is not a class name). ``plans``: replace the
    plans in ``init_args`` (a strict export), else keep them."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    kept = {key: checkpoint[key] for key in INFERENCE_KEYS if key in checkpoint}
    kept["init_args"] = {key: checkpoint["init_args"][key] for key in INIT_ARGS if key in checkpoint["init_args"]}
    if plans is not None:
        kept["init_args"]["plans"] = dict(plans)
    kept["trainer_name"] = nnunet_base_trainer(checkpoint["trainer_name"])
    buffer = io.BytesIO()
    torch.save(kept, buffer)
    return buffer.getvalue(), kept["trainer_name"]


def _certified_run(run_folder: Path) -> tuple[UnlearningRequest, str | None]:
    """The run's request and its certificate's overall verdict, refusing a run that is not certified or whose
    certificate fails verify."""
    from nnunet_unlearning.evidence.certificate import verify_certificate

    certificate = run_folder / CERTIFICATE_JSON
    if not (run_folder / REQUEST_FILE).is_file() or not certificate.is_file():
        raise UserInputError(
            f"{run_folder}: not a certified unlearning run (no {REQUEST_FILE} or {CERTIFICATE_JSON}); export the "
            "fold folder of a finished run"
        )
    checked = verify_certificate(certificate)
    if not checked.ok:
        failed = checked.first_finding
        raise UserInputError(f"{certificate}: fails verify ({failed}); the model cannot be exported")
    return UnlearningRequest.from_file(run_folder / REQUEST_FILE), checked.verdict


def _strict_plans(request: UnlearningRequest, plans: Mapping, source: Path) -> tuple[dict, StrictFingerprint]:
    """(the plans with the strict intensity statistics, the fingerprint); refuses plans whose strict statistics
    would change a channel's normalised input."""
    fingerprint = strict_fingerprint(request, plans, source)
    changed = next((channel for channel in fingerprint.channels if channel.input_changes), None)
    if changed is not None:
        raise UserInputError(
            f"{source}: channel {changed.channel} ({changed.name or 'unnamed'}) uses {changed.normalization}, which "
            "normalises with the plans' intensity statistics, so strict ones would feed the model other inputs than "
            "it was trained on; train it on strict plans (nnunet-unlearning strict-plans) to export it --strict"
        )
    return fingerprint.plans(plans), fingerprint


def export_run(run_folder: Path, out: Path, strict: bool = False) -> Export:
    """Write the deployable zip of the certified unlearning run in ``run_folder`` (its ``fold_N``) to ``out``;
    ``strict``: with the intensity statistics fingerprinted without the lineage's forgotten cases.

    Raises `UserInputError` for a folder that is not a certified run, a certificate that fails verify, an
    ``out`` that exists or lies inside the run, an export that would carry a forgotten case id and, strict, a
    channel whose normalised input the strict statistics would change.
    """
    run_folder, out = Path(run_folder).resolve(), Path(out).resolve()
    if out.suffix != ".zip":
        raise UserInputError(f"{out}: the export must be a .zip file")
    if out.exists():
        raise UserInputError(f"{out}: already exists; choose another file")
    if out.is_relative_to(run_folder.parent):
        raise UserInputError(f"{out}: lies inside the run's results folder, which is never written to")
    request, checked_verdict = _certified_run(run_folder)
    model_folder, dataset_name = run_folder.parent, run_folder.parent.parent.name
    plans_file = model_folder / "plans.json"
    plans, plans_bytes = json.loads(plans_file.read_text()), plans_file.read_bytes()
    fingerprint = None
    if strict:
        plans, fingerprint = _strict_plans(request, plans, plans_file)
        plans_bytes = (json.dumps(plans, indent=4) + "\n").encode()
    configuration = request.original.configuration
    weights, base = _stripped_checkpoint(run_folder / FINAL_CHECKPOINT, plans if strict else None)
    prefix = f"{dataset_name}/{model_folder.name}"
    manifest: dict[str, object] = {
        "format": 1,
        "request_id": request.request_id,
        "certificate_sha256": sha256_file(run_folder / CERTIFICATE_JSON),
        "verdict": checked_verdict,
        "certified_checkpoint_sha256": sha256_file(run_folder / FINAL_CHECKPOINT),
        "exported_checkpoint_sha256": hashlib.sha256(weights).hexdigest(),
        "trainer_name_in_checkpoint": base,
        "kept_checkpoint_entries": list(INFERENCE_KEYS),
        "still_derived_from_the_forgotten": DERIVED_STATEMENT,
    }
    if fingerprint is not None:
        manifest |= {
            "intensity_statistics": "strict",
            "strict_fingerprint": fingerprint.record(),
            "still_derived_from_the_forgotten": STRICT_STATEMENT,
        }
    files = {
        f"{prefix}/dataset.json": (model_folder / "dataset.json").read_bytes(),
        f"{prefix}/plans.json": plans_bytes,
        f"{prefix}/{run_folder.name}/{FINAL_CHECKPOINT}": weights,
        f"{prefix}/{run_folder.name}/{EXPORT_MANIFEST}": (json.dumps(manifest, indent=2) + "\n").encode(),
    }
    forgotten = {*request.forget, *request.forgotten_before}
    leaks = case_mentions(expanded(files), forgotten)
    if leaks:
        name, cases = next(iter(leaks.items()))
        raise UserInputError(f"{name}: would carry forgotten case {cases[0]}; nothing was exported")
    _write_zip(out, files)
    return Export(out, tuple(files), plugin_network(plans, configuration), fingerprint)


def _write_zip(out: Path, files: Mapping[str, bytes]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        os.chmod(temporary, target_mode(out))  # mkstemp's file is private; the model is to be shared
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
