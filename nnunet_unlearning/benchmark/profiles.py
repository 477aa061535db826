"""The benchmark's two settings: ``cpu`` (a 2-core machine, about 40 minutes per forget subject) and ``paper``
(the seed study's setting, for a GPU).

A profile fixes the network and resolution (through how it plans), the original model's and the retrain
oracle's schedule, the two unlearning horizons, the device, and the audit's sample size. The horizons are
trainer suffixes (``nnUNetTrainerUnlearn<Strategy>_<N>epochs``), so each run is the trainer a user runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from nnunet_unlearning import cpu_profile

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
            cpu_profile.describe(med3d=True)
            if self.name == "cpu"
            else "paper profile: nnU-Net's own 3d_fullres planning (full resolution), Med3D ResNet-50 "
            f"U-Net ({cpu_profile.MED3D_PLANS}), device {self.device}"
        )
        return (
            f"{network}; original and retrain oracle {self.original_epochs} epochs × "
            f"{self.original_iterations} iterations; unlearning {self.horizons[0]} and {self.horizons[1]} "
            f"epochs × {self.unlearning_iterations} iterations; {self.jobs} training(s) side by side"
        )

    def plan(self, dataset_id: int) -> str:
        """Plan and preprocess the converted dataset, then plan Med3D; return the plans name to train with."""
        if self.name == "cpu":
            cpu_profile.plan_and_preprocess(dataset_id)
            cpu_profile.plan_med3d(dataset_id)
            return cpu_profile.MED3D_PLANS
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprint_dataset,
            plan_experiment_dataset,
            preprocess_dataset,
        )

        from nnunet_unlearning.med3d.plans import plan_med3d

        extract_fingerprint_dataset(dataset_id, check_dataset_integrity=True)
        plan_experiment_dataset(dataset_id)
        preprocess_dataset(dataset_id, "nnUNetPlans", (cpu_profile.CONFIGURATION,), num_processes=[4])
        plan_med3d(dataset_id, cpu_profile.CONFIGURATION, depth=50, name=cpu_profile.MED3D_PLANS)
        return cpu_profile.MED3D_PLANS


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
