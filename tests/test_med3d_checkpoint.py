"""MedicalNet checkpoint loading: equality with the file, accepted variants, the inflate rule, each error."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest
import torch

from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.med3d.checkpoint import check_medicalnet_file, inflate_stem, load_medicalnet_weights
from nnunet_unlearning.med3d.resnet import MedicalNetResNet

MEDICALNET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "medicalnet"


def medicalnet_state(depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the published format: `module.` keys, shapes and dtypes from the key list when
    present, else from our encoder (whose key list the network tests compare with the published one)."""
    generator = torch.Generator().manual_seed(seed)
    tsv = MEDICALNET / f"resnet_{depth}_keys.tsv"
    if tsv.is_file():
        rows = [line.split("\t") for line in tsv.read_text().splitlines() if line and not line.startswith("#")]
        spec = [(key, ast.literal_eval(shape), getattr(torch, dtype)) for key, shape, dtype in rows]
    else:
        with torch.device("meta"):
            own = MedicalNetResNet(depth, 1, norm="batch").state_dict()
        spec = [(f"module.{k}", tuple(v.shape), v.dtype) for k, v in own.items()]
    state = {}
    for key, shape, dtype in spec:
        if dtype.is_floating_point:
            tensor = torch.rand(shape, generator=generator, dtype=dtype) + 0.5  # also valid running_var
        else:
            tensor = torch.randint(0, 1000, shape, generator=generator, dtype=dtype)
        state[key] = tensor
    return state


