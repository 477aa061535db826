"""A CPU recipe for the original Med3D model: held-out Dice on the MRBrainS tissue grouping against training wall time.

    .venv/bin/python benchmarks/cpu_recipe.py --data ../shared/data/MRBrainS18 --workdir /work/cpu_recipe

Converts MRBrainS18 (IR + FLAIR, ``--labels tissue``: grey matter, white matter, CSF, the rest an ignore
label) into ``<workdir>/nnUNet_raw``, plans and preprocesses it at the CPU profile's coarse spacings,
splits it as the benchmark does (train on subjects 1, 4, 5, 7, 14; hold out 070 and 148) and trains the
Med3D ResNet-10 U-Net from scratch once per row of `VARIANTS`, each in a fresh process, timed from the
trainer's construction to the end of its last epoch. Each row is then scored as the evaluation hook scores
a model: nnU-Net's sliding-window predictor over every preprocessed case (no mirroring), Dice per class on
the preprocessed grid with the ignore label and the voxels outside the crop left out; rows marked
``fullres`` are also predicted at full resolution by nnU-Net's predictor (no test-time mirroring) and scored
with ``nnunet-unlearning evaluate``'s plain protocol (ignore label masked).

Each finished row is written to ``<workdir>/cpu_recipe/<row>.json``: a rerun skips it, so an interrupted
run continues where it stopped. The table goes to standard output and ``<workdir>/cpu_recipe/table.md``.
Other work on the machine slows every row: each row records the load average before and after training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATASET_ID = 602
DATASET = f"Dataset{DATASET_ID:03d}_MRBrainS18"
CONFIGURATION = "3d_fullres"
TRAINING_SUBJECTS = ("1", "4", "5", "7", "14")
HELDOUT_SUBJECTS = ("070", "148")
CLASSES = {1: "GM", 2: "WM", 3: "CSF"}
#: nnU-Net spacing order (slice axis first), mm; MRBrainS18's voxels are 3.0 × 0.958 × 0.958.
SPACINGS = {"4x": (6.0, 3.832, 3.832), "2x": (6.0, 1.916, 1.916)}
#: nnU-Net's default augmentation ("nnunet") or a cheaper list; see `training_transforms`.
LIGHT_AUGMENTATION = ("scale", "mirror", "brightness", "gamma")


@dataclass(frozen=True)
class Variant:
    """One training recipe. ``bf16``: "yes", "no" or "auto" (`nnunet_unlearning.med3d.cpu_precision`)."""

    name: str
    spacing: str = "4x"
    patch: tuple[int, int, int] = (16, 48, 48)
    batch: int = 2
    decoder: tuple[int, ...] = (16, 32, 64, 64, 64)
    lr: float = 0.01
    epochs: int = 10
    iterations: int = 50
    da_workers: int = 0
    threads: int = 1
    bf16: str = "no"
    deep_supervision: bool = True
    augmentation: tuple[str, ...] = ("nnunet",)
    #: axes (nnU-Net's order, slice axis first) mirroring augments along; None: nnU-Net's choice (all three)
    mirror_axes: tuple[int, ...] | None = None
    evaluate: bool = True
    fullres: bool = False


#: The recommended recipe: 2x in-plane coarsening, decoder 16-64, lr 0.03, 10 × 80 steps, augmentation in one
#: worker process, one torch thread, bf16 autocast where the probe finds it faster.
RECIPE = Variant(
    "recipe", spacing="2x", lr=0.03, epochs=10, iterations=80, da_workers=1, threads=1, bf16="auto", fullres=True
)
#: Short timing rows (100 steps) for the levers: augmentation worker, torch threads, bf16, lighter augmentation.
TIMING = replace(RECIPE, epochs=2, iterations=50, evaluate=False, fullres=False)
VARIANTS = (
    RECIPE,
    replace(RECIPE, name="recipe-repeat", fullres=False),
    replace(TIMING, name="t-fp32-1thread-inprocess", bf16="no", da_workers=0),
    replace(TIMING, name="t-fp32-1thread-worker", bf16="no"),
    replace(TIMING, name="t-bf16-1thread-inprocess", bf16="yes", da_workers=0),
    replace(TIMING, name="t-bf16-1thread-worker", bf16="yes"),
    replace(TIMING, name="t-bf16-2threads-worker", bf16="yes", threads=2),
    replace(TIMING, name="t-bf16-2threads-inprocess", bf16="yes", threads=2, da_workers=0),
    replace(TIMING, name="t-bf16-1thread-worker-light-aug", bf16="yes", augmentation=LIGHT_AUGMENTATION),
    replace(RECIPE, name="fp32-300", bf16="no", epochs=6, iterations=50, fullres=False),
    replace(RECIPE, name="bf16-300", bf16="yes", epochs=6, iterations=50, fullres=False),
    # toward the 6-minute target: deep supervision off (no auxiliary heads and losses), fewer steps
    replace(RECIPE, name="no-ds", deep_supervision=False, fullres=False),
    replace(RECIPE, name="no-ds-700", deep_supervision=False, iterations=70, fullres=False),
    replace(RECIPE, name="no-ds-700-lr05", deep_supervision=False, iterations=70, lr=0.05, fullres=False),
    # the second core to torch (stop 32: 100-step rows measured 0.30 against 0.43 s a step on an idle machine)
    replace(RECIPE, name="recipe-2threads", threads=2, fullres=False),
    replace(RECIPE, name="recipe-2threads-1000", threads=2, iterations=100, fullres=False),
    # toward 0.75 held-out Dice (stop 34): mirroring only left-right (axis 2 of these cases; a head is not
    # symmetric front to back or head to foot), drawn five times (the fifth also scored at full resolution);
    # once each: a higher rate, the whole 24-slice depth in one patch, batch 4 at the same number of samples
    *(
        replace(RECIPE, name=f"2t-mirror-lr-{draw}", threads=2, fullres=draw == 5, mirror_axes=(2,))
        for draw in (1, 2, 3, 4, 5)
    ),
    replace(RECIPE, name="2t-lr05-1", threads=2, fullres=False, lr=0.05),
    replace(RECIPE, name="2t-z24-1", threads=2, fullres=False, patch=(24, 48, 48)),
    replace(RECIPE, name="2t-batch4-600-1", threads=2, fullres=False, batch=4, iterations=60),
)


def subject_case(subject: str) -> str:
    return f"MRBrainS18_{subject}"


def run(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, check=True, env={**os.environ, **env})


def environment(workdir: Path) -> dict[str, str]:
    return {
        "nnUNet_raw": str(workdir / "nnUNet_raw"),
        "nnUNet_preprocessed": str(workdir / "nnUNet_preprocessed"),
        "nnUNet_results": str(workdir / "nnUNet_results"),
        "nnUNet_compile": "false",
    }


def plans_name(spacing: str) -> str:
    return f"nnUNetPlansCpu{spacing}"


def prepare(data: Path, workdir: Path) -> None:
    """Convert, plan and preprocess at every spacing of `SPACINGS`, and write the benchmark's split (once)."""
    env = environment(workdir)
    raw = workdir / "nnUNet_raw" / DATASET
    if not (raw / "dataset.json").is_file():
        cli = str(Path(sys.executable).with_name("nnunet-unlearning"))
        run([cli, "convert-mrbrains18", str(data), "-d", str(DATASET_ID), "--modalities", "IR", "FLAIR",
             "--source", "orig", "--labels", "tissue", "--overwrite"], env)  # fmt: skip
    preprocessed = workdir / "nnUNet_preprocessed" / DATASET
    if not all((preprocessed / f"{plans_name(s)}_{CONFIGURATION}").is_dir() for s in SPACINGS):
        run([sys.executable, __file__, "--prepare-worker", "--workdir", str(workdir)], env)


