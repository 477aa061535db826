"""The exact-unlearning oracle: nnU-Net training from scratch on the retain set only.

It reads the request for its split (retain for training, the original's held-out cases for validation)
but never the original weights. Its schedule is the original's: as many epochs as the original
checkpoint records. At the end, the evaluation hook scores it on the forget, retain and held-out cases,
so every unlearning run can report its gap to this model.
"""

from __future__ import annotations

import time

import torch
from batchgenerators.utilities.file_and_folder_operations import join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_unlearning.unlearning.base_trainer import RequestSplitMixin, make_hook
from nnunet_unlearning.unlearning.nnunet_glue import bare_network, schedule_of
from nnunet_unlearning.unlearning.request import REQUEST_FILE
from nnunet_unlearning.unlearning.run_record import RunRecord


def original_epochs(checkpoint: str) -> int:
    """How many epochs the original model was trained for, as its final checkpoint records."""
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["current_epoch"])


class nnUNetTrainerRetrain(RequestSplitMixin, nnUNetTrainer):
    """Retrain from scratch without the forget cases; ``num_epochs`` follows the original model."""

    follow_original_schedule = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # noqa: B008 - nnU-Net's signature
        continue_training = bool(plans.get("continue_training", False))
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._attach_request(continue_training)
        if self.follow_original_schedule:
            self.num_epochs = original_epochs(self.request.original.checkpoint)
        self.record = RunRecord(self.request, self.__class__.__name__, None)

    def on_train_start(self):
        if self.current_epoch > 0:
            self.record.resume(self.output_folder, self.current_epoch)
        super().on_train_start()
        self.record.schedule = schedule_of(self)
        self.record.write_request_copy(join(self.output_folder, REQUEST_FILE))
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self):
        self.record.train_seconds += time.perf_counter() - self._epoch_started
        super().on_epoch_end()
        self._epoch_started = time.perf_counter()

    def on_train_end(self):
        if self.local_rank == 0:
            self.set_deep_supervision_enabled(False)
            hook = make_hook(self)
            self.record.add(hook.evaluate(bare_network(self.network), "end", self.current_epoch),
                            self.output_folder)
        super().on_train_end()
        if self.local_rank == 0:
            self.record.finish(self.output_folder, join(self.output_folder, "checkpoint_final.pth"))
            self.print_to_log_file("\n" + self.record.table())
