"""``nnunet-unlearning demo``: the whole user path on one machine, in one folder, on the CPU profile.

phantom (or a real MRBrainS18 release) → convert (tissue labels: grey matter, white matter, CSF) → nnU-Net
plan + preprocess → plan Med3D → train the original Med3D model (MedicalNet encoder weights when
``nnUNet_med3d_weights`` names a checkpoint, random initialisation at the CPU recipe's learning rate otherwise;
the output says which) → forget request for one subject → one after the other, each on every core: unlearn it with
L1Sparse, calibrated (the run stops when the forget subject scores as the original scores it less the
original's memorisation, within the utility budget, checked on patches every few steps, giving up after a few
checks without progress, without reading the oracle), and retrain the oracle → membership-inference audit →
comparison report and certificate → headline: Dice of the three models, the gap to the oracle, the speed-up,
the certificate's verdict and the audit's.
Everything goes under ``--workdir`` (nnU-Net's three folders included); nothing is written elsewhere.
The schedules are short (printed; the original and the oracle train a quarter of the benchmark's steps), so the
models are small, not converged ones.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, CERTIFICATE_MD, METRICS_FILE, SETS, UNLEARN_PREFIX
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evidence.table_format import markdown_table
from nnunet_unlearning.files import atomic_write_json
from nnunet_unlearning.nnunet.mirroring import planned_mirroring
from nnunet_unlearning.workflows import profiles
from nnunet_unlearning.workflows.original_trainer import original_trainer
from nnunet_unlearning.workflows.profiles import PROFILES, CpuPlanning

DATASET_ID = 501
DATASET_NAME = "Dataset501_MRBrainS18"
CONFIGURATION = profiles.CONFIGURATION
PLANS = profiles.MED3D_PLANS
MARKER = ".nnunet-unlearning-demo"
#: The CPU benchmark's best calibrated strategy (docs/benchmarks.md): within one oracle SD of the retrained
#: models on all four judged subjects, utility kept.
STRATEGY = "L1Sparse"


@dataclass(frozen=True)
class Schedule:
    """Epochs × iterations per epoch of one training run of the demo."""

    epochs: int
    iterations: int

    def __str__(self) -> str:
        return f"{self.epochs} epochs × {self.iterations} iterations"


#: The original and the retrain oracle train the CPU profile's recipe for 10 × 20 steps, a quarter of the
#: benchmark's 10 × 80: the two trainings are most of the demo's time. At 10 × 40 the demo took 7:47 from a fresh
#: clone on a 2-core AMD EPYC with CPU bf16, but 20:27 on a 2-core Zen 3 without it (0.85–0.9 s a step on both
#: cores; docs/benchmarks.md, "The demo"), and its 15 minutes must hold on the slower machine. Unlearning
#: runs at most the profile's long horizon, in epochs of the profile's check interval (a check after each, as
#: the benchmark's calibrated runs).
PROFILE = PROFILES["cpu"]
ORIGINAL = Schedule(epochs=PROFILE.original_epochs, iterations=20)
_CHECK_STEPS = PROFILE.check_steps or PROFILE.unlearning_iterations
UNLEARN = Schedule(epochs=PROFILE.horizons[1] * PROFILE.unlearning_iterations // _CHECK_STEPS, iterations=_CHECK_STEPS)
#: The run config of the calibrated unlearning run (docs/unlearning.md, "Calibrated runs"): checks on patches,
#: giving up after 4 checks that come no closer to the band (on patch checks patience 3-5 changed no run that
#: reached its band, and cut one that never did from 320 to 96 s: docs/benchmarks.md, "Patience"); the default
#: acceptance criteria (the memorisation reference, band half-width half the memorisation, utility budget 98 %).
CALIBRATED_CONFIG = {"calibration": {"enabled": True, "check_every": 1, "scores": "patches", "patience": 4}}
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


def prepare_dataset(workdir: Path, mrbrains18: Path | None = None, planning: CpuPlanning = profiles.CPU) -> None:
    """nnU-Net's folders under ``workdir``, dataset 501 converted with ``planning``'s label set, planned
    (``planning``, Med3D plans included) and preprocessed."""
    folders = {name: workdir / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    os.environ.update({k: str(v) for k, v in folders.items()})
    os.environ.setdefault("nnUNet_compile", "false")
    print(planning.describe(med3d=True))

    from nnunet_unlearning.conversion.mrbrains18 import convert_mrbrains18
    from nnunet_unlearning.conversion.phantom import write_phantom

    source = mrbrains18
    if source is None:
        started = _step("writing the synthetic MRBrainS18-layout phantom (7 subjects; no real data needed)")
        source = workdir / "phantom"
        write_phantom(source, n_subjects=7, seed=0)
        _done(started)
    started = _step(f"converting {source} into nnU-Net's raw format (IR, FLAIR; {planning.labels} labels)")
    convert_mrbrains18(source, DATASET_ID, modalities=("IR", "FLAIR"), source="orig", labels=planning.labels)
    _done(started)

    started = _step("nnU-Net fingerprint, planning (CPU profile) and preprocessing")
    planning.plan_and_preprocess(DATASET_ID)
    _done(started)
    started = _step(f"Med3D plans ({PLANS}: ResNet-{profiles.MED3D_DEPTH} encoder, same preprocessed data)")
    configuration = json.loads(planning.plan_med3d(DATASET_ID).read_text())["configurations"][CONFIGURATION]
    _done(started)
    print(f"    mirroring augmentation: {planned_mirroring(configuration)}")


def run_demo(workdir: Path, mrbrains18: Path | None = None, overwrite: bool = False) -> Path:
    """Run the demo; return the path of its summary JSON."""
    workdir = workdir.resolve()
    _prepare_workdir(workdir, overwrite)
    prepare_dataset(workdir, mrbrains18)

    trainer_name, encoder = original_trainer(PROFILE.scratch_trainer)
    started = _step(f"training the original model ({trainer_name}, {encoder}; fold 0, {ORIGINAL})")
    original = train(trainer_name, ORIGINAL)
    _done(started)

    from nnunet_unlearning.request import write_request

    forget = sorted(original.do_split()[0])[0]
    started = _step(f"writing the forget request: forget {forget}")
    request_path = write_request(DATASET_ID, CONFIGURATION, "0", PLANS, trainer_name, [forget])
    print(f"    {request_path}")
    config = workdir / "calibrated_run.json"
    atomic_write_json(config, CALIBRATED_CONFIG)
    _done(started)

    runs = unlearn_then_retrain(workdir / "nnUNet_results", request_path, config, forget)

    from nnunet_unlearning.evaluation.audit import run_audit
    from nnunet_unlearning.evidence.audit_table import write_audit_evidence
    from nnunet_unlearning.evidence.report import write_report

    started = _step(
        "membership-inference audit of the original, unlearned and retrained models "
        f"({AUDIT_PATCHES} patches per case, {AUDIT_BOOTSTRAP} bootstrap draws)"
    )
    audit = run_audit(runs, out=workdir / "audit", patches_per_case=AUDIT_PATCHES, bootstrap=AUDIT_BOOTSTRAP)
    write_audit_evidence(audit)  # certificates again, now with the audit
    _done(started)
    started = _step("comparison report and certificate")
    report = write_report(runs, workdir / "report")
    _done(started)

    summary = headline(runs[0], runs[1], audit)
    path = workdir / "demo_summary.json"
    atomic_write_json(path, summary)
    print("\n" + format_headline(summary))
    print(f"\nreport: {report}\naudit: {audit}\ncertificate: {runs[0] / CERTIFICATE_MD}\nsummary: {path}")
    return path


def unlearn_then_retrain(
    results: Path,
    request: Path,
    config: Path,
    forget: str,
    plans: str = PLANS,
    unlearn: Schedule = UNLEARN,
    retrain: Schedule = ORIGINAL,
) -> list[Path]:
    """Unlearn ``forget`` calibrated (run config ``config``), then retrain the oracle, both for ``request`` and
    in ``results`` (an ``nnUNet_results``), each in its own process on every core; return their fold folders
    (unlearned, retrained). Each run's console goes to ``<results>/../logs/<trainer>.txt``.

    One after the other, not side by side on one core each: the calibrated run is short, so side by side the
    oracle trains most of its steps on one thread beside an idle core (on the 2-core Zen 3 machine 1.35 s a
    step against 0.85 s on two: docs/benchmarks.md, "The demo"), and each run's wall time, which the headline
    compares, is its own, not shared with the other.
    """
    from nnunet_unlearning.workflows.benchmark_runs import Run, train_runs

    common = (DATASET_NAME, CONFIGURATION, plans)
    unlearned = Run(f"nnUNetTrainerUnlearn{STRATEGY}", *common, unlearn.epochs, unlearn.iterations, results,
                    request, config, augmentation_workers=profiles.CPU.unlearning_augmentation_workers)  # fmt: skip
    retrained = Run("nnUNetTrainerRetrain", *common, retrain.epochs, retrain.iterations, results, request)
    started = _step(
        f"unlearning {forget} with {STRATEGY}, calibrated (at most {unlearn}, checked on patches "
        f"after every epoch against its score under the original less the original's memorisation, giving up "
        f"after {CALIBRATED_CONFIG['calibration']['patience']} checks without progress), then "
        f"retraining without it, the oracle ({retrain}); "
        f"logs in {results.parent / 'logs'}"
    )
    environment = {
        name: os.environ[name]
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile", "nnUNet_n_proc_DA")
        if name in os.environ
    }
    failures = train_runs([unlearned], environment, "cpu", jobs=1) + train_runs([retrained], environment, "cpu", jobs=1)
    if failures:
        raise RuntimeError(f"a demo training failed: {failures[0]}")
    _done(started)
    return [unlearned.folder, retrained.folder]


def headline(unlearned_folder: Path, retrained_folder: Path, audit: Path | None = None) -> dict:
    """What the demo's last screen says, from the runs' files: mean Dice per set of the original, the
    unlearned and the retrained model, the forget gap to the oracle, wall times and speed-up, the unlearned
    run's certificate verdict (and calibration), and the audit's MIA efficacy of each model when ``audit``
    (an ``unlearning_audit.json``) is given."""
    unlearned = json.loads((unlearned_folder / METRICS_FILE).read_text())
    retrained = json.loads((retrained_folder / METRICS_FILE).read_text())
    certificate = json.loads((unlearned_folder / CERTIFICATE_JSON).read_text())
    strategy = unlearned["trainer"].removeprefix(UNLEARN_PREFIX)
    rows = {
        "original": unlearned["evaluations"][0]["sets"],
        strategy: unlearned["evaluations"][-1]["sets"],
        "retrain oracle": retrained["evaluations"][-1]["sets"],
    }
    dice = {name: {s: sets[s]["dice"] for s in SETS} for name, sets in rows.items()}
    seconds = {"unlearning": unlearned["seconds"]["wall"], "retrain": retrained["seconds"]["wall"]}
    summary = {
        "strategy": strategy,
        "forget": unlearned["forget"],
        "dice": dice,
        "figures": unlearned["figures"],
        "forget_dice_gap_to_retrain": dice[strategy]["forget"] - dice["retrain oracle"]["forget"],
        "seconds": seconds,
        "speedup": seconds["retrain"] / seconds["unlearning"] if seconds["unlearning"] > 0 else None,
        "verdict": {
            "overall": certificate["verdict"]["overall"],
            "text": certificate["verdict"]["text"],
            "forgetting": certificate["verdict"]["criteria"]["forgetting"]["text"],
            "calibration": certificate["verdict"]["calibration"],
        },
        "mia_efficacy": None,
        "profile": profiles.CPU.describe(med3d=True),
        "schedules": {"original and retrain oracle": str(ORIGINAL), "unlearning at most": str(UNLEARN)},
    }
    if audit is not None:
        models = json.loads(Path(audit).read_text())["models"]
        by_folder = {Path(m["folder"]).resolve(): m for m in models.values()}
        efficacy = {"original": models["original"]["mia_efficacy"]["value"]}
        for name, folder in ((strategy, unlearned_folder), ("retrain oracle", retrained_folder)):
            efficacy[name] = by_folder[Path(folder).resolve()]["mia_efficacy"]["value"]
        summary["mia_efficacy"] = efficacy
    return summary


#: The headline table's columns: key -> (Markdown header, number format), as `table_format` takes them.
HEADLINE_COLUMNS = {
    "model": ("model", "s"),
    "forget": ("forget Dice", ".3f"),
    "retain": ("retain Dice", ".3f"),
    "heldout": ("held-out Dice", ".3f"),
    "mia": ("MIA efficacy", ".3f"),
}


def format_headline(summary: dict) -> str:
    """The summary as a Markdown table (mean Dice per model and set, MIA efficacy when audited), then the gap
    to the oracle, the wall times and the certificate's verdict, in sentences chosen by the numbers."""
    efficacy = summary.get("mia_efficacy") or {}
    columns = {k: v for k, v in HEADLINE_COLUMNS.items() if k != "mia" or efficacy}
    rows = [{"model": name, **dice, "mia": efficacy.get(name)} for name, dice in summary["dice"].items()]
    lines = [markdown_table(rows, tuple(columns), columns)]
    figures, seconds, verdict = summary["figures"], summary["seconds"], summary["verdict"]
    speed = (
        f"{summary['speedup']:.1f}× faster than retraining"
        if summary["speedup"] and summary["speedup"] >= 1
        else "not faster than retraining"
    )
    lines += [
        "",
        f"forget drop {figures['forget_drop_pct']:.1f} %, retain retention {figures['retain_retention_pct']:.1f} %, "
        f"forget Dice gap to the retrain oracle {summary['forget_dice_gap_to_retrain']:+.3f}",
        f"wall time: unlearning {seconds['unlearning']:.0f} s, retraining {seconds['retrain']:.0f} s ({speed})",
        f"certificate verdict: {verdict['overall']}. {verdict['forgetting']}",
    ]
    if verdict["calibration"]:
        lines.append(verdict["calibration"])
    if efficacy:
        lines.append(mia_sentence(efficacy, summary["strategy"]))
    return "\n".join(lines)


def mia_sentence(efficacy: dict[str, float], strategy: str) -> str:
    """One sentence comparing the unlearned model's MIA efficacy with the oracle's and the original's."""
    gap = efficacy[strategy] - efficacy["retrain oracle"]
    reading = (
        "closer to the retrain oracle than the original was"
        if abs(gap) < abs(efficacy["original"] - efficacy["retrain oracle"])
        else "no closer to the retrain oracle than the original was"
    )
    return (
        f"membership-inference audit: efficacy {efficacy[strategy]:.3f} for {strategy}, "
        f"{efficacy['retrain oracle']:.3f} for the oracle, {efficacy['original']:.3f} for the original "
        f"({gap:+.3f} from the oracle: {reading})"
    )
