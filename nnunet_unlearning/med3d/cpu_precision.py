"""Whether a Med3D U-Net trains under CPU bf16 autocast: a fixed choice, or a probe measured on this CPU.

On a CPU with bf16 matrix units (Intel AMX) one training step of the CPU profile's network took 0.34 s under
bf16 autocast against 0.52 s in fp32; on a CPU without them bf16 can be slower (docs/benchmarks.md). So the
plans name a setting (Med3DUNet's ``cpu_bf16`` arch_kwarg) and the decision is taken on the machine that
trains: "no" (fp32, the default), "yes", or "auto": bf16 when oneDNN reports bf16 support and a short probe
(a small 3D conv stack, forward + backward, medians of a few steps) runs at least 10 % faster under autocast.
The decision is made once per process and logged by the trainers. It applies to training steps and to the
evaluation hook's predictions (`evaluation_precision`: the hook predicts every case of every check with the
training network, which on the CPU profile costs more than the training between checks); ``nnUNetv2_predict``
always runs in fp32.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time

import torch
from torch import nn

#: Med3DUNet's ``cpu_bf16`` settings.
SETTINGS = ("no", "yes", "auto")
#: "auto" needs bf16 to take at most this fraction of fp32's time.
AUTO_SPEEDUP = 0.9


def probe_seconds(steps: int = 4) -> dict[str, float]:
    """Median seconds per forward + backward of a small 3D conv stack (batch 2 × 2 × 16 × 48 × 48, the CPU
    profile's patch) in fp32 and under CPU bf16 autocast: ``{"fp32": s, "bf16": s}``."""
    net = nn.Sequential(
        nn.Conv3d(2, 32, 3, padding=1), nn.BatchNorm3d(32), nn.LeakyReLU(),
        nn.Conv3d(32, 64, 3, stride=2, padding=1), nn.BatchNorm3d(64), nn.LeakyReLU(),
        nn.Conv3d(64, 64, 3, padding=1),
    )  # fmt: skip
    x = torch.randn(2, 2, 16, 48, 48)
    times: dict[str, float] = {}
    # the first decision may be asked for under torch.no_grad (an evaluation-only process: audit, scoring)
    with torch.enable_grad():
        for label, enabled in (("fp32", False), ("bf16", True)):
            samples = []
            for _ in range(steps + 1):  # the first step warms oneDNN's kernel cache
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                    out = net(x)
                out.float().square().mean().backward()
                samples.append(time.perf_counter() - start)
            times[label] = statistics.median(samples[1:])
    return times


@functools.cache
def bf16_decision(setting: str) -> tuple[bool, str]:
    """(train under CPU bf16 autocast, why), once per process and setting (one of :data:`SETTINGS`)."""
    if setting not in SETTINGS:
        raise ValueError(f"cpu_bf16 must be one of {SETTINGS}, got {setting!r}")
    if setting != "auto":
        return setting == "yes", f"cpu_bf16={setting!r} in the plans"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False, "cpu_bf16='auto': oneDNN reports no bf16 support on this CPU, fp32"
    probe = probe_seconds()
    use = probe["bf16"] <= AUTO_SPEEDUP * probe["fp32"]
    return use, (
        f"cpu_bf16='auto': probe fp32 {probe['fp32']:.3f} s, bf16 {probe['bf16']:.3f} s per step, "
        f"{'bf16' if use else 'fp32'}"
    )


def training_precision(network: nn.Module, device: torch.device) -> str | None:
    """One line for a trainer's log saying how ``network`` trains on ``device``, for a network with a
    ``cpu_bf16`` setting other than "no" on a CPU (None otherwise: nothing differs from nnU-Net)."""
    setting = getattr(network, "cpu_bf16", "no")
    if device.type != "cpu" or setting == "no":
        return None
    use, why = bf16_decision(setting)
    return f"training precision: {'bf16 autocast' if use else 'fp32'} ({why})"


def evaluation_precision(network: nn.Module) -> tuple[str, contextlib.AbstractContextManager]:
    """("bf16" or "fp32", the context to predict in) for the evaluation hook's predictions with ``network``:
    CPU bf16 autocast when the network trains in bf16 on this CPU (its ``cpu_bf16`` setting, decided as for
    training), fp32 otherwise (any other network, a GPU). Every model a benchmark compares is scored on one
    machine with one network class, so all its evaluations share the precision."""
    setting = getattr(network, "cpu_bf16", "no")
    parameter = next(network.parameters(), None)
    on_cpu = parameter is None or parameter.device.type == "cpu"
    if not on_cpu or setting == "no" or not bf16_decision(setting)[0]:
        return "fp32", contextlib.nullcontext()
    return "bf16", torch.autocast("cpu", dtype=torch.bfloat16)
