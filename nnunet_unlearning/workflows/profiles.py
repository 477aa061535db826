"""The settings the workflows run at: the CPU profile's planning and network, and the benchmark's two profiles.

The CPU profile is nnU-Net planning shrunk so that a whole run fits a 2-core machine. It is used by the demo,
the benchmark and the test suite, and stated wherever it is used: the 3d_fullres configuration is planned at
4× coarser spacing than MRBrainS18's voxels, with a small patch and a small network: a tiny PlainConvUNet
(``nnUNetPlans``, the tests) and a Med3D ResNet-10 U-Net with a narrow decoder (``nnUNetMed3DPlans`` from
`plan_med3d`, the demo and the benchmark). Everything else (fingerprint, planning, preprocessing, training,
inference) is nnU-Net's own.

A :class:`Profile` (``cpu``: a 2-core machine, about 40 minutes per forget subject; ``paper``: the seed
study's setting, for a GPU) fixes the network and resolution (through how it plans), the original model's
and the retrain oracle's schedule, the two unlearning horizons, the device, and the audit's sample size. The
horizons are trainer suffixes (``nnUNetTrainerUnlearn<Strategy>_<N>epochs``), so each run is the trainer a
user runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nnunet_unlearning.files import atomic_write_json

CONFIGURATION = "3d_fullres"
#: nnU-Net spacing order (slice axis first), mm: 6 mm slices, 3.83 mm in-plane (4× the MRBrainS18 voxel).
COARSE_SPACING = (6.0, 3.832, 3.832)
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

#: The Med3D network of the profile: MedicalNet's ResNet-10 encoder (14.7 M parameters, what MedicalNet
#: publishes as resnet_10) under a narrow decoder. One forward+backward at the profile's batch and patch
#: takes 0.28 s on one core, 5.5× the PlainConvUNet (docs/benchmarks.md).
MED3D_DEPTH = 10
MED3D_DECODER_CHANNELS = (8, 16, 16, 16, 16)
MED3D_PLANS = "nnUNetMed3DPlans"

#: Torch intra-op threads for CPU training. Measured on the 2-core machines with other work running: one
#: forward+backward of the profile's network took 0.19 s on 1 thread and 4.9 s on 2 (threads that wait
#: for a busy core stall every operator); see docs/benchmarks.md.
TORCH_THREADS = 1


def use_cpu_threads() -> None:
    """Apply :data:`TORCH_THREADS` to this process (nnU-Net's planner changes torch's thread count)."""
    import torch

    torch.set_num_threads(TORCH_THREADS)


def describe_cpu(med3d: bool = False) -> str:
    """One line that says what the CPU profile changes, for logs and reports."""
    network = (
        f"Med3D ResNet-{MED3D_DEPTH} U-Net, decoder channels {list(MED3D_DECODER_CHANNELS)} ({MED3D_PLANS})"
        if med3d
        else f"PlainConvUNet features {TINY_ARCHITECTURE['features_per_stage']}"
    )
    return (
        f"CPU profile: {CONFIGURATION} at spacing {COARSE_SPACING} mm, patch {PATCH_SIZE}, batch "
        f"{BATCH_SIZE}, {network}, {TORCH_THREADS} torch thread"
    )


def plan_and_preprocess(dataset_id: int, plans: str = "nnUNetPlans", processes: int = 2) -> Path:
    """nnU-Net fingerprint + planning at the coarse spacing, the configuration shrunk, then preprocessing.

    Returns the plans file. The dataset must already be in ``$nnUNet_raw``.
    """
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    extract_fingerprint_dataset(
        dataset_id, num_processes=processes, check_dataset_integrity=True, verbose=False, show_progress_bar=False
    )
    plan_experiment_dataset(dataset_id, overwrite_target_spacing=COARSE_SPACING, overwrite_plans_name=plans)
    plans_file = Path(str(nnUNet_preprocessed)) / convert_id_to_dataset_name(dataset_id) / f"{plans}.json"
    shrink_plans(plans_file)
    preprocess_dataset(dataset_id, plans, (CONFIGURATION,), num_processes=[processes], show_progress_bar=False)
    return plans_file


def plan_med3d(dataset_id: int) -> Path:
    """The profile's Med3D plans (:data:`MED3D_PLANS`) over the data `plan_and_preprocess` wrote."""
    from nnunet_unlearning.med3d.plans import plan_med3d as plan

    return plan(dataset_id, CONFIGURATION, depth=MED3D_DEPTH, name=MED3D_PLANS, decoder_channels=MED3D_DECODER_CHANNELS)


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

    def describe(self) -> str:
        """What the profile runs, for logs and the benchmark's tables."""
        network = (
            describe_cpu(med3d=True)
            if self.name == "cpu"
            else "paper profile: nnU-Net's own 3d_fullres planning (full resolution), Med3D ResNet-50 "
            f"U-Net ({MED3D_PLANS}), device {self.device}"
        )
        return (
            f"{network}; original and retrain oracle {self.original_epochs} epochs × "
            f"{self.original_iterations} iterations; unlearning {self.horizons[0]} and {self.horizons[1]} "
            f"epochs × {self.unlearning_iterations} iterations; {self.jobs} training(s) side by side"
        )

    def plan(self, dataset_id: int) -> str:
        """Plan and preprocess the converted dataset, then plan Med3D; return the plans name to train with."""
        if self.name == "cpu":
            plan_and_preprocess(dataset_id)
            plan_med3d(dataset_id)
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


#: The CPU profile's unlearning horizons keep the seed study's 20 : 50 ratio (2 : 5 epochs).
PROFILES = {
    "cpu": Profile(
        "cpu",
        original_epochs=20,
        original_iterations=40,
        horizons=(2, 5),
        unlearning_iterations=20,
        device="cpu",
        jobs=2,
        audit_patches=8,
        audit_bootstrap=200,
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
    ),
}
