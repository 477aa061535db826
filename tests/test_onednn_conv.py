"""OneDnnConv3d: batch-1 fp32 CPU convolutions in oneDNN, everything else torch's own route, same numbers."""

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from nnunet_unlearning.med3d.network import Med3DUNet
from nnunet_unlearning.med3d.onednn_conv import OneDnnConv3d, use_onednn_convolutions


def _kernels(layer: nn.Module, x: torch.Tensor) -> set[str]:
    """The convolution kernels ATen ran for ``layer(x)``."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as trace:
        layer(x)
    return {e.key for e in trace.key_averages() if e.key in ("aten::slow_conv3d", "aten::mkldnn_convolution")}


def _pair() -> tuple[nn.Conv3d, nn.Conv3d]:
    plain = nn.Conv3d(16, 16, 3, padding=1)
    turned = nn.Conv3d(16, 16, 3, padding=1)
    turned.load_state_dict(plain.state_dict())
    assert use_onednn_convolutions(turned) == 1
    return plain, turned


def test_a_single_fp32_tile_runs_in_onednn_where_torch_would_take_its_fallback():
    plain, turned = _pair()
    tile = torch.randn(1, 16, 16, 48, 48)  # the CPU profile's patch: N*C*D*H = 12288, under torch's 20480
    assert _kernels(plain, tile) == {"aten::slow_conv3d"}  # the heuristic this module works around
    assert _kernels(turned, tile) == {"aten::mkldnn_convolution"}
    with torch.no_grad():
        assert torch.allclose(plain(tile), turned(tile), atol=1e-4)


def test_batches_autocast_and_gradients_take_torchs_route_unchanged():
    plain, turned = _pair()
    batch = torch.randn(2, 16, 8, 24, 24)
    with torch.no_grad():
        assert torch.equal(plain(batch), turned(batch))  # batch >= 2: torch already picks oneDNN
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(plain(batch[:1]), turned(batch[:1]))
    tile = torch.randn(1, 16, 8, 24, 24, requires_grad=True)
    turned(tile).square().mean().backward()  # oneDNN's kernel has a backward: a batch-1 training step works
    assert turned.weight.grad is not None and tile.grad is not None


def test_med3d_unet_turns_every_convolution_and_keeps_its_state_dict():
    kwargs = {"depth": 10, "decoder_channels": (8, 16, 16, 16, 16)}
    network = Med3DUNet(2, 3, deep_supervision=False, **kwargs)
    convolutions = [m for m in network.modules() if isinstance(m, nn.Conv3d)]
    assert convolutions and all(type(m) is OneDnnConv3d for m in convolutions)
    reference = Med3DUNet(2, 3, deep_supervision=False, **kwargs)
    for layer in reference.modules():
        if type(layer) is OneDnnConv3d:
            layer.__class__ = nn.Conv3d
    reference.load_state_dict(network.state_dict())  # strict: the same keys and shapes
    network.eval(), reference.eval()
    x = torch.randn(1, 2, 32, 64, 64)
    with torch.no_grad():
        assert torch.allclose(network(x), reference(x), atol=1e-3)
