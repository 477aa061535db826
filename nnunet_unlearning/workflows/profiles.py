"""The settings the workflows run at: how the CPU profile plans a dataset, and the benchmark's two profiles.

The CPU profile is nnU-Net planning shrunk so that a whole run fits a 2-core machine: the 3d_fullres
configuration planned at a coarser spacing than MRBrainS18's voxels, with a small patch and a small network:
a tiny PlainConvUNet (``nnUNetPlans``) and a Med3D ResNet-10 U-Net with a narrow decoder (``nnUNetMed3DPlans``
from `plan_med3d`). Everything else (fingerprint, planning, preprocessing, training, inference) is nnU-Net's
own. :class:`CpuPlanning` holds what differs between its two uses: :data:`CPU` (the demo and the benchmark:
the recipe measured in docs/benchmarks.md, "A CPU recipe for the original") and :data:`TESTS` (the test
suite's shared fixture: 4× coarser still, the challenge labels, the smallest networks).

A :class:`Profile` (``cpu``: a 2-core machine; ``paper``: the seed study's setting, for a GPU) fixes the
network and resolution (through how it plans), the original model's and the retrain oracle's schedule and
trainer, the two unlearning horizons, the device, and the audit's sample size. The horizons are trainer
suffixes (``nnUNetTrainerUnlearn<Strategy>_<N>epochs``), so each run is the trainer a user runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_json

CONFIGURATION = "3d_fullres"
PATCH_SIZE = [16, 48, 48]
BATCH_SIZE = 2
#: A 4-stage PlainConvUNet, 8-64 features: about 0.2 M parameters.
TINY_ARCHITECTURE = {
    "n_stages": 4,
    "features_per_stage": [8, 16, 32, 64],
    "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
    "n_conv_per_stage": [1, 1, 1, 1],
    "n_conv_per_stage_decoder": [1, 1, 1],
}
#: MedicalNet's ResNet-10 encoder (14.7 M parameters, what MedicalNet publishes as resnet_10).
MED3D_DEPTH = 10
MED3D_PLANS = "nnUNetMed3DPlans"
#: The CPU profile's original: Med3D from random initialisation at learning rate 0.03
#: (``trainers/nnUNetTrainerMed3D.py``), unless MedicalNet weights are given (`original_trainer`).
CPU_ORIGINAL_TRAINER = "nnUNetTrainerMed3D_cpu"

#: Torch intra-op threads per CPU training, when set (a positive integer); else `cpu_threads`' rule.
THREADS_ENV = "nnUNet_unlearning_torch_threads"


def cpu_threads(side_by_side: int = 1) -> int:
    """Torch intra-op threads for one of ``side_by_side`` CPU trainings: :data:`THREADS_ENV` when set, else
    this process's cores shared between them (all of them for one training, as ``nnUNetv2_train -device cpu``
    sets; at least 1).

    Measured on the 2-core AMD machine with nothing else running (docs/benchmarks.md, "CPU training: 1 vs 2
    torch threads"): the CPU recipe's step took 0.30 s on 2 threads against 0.43 s on 1, its augmentation
    worker beside them. With other work on the cores a waiting thread stalls every operator (0.19 s on 1
    thread against 4.9 s on 2, measured earlier), hence one thread per training when trainings run side by
    side, and the setting for a machine shared with other work.

    Raises:
        UserInputError: :data:`THREADS_ENV` is not a positive integer.
    """
    setting = os.environ.get(THREADS_ENV)
    if setting:
        if not setting.isdigit() or int(setting) < 1:
            raise UserInputError(f"{THREADS_ENV}={setting}: must be a positive integer (torch threads per training)")
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, side_by_side))


def use_cpu_threads(side_by_side: int = 1) -> None:
    """Apply `cpu_threads` to this process (nnU-Net's planner changes torch's thread count)."""
    import torch

    torch.set_num_threads(cpu_threads(side_by_side))


@dataclass(frozen=True)
class CpuPlanning:
    """How the CPU profile converts and plans MRBrainS18, and how its trainings load data.

    ``spacing``: the 3d_fullres target spacing, mm, nnU-Net's axis order (slice axis first; MRBrainS18's voxels
    are 3.0 × 0.958 × 0.958). ``labels``: the converter's label set ("tissue" or "challenge").
    ``med3d_decoder``: Med3DUNet's decoder widths. ``cpu_bf16``: Med3DUNet's setting (`med3d/cpu_precision.py`).
    ``augmentation_workers``: ``nnUNet_n_proc_DA`` while training (1: augmentation runs on the second core).
    ``unlearning_augmentation_workers``: the same for an unlearning run (0: its batches are augmented in the
    training process, which also makes a run with a seed reproducible): a run of 5–100 steps spends more on
    starting the workers (one per data stream) than they save (docs/benchmarks.md, "Augmentation workers of an
    unlearning run").
    ``mirror``: `plan_med3d`'s mirroring ("all": nnU-Net's; "left-right": along the head's left-right axis
    only, which gained 0.02 held-out Dice on the CPU recipe: docs/benchmarks.md, "Mirroring left-right only").
    """

    name: str
    spacing: tuple[float, float, float]
    labels: str
    med3d_decoder: tuple[int, ...]
    cpu_bf16: str
    augmentation_workers: int
    unlearning_augmentation_workers: int
    mirror: str

    def describe(self, med3d: bool = False) -> str:
        """One line that says what the CPU profile changes, for logs and reports."""
        network = (
            f"Med3D ResNet-{MED3D_DEPTH} U-Net, decoder channels {list(self.med3d_decoder)} ({MED3D_PLANS}), "
            f"CPU bf16 {self.cpu_bf16}"
            if med3d
            else f"PlainConvUNet features {TINY_ARCHITECTURE['features_per_stage']}"
        )
        return (
            f"CPU profile: {self.labels} labels, {CONFIGURATION} at spacing {self.spacing} mm, patch {PATCH_SIZE}, "
            f"batch {BATCH_SIZE}, {network}, torch threads: the cores shared by the trainings side by side, "
            f"{self.augmentation_workers} augmentation worker(s), {self.unlearning_augmentation_workers} for an "
            "unlearning run"
        )

    def plan_and_preprocess(self, dataset_id: int, plans: str = "nnUNetPlans", processes: int = 2) -> Path:
        """nnU-Net fingerprint + planning at the profile's spacing, the configuration shrunk, then preprocessing.

        Returns the plans file. The dataset must already be in ``$nnUNet_raw``.
        """
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprint_dataset,
            plan_experiment_dataset,
            preprocess_dataset,
        )
        from nnunetv2.paths import nnUNet_preprocessed
        from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

        os.environ.pop("nnUNet_n_proc_DA", None)  # nnU-Net's planner needs a positive value or none
        extract_fingerprint_dataset(
            dataset_id, num_processes=processes, check_dataset_integrity=True, verbose=False, show_progress_bar=False
        )
        plan_experiment_dataset(dataset_id, overwrite_target_spacing=self.spacing, overwrite_plans_name=plans)
        plans_file = Path(str(nnUNet_preprocessed)) / convert_id_to_dataset_name(dataset_id) / f"{plans}.json"
        shrink_plans(plans_file)
        preprocess_dataset(dataset_id, plans, (CONFIGURATION,), num_processes=[processes], show_progress_bar=False)
        self.use_for_training()
        return plans_file

    def plan_med3d(self, dataset_id: int) -> Path:
        """The profile's Med3D plans (:data:`MED3D_PLANS`) over the data `plan_and_preprocess` wrote, at the
        profile's batch size (`plan_med3d` sizes the batch for a GPU's memory: 3 for MRBrainS18 at 2×, where
        each step would cost 1.5× the time on the CPU)."""
        from nnunet_unlearning.med3d.plans import plan_med3d as plan

        path = plan(
            dataset_id,
            CONFIGURATION,
            depth=MED3D_DEPTH,
            name=MED3D_PLANS,
            decoder_channels=self.med3d_decoder,
            cpu_bf16=self.cpu_bf16,
            mirror=self.mirror,
        )
        plans = json.loads(path.read_text())
        configuration = plans["configurations"][CONFIGURATION]
        if configuration["patch_size"] != PATCH_SIZE:  # it fits the strides at this spacing; a new one might not
            raise RuntimeError(f"{path}: Med3D patch {configuration['patch_size']} instead of {PATCH_SIZE}")
        configuration["batch_size"] = BATCH_SIZE
        atomic_write_json(path, plans)
        return path

    def use_for_training(self) -> None:
        """This process's settings for training: torch threads and nnU-Net's augmentation workers."""
        os.environ["nnUNet_n_proc_DA"] = str(self.augmentation_workers)
        use_cpu_threads()


#: The demo's and the benchmark's planning: the measured recipe (2× coarser in-plane, tissue labels, decoder
#: 16-64, bf16 where the probe finds it faster, augmentation in one worker process, mirrored left-right only;
#: unlearning runs augment in their own).
CPU = CpuPlanning(
    "cpu",
    spacing=(6.0, 1.916, 1.916),
    labels="tissue",
    med3d_decoder=(16, 32, 64, 64, 64),
    cpu_bf16="auto",
    augmentation_workers=1,
    unlearning_augmentation_workers=0,
    mirror="left-right",
)
#: The test suite's: 4× coarser in-plane (3.83 mm), the challenge labels, the narrowest decoder, fp32, data
#: loading in the training process (reproducible, and no worker start-up per test).
TESTS = CpuPlanning(
    "tests",
    spacing=(6.0, 3.832, 3.832),
    labels="challenge",
    med3d_decoder=(8, 16, 16, 16, 16),
    cpu_bf16="no",
    augmentation_workers=0,
    unlearning_augmentation_workers=0,
    mirror="all",
)


def shrink_plans(plans_file: Path) -> None:
    """Give the plans' 3d_fullres configuration the CPU profile's patch, batch and network (in place:
    the file is the one this profile's own planning just wrote)."""
    plans = json.loads(plans_file.read_text())
    configuration = plans["configurations"][CONFIGURATION]
    configuration["patch_size"] = PATCH_SIZE
    configuration["batch_size"] = BATCH_SIZE
    configuration["architecture"]["arch_kwargs"].update(TINY_ARCHITECTURE)
    atomic_write_json(plans_file, plans)


#: nnU-Net's default schedule: 1000 epochs of 250 iterations.
NNUNET_EPOCHS = 1000
NNUNET_ITERATIONS = 250


@dataclass(frozen=True)
class Profile:
    """One benchmark setting. Epochs are nnU-Net epochs of ``*_iterations`` optimizer steps each."""

    name: str
    original_epochs: int
    original_iterations: int
    horizons: tuple[int, int]  # unlearning epochs: the short and the long horizon
    unlearning_iterations: int
    device: str
    jobs: int  # trainings run side by side
    audit_patches: int  # patches per case for the membership-inference audit
    audit_bootstrap: int
    labels: str  # the converter's label set
    scratch_trainer: str  # the original's trainer without MedicalNet weights (`original_trainer`)
    replicates: int  # K: independently trained originals, and oracles per forget set (the retrain distribution)
    lr_scales: tuple[float, ...]  # the tuning grid's learning-rate scales (× the original's rate), × the horizons
    planning: CpuPlanning | None = None  # None: nnU-Net's own planning at full resolution
    #: steps between the checks of the benchmark's calibrated runs (their epochs shortened to this; schedules
    #: set in-process only), None: a check per unlearning epoch
    check_steps: int | None = None

    def describe(self) -> str:
        """What the profile runs, for logs and the benchmark's tables."""
        network = (
            self.planning.describe(med3d=True)
            if self.planning is not None
            else "paper profile: nnU-Net's own 3d_fullres planning (full resolution), Med3D ResNet-50 "
            f"U-Net ({MED3D_PLANS}), device {self.device}"
        )
        return (
            f"{network}; original and retrain oracle {self.original_epochs} epochs × "
            f"{self.original_iterations} iterations; unlearning {self.horizons[0]} and {self.horizons[1]} "
            f"epochs × {self.unlearning_iterations} iterations, tuned over learning-rate scales "
            f"{list(self.lr_scales)}; {self.replicates} replicate(s) of the original and of each oracle; "
            f"{self.jobs} training(s) side by side"
        )

    def plan(self, dataset_id: int) -> str:
        """Plan and preprocess the converted dataset, then plan Med3D; return the plans name to train with."""
        if self.planning is not None:
            self.planning.plan_and_preprocess(dataset_id)
            self.planning.plan_med3d(dataset_id)
            return MED3D_PLANS
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprint_dataset,
            plan_experiment_dataset,
            preprocess_dataset,
        )

        from nnunet_unlearning.med3d.plans import plan_med3d as plan

        extract_fingerprint_dataset(dataset_id, check_dataset_integrity=True)
        plan_experiment_dataset(dataset_id)
        preprocess_dataset(dataset_id, "nnUNetPlans", (CONFIGURATION,), num_processes=[4])
        plan(dataset_id, CONFIGURATION, depth=50, name=MED3D_PLANS)
        return MED3D_PLANS


#: The CPU profile's original follows the measured recipe (10 × 80 steps); its unlearning horizons keep the
#: seed study's 20 : 50 ratio (2 : 5 epochs). One training at a time: each uses both cores (its augmentation
#: worker on the second).
PROFILES = {
    "cpu": Profile(
        "cpu",
        original_epochs=10,
        original_iterations=80,
        horizons=(2, 5),
        unlearning_iterations=20,
        device="cpu",
        jobs=1,
        audit_patches=8,
        audit_bootstrap=200,
        labels=CPU.labels,
        scratch_trainer=CPU_ORIGINAL_TRAINER,
        replicates=4,
        lr_scales=(0.5, 1.0, 2.0),
        planning=CPU,
        check_steps=5,
    ),
    "paper": Profile(
        "paper",
        original_epochs=NNUNET_EPOCHS,
        original_iterations=NNUNET_ITERATIONS,
        horizons=(20, 50),
        unlearning_iterations=NNUNET_ITERATIONS,
        device="cuda",
        jobs=1,
        audit_patches=64,
        audit_bootstrap=1000,
        labels="challenge",
        scratch_trainer="nnUNetTrainerMed3D_scratch",
        replicates=4,
        lr_scales=(0.5, 1.0, 2.0),
    ),
}