def prepare_worker() -> None:
    """In a process with the nnU-Net paths set: fingerprint, plan (patch and batch of the CPU profile), split."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / DATASET
    extract_fingerprint_dataset(DATASET_ID, num_processes=2, check_dataset_integrity=True, show_progress_bar=False)
    for key, spacing in SPACINGS.items():
        plan_experiment_dataset(DATASET_ID, overwrite_target_spacing=spacing, overwrite_plans_name=plans_name(key))
        path = preprocessed / f"{plans_name(key)}.json"
        plans = json.loads(path.read_text())
        plans["configurations"][CONFIGURATION].update({"patch_size": [16, 48, 48], "batch_size": 2})
        path.write_text(json.dumps(plans, indent=2))
        preprocess_dataset(DATASET_ID, plans_name(key), (CONFIGURATION,), num_processes=[2], show_progress_bar=False)
    split = [
        {
            "train": [subject_case(s) for s in TRAINING_SUBJECTS],
            "val": [subject_case(s) for s in HELDOUT_SUBJECTS],
        }
    ]
    (preprocessed / "splits_final.json").write_text(json.dumps(split, indent=2))


def write_med3d_plans(variant: Variant) -> str:
    """Med3D ResNet-10 plans for ``variant`` over its spacing's preprocessed data; returns the plans name."""
    from nnunet_unlearning.med3d.plans import fit_patch, plan_med3d

    name = f"nnUNetMed3DCpuRecipe_{variant.name}"
    path = plan_med3d(
        DATASET_ID,
        CONFIGURATION,
        depth=10,
        source_plans=plans_name(variant.spacing),
        name=name,
        decoder_channels=variant.decoder,
    )
    plans = json.loads(path.read_text())
    configuration = plans["configurations"][CONFIGURATION]
    patch, strides = fit_patch(configuration["spacing"], variant.patch)
    if tuple(patch) != tuple(variant.patch):
        raise SystemExit(f"{variant.name}: patch {variant.patch} is not divisible by its strides; use {patch}")
    configuration.update({"patch_size": patch, "batch_size": variant.batch})
    configuration["architecture"]["arch_kwargs"]["strides"] = strides
    path.write_text(json.dumps(plans, indent=2))
    return name


