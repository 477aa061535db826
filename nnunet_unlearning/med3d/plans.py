"""`plan_med3d`: derive an nnU-Net plans file that trains Med3DUNet on an already preprocessed dataset.

The new plans (default name `nnUNetMed3DPlans`) sit beside the source plans in
`$nnUNet_preprocessed/Dataset<ID>_<name>/` and keep the source configuration's `data_identifier`, so they
reuse its preprocessed data. What changes:

- `architecture`: `Med3DUNet` with `arch_kwargs` {depth, strides, norm, decoder_channels, cpu_bf16}; nothing to
  import.
- strides: nnU-Net's own rule (`get_pool_and_conv_props`: an axis is halved only while its spacing is
  less than twice the finest and its feature map stays at least 8 voxels), applied to the five
  downsampling stages of the ResNet (conv1, max-pool, layer2..4); stages past nnU-Net's last pooling get
  stride 1. So the 3 mm slice axis of MRBrainS18 (0.96 mm in-plane) is halved less often than in-plane.
- patch size: the source patch rounded down to a multiple of the total stride, then shrunk the way
  nnU-Net's planner shrinks it (the axis largest relative to the median image first) until batch size 2
  fits the memory budget (`memory.py`).
- batch size: the largest that fits the budget, capped so that one batch covers at most 5 % of the
  dataset's voxels, at least 2 (nnU-Net's rules).
- `mirror_axes` (with `mirror="left-right"`): the images' left-right axis, read from the geometry nnU-Net
  stored for each preprocessed case; our trainers then mirror along it only (`nnunet/mirroring.py`).

Only the requested configuration is written: Med3DUNet is 3D-only (no `2d`), and a cascade stage needs
its previous stage trained with the same plans. `next_stage` is dropped for the same reason.
The source plans file is read, never written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path

import numpy as np
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_text, read_json_object
from nnunet_unlearning.med3d.memory import PARAM_BYTES, activation_bytes, budget_bytes
from nnunet_unlearning.med3d.network import (
    DEFAULT_DECODER_CHANNELS,
    DEFAULT_NORM,
    N_LEVELS,
    NETWORK_CLASS_NAME,
    Med3DUNet,
    validate_arch_kwargs,
)
from nnunet_unlearning.nnunet.mirroring import PLANS_KEY as MIRROR_AXES_KEY
from nnunet_unlearning.nnunet.mirroring import left_right_axis

MIN_FEATURE_MAP_EDGE = 4  # nnU-Net's UNet_featuremap_min_edge_length
MIN_BATCH_SIZE = 2
MAX_DATASET_COVERED = 0.05
#: How training may mirror: along every axis (nnU-Net's choice) or along the left-right axis only.
MIRROR_CHOICES = ("all", "left-right")


def derive_strides(spacing: Sequence[float], patch_size: Sequence[int]) -> list[list[int]]:
    """Six per-axis strides (input block, conv1, maxpool, layer2, layer3, layer4) by nnU-Net's pooling rule.

    spacing: voxel spacing in mm, in the plans' (transposed) axis order; patch_size: voxels, same order.
    """
    _, pool_sizes, _, _, _ = get_pool_and_conv_props(list(spacing), list(patch_size), MIN_FEATURE_MAP_EDGE, 999999)
    strides = [[int(v) for v in s] for s in pool_sizes[:N_LEVELS]]
    return strides + [[1, 1, 1]] * (N_LEVELS - len(strides))


def total_stride(strides: Sequence[Sequence[int]]) -> list[int]:
    """Per-axis product of the strides: what every patch edge must be divisible by."""
    return [int(v) for v in np.prod(np.array(strides), axis=0)]


def fit_patch(spacing: Sequence[float], patch_size: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """(patch, strides) with each patch edge rounded down to a multiple of its total stride (at least one)."""
    patch = [int(v) for v in patch_size]
    while True:
        strides = derive_strides(spacing, patch)
        divisor = total_stride(strides)
        fitted = [max(d, p // d * d) for p, d in zip(patch, divisor, strict=True)]
        if fitted == patch:
            return patch, strides
        patch = fitted


def _find_dataset_folder(dataset_id: int) -> Path:
    root = nnUNet_preprocessed.get()
    if not root:
        raise UserInputError("nnUNet_preprocessed is not set (nnU-Net's preprocessed-data folder)")
    matches = sorted(Path(root).glob(f"Dataset{int(dataset_id):03d}_*"))
    if len(matches) != 1:
        found = "none" if not matches else ", ".join(m.name for m in matches)
        raise UserInputError(
            f"{root}: expected one folder Dataset{int(dataset_id):03d}_* for dataset "
            f"{dataset_id}, found {found} (run nnUNetv2_plan_and_preprocess first)"
        )
    return matches[0]


def plan_med3d(
    dataset_id: int,
    configuration: str = "3d_fullres",
    depth: int = 50,
    source_plans: str = "nnUNetPlans",
    name: str = "nnUNetMed3DPlans",
    gpu_memory_gb: float = 8.0,
    norm: str = DEFAULT_NORM,
    decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
    cpu_bf16: str = "no",
    mirror: str = "all",
) -> Path:
    """Write `<name>.json` beside `<source_plans>.json` for Med3DUNet; return its path (see module doc).

    gpu_memory_gb: the GPU memory budget in GB, as nnU-Net's `-gpu_memory_target` (default 8).
    norm, decoder_channels: Med3DUNet arch_kwargs (defaults are the real model; small values for tests).
    cpu_bf16: whether CPU training steps run under bf16 autocast, "no", "yes" or "auto" (`cpu_precision.py`).
    mirror: "all" (nnU-Net's mirroring) or "left-right" (the configuration's ``mirror_axes``: the left-right
    axis every preprocessed case agrees on; a one-line error when they disagree or carry no orientation).
    """
    if name == source_plans:
        raise UserInputError(f"--name {name!r} equals --from: the source plans are never overwritten")
    if mirror not in MIRROR_CHOICES:
        raise UserInputError(f"--mirror {mirror!r}: choose one of {', '.join(MIRROR_CHOICES)}")
    if gpu_memory_gb <= 0:
        raise UserInputError(f"--gpu-memory-gb must be positive, got {gpu_memory_gb}")
    validate_arch_kwargs(depth, [[1, 1, 1]] * N_LEVELS, norm, decoder_channels, cpu_bf16)
    folder = _find_dataset_folder(dataset_id)
    source_path = folder / f"{source_plans}.json"
    plans = read_json_object(source_path, "source plans")
    dataset_json = read_json_object(folder / "dataset.json", "dataset.json")
    if configuration not in plans.get("configurations", {}):
        raise UserInputError(
            f"{source_path}: no configuration {configuration!r} (has {sorted(plans.get('configurations', {}))})"
        )
    config = dict(PlansManager(plans).get_configuration(configuration).configuration)
    config.pop("inherits_from", None)
    if len(config["patch_size"]) != 3:
        raise UserInputError(f"{source_path}: configuration {configuration!r} is 2D; Med3DUNet is 3D only")
    if config.get("previous_stage"):
        raise UserInputError(
            f"{source_path}: configuration {configuration!r} is a cascade stage; "
            f"plan-med3d supports single-stage 3D configurations (e.g. 3d_fullres)"
        )
    config.pop("next_stage", None)
    config.pop(MIRROR_AXES_KEY, None)
    if mirror == "left-right":
        preprocessed = folder / config["data_identifier"]
        config[MIRROR_AXES_KEY] = [left_right_axis(preprocessed, plans.get("transpose_forward", [0, 1, 2]))]

    spacing = [float(s) for s in config["spacing"]]
    median_shape = [float(s) for s in config["median_image_size_in_voxels"]]
    input_channels = len(dataset_json["channel_names"])
    num_classes = len(dataset_json["labels"])
    budget = budget_bytes(gpu_memory_gb)

    def arch_kwargs(strides: list[list[int]]) -> dict:
        return {
            "depth": depth,
            "strides": strides,
            "norm": norm,
            "decoder_channels": [int(c) for c in decoder_channels],
            "cpu_bf16": cpu_bf16,
        }

    def cost(patch: list[int], strides: list[list[int]]) -> tuple[int, int]:
        """(activation bytes per sample, parameter bytes) at this patch."""
        per_sample, n_params = activation_bytes(
            # the budget is a GPU's: measured as the network runs there, whatever cpu_bf16 says
            lambda: Med3DUNet(input_channels, num_classes, True, **{**arch_kwargs(strides), "cpu_bf16": "no"}),
            (1, input_channels, *patch),
        )
        return per_sample, PARAM_BYTES * n_params

    patch, strides = fit_patch(spacing, config["patch_size"])
    while (c := cost(patch, strides))[1] + MIN_BATCH_SIZE * c[0] > budget:
        divisor = total_stride(strides)
        # as nnU-Net's feature maps, a patch edge stays at least MIN_FEATURE_MAP_EDGE voxels
        shrinkable = [i for i in range(3) if patch[i] - divisor[i] >= MIN_FEATURE_MAP_EDGE]
        if not shrinkable:
            raise UserInputError(
                f"--gpu-memory-gb {gpu_memory_gb}: too small for Med3D ResNet-{depth} even at "
                f"patch {patch} with batch size {MIN_BATCH_SIZE}"
            )
        # nnU-Net's choice: shrink the axis that is largest relative to the median image
        axis = max(shrinkable, key=lambda i: patch[i] / median_shape[i])
        patch[axis] -= divisor[axis]
        patch, strides = fit_patch(spacing, patch)

    per_sample, fixed = c
    n_voxels_dataset = float(np.prod(median_shape)) * dataset_json["numTraining"]
    cap = round(n_voxels_dataset * MAX_DATASET_COVERED / float(np.prod(patch)))
    batch_size = max(min((budget - fixed) // per_sample, cap), MIN_BATCH_SIZE)

    config.update(
        {
            "patch_size": patch,
            "batch_size": int(batch_size),
            "architecture": {
                "network_class_name": NETWORK_CLASS_NAME,
                "arch_kwargs": arch_kwargs(strides),
                "_kw_requires_import": [],
            },
        }
    )
    new_plans = deepcopy(plans)
    new_plans["plans_name"] = name
    new_plans["configurations"] = {configuration: config}
    target = folder / f"{name}.json"
    atomic_write_text(target, json.dumps(new_plans, indent=4))
    return target
