"""plan_med3d: a Med3D plans file beside the source plans, nnU-Net's stride rule, the memory budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from test_med3d_network import ds_scales

from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.med3d.network import NETWORK_CLASS_NAME
from nnunet_unlearning.med3d.plans import derive_strides, plan_med3d, total_stride

DATASET = "Dataset777_Med3DPlans"
MRBRAINS18_SPACING = [3.0, 0.958, 0.958]  # mm, nnU-Net's transposed order (slice axis first)


def architecture() -> dict:
    """A PlainConvUNet architecture entry as nnU-Net's planner writes it (abridged)."""
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": 6, "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def write_source(root: Path, patch: list[int], n_training: int = 7) -> Path:
    """nnUNetPlans.json and dataset.json of a 2-channel MRBrainS18-like dataset under root/DATASET."""
    folder = root / DATASET
    folder.mkdir(parents=True)
    fullres = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": patch,
        "median_image_size_in_voxels": [48, 220, 190],
        "spacing": MRBRAINS18_SPACING,
        "normalization_schemes": ["ZScoreNormalization"] * 2,
        "use_mask_for_norm": [False, False],
        "architecture": architecture(),
        "batch_dice": False,
        "next_stage": "3d_cascade_fullres",
    }
    plans = {
        "dataset_name": DATASET,
        "plans_name": "nnUNetPlans",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "2d": {
                **fullres,
                "data_identifier": "nnUNetPlans_2d",
                "patch_size": [224, 192],
                "spacing": MRBRAINS18_SPACING[1:],
            },
            "3d_fullres": fullres,
            "3d_lowres": {
                "inherits_from": "3d_fullres",
                "data_identifier": "nnUNetPlans_3d_lowres",
                "spacing": [3.0, 1.5, 1.5],
                "patch_size": [48, 144, 128],
                "median_image_size_in_voxels": [48, 140, 121],
                "next_stage": "3d_cascade_fullres",
            },
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
        },
    }
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans, indent=2))
    labels = {"background": 0, **{f"label{i}": i for i in range(1, 9)}}
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "IR", "1": "FLAIR"},
                "labels": labels,
                "numTraining": n_training,
                "file_ending": ".nii.gz",
            }
        )
    )
    return folder / "nnUNetPlans.json"


def test_derive_strides_halves_the_slice_axis_less_often():
    strides = derive_strides(MRBRAINS18_SPACING, [40, 224, 224])
    assert len(strides) == 6 and strides[0] == [1, 1, 1]
    assert strides[1] == [1, 2, 2]  # 3 mm is more than twice 0.96 mm: not halved at first
    assert total_stride(strides)[0] < total_stride(strides)[1] == total_stride(strides)[2]
    assert derive_strides([1.0, 1.0, 1.0], [128, 128, 128])[1:] == [[2, 2, 2]] * 5
    # a small patch runs out of halvings: the deeper stages keep stride 1
    assert derive_strides([1.0, 1.0, 1.0], [16, 16, 16])[-1] == [1, 1, 1]


def test_plan_writes_med3d_plans_and_leaves_the_source_untouched(preprocessed):
    source = write_source(preprocessed, [40, 224, 192])
    before = source.read_bytes()
    written = plan_med3d(777, depth=50)
    assert source.read_bytes() == before
    assert written == source.with_name("nnUNetMed3DPlans.json")
    plans = json.loads(written.read_text())
    assert plans["plans_name"] == "nnUNetMed3DPlans" and list(plans["configurations"]) == ["3d_fullres"]
    config = plans["configurations"]["3d_fullres"]
    assert config["data_identifier"] == "nnUNetPlans_3d_fullres" and "next_stage" not in config
    arch = config["architecture"]
    assert arch["network_class_name"] == NETWORK_CLASS_NAME and arch["_kw_requires_import"] == []
    assert arch["arch_kwargs"]["depth"] == 50 and arch["arch_kwargs"]["cpu_bf16"] == "no"
    strides = arch["arch_kwargs"]["strides"]
    patch = config["patch_size"]
    assert all(p % s == 0 for p, s in zip(patch, total_stride(strides), strict=True))
    assert all(p <= q for p, q in zip(patch, [40, 224, 192], strict=True))
    assert total_stride(strides)[0] < total_stride(strides)[1]
    assert config["batch_size"] >= 2

    manager = PlansManager(str(written))
    cfg = manager.get_configuration("3d_fullres")
    with torch.device("meta"):  # ResNet-50 at the real patch size: shapes only
        net = get_network_from_plans(
            cfg.network_arch_class_name,
            cfg.network_arch_init_kwargs,
            cfg.network_arch_init_kwargs_req_import,
            2,
            9,
            deep_supervision=True,
        )
        outputs = net(torch.empty(1, 2, *cfg.patch_size))
    expected = [
        [round(n * s) for n, s in zip(cfg.patch_size, scale, strict=True)]
        for scale in ds_scales(cfg.pool_op_kernel_sizes)
    ]
    assert [list(o.shape[2:]) for o in outputs] == expected


