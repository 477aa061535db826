"""What nnUNetTrainerMed3D adds to nnU-Net's trainer: MedicalNet weights for the encoder, a slower encoder.

`Med3DTrainerMixin` goes before `nnUNetTrainer` in a trainer's bases (`trainers/nnUNetTrainerMed3D.py`).
Everything else (data, loss, checkpoints, `--c`, `--val`, validation, `nnUNetv2_predict`) is nnU-Net's.

Pretrained weights: the MedicalNet checkpoint named by the environment variable `nnUNet_med3d_weights` is
loaded into `network.encoder` once the network is built, unless the encoder's weights come from an nnU-Net
checkpoint instead (`--c`, `--val`: `load_checkpoint` is called before `initialize`), so continuing or
validating a training does not need the file. `-pretrained_weights` (nnU-Net's flag) is applied after
`initialize` and so overrides the MedicalNet encoder.

Learning rates: the pretrained encoder trains at `encoder_lr_scale` × the decoder's learning rate (both
following nnU-Net's poly schedule). Default 0.1: the decoder gets nnU-Net's 0.01, the encoder 0.001 —
MedicalNet's own fine-tuning rate for its pretrained layers (MedicalNet `train.py`: base lr 0.001 for the
backbone, ×100 for the new segmentation head). Trained from scratch the encoder uses the decoder's rate.
`med3d_initial_lr` replaces nnU-Net's 0.01 where a trainer sets it (the CPU profile's original trains at 0.03).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

from nnunet_unlearning.artifacts import MED3D_INITIALISATION_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_text, sha256_file
from nnunet_unlearning.med3d.checkpoint import load_medicalnet_weights
from nnunet_unlearning.med3d.cpu_precision import training_precision
from nnunet_unlearning.med3d.network import NETWORK_CLASS_NAME, Med3DUNet
from nnunet_unlearning.nnunet.glue import bare_network, exit_on_user_error
from nnunet_unlearning.nnunet.mirroring import PlannedMirroringMixin
from nnunet_unlearning.nnunet.progress_plot_interval import ProgressPlotIntervalMixin
from nnunet_unlearning.optim import grouped_sgd

MED3D_WEIGHTS_ENV = "nnUNet_med3d_weights"
SCRATCH_TRAINER = "nnUNetTrainerMed3D_scratch"

if TYPE_CHECKING:  # the mixin's `self` and `super()` are an nnUNetTrainer's
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer as _TrainerBase
else:
    _TrainerBase = object


def med3d_weights_path() -> Path:
    """The MedicalNet checkpoint named by `nnUNet_med3d_weights`; UserInputError when unset or missing."""
    value = os.environ.get(MED3D_WEIGHTS_ENV)
    if not value:
        raise UserInputError(
            f"{MED3D_WEIGHTS_ENV} is not set: nnUNetTrainerMed3D initialises its encoder from a "
            f"MedicalNet checkpoint (export {MED3D_WEIGHTS_ENV}=/path/to/resnet_50_23dataset.pth); "
            f"to train from random initialisation use -tr {SCRATCH_TRAINER}"
        )
    path = Path(value)
    if not path.is_file():
        raise UserInputError(
            f"{path}: no such file ({MED3D_WEIGHTS_ENV}); set it to a MedicalNet checkpoint "
            f"or train from random initialisation with -tr {SCRATCH_TRAINER}"
        )
    return path


class Med3DTrainerMixin(PlannedMirroringMixin, ProgressPlotIntervalMixin, _TrainerBase):
    """Mix into an nnUNetTrainer subclass (before nnUNetTrainer) whose plans name Med3DUNet; it mirrors along
    the plans' ``mirror_axes`` where they name them (`nnunet/mirroring.py`).

    Class attributes: `med3d_pretrained` (load `nnUNet_med3d_weights` into the encoder) and
    `encoder_lr_scale` (encoder learning rate relative to the decoder's).
    """

    med3d_pretrained: bool = True
    encoder_lr_scale: float = 0.1
    #: the decoder's initial learning rate; None keeps nnU-Net's (0.01)
    med3d_initial_lr: float | None = None
    _encoder_from_nnunet_checkpoint: bool = False

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        # nnU-Net calls this before initialize() for --c and --val: the checkpoint holds every weight
        self._encoder_from_nnunet_checkpoint = True
        super().load_checkpoint(filename_or_checkpoint)

    def initialize(self) -> None:
        if self.med3d_initial_lr is not None:  # before nnU-Net builds the optimizer from it
            self.initial_lr = self.med3d_initial_lr
        # a user's mistake (plans, weights file) is one line on stderr and exit 2, as in our other trainers
        with exit_on_user_error(type(self).__name__):
            class_name = self.configuration_manager.network_arch_class_name
            if class_name != NETWORK_CLASS_NAME:
                raise UserInputError(
                    f"plans {self.plans_manager.plans_name!r}: network {class_name} is not "
                    f"Med3DUNet; {type(self).__name__} needs plans from `nnunet-unlearning "
                    f"plan-med3d` (-p nnUNetMed3DPlans)"
                )
            load = self.med3d_pretrained and not self._encoder_from_nnunet_checkpoint
            weights = med3d_weights_path() if load else None
        super().initialize()
        if weights is not None:
            with exit_on_user_error(type(self).__name__):
                report = load_medicalnet_weights(self._med3d_network().encoder, weights)
            self.print_to_log_file(report.summary())
            if self.local_rank == 0:  # so that unlearning and the retrain oracle can name and check the file
                record = {"checkpoint": str(weights.resolve()), "sha256": sha256_file(weights)}
                atomic_write_text(Path(self.output_folder) / MED3D_INITIALISATION_FILE, json.dumps(record) + "\n")

    def on_train_start(self) -> None:
        super().on_train_start()
        precision = training_precision(self._med3d_network(), self.device)
        if precision is not None:
            self.print_to_log_file(precision)

    def _med3d_network(self) -> Med3DUNet:
        # initialize() refused plans whose network is not Med3DUNet
        return cast(Med3DUNet, bare_network(self.network))

    def configure_optimizers(self):
        groups = [{"prefix": "encoder.", "lr_scale": self.encoder_lr_scale}]
        return grouped_sgd(
            bare_network(self.network).named_parameters(), groups, self.initial_lr, self.weight_decay, self.num_epochs
        )
