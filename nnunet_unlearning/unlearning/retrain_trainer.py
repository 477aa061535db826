"""The exact-unlearning oracle: nnU-Net training from scratch on the retain set only.

It reads the request for its split (retain for training, the original's held-out cases for validation)
but never the original weights. It repeats the original's recipe (``med3d/original_recipe.py``): as many
epochs as the original checkpoint records, the same learning rate, parameter groups and scales, and, for
a Med3D original started from MedicalNet weights, the encoder loaded from the MedicalNet checkpoint in
``nnUNet_med3d_weights``. At the end, the evaluation hook scores it on the forget, retain and held-out cases,
so every unlearning run can report its gap to this model.
"""

from __future__ import annotations

import time
from typing import cast

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_unlearning.med3d.checkpoint import load_medicalnet_weights
from nnunet_unlearning.med3d.network import Med3DUNet
from nnunet_unlearning.med3d.original_recipe import MEDICALNET, check_same_initialisation, initial_lr_of, recipe_of
from nnunet_unlearning.med3d.pretrained_trainer import med3d_weights_path
from nnunet_unlearning.nnunet.glue import bare_network, exit_on_user_error
from nnunet_unlearning.nnunet.mirroring import PlannedMirroringMixin
from nnunet_unlearning.nnunet.progress_plot_interval import ProgressPlotIntervalMixin
from nnunet_unlearning.optim import grouped_sgd
from nnunet_unlearning.request import lineage_root
from nnunet_unlearning.unlearning.request_run import RequestRunMixin
from nnunet_unlearning.unlearning.run_record import RunRecord


def original_epochs(checkpoint: str) -> int:
    """How many epochs the original model was trained for, as its final checkpoint records."""
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["current_epoch"])


class nnUNetTrainerRetrain(RequestRunMixin, PlannedMirroringMixin, ProgressPlotIntervalMixin, nnUNetTrainer):
    """Retrain from scratch without the forget cases; ``num_epochs`` follows the original model, mirroring the
    plans' ``mirror_axes`` as the original's Med3D trainer did."""

    follow_original_schedule = True
    certified = False

    def _set_up_run(self) -> RunRecord:
        self._weights_from_nnunet_checkpoint = False
        if self.follow_original_schedule:
            self.num_epochs = original_epochs(lineage_root(self.request).checkpoint)
        self.initial_lr = initial_lr_of(self.request.original, self.initial_lr)
        return RunRecord(self.request, self.__class__.__name__, None)

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
        super().on_train_start()
        self._open_record()
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self):
        self.record.train_seconds += time.perf_counter() - self._epoch_started
        super().on_epoch_end()
        self._epoch_started = time.perf_counter()

    def on_train_end(self):
        if self.local_rank == 0:
            self.set_deep_supervision_enabled(False)
            hook = self._make_hook()
            evaluation = hook.evaluate(bare_network(self.network), "end", self.current_epoch)
            self.record.add(evaluation.to_json(), self.output_folder)
        super().on_train_end()
        self._close_record()