def training_transforms(parts: tuple[str, ...], patch_size, rotation, ds_scales, mirror_axes):
    """A cheaper pipeline than nnU-Net's: its spatial transform with scaling only (no rotation), mirroring,
    multiplicative brightness and gamma, with nnU-Net's probabilities; the label handling stays nnU-Net's."""
    from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
    from batchgeneratorsv2.transforms.intensity.contrast import BGContrast
    from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    from batchgeneratorsv2.transforms.utils.random import RandomTransform
    from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform

    transforms: list = [
        SpatialTransform(
            patch_size, patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=0,
            p_rotation=0.2 if "rotation" in parts else 0, rotation=rotation,
            p_scaling=0.2 if "scale" in parts else 0, scaling=(0.7, 1.4), p_synchronize_scaling_across_axes=1,
            bg_style_seg_sampling=False, border_mode_seg="constant", padding_value_seg=-1,
        )
    ]  # fmt: skip
    if "brightness" in parts:
        brightness = MultiplicativeBrightnessTransform(
            multiplier_range=BGContrast((0.75, 1.25)), synchronize_channels=False, p_per_channel=1
        )
        transforms.append(RandomTransform(brightness, apply_probability=0.15))
    if "gamma" in parts:
        for invert, probability in ((1, 0.1), (0, 0.3)):
            gamma = GammaTransform(
                gamma=BGContrast((0.7, 1.5)), p_invert_image=invert, synchronize_channels=False, p_per_channel=1,
                p_retain_stats=1,
            )  # fmt: skip
            transforms.append(RandomTransform(gamma, apply_probability=probability))
    if "mirror" in parts and mirror_axes:
        transforms.append(MirrorTransform(allowed_axes=mirror_axes))
    transforms.append(RemoveLabelTansform(-1, 0))
    if ds_scales is not None:
        transforms.append(DownsampleSegForDSTransform(ds_scales=ds_scales))
    return ComposeTransforms(transforms)