def test_lowres_configuration_is_resolved_and_keeps_its_data(preprocessed):
    write_source(preprocessed, [40, 224, 192])
    config = json.loads(plan_med3d(777, "3d_lowres", depth=10).read_text())["configurations"]
    assert list(config) == ["3d_lowres"] and "inherits_from" not in config["3d_lowres"]
    assert config["3d_lowres"]["data_identifier"] == "nnUNetPlans_3d_lowres"
    assert config["3d_lowres"]["spacing"] == [3.0, 1.5, 1.5]


def test_memory_budget_shrinks_the_patch_and_grows_the_batch(preprocessed):
    write_source(preprocessed, [40, 224, 192], n_training=1000)  # so the 5 % cap does not bind

    def planned(gb: float, patch_of: str = "3d_fullres") -> tuple[int, int]:
        config = json.loads(plan_med3d(777, patch_of, depth=50, name=f"m{gb}", gpu_memory_gb=gb).read_text())
        config = config["configurations"][patch_of]
        return int(np.prod(config["patch_size"])), config["batch_size"]

    small, large = planned(2.0), planned(16.0)
    assert small[0] < large[0]  # a smaller budget fits a smaller patch
    assert planned(4.0, "3d_lowres")[1] < planned(32.0, "3d_lowres")[1]
    with pytest.raises(UserInputError, match="too small"):
        planned(0.01)


def test_batch_size_is_capped_at_five_percent_of_the_dataset(preprocessed):
    write_source(preprocessed, [48, 144, 128], n_training=7)
    config = json.loads(plan_med3d(777, "3d_lowres", depth=10, gpu_memory_gb=80).read_text())
    lowres = config["configurations"]["3d_lowres"]
    voxels = 48 * 140 * 121 * 7
    assert lowres["batch_size"] == max(2, round(0.05 * voxels / np.prod(lowres["patch_size"])))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"dataset_id": 778}, "Dataset778_*"),
        ({"source_plans": "nnUNetResEncUNetMPlans"}, "nnUNetResEncUNetMPlans.json"),
        ({"configuration": "3d_midres"}, "no configuration '3d_midres'"),
        ({"configuration": "2d"}, "2D"),
        ({"configuration": "3d_cascade_fullres"}, "cascade"),
        ({"name": "nnUNetPlans"}, "never overwritten"),
        ({"gpu_memory_gb": 0}, "--gpu-memory-gb"),
        ({"depth": 101}, "depth"),
        ({"cpu_bf16": "fast"}, "cpu_bf16"),
    ],
)
def test_bad_requests_are_one_line_user_errors(preprocessed, kwargs, named):
    write_source(preprocessed, [40, 224, 192])
    with pytest.raises(UserInputError, match=named.replace("*", r"\*")) as error:
        plan_med3d(**{"dataset_id": 777, "depth": 10, **kwargs})
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in (preprocessed / DATASET).iterdir()) == ["dataset.json", "nnUNetPlans.json"]


def test_cli_plan_med3d(preprocessed, capsys):
    write_source(preprocessed, [40, 224, 192])
    assert (
        main(["plan-med3d", "-d", "777", "--depth", "10", "--name", "nnUNetMed3DPlansR10", "--cpu-bf16", "auto"]) == 0
    )
    assert "nnUNetMed3DPlansR10.json" in capsys.readouterr().out
    plans = json.loads((preprocessed / DATASET / "nnUNetMed3DPlansR10.json").read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["cpu_bf16"] == "auto"
    assert main(["plan-med3d", "-d", "777", "-c", "2d"]) == 2
