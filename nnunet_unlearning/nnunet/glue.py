"""The few places where our trainers reach into nnU-Net: loaders, the predictor, error exits.

Every function takes the nnU-Net trainer it works for and uses nnU-Net's own pieces (dataloader,
augmentation pipelines, sliding-window predictor) with the trainer's settings, so an unlearning run sees
data exactly as the original training did.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout

import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from torch import nn
from torch._dynamo import OptimizedModule

from nnunet_unlearning.artifacts import FINAL_CHECKPOINT, ModelFolder
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.nnunet.trainers_dir import use_our_trainers

#: nnU-Net's default for a trainer's ``device`` argument, which our trainers repeat in their signatures.
CUDA = torch.device("cuda")

#: The sliding-window step of our evaluations, in tile sizes: 1.0 = tiles side by side, overlapping only where a
#: volume's size is not a multiple of the tile's (nnU-Net's default, 0.5, overlaps every tile by half). On the CPU
#: profile's original it scored the benchmark's 7 cases to the same mean Dice (0.7664 both, each case within
#: 0.0013) with 18 tiles a case instead of 32, in 57 % of the time (docs/benchmarks.md, `benchmarks/tile_step.py`);
#: the hook tracks a model across a run and compares models scored the same way, which needs no overlap.
EVALUATION_TILE_STEP = 1.0


@contextmanager
def exit_on_user_error(program: str) -> Iterator[None]:
    """Turn a :class:`UserInputError` inside nnU-Net's own commands into one line on stderr and exit 2."""
    try:
        yield
    except UserInputError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def bare_network(network: nn.Module) -> nn.Module:
    """The network without DistributedDataParallel and torch.compile wrappers (their names carry prefixes)."""
    if isinstance(network, torch.nn.parallel.DistributedDataParallel):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


def case_dataset(trainer, cases):
    """nnU-Net's dataset object over ``cases`` of the trainer's preprocessed configuration."""
    return trainer.dataset_class(
        trainer.preprocessed_dataset_folder,
        sorted(cases),
        folder_with_segs_from_previous_stage=trainer.folder_with_segs_from_previous_stage,
    )


def _stream(trainer, dataset, sampled_patch_size, transforms, processes: int, cached: int):
    """nnU-Net's dataloader over ``dataset`` behind its augmenter; the first batch is drawn at once, as
    nnU-Net does, so that worker start-up is not charged to the first step."""
    loader = nnUNetDataLoader(
        dataset,
        trainer.batch_size,
        sampled_patch_size,
        trainer.configuration_manager.patch_size,
        trainer.label_manager,
        oversample_foreground_percent=trainer.oversample_foreground_percent,
        sampling_probabilities=None,
        pad_sides=None,
        transforms=transforms,
        probabilistic_oversampling=trainer.probabilistic_oversampling,
    )
    if processes == 0:
        stream = SingleThreadedAugmenter(loader, None)
    else:
        stream = NonDetMultiThreadedAugmenter(
            data_loader=loader,
            transform=None,
            num_processes=processes,
            num_cached=cached,
            seeds=None,
            pin_memory=trainer.device.type == "cuda",
            wait_time=0.002,
        )
    next(stream)
    return stream


def _regions(trainer):
    lm = trainer.label_manager
    return lm.foreground_regions if lm.has_regions else None


def train_loader(trainer, dataset):
    """An endless stream of augmented training batches over ``dataset``, as nnU-Net's training stream."""
    rotation, dummy_2d, initial_patch_size, mirror_axes = (
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    )
    transforms = trainer.get_training_transforms(
        trainer.configuration_manager.patch_size,
        rotation,
        trainer._get_deep_supervision_scales(),
        mirror_axes,
        dummy_2d,
        use_mask_for_norm=trainer.configuration_manager.use_mask_for_norm,
        is_cascaded=trainer.is_cascaded,
        foreground_labels=trainer.label_manager.foreground_labels,
        regions=_regions(trainer),
        ignore_label=trainer.label_manager.ignore_label,
    )
    processes = get_allowed_n_proc_DA()
    return _stream(trainer, dataset, initial_patch_size, transforms, processes, max(6, processes // 2))


def validation_loader(trainer, dataset):
    """nnU-Net's per-epoch validation stream (no augmentation) over ``dataset``."""
    transforms = trainer.get_validation_transforms(
        trainer._get_deep_supervision_scales(),
        is_cascaded=trainer.is_cascaded,
        foreground_labels=trainer.label_manager.foreground_labels,
        regions=_regions(trainer),
        ignore_label=trainer.label_manager.ignore_label,
    )
    processes = get_allowed_n_proc_DA()
    return _stream(
        trainer,
        dataset,
        trainer.configuration_manager.patch_size,
        transforms,
        max(1, processes // 2) if processes else 0,
        max(3, processes // 4),
    )


def new_predictor(device: torch.device) -> nnUNetPredictor:
    """nnU-Net's sliding-window predictor as our evaluations use it: Gaussian-weighted tiles at
    :data:`EVALUATION_TILE_STEP`, no mirroring, no progress bars, everything on the device when it is a GPU."""
    # nnU-Net's constructor prints a notice for every non-CUDA device: once per evaluation, in the training log
    with redirect_stdout(io.StringIO()):
        return nnUNetPredictor(
            tile_step_size=EVALUATION_TILE_STEP,
            use_gaussian=True,
            use_mirroring=False,
            perform_everything_on_device=device.type == "cuda",
            device=device,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )


def make_predictor(trainer, network: nn.Module) -> nnUNetPredictor:
    """:func:`new_predictor` for ``network`` with the trainer's plans."""
    predictor = new_predictor(trainer.device)
    predictor.manual_initialization(
        network,
        trainer.plans_manager,
        trainer.configuration_manager,
        None,
        trainer.dataset_json,
        trainer.__class__.__name__,
        trainer.inference_allowed_mirroring_axes,
    )
    return predictor


def trained_predictor(model: ModelFolder, device: torch.device) -> nnUNetPredictor:
    """:func:`new_predictor` loaded by nnU-Net from a trained model's fold folder (its final checkpoint, the
    network its plans name), as ``nnUNetv2_predict`` loads it; our trainers folder is added to
    ``nnUNet_extTrainer`` first (:func:`use_our_trainers`) so that nnU-Net finds our trainer classes.

    Raises :class:`UserInputError` when nnU-Net cannot find the run's trainer class, or for a region-based
    model: the audit and the membership scores read softmax probabilities per label.
    """
    use_our_trainers()
    fold = model.fold if model.fold == "all" else int(model.fold)
    predictor = new_predictor(device)
    try:
        with redirect_stdout(io.StringIO()):  # nnU-Net prints every folder it searches for the trainer class
            predictor.initialize_from_trained_model_folder(
                str(model.path.parent), use_folds=(fold,), checkpoint_name=FINAL_CHECKPOINT
            )
    except RuntimeError as error:
        if "Could not find requested nnunet trainer" not in str(error):
            raise
        raise UserInputError(
            f"{model.path}: nnU-Net cannot find trainer class {model.trainer} (is nnUNet_extTrainer set?)"
        ) from None
    if predictor.label_manager.has_regions:
        raise UserInputError(f"{model.path}: region-based model; the audit supports label (softmax) models only")
    return predictor


def schedule_of(trainer) -> dict:
    """The schedule an nnU-Net trainer runs, for the run record: epochs and optimizer steps per epoch."""
    return {"epochs": int(trainer.num_epochs), "iterations_per_epoch": int(trainer.num_iterations_per_epoch)}
