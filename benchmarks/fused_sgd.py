"""nnU-Net's SGD as a for-loop vs torch's fused kernel, on the CPU profile's Med3D network, alternated in one run.

    .venv/bin/python benchmarks/fused_sgd.py [--steps 12 --rounds 3]

One training step of the CPU profile's original network (Med3D ResNet-10 U-Net, decoder 16–64, deep
supervision, batch 2 × 2 × 16 × 48 × 48, one torch thread, bf16 autocast where the CPU probe chooses it as the
trainers do): forward, the sum of the outputs' means as a stand-in loss, backward, and the optimizer step of
`optim.grouped_sgd` (nnU-Net's SGD, momentum 0.99, Nesterov, weight decay 3e-5), once with torch's for-loop
implementation (what nnU-Net's trainer builds on a CPU) and once fused. The two alternate within each round, in
one process, so that machine load hits both alike; prints the median step and the median optimizer step alone,
and checks that both end at the same weights. Measures, never asserts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nnunet_unlearning.med3d.network import Med3DUNet
from nnunet_unlearning.optim import grouped_sgd
from nnunet_unlearning.workflows import profiles

#: The CPU profile's Med3D strides (`med3d/plans.py` at the profile's patch).
STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1]]


def network() -> Med3DUNet:
    torch.manual_seed(0)
    return Med3DUNet(
        2,
        4,
        depth=profiles.MED3D_DEPTH,
        strides=STRIDES,
        decoder_channels=list(profiles.CPU.med3d_decoder),
        cpu_bf16=profiles.CPU.cpu_bf16,
    ).train()


def optimizer_for(net: Med3DUNet, fused: bool) -> torch.optim.SGD:
    optimizer, _ = grouped_sgd(net.named_parameters(), [], 0.03, 3e-5, 10)
    if not fused:  # torch's default on a CPU, as nnU-Net builds its SGD
        for group in optimizer.param_groups:
            group["fused"], group["foreach"] = None, False
    return optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="steps per variant and round (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    profiles.use_cpu_threads()
    x = torch.randn(profiles.BATCH_SIZE, 2, *profiles.PATCH_SIZE)
    nets = {variant: network() for variant in ("for-loop", "fused")}
    optimizers = {variant: optimizer_for(net, variant == "fused") for variant, net in nets.items()}
    steps: dict[str, list[float]] = {variant: [] for variant in nets}
    updates: dict[str, list[float]] = {variant: [] for variant in nets}
    for _ in range(args.rounds):
        for variant, net in nets.items():
            for i in range(args.steps):
                start = time.perf_counter()
                optimizers[variant].zero_grad(set_to_none=True)
                sum(o.float().mean() for o in net(x)).backward()
                before_update = time.perf_counter()
                optimizers[variant].step()
                end = time.perf_counter()
                if i:
                    steps[variant].append(end - start)
                    updates[variant].append(end - before_update)
    for variant in nets:
        print(
            f"{variant}: median step {statistics.median(steps[variant]):.3f} s, of which the optimizer "
            f"{1000 * statistics.median(updates[variant]):.1f} ms ({len(steps[variant])} steps)"
        )
    gap = max(
        (a.detach() - b.detach()).abs().max().item()
        for a, b in zip(nets["for-loop"].parameters(), nets["fused"].parameters(), strict=True)
    )
    print(f"largest weight difference after the same steps: {gap:.3g}")
    ratio = statistics.median(steps["fused"]) / statistics.median(steps["for-loop"])
    print(f"fused / for-loop step time: {ratio:.3f}")


if __name__ == "__main__":
    main()
