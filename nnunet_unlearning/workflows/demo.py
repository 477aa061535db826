"""``nnunet-unlearning demo``: the whole user path on one machine, in one folder, on the CPU profile.

phantom (or a real MRBrainS18 release) → convert → nnU-Net plan + preprocess → plan Med3D → train the
original Med3D model (MedicalNet encoder weights when ``nnUNet_med3d_weights`` names a checkpoint, random
initialisation otherwise; the output says which) → forget request for one subject → unlearn it with
NoisyLabel → retrain oracle → membership-inference audit → comparison report and certificate → headline
table.
Everything goes under ``--workdir`` (nnU-Net's three folders included); nothing is written elsewhere.
The schedules are short and printed, so the numbers show the mechanics, not converged models.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from nnunet_unlearning.artifacts import CERTIFICATE_MD, METRICS_FILE, SETS
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evidence.table_format import markdown_table
from nnunet_unlearning.files import atomic_write_json
from nnunet_unlearning.workflows import profiles
from nnunet_unlearning.workflows.original_trainer import original_trainer
from nnunet_unlearning.workflows.profiles import PROFILES

DATASET_ID = 501
DATASET_NAME = "Dataset501_MRBrainS18"
CONFIGURATION = profiles.CONFIGURATION
PLANS = profiles.MED3D_PLANS
MARKER = ".nnunet-unlearning-demo"


@dataclass(frozen=True)
class Schedule:
    """Epochs × iterations per epoch of one training run of the demo."""

    epochs: int
    iterations: int

    def __str__(self) -> str:
        return f"{self.epochs} epochs × {self.iterations} iterations"


#: The original and the retrain oracle train on the CPU profile's schedule; unlearning runs its long horizon
#: at the original's iterations per epoch.
ORIGINAL = Schedule(epochs=PROFILES["cpu"].original_epochs, iterations=PROFILES["cpu"].original_iterations)
UNLEARN = Schedule(epochs=PROFILES["cpu"].horizons[1], iterations=PROFILES["cpu"].original_iterations)
AUDIT_PATCHES = 32
AUDIT_BOOTSTRAP = 200


def _step(message: str) -> float:
    print(f"\n==> {message}", flush=True)
    return time.perf_counter()


def _done(started: float) -> None:
    print(f"    done in {time.perf_counter() - started:.0f} s", flush=True)


def _prepare_workdir(workdir: Path, overwrite: bool) -> None:
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).is_file():
            raise UserInputError(f"{workdir}: exists and is not an earlier demo folder; choose another --workdir")
        if not overwrite:
            raise UserInputError(f"{workdir}: holds an earlier demo run; pass --overwrite to replace it")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by nnunet-unlearning demo\n")


def train(trainer_name: str, schedule: Schedule):
    """Run the trainer ``nnUNetv2_train -tr <trainer_name>`` runs, in-process on fold 0 of the demo dataset
    with the Med3D plans and ``schedule``; return the finished trainer."""
    from nnunet_unlearning.nnunet.inprocess import train as train_inprocess
    from nnunet_unlearning.nnunet.trainers_dir import find_trainer

    return train_inprocess(
        find_trainer(trainer_name), DATASET_NAME, CONFIGURATION, PLANS, schedule.epochs, schedule.iterations
    )


def prepare_dataset(workdir: Path, mrbrains18: Path | None = None) -> None:
    """nnU-Net's folders under ``workdir``, dataset 501 converted, planned (CPU profile, Med3D plans
    included) and preprocessed."""
    folders = {name: workdir / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    os.environ.update({k: str(v) for k, v in folders.items()})
    os.environ.setdefault("nnUNet_compile", "false")
    print(profiles.describe_cpu(med3d=True))

    from nnunet_unlearning.conversion.mrbrains18 import convert_mrbrains18
    from nnunet_unlearning.conversion.phantom import write_phantom

    source = mrbrains18
    if source is None:
        started = _step("writing the synthetic MRBrainS18-layout phantom (7 subjects; no real data needed)")
        source = workdir / "phantom"
        write_phantom(source, n_subjects=7, seed=0)
        _done(started)
    started = _step(f"converting {source} into nnU-Net's raw format (IR, FLAIR; challenge labels)")
    convert_mrbrains18(source, DATASET_ID, modalities=("IR", "FLAIR"), source="orig")
    _done(started)

    started = _step("nnU-Net fingerprint, planning (CPU profile) and preprocessing")
    os.environ.pop("nnUNet_n_proc_DA", None)  # nnU-Net's planner needs a positive value or none
    profiles.plan_and_preprocess(DATASET_ID)
    os.environ["nnUNet_n_proc_DA"] = "0"
    profiles.use_cpu_threads()
    _done(started)
    started = _step(f"Med3D plans ({PLANS}: ResNet-{profiles.MED3D_DEPTH} encoder, same preprocessed data)")
    profiles.plan_med3d(DATASET_ID)
    _done(started)


def run_demo(workdir: Path, mrbrains18: Path | None = None, overwrite: bool = False) -> Path:
    """Run the demo; return the path of its summary JSON."""
    workdir = workdir.resolve()
    _prepare_workdir(workdir, overwrite)
    prepare_dataset(workdir, mrbrains18)

    trainer_name, encoder = original_trainer()
    started = _step(f"training the original model ({trainer_name}, {encoder}; fold 0, {ORIGINAL})")
    original = train(trainer_name, ORIGINAL)
    _done(started)

    from nnunet_unlearning.request import write_request

    forget = sorted(original.do_split()[0])[0]
    started = _step(f"writing the forget request: forget {forget}")
    request_path = write_request(DATASET_ID, CONFIGURATION, "0", PLANS, trainer_name, [forget])
    print(f"    {request_path}")
    _done(started)

    started = _step(f"unlearning {forget} with NoisyLabel ({UNLEARN})")
    unlearned = train("nnUNetTrainerUnlearnNoisyLabel", UNLEARN)
    _done(started)
    started = _step(f"retraining from scratch without {forget}: the oracle ({ORIGINAL})")
    retrained = train("nnUNetTrainerRetrain", ORIGINAL)
    _done(started)

    from nnunet_unlearning.evaluation.audit import run_audit
    from nnunet_unlearning.evidence.audit_table import write_audit_evidence
    from nnunet_unlearning.evidence.report import write_report

    runs = [Path(unlearned.output_folder), Path(retrained.output_folder)]
    started = _step(
        "membership-inference audit of the original, unlearned and retrained models "
        f"({AUDIT_PATCHES} patches per case, {AUDIT_BOOTSTRAP} bootstrap draws)"
    )
    audit = run_audit(runs, out=workdir / "audit", patches_per_case=AUDIT_PATCHES, bootstrap=AUDIT_BOOTSTRAP)
    write_audit_evidence(audit)
    _done(started)
    started = _step("comparison report and certificate")
    report = write_report(runs, workdir / "report")
    _done(started)

    summary = headline(runs[0], runs[1])
    path = workdir / "demo_summary.json"
    atomic_write_json(path, summary)
    print("\n" + format_headline(summary))
    print(f"\nreport: {report}\naudit: {audit}\ncertificate: {runs[0] / CERTIFICATE_MD}\nsummary: {path}")
    return path


def headline(unlearned_folder: Path, retrained_folder: Path) -> dict:
    """Mean Dice per set of the original, the unlearned and the retrained model, from their metrics files."""
    unlearned = json.loads((unlearned_folder / METRICS_FILE).read_text())
    retrained = json.loads((retrained_folder / METRICS_FILE).read_text())
    rows = {
        "original": unlearned["evaluations"][0]["sets"],
        "NoisyLabel": unlearned["evaluations"][-1]["sets"],
        "retrain oracle": retrained["evaluations"][-1]["sets"],
    }
    dice = {name: {s: sets[s]["dice"] for s in SETS} for name, sets in rows.items()}
    return {
        "forget": unlearned["forget"],
        "dice": dice,
        "figures": unlearned["figures"],
        "forget_dice_gap_to_retrain": dice["NoisyLabel"]["forget"] - dice["retrain oracle"]["forget"],
        "seconds": {"unlearning": unlearned["seconds"]["wall"], "retrain": retrained["seconds"]["wall"]},
        "profile": profiles.describe_cpu(med3d=True),
    }


#: The headline table's columns: key -> (Markdown header, number format), as `table_format` takes them.
HEADLINE_COLUMNS = {
    "model": ("model", "s"),
    "forget": ("forget Dice", ".3f"),
    "retain": ("retain Dice", ".3f"),
    "heldout": ("held-out Dice", ".3f"),
}


def format_headline(summary: dict) -> str:
    """The summary as a Markdown table of mean Dice per model and set, then the run's figures and wall times."""
    rows = [{"model": name, **dice} for name, dice in summary["dice"].items()]
    lines = [markdown_table(rows, tuple(HEADLINE_COLUMNS), HEADLINE_COLUMNS)]
    figures = summary["figures"]
    lines += [
        "",
        f"forget drop {figures['forget_drop_pct']:.1f} %, retain retention "
        f"{figures['retain_retention_pct']:.1f} %, forget Dice gap to the retrain oracle "
        f"{summary['forget_dice_gap_to_retrain']:+.3f}",
        f"wall time: unlearning {summary['seconds']['unlearning']:.0f} s, "
        f"retraining {summary['seconds']['retrain']:.0f} s",
    ]
    return "\n".join(lines)
