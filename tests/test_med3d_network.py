"""Med3DUNet: MedicalNet key names, shapes for every depth and anisotropic strides, nnU-Net's contracts."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.med3d.cpu_precision import (
    bf16_decision,
    evaluation_precision,
    probe_seconds,
    training_precision,
)
from nnunet_unlearning.med3d.network import NETWORK_CLASS_NAME, Med3DUNet
from nnunet_unlearning.med3d.resnet import MedicalNetResNet

MEDICALNET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "medicalnet"
DEPTHS = (10, 18, 34, 50)
TINY = [4, 4, 4, 4, 4]
ANISOTROPIC = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 1, 1]]
STRIDE_CASES = [
    [[1, 1, 1]] + [[2, 2, 2]] * 5,
    ANISOTROPIC,
    [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1]],
]


def published_keys(depth: int) -> list[tuple[str, tuple[int, ...], str]]:
    """(key without `module.`, shape, dtype) per line of the published key list; skip the test if absent."""
    tsv = MEDICALNET / f"resnet_{depth}_keys.tsv"
    if not tsv.is_file():
        pytest.skip(f"MedicalNet key lists not found at {MEDICALNET} (only the shared workspace has them)")
    rows = []
    for line in tsv.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        assert key.startswith("module.")
        rows.append((key.removeprefix("module."), ast.literal_eval(shape), dtype))
    return rows


def ds_scales(strides: list[list[int]]) -> list[list[float]]:
    """Deep-supervision scales exactly as nnU-Net's trainer computes them from the plans' strides."""
    fake_trainer = SimpleNamespace(
        enable_deep_supervision=True,
        configuration_manager=ConfigurationManager({"architecture": {"arch_kwargs": {"strides": strides}}}),
    )
    return nnUNetTrainer._get_deep_supervision_scales(fake_trainer)


@pytest.mark.parametrize("depth", DEPTHS)
def test_encoder_keys_and_shapes_equal_the_published_lists(depth):
    with torch.device("meta"):  # shapes only: ResNet-50 costs no memory or init time
        encoder = MedicalNetResNet(depth, in_channels=1, norm="batch")
    own = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in encoder.state_dict().items()]
    assert own == published_keys(depth)


@pytest.mark.parametrize("depth", DEPTHS)
def test_encoder_size_matches_the_medicalnet_readme(depth):
    readme = MEDICALNET / "README.md"
    if not readme.is_file():
        pytest.skip(f"MedicalNet README not found at {MEDICALNET}")
    published = float(re.search(rf"ResNet-{depth} ([\d.]+) M", readme.read_text()).group(1))
    with torch.device("meta"):
        encoder = MedicalNetResNet(depth, in_channels=1, norm="batch")
    # the README counts the encoder's floating tensors (parameters and BatchNorm running statistics)
    floating = sum(v.numel() for v in encoder.state_dict().values() if v.is_floating_point())
    assert round(floating / 1e6, 1) == published


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("strides", STRIDE_CASES)
def test_deep_supervision_outputs_match_nnunet_scales(depth, strides):
    shape = np.prod(np.array(strides), axis=0) * 2  # smallest size with a 2-voxel bottleneck
    device = "cpu" if depth in (10, 18) else "meta"  # depth 34/50: shapes without compute
    with torch.device(device):
        net = Med3DUNet(
            2, 3, deep_supervision=True, depth=depth, strides=strides, norm="instance", decoder_channels=TINY
        )
        outputs = net(torch.zeros(1, 2, *shape))
    scales = ds_scales(strides)
    assert len(outputs) == len(scales) == 5
    for out, scale in zip(outputs, scales, strict=True):
        assert tuple(out.shape) == (1, 3, *(round(n * s) for n, s in zip(shape, scale, strict=True)))


def test_deep_supervision_switch_returns_one_full_resolution_tensor():
    net = Med3DUNet(1, 3, deep_supervision=True, depth=10, strides=ANISOTROPIC, decoder_channels=TINY)
    x = torch.randn(1, 1, 8, 32, 32)
    with torch.no_grad():
        full = net(x)
        net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
        single = net(x)
    assert isinstance(single, torch.Tensor) and single.shape == (1, 3, 8, 32, 32)
    assert torch.equal(single, full[0])


def test_parameters_split_into_encoder_and_decoder_and_encoder_resets():
    net = Med3DUNet(2, 3, depth=10, strides=ANISOTROPIC, norm="batch", decoder_channels=TINY)
    names = [name for name, _ in net.named_parameters()]
    assert all(n.startswith(("encoder.", "decoder.")) for n in names)
    assert any(n.startswith("decoder.input_block.") for n in names)
    assert "encoder.conv1.weight" in names
    before = net.encoder.conv1.weight.detach().clone()
    owners = [m for m in net.encoder.modules() if list(m.parameters(recurse=False))]
    for module in owners:  # how the unlearning trainers re-initialise the encoder
        module.reset_parameters()
    assert not torch.equal(before, net.encoder.conv1.weight)


def test_get_network_from_plans_builds_it_from_json_arch_kwargs():
    arch_kwargs = json.loads(
        json.dumps({"depth": 18, "strides": ANISOTROPIC, "norm": "batch", "decoder_channels": TINY})
    )
    net = get_network_from_plans(NETWORK_CLASS_NAME, arch_kwargs, [], 2, 4, allow_init=True, deep_supervision=False)
    assert isinstance(net, Med3DUNet) and net.encoder.depth == 18
    assert isinstance(net.encoder.bn1, torch.nn.BatchNorm3d)
    with torch.no_grad():
        assert net(torch.zeros(1, 2, 8, 32, 32)).shape == (1, 4, 8, 32, 32)


def test_trainer_builds_it_from_a_plans_dict():
    plans = {
        "configurations": {
            "3d_fullres": {
                "architecture": {
                    "network_class_name": NETWORK_CLASS_NAME,
                    "_kw_requires_import": [],
                    "arch_kwargs": {"depth": 10, "strides": ANISOTROPIC, "norm": "instance", "decoder_channels": TINY},
                }
            }
        }
    }
    manager = PlansManager(plans)
    net = nnUNetTrainer.build_network_architecture(manager, manager.get_configuration("3d_fullres"), 2, 5, True)
    assert isinstance(net, Med3DUNet) and net.decoder.deep_supervision
    assert isinstance(net.encoder.bn1, torch.nn.InstanceNorm3d)
    assert not any("running" in k for k in net.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"depth": 101}, "depth"),
        ({"norm": "group"}, "norm"),
        ({"strides": ANISOTROPIC[:5]}, "strides"),
        ({"strides": [[2, 2, 2], *ANISOTROPIC[1:]]}, "strides[0]"),
        ({"decoder_channels": [4, 4]}, "decoder_channels"),
        ({"cpu_bf16": "maybe"}, "cpu_bf16"),
    ],
)
def test_bad_arch_kwargs_are_one_line_user_errors(kwargs, named):
    with pytest.raises(UserInputError, match=re.escape(named)) as error:
        Med3DUNet(1, 2, **{"depth": 10, "strides": ANISOTROPIC, "decoder_channels": TINY, **kwargs})
    assert "\n" not in str(error.value)


def test_input_not_divisible_by_the_total_stride_is_refused():
    net = Med3DUNet(1, 2, depth=10, strides=ANISOTROPIC, decoder_channels=TINY)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.zeros(1, 1, 8, 30, 32))


def test_cpu_bf16_runs_training_steps_under_autocast_and_evaluation_in_fp32():
    torch.manual_seed(0)
    kwargs = {"depth": 10, "strides": ANISOTROPIC, "decoder_channels": TINY}
    fp32, bf16 = Med3DUNet(2, 3, **kwargs), Med3DUNet(2, 3, cpu_bf16="yes", **kwargs)
    bf16.load_state_dict(fp32.state_dict())
    x = torch.randn(2, 2, 8, 32, 32)
    outputs = {name: net(x) for name, net in (("fp32", fp32), ("bf16", bf16))}
    for a, b in zip(outputs["fp32"], outputs["bf16"], strict=True):
        assert b.dtype == torch.float32  # the loss gets fp32 logits
        assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.1, rtol=0.1)  # bf16 rounding, same network
    outputs["bf16"][0].mean().backward()  # gradients flow through the cast
    assert bf16.encoder.conv1.weight.grad is not None
    bf16.load_state_dict(fp32.state_dict())  # the training forwards updated the running statistics apart
    fp32.eval(), bf16.eval()  # evaluation and nnUNetv2_predict: fp32 whatever the setting
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(fp32(x), bf16(x), strict=True))


def test_cpu_bf16_decision_is_fixed_or_measured_and_logged():
    assert bf16_decision("no")[0] is False and bf16_decision("yes")[0] is True
    with pytest.raises(ValueError, match="cpu_bf16"):
        bf16_decision("sometimes")
    use, why = bf16_decision("auto")  # measured here: either answer, always with the probe's numbers or reason
    assert ("probe fp32" in why) or ("no bf16 support" in why)
    assert why.endswith("bf16" if use else "fp32")
    net = Med3DUNet(2, 3, depth=10, strides=ANISOTROPIC, decoder_channels=TINY, cpu_bf16="auto")
    assert training_precision(net, torch.device("cpu")) == (
        f"training precision: {'bf16 autocast' if use else 'fp32'} ({why})"
    )
    assert training_precision(net, torch.device("cuda")) is None  # a GPU runs nnU-Net's own autocast
    assert (
        training_precision(Med3DUNet(2, 3, depth=10, strides=ANISOTROPIC, decoder_channels=TINY), torch.device("cpu"))
        is None
    )


def test_the_evaluation_hook_predicts_in_the_training_precision():
    kwargs = {"depth": 10, "strides": ANISOTROPIC, "decoder_channels": TINY}
    x = torch.randn(1, 2, 8, 16, 16)
    fp32 = Med3DUNet(2, 3, **kwargs).eval()
    bf16 = Med3DUNet(2, 3, cpu_bf16="yes", **kwargs).eval()
    bf16.load_state_dict(fp32.state_dict())
    assert evaluation_precision(fp32)[0] == "fp32"
    assert evaluation_precision(torch.nn.Conv3d(2, 3, 1))[0] == "fp32"  # any network without the setting
    precision, context = evaluation_precision(bf16)
    assert precision == "bf16"
    with torch.no_grad(), context:
        rounded = bf16(x)[0]
    with torch.no_grad():
        exact = fp32(x)[0]
    assert rounded.dtype == torch.bfloat16 and not torch.equal(rounded.float(), exact)
    assert torch.allclose(rounded.float(), exact, atol=0.1, rtol=0.1)


def test_the_bf16_probe_runs_where_gradients_are_off():
    # an evaluation-only process (audit, scoring an original) asks for the decision first under no_grad
    with torch.no_grad():
        times = probe_seconds(steps=1)
    assert set(times) == {"fp32", "bf16"} and all(t > 0 for t in times.values())