@pytest.fixture(scope="module")
def r10(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A ResNet-10 file as MedicalNet publishes it, with a segmentation head, and its tensors."""
    state = medicalnet_state(10)
    state["module.conv_seg.0.weight"] = torch.ones(2048, 32, 2, 2, 2)
    state["module.conv_seg.4.bias"] = torch.ones(2)
    path = tmp_path_factory.mktemp("medicalnet") / "resnet_10.pth"
    torch.save({"state_dict": state, "epoch": 1}, path)
    return path, state


def save(tmp_path: Path, obj, name: str = "weights.pth") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def assert_equal_to_file(encoder: MedicalNetResNet, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()):
    own = encoder.state_dict()
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        if key in own and key not in skip:
            assert torch.equal(own[key], tensor), key


def test_every_encoder_tensor_equals_the_file(r10):
    path, state = r10
    encoder = MedicalNetResNet(10, 1, norm="batch")
    report = load_medicalnet_weights(encoder, path)
    assert sorted(report.loaded) == sorted(encoder.state_dict())
    assert not report.kept and not report.inflated
    assert set(report.skipped) == {"conv_seg.0.weight", "conv_seg.4.bias"}
    assert_equal_to_file(encoder, state)
    assert "72 tensors loaded, 0 missing, 2 skipped" in report.summary()


def test_bare_state_dict_without_prefix_or_num_batches_tracked_loads(tmp_path):
    state = medicalnet_state(18, seed=1)
    bare = {k.removeprefix("module."): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    encoder = MedicalNetResNet(18, 1, norm="batch")
    report = load_medicalnet_weights(encoder, save(tmp_path, bare))
    assert len(report.kept) == sum(k.endswith("num_batches_tracked") for k in state) > 0
    assert all(encoder.state_dict()[k] == 0 for k in report.kept)
    assert_equal_to_file(encoder, bare)


def test_instance_norm_takes_affine_parameters_and_skips_running_statistics(r10):
    path, state = r10
    encoder = MedicalNetResNet(10, 1, norm="instance")
    report = load_medicalnet_weights(encoder, path)
    assert_equal_to_file(encoder, state)
    assert torch.equal(encoder.bn1.weight, state["module.bn1.weight"])
    running = {k.removeprefix("module.") for k in state if k.rsplit(".", 1)[-1].startswith(("running", "num_"))}
    assert running and running <= set(report.skipped)
    assert not any("running" in k for k in encoder.state_dict())


def test_stem_inflated_by_repeating_and_dividing(r10):
    path, state = r10
    encoder = MedicalNetResNet(10, 3, norm="batch")
    report = load_medicalnet_weights(encoder, path)
    stem = state["module.conv1.weight"]
    assert report.inflated == {"conv1.weight": (1, 3)}
    assert torch.allclose(encoder.conv1.weight, stem.repeat(1, 3, 1, 1, 1) / 3)
    assert_equal_to_file(encoder, state, skip=("conv1.weight",))
    # the rule's point: three copies of an image give the response the original stem gives to one
    x = torch.randn(1, 1, 9, 9, 9)
    same = torch.nn.functional.conv3d(x.repeat(1, 3, 1, 1, 1), inflate_stem(stem, 3), padding=3)
    assert torch.allclose(same, torch.nn.functional.conv3d(x, stem, padding=3), atol=1e-4)


def test_check_medicalnet_file_and_the_cli(r10, capsys):
    path, _ = r10
    assert "72 tensors loaded" in check_medicalnet_file(path, depth=10, in_channels=2).summary()
    assert main(["med3d-check", str(path), "--depth", "10", "--in-channels", "2"]) == 0
    assert "inflated conv1.weight: 1 -> 2" in capsys.readouterr().out
    assert main(["med3d-check", str(path), "--depth", "18"]) == 2
    assert "layer1.1.conv1.weight" in capsys.readouterr().err


class NotATensor:
    """A class a weights-only load must refuse to build."""


def corrupt(kind: str, r10_path: Path, tmp_path: Path) -> Path:
    """A bad file of the given kind."""
    state = medicalnet_state(10)
    if kind == "truncated":
        path = tmp_path / "truncated.pth"
        path.write_bytes(r10_path.read_bytes()[: r10_path.stat().st_size // 2])
        return path
    if kind == "text":
        path = tmp_path / "readme.txt"
        path.write_text("resnet_10.pth is at https://github.com/Tencent/MedicalNet\n")
        return path
    if kind == "pickled object":
        return save(tmp_path, {"state_dict": NotATensor()})
    if kind == "no tensors":
        return save(tmp_path, {"state_dict": {"conv1.weight": collections.OrderedDict()}})
    if kind == "shape":
        state["module.layer2.0.conv1.weight"] = torch.zeros(128, 64, 3, 3, 1)
    elif kind == "missing key":
        del state["module.layer3.0.bn1.running_var"]
    elif kind == "shortcut":  # a type-B shortcut where ResNet-18 (type A) has none
        state = medicalnet_state(18)
        state["module.layer2.0.downsample.0.weight"] = torch.zeros(128, 64, 1, 1, 1)
    return save(tmp_path, {"state_dict": state})


@pytest.mark.parametrize(
    ("kind", "depth", "named"),
    [
        ("truncated", 10, "not a readable PyTorch checkpoint"),
        ("text", 10, "not a readable PyTorch checkpoint"),
        ("pickled object", 10, "not a readable PyTorch checkpoint"),
        ("no tensors", 10, "not a MedicalNet checkpoint"),
        ("shape", 10, "'layer2.0.conv1.weight' has shape (128, 64, 3, 3, 1)"),
        ("missing key", 10, "'layer3.0.bn1.running_var' missing"),
        ("shortcut", 18, "unexpected key 'layer2.0.downsample.0.weight'"),
        ("wrong depth", 50, "'layer1.0.conv1.weight' has shape"),
    ],
)
def test_bad_files_are_one_line_errors_and_load_nothing(kind, depth, named, r10, tmp_path):
    path = r10[0] if kind == "wrong depth" else corrupt(kind, r10[0], tmp_path)
    with torch.device("meta" if depth == 50 else "cpu"):
        encoder = MedicalNetResNet(depth, 1, norm="batch")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(UserInputError) as error:
        load_medicalnet_weights(encoder, path)
    message = str(error.value)
    assert named in message and str(path) in message and "\n" not in message
    if depth != 50:
        assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_missing_file_and_bad_arguments(tmp_path):
    for call, named in [
        (lambda: check_medicalnet_file(tmp_path / "resnet_50.pth"), "no such file"),
        (lambda: check_medicalnet_file(tmp_path, depth=101), "--depth"),
        (lambda: check_medicalnet_file(tmp_path, in_channels=0), "--in-channels"),
    ]:
        with pytest.raises(UserInputError, match=named):
            call()