def trainer_class(variant: Variant, use_bf16: bool) -> type:
    """nnUNetTrainerMed3D_scratch with the variant's schedule, learning rate, augmentation, bf16 and timers."""
    import torch

    sys.path.insert(0, str(REPO / "trainers"))
    from nnUNetTrainerMed3D import nnUNetTrainerMed3D_scratch  # type: ignore[import-not-found]

    nnunet_augmentation = variant.augmentation == ("nnunet",)

    class CpuRecipeTrainer(nnUNetTrainerMed3D_scratch):
        def __init__(self, plans, configuration, fold, dataset_json, device=None):
            super().__init__(plans, configuration, fold, dataset_json, device or torch.device("cpu"))
            self.initial_lr = variant.lr
            self.enable_deep_supervision = variant.deep_supervision
            self.num_epochs = variant.epochs
            self.num_iterations_per_epoch = variant.iterations
            self.num_val_iterations_per_epoch = 1
            self.step_seconds: list[float] = []
            self.step_ends: list[float] = []

        def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
            rotation, dummy_2d, initial, mirror = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
            if not nnunet_augmentation and not {"rotation", "scale"} & set(variant.augmentation):
                initial = tuple(self.configuration_manager.patch_size)
            if variant.mirror_axes is not None:
                mirror = variant.mirror_axes
            return rotation, dummy_2d, initial, mirror

        def get_training_transforms(self, patch_size, rotation, ds_scales, mirror_axes, dummy_2d, **kwargs):
            if nnunet_augmentation or dummy_2d:
                return super().get_training_transforms(patch_size, rotation, ds_scales, mirror_axes, dummy_2d, **kwargs)
            return training_transforms(variant.augmentation, patch_size, rotation, ds_scales, mirror_axes)

        def on_train_start(self):
            super().on_train_start()
            torch.set_num_threads(variant.threads)

        def train_step(self, batch: dict) -> dict:
            start = time.perf_counter()
            if not use_bf16:
                result = super().train_step(batch)
            else:
                self.optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    output = self.network(batch["data"])
                # the loss in fp32: Dice sums over many voxels
                output = [o.float() for o in output] if isinstance(output, list | tuple) else output.float()
                loss = self.loss(output, batch["target"])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
                self.optimizer.step()
                result = {"loss": loss.detach().cpu().numpy()}
            self.step_ends.append(time.perf_counter())
            self.step_seconds.append(self.step_ends[-1] - start)
            return result

    return CpuRecipeTrainer


def predictor_for(trainer):
    """nnU-Net's sliding-window predictor for the trainer's network, as the evaluation hook builds it."""
    import torch

    from nnunet_unlearning.nnunet.glue import new_predictor

    predictor = new_predictor(torch.device("cpu"))
    # predict_from_files loads one of these parameter sets into the network per fold
    parameters = [{k: v.clone() for k, v in trainer.network.state_dict().items()}]
    predictor.manual_initialization(
        trainer.network, trainer.plans_manager, trainer.configuration_manager, parameters, trainer.dataset_json,
        type(trainer).__name__, trainer.inference_allowed_mirroring_axes,
    )  # fmt: skip
    return predictor


def hook_dice(trainer) -> dict[str, dict[int, float]]:
    """Per case, Dice per class on the preprocessed grid (ignore label and outside-crop voxels left out)."""
    import numpy as np
    import torch

    from nnunet_unlearning.evaluation.metrics import case_metrics

    trainer.network.eval()
    trainer.set_deep_supervision_enabled(False)
    predictor = predictor_for(trainer)
    cases = [subject_case(s) for s in TRAINING_SUBJECTS + HELDOUT_SUBJECTS]
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, cases)
    ignore = trainer.label_manager.ignore_label
    result = {}
    for case in cases:
        data, seg, _, _ = dataset.load_case(case)
        logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(np.asarray(data)))
        truth = np.asarray(seg)[0].astype(np.int16)
        metrics = case_metrics(truth, logits.float().argmax(0).numpy(), list(CLASSES), ignore_labels=(-1, ignore))
        result[case] = {label: float(m.dice) for label, m in metrics.classes.items()}
    return result


