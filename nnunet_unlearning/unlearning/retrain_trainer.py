"""The exact-unlearning oracle: nnU-Net training from scratch on the retain set only.

It reads the request for its split (retain for training, the original's held-out cases for validation)
but never the original weights. It repeats the original's recipe (``original_recipe.py``): as many
epochs as the original checkpoint records, the same parameter groups and learning-rate scales, and, for
a Med3D original started from MedicalNet weights, the encoder loaded from the MedicalNet checkpoint in
``nnUNet_med3d_weights``. At the end, the evaluation hook scores it on the forget, retain and held-out cases,
so every unlearning run can report its gap to this model.
"""

from __future__ import annotations

import time
from typing import cast

import torch
from batchgenerators.utilities.file_and_folder_operations import join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_unlearning.artifacts import REQUEST_FILE
from nnunet_unlearning.med3d.checkpoint import load_medicalnet_weights
from nnunet_unlearning.med3d.network import Med3DUNet
from nnunet_unlearning.med3d.pretrained_trainer import med3d_weights_path
from nnunet_unlearning.nnunet.glue import CUDA, bare_network, exit_on_user_error, schedule_of
from nnunet_unlearning.optim import grouped_sgd
from nnunet_unlearning.request import lineage_root
from nnunet_unlearning.unlearning.base_trainer import RequestSplitMixin, make_hook
from nnunet_unlearning.unlearning.original_recipe import MEDICALNET, check_same_initialisation, recipe_of
from nnunet_unlearning.unlearning.run_record import RunRecord


def original_epochs(checkpoint: str) -> int:
    """How many epochs the original model was trained for, as its final checkpoint records."""
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["current_epoch"])


class nnUNetTrainerRetrain(RequestSplitMixin, nnUNetTrainer):
    """Retrain from scratch without the forget cases; ``num_epochs`` follows the original model."""

    follow_original_schedule = True

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = CUDA,
    ):
        continue_training = bool(plans.get("continue_training", False))
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._attach_request(continue_training)
        self._weights_from_nnunet_checkpoint = False
        if self.follow_original_schedule:
            self.num_epochs = original_epochs(lineage_root(self.request).checkpoint)
        self.record = RunRecord(self.request, self.__class__.__name__, None)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        # --c / --val: the checkpoint holds every weight, the MedicalNet file is not read again
        self._weights_from_nnunet_checkpoint = True
        super().load_checkpoint(filename_or_checkpoint)

    def initialize(self) -> None:
        super().initialize()
        recipe = recipe_of(self.request.original)
        if recipe["initialisation"] == MEDICALNET and not self._weights_from_nnunet_checkpoint:
            with exit_on_user_error(self.__class__.__name__):
                weights = med3d_weights_path()
                check_same_initialisation(weights, recipe.get("initialisation_checkpoint"))
                report = load_medicalnet_weights(cast(Med3DUNet, bare_network(self.network)).encoder, weights)
            self.print_to_log_file(report.summary())

    def configure_optimizers(self):
        """nnU-Net's optimizer and schedule in the original's parameter groups."""
        groups = recipe_of(self.request.original)["parameter_groups"]
        return grouped_sgd(
            bare_network(self.network).named_parameters(), groups, self.initial_lr, self.weight_decay, self.num_epochs
        )

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
            self.record.add(hook.evaluate(bare_network(self.network), "end", self.current_epoch), self.output_folder)
        super().on_train_end()
        if self.local_rank == 0:
            self.record.finish(self.output_folder, join(self.output_folder, "checkpoint_final.pth"))
            self.print_to_log_file("\n" + self.record.table())
