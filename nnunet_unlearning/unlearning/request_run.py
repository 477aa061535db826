"""What every nnU-Net run that serves an unlearning request does around nnU-Net's own training.

The unlearning trainers and the retrain oracle share one lifecycle: read the request and refuse a results
folder that holds another request's run (when the trainer is built); take nnU-Net's split from the request; at
the start
of training continue an interrupted run's record and write the request copy; score the request's sets with
the evaluation hook; at the end write the record's final form with the model's SHA-256 and, for an unlearning
run, the certificate. :class:`RequestRunMixin` owns it; the trainers say when.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ClassVar

import torch

from nnunet_unlearning.artifacts import FINAL_CHECKPOINT, REQUEST_FILE, SETS, chained_trainer_folder_name
from nnunet_unlearning.evaluation.clinical_risk import critical_classes
from nnunet_unlearning.evaluation.hook import EvaluationHook
from nnunet_unlearning.evaluation.patch_hook import PatchHook
from nnunet_unlearning.evidence.certificate import write_certificate
from nnunet_unlearning.med3d.cpu_precision import training_precision
from nnunet_unlearning.nnunet.glue import (
    CUDA,
    bare_network,
    case_dataset,
    exit_on_user_error,
    make_predictor,
    schedule_of,
)
from nnunet_unlearning.request import UnlearningRequest, load_request
from nnunet_unlearning.unlearning.run_record import RunRecord, guard_output_folder


class RequestRunMixin:
    """Mixed into an nnU-Net trainer (before it) that serves the unlearning request of its dataset.

    Training cases are the request's retain set, validation cases its held-out set (the original's
    validation split), so nnU-Net's own validation reports the held-out subjects. The request is read when the
    trainer is built, then the trainer sets itself up from it (:meth:`_set_up_run`, which returns the run's
    record); it calls :meth:`_open_record` and :meth:`_close_record` at the points of nnU-Net's loop their
    docstrings name.
    """

    #: Whether the run writes ``unlearning_certificate.{json,md}`` when it ends (the retrain oracle is the
    #: evidence an unlearning run's certificate quotes; it certifies nothing itself).
    certified: ClassVar[bool] = True

    request: UnlearningRequest
    record: RunRecord
    # the nnU-Net trainer's, which this class is mixed into
    plans_manager: Any
    configuration_manager: Any
    label_manager: Any
    dataset_json: dict
    output_folder: str
    current_epoch: int
    local_rank: int
    print_to_log_file: Any
    output_folder_base: str
    fold: int | str
    initial_lr: float
    log_file: str
    logger: Any
    configuration_name: str
    network: torch.nn.Module
    device: torch.device
    draw_progress_plot: Any  # `ProgressPlotIntervalMixin`'s, which every trainer of ours mixes in too

    # nnU-Net records its trainers' init arguments by name, so the signature is spelled out (once, here)
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = CUDA,
    ):
        """nnU-Net's trainer, then the run's request (exit 2 on a user error; a folder holding another request's
        run is refused), then the trainer's own set-up. ``continue_training``: whether the run resumes an
        interrupted one (nnU-Net takes it out of the plans)."""
        self.continue_training = bool(plans.get("continue_training", False))
        super().__init__(plans, configuration, fold, dataset_json, device)  # type: ignore[call-arg]
        with exit_on_user_error(self.__class__.__name__):
            self.request = load_request(self.plans_manager.dataset_name, str(self.fold))
            if self.request.previous is not None:
                self._use_chained_run_folder()
            guard_output_folder(self.output_folder, self.request, self.continue_training)
        self.record = self._set_up_run()

    def _use_chained_run_folder(self) -> None:
        """Train request n+1 of a lineage into its own results folder (``artifacts.CHAINED_RUN_MARK``), so that a
        second request with the same strategy never meets the first one's run. nnU-Net's constructor already
        made the default folder and started the log file in it: the log moves, the folders left empty go."""
        default = Path(self.output_folder)
        trainer = chained_trainer_folder_name(type(self).__name__, self.request.run_name_id)
        base = default.parent.with_name(f"{trainer}__{self.plans_manager.plans_name}__{self.configuration_name}")
        self.output_folder_base, self.output_folder = str(base), str(base / default.name)
        Path(self.output_folder).mkdir(parents=True, exist_ok=True)
        log = Path(self.log_file)
        self.log_file = str(Path(self.output_folder) / log.name)
        if log.is_file():  # the citation nnU-Net's constructor printed
            log.replace(self.log_file)
        self.logger.output_folder = self.output_folder
        for folder in (default, default.parent):
            with contextlib.suppress(OSError):  # not empty: it holds an earlier run
                folder.rmdir()

    def _set_up_run(self) -> RunRecord:
        """What the trainer sets up from the request when it is built (settings, schedule, strategy); returns
        the run's record."""
        raise NotImplementedError

    def do_split(self):
        return list(self.request.retain), list(self.request.heldout)

    def _open_record(self) -> None:
        """In ``on_train_start``: continue the record of an interrupted run (``--c``), note the schedule the run
        trains with and its precision, and write the request copy into the output folder."""
        precision = training_precision(bare_network(self.network), self.device)
        if precision is not None:
            self.print_to_log_file(precision)
        if self.current_epoch > 0:
            self.record.resume(self.output_folder, self.current_epoch)
        self.record.schedule = schedule_of(self)
        self.record.write_request_copy(Path(self.output_folder) / REQUEST_FILE)

    def _make_hook(self, patches_per_case: int | None = None) -> EvaluationHook:
        """The evaluation hook over the request's forget, retain and held-out cases of this trainer's data;
        with ``patches_per_case``, its patch form (`patch_hook`: that many patches of the configuration's patch
        size per case, predicted a training batch at a time), which calibration checks use."""
        request = self.request
        cases = sorted(set(request.forget) | set(request.retain) | set(request.heldout))
        arguments: dict[str, Any] = {
            "dataset": case_dataset(self, cases),
            "case_sets": {name: getattr(request, name) for name in SETS},
            "labels": [int(c) for c in self.label_manager.foreground_labels],
            "ignore_label": self.label_manager.ignore_label,
            "spacing_mm": self.configuration_manager.spacing,
            "critical": critical_classes(self.dataset_json),
            "make_predictor": lambda net: make_predictor(self, net),
        }
        if patches_per_case is None:
            return EvaluationHook(**arguments)
        return PatchHook(
            **arguments,
            patch_size=self.configuration_manager.patch_size,
            patches_per_case=patches_per_case,
            batch_size=self.configuration_manager.batch_size,
        )

    def _close_record(self) -> None:
        """In ``on_train_end``, after nnU-Net wrote the final checkpoint (rank 0): the record's final form with
        the model's SHA-256, its table in the log and, for a certified run, the certificate."""
        if self.local_rank != 0:
            return
        if not (Path(self.output_folder) / "progress.png").is_file():
            # nnU-Net plots it after every epoch, and its own export needs it: a run that took no epoch (a
            # calibrated run already forgotten at check 0, SSD, an untouched fold) gets the empty plot
            self.draw_progress_plot()
        self.record.finish(self.output_folder, Path(self.output_folder) / FINAL_CHECKPOINT)
        self.print_to_log_file("\n" + self.record.table())
        if self.certified:
            with exit_on_user_error(self.__class__.__name__):
                certificate = write_certificate(Path(self.output_folder))
            self.print_to_log_file(f"unlearning certificate: {certificate}")