def fullres_dice(trainer, folder: Path) -> dict[str, Any]:
    """Held-out subjects predicted from the raw images (no mirroring) and scored by `evaluate` (plain protocol)."""
    from nnunet_unlearning.evaluation.evaluate_folders import evaluate_folders

    raw = Path(os.environ["nnUNet_raw"]) / DATASET
    truth = folder / "truth"
    (truth / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copy(raw / "dataset.json", truth / "dataset.json")  # `evaluate` reads the labels and ignore label
    cases = [subject_case(s) for s in HELDOUT_SUBJECTS]
    for case in cases:
        link = truth / "labels" / f"{case}.nii.gz"
        if not link.exists():
            link.symlink_to(raw / "labelsTr" / f"{case}.nii.gz")
    predictions = folder / "predictions"
    images = [[str(p) for p in sorted((raw / "imagesTr").glob(f"{case}_0*.nii.gz"))] for case in cases]
    predictor_for(trainer).predict_from_files(
        images, [str(predictions / case) for case in cases], save_probabilities=False, overwrite=True,
        num_processes_preprocessing=1, num_processes_segmentation_export=1,
    )  # fmt: skip
    metrics = json.loads(evaluate_folders(truth / "labels", predictions, "plain").read_text())["mean"]
    return {"dice": metrics["dice"], "per_class": {k: v["dice"] for k, v in metrics["per_class"].items()}}


def train_worker(variant: Variant, out: Path) -> None:
    """Train ``variant`` in this process, score it and write ``out`` (JSON)."""
    import numpy as np
    import torch

    from nnunet_unlearning.med3d.cpu_precision import bf16_decision

    os.environ["nnUNet_n_proc_DA"] = str(variant.da_workers)
    torch.set_num_threads(variant.threads)
    use_bf16, why = bf16_decision(variant.bf16)
    plans = write_med3d_plans(variant)
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / DATASET
    plans_dict = json.loads((preprocessed / f"{plans}.json").read_text())
    plans_dict["continue_training"] = False
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    load_before = os.getloadavg()
    start = time.perf_counter()
    trainer = trainer_class(variant, use_bf16)(plans_dict, CONFIGURATION, 0, dataset_json)
    trainer.run_training()
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    dice = hook_dice(trainer) if variant.evaluate else {}

    def means(subjects: tuple[str, ...]) -> dict[str, float] | None:
        if not dice:
            return None
        per_class = {name: float(np.mean([dice[subject_case(s)][c] for s in subjects])) for c, name in CLASSES.items()}
        return {**per_class, "mean": float(np.mean(list(per_class.values())))}

    record = {
        "variant": asdict(variant),
        "bf16_used": use_bf16,
        "bf16_reason": why,
        "steps": len(trainer.step_seconds),
        "wall_s": wall,
        "s_per_step": wall / max(len(trainer.step_seconds), 1),
        "median_compute_s": statistics.median(trainer.step_seconds[1:] or trainer.step_seconds),
        # after the first epoch (start-up, worker spawn): steps plus epoch ends, per step
        "s_per_step_steady": (trainer.step_ends[-1] - trainer.step_ends[variant.iterations - 1])
        / max(len(trainer.step_ends) - variant.iterations, 1),
        "load_before": load_before,
        "load_after": load_after,
        "heldout": means(HELDOUT_SUBJECTS),
        "train": means(TRAINING_SUBJECTS),
        "cases": dice,
    }
    if variant.fullres:
        record["fullres_heldout"] = fullres_dice(trainer, out.parent / f"{variant.name}_fullres")
    out.write_text(json.dumps(record, indent=1))


def table(records: list[dict]) -> str:
    """The comparison table (markdown): one row per variant."""
    lines = [
        "| variant | steps | s/step (after epoch 1) | wall s | load before/after | bf16 | held-out GM / WM / CSF "
        "| held-out mean | train mean | full-res held-out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        held, train, full = r["heldout"], r["train"], r.get("fullres_heldout")
        cells = [
            r["variant"]["name"],
            str(r["steps"]),
            f"{r['s_per_step']:.2f} ({r['s_per_step_steady']:.2f})",
            f"{r['wall_s']:.0f}",
            f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f}",
            "yes" if r["bf16_used"] else "no",
            " / ".join(f"{held[c]:.3f}" for c in CLASSES.values()) if held else "",
            f"{held['mean']:.3f}" if held else "",
            f"{train['mean']:.3f}" if train else "",
            f"{full['dice']:.3f}" if full else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="MRBrainS18 release folder (training/<id>/orig/...)")
    parser.add_argument("--workdir", type=Path, required=True, help="folder for everything; a rerun continues")
    parser.add_argument("--only", nargs="+", help="run only these variants (names in VARIANTS)")
    parser.add_argument("--prepare-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if args.prepare_worker:
        return prepare_worker()
    results = workdir / "cpu_recipe"
    if args.train_worker:
        variant = next(v for v in VARIANTS if v.name == args.train_worker)
        return train_worker(variant, results / f"{variant.name}.json")
    if args.data is None and not (workdir / "nnUNet_raw" / DATASET).is_dir():
        parser.error("--data is required for a new --workdir")
    prepare(args.data, workdir)
    results.mkdir(parents=True, exist_ok=True)
    chosen = [v for v in VARIANTS if not args.only or v.name in args.only]
    for variant in chosen:
        out = results / f"{variant.name}.json"
        if out.is_file():
            print(f"{variant.name}: done earlier ({out})", flush=True)
            continue
        print(f"{variant.name}: training ...", flush=True)
        log = results / f"{variant.name}.log"
        with log.open("w") as handle:
            subprocess.run(
                [sys.executable, __file__, "--workdir", str(workdir), "--train-worker", variant.name],
                check=True,
                env={**os.environ, **environment(workdir)},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
    text = table([json.loads((results / f"{v.name}.json").read_text()) for v in chosen])
    (results / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
