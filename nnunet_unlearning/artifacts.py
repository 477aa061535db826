"""The contract of a run folder (``nnUNet_results/<dataset>/<Trainer>__<Plans>__<Configuration>/fold_N``): the
name of every file nnU-Net and our trainers write there, the set names our records use, :class:`ModelFolder`
(a fold folder by its name, holding a trained model) and :class:`RunFolder`, the typed reader of a finished run's
records (their shapes: ``records.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import read_json_object
from nnunet_unlearning.records import AuditRecord, EvaluationRecord, MetricsRecord, RequestRecord

#: The model nnU-Net writes when training ends: for an unlearning run, the certified model.
FINAL_CHECKPOINT = "checkpoint_final.pth"
#: nnU-Net's resumable checkpoint (``--c``), removed by nnU-Net when training ends.
LATEST_CHECKPOINT = "checkpoint_latest.pth"
#: nnU-Net's best-pseudo-Dice checkpoint, which an unlearning run never writes (a partly unlearned model).
BEST_CHECKPOINT = "checkpoint_best.pth"
#: What an unlearning run needs besides the latest checkpoint to resume exactly; removed with it.
RESUME_STATE_FILE = "unlearning_resume_state.pt"
#: Written by the Med3D trainer beside its model: the MedicalNet checkpoint its encoder started from, and its SHA-256.
MED3D_INITIALISATION_FILE = "med3d_initialisation.json"
#: The unlearning request a run served (a copy; the request itself lives in nnU-Net's preprocessed folder).
REQUEST_FILE = "unlearning_request.json"
#: Every evaluation of a run, its figures, wall times and settings (``run_record.py``).
METRICS_FILE = "unlearning_metrics.json"
#: The run's Dice per set over its evaluations, as a plot.
PROGRESS_FILE = "unlearning_progress.png"
#: The parameter mask of a masked strategy (SalUn, SalUnCRA): which entries the run could change.
MASK_FILE = "unlearning_update_mask.pt"
#: The membership-inference audit (``evaluation/audit.py``), written into every audited run folder, and its table
#: (``evidence/audit_table.py``).
AUDIT_FILE = "unlearning_audit.json"
AUDIT_TABLE = "unlearning_audit.md"
#: The certificate of an unlearning run, as JSON and as Markdown (``evidence/certificate.py``).
CERTIFICATE_JSON = "unlearning_certificate.json"
CERTIFICATE_MD = "unlearning_certificate.md"
#: What ``nnunet-unlearning erase`` removed from nnU-Net's folders, written into the accepted run's folder.
ERASURE_FILE = "unlearning_erasure.json"

#: The case sets of a request and of every evaluation: the forgotten cases, the remaining training cases,
#: and the held-out (validation) cases, in the order tables list them.
#: (Literal names, so that a record's set keys can be read through them.)
SetName = Literal["forget", "retain", "heldout"]
SETS: tuple[SetName, ...] = ("forget", "retain", "heldout")
#: Trainer names of the retrain oracle's runs start with this.
RETRAIN_PREFIX = "nnUNetTrainerRetrain"
#: Every unlearning trainer's class name starts with it (``nnUNetTrainerUnlearn<Strategy>[_suffix]``).
UNLEARN_PREFIX = "nnUNetTrainerUnlearn"
#: A run of request n+1 of a lineage (a request with a ``previous``) trains into
#: ``<Trainer>_request-<id8>__<plans>__<configuration>/fold_N`` beside nnU-Net's ``<Trainer>__...`` folder, so
#: that two requests in a row with the same strategy keep both models; ``nnUNetv2_predict -tr
#: <Trainer>_request-<id8>`` serves it (nnU-Net finds the class by the name in the checkpoint).
CHAINED_RUN_MARK = "_request-"


def chained_trainer_folder_name(trainer: str, request_id: str) -> str:
    """The trainer part of the results folder of a chained request's run (see :data:`CHAINED_RUN_MARK`);
    ``request_id``: the request's, or its request set's for a fold of a set (one folder for the ensemble)."""
    return f"{trainer}{CHAINED_RUN_MARK}{request_id[:8]}"


def distinct_labels(short: Sequence[str], folders: Sequence[Path]) -> list[str]:
    """A label per run folder (``.../nnUNet_results/<Dataset>/<Trainer>__<Plans>__<Config>/fold_N``): its short
    label where that is unique, else ``<Trainer>__<Plans>__<Config>/fold_N``, and where that repeats too (runs
    of one trainer in several ``nnUNet_results``, e.g. one per setting) ``... in <folder above nnUNet_results>``."""
    names = [f"{f.parent.name}/{f.name}" for f in folders]
    return [
        s if short.count(s) == 1 else n if names.count(n) == 1 else f"{n} in {f.resolve().parents[3].name}"
        for s, n, f in zip(short, names, folders)
    ]


@dataclass(frozen=True)
class ModelFolder:
    """An nnU-Net fold folder ``.../<Trainer>__<Plans>__<Configuration>/fold_<N>`` holding a trained model
    (``checkpoint_final.pth``, with nnU-Net's plans.json and dataset.json one level up); any trainer's, ours or
    not, and the original model's too, which has no records of ours."""

    path: Path
    trainer: str
    plans: str
    configuration: str
    fold: str

    @classmethod
    def parse(cls, path: Path) -> ModelFolder:
        """The folder at ``path`` (resolved); one-line error when it is not a finished nnU-Net fold folder."""
        path = Path(path).resolve()
        if not path.is_dir():
            raise UserInputError(f"{path}: run folder not found")
        parts = path.parent.name.split("__")
        if len(parts) != 3 or not path.name.startswith("fold_"):
            raise UserInputError(f"{path}: not an nnU-Net fold folder (<Trainer>__<Plans>__<Configuration>/fold_N)")
        for needed in (path / FINAL_CHECKPOINT, path.parent / "plans.json", path.parent / "dataset.json"):
            if not needed.is_file():
                raise UserInputError(f"{needed}: missing (is the run finished?)")
        trainer, plans, configuration = parts
        return cls(path, trainer, plans, configuration, fold=path.name.removeprefix("fold_"))

    @property
    def name(self) -> str:
        """``<Trainer>__<Plans>__<Configuration>/fold_<N>``."""
        return f"{self.path.parent.name}/{self.path.name}"


@dataclass(frozen=True)
class RunFolder:
    """One run's output folder: its ``unlearning_metrics.json``, and its request copy and audit when present."""

    folder: Path
    metrics: MetricsRecord
    request: RequestRecord | None
    audit: AuditRecord | None

    @property
    def trainer(self) -> str:
        return self.metrics["trainer"]

    @property
    def request_id(self) -> str:
        return self.metrics["request_id"]

    @property
    def is_retrain(self) -> bool:
        return self.trainer.startswith(RETRAIN_PREFIX)

    def evaluation(self, tag: str) -> EvaluationRecord | None:
        """The first evaluation tagged ``tag`` ("start", "end", "epoch_N"), or None."""
        return next((e for e in self.metrics["evaluations"] if e["tag"] == tag), None)

    @property
    def case_sets(self) -> dict[str, list[str]]:
        return {name: list(self.metrics[name]) for name in SETS}


def load_run(folder: Path) -> RunFolder:
    """Read a finished run's folder (``.../<trainer>__<plans>__<config>/fold_N``); one-line error otherwise."""
    folder = Path(folder)
    path = folder / METRICS_FILE
    if not folder.is_dir():
        raise UserInputError(f"{folder}: not a folder")
    if not path.is_file():
        raise UserInputError(f"{folder}: no {METRICS_FILE}; give the fold_N folder of an unlearning or retrain run")
    metrics = read_json_object(path, "unlearning metrics")
    required = ("request_id", "trainer", "evaluations", "seconds", *SETS)
    missing = [key for key in required if key not in metrics]
    if missing:
        raise UserInputError(f"{path}: not an unlearning metrics file (no '{missing[0]}')")
    # Files are taken to hold what their writers write (records.py); the keys every reader needs are checked above.
    run = RunFolder(
        folder,
        cast(MetricsRecord, metrics),
        cast(RequestRecord, read_json_object(folder / REQUEST_FILE, "request copy"))
        if (folder / REQUEST_FILE).is_file()
        else None,
        cast(AuditRecord, read_json_object(folder / AUDIT_FILE, "audit")) if (folder / AUDIT_FILE).is_file() else None,
    )
    if run.evaluation("end") is None:
        raise UserInputError(f"{path}: the run has not finished (no 'end' evaluation)")
    return run
