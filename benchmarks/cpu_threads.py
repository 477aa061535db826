"""Training-step time of the CPU profile's network on 1 vs 2 torch threads, alternated in one run.

    .venv/bin/python benchmarks/cpu_threads.py [--steps 9]

Each measurement runs in a fresh subprocess (torch fixes its thread pool per process); medians printed.
Measures, never asserts.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

STEP = """
import time, torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunet_unlearning.workflows import profiles as p
torch.set_num_threads({threads})
a = p.TINY_ARCHITECTURE
net = PlainConvUNet(2, a["n_stages"], a["features_per_stage"], torch.nn.Conv3d, a["kernel_sizes"], a["strides"],
                    a["n_conv_per_stage"], 10, a["n_conv_per_stage_decoder"], True, torch.nn.InstanceNorm3d,
                    {{"eps": 1e-5, "affine": True}}, None, None, torch.nn.LeakyReLU, {{"inplace": True}},
                    deep_supervision=True)
x = torch.randn(p.BATCH_SIZE, 2, *p.PATCH_SIZE)
sum(o.mean() for o in net(x)).backward()
times = []
for _ in range({steps}):
    t = time.perf_counter()
    sum(o.mean() for o in net(x)).backward()
    times.append(time.perf_counter() - t)
print(sorted(times)[len(times) // 2])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for threads in results:
            out = subprocess.run(
                [sys.executable, "-c", STEP.format(threads=threads, steps=args.steps)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[threads].append(float(out.strip()))
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print(f"median step: 1 thread {one:.3f} s, 2 threads {two:.3f} s, ratio 2/1 = {two / one:.2f}")


if __name__ == "__main__":
    main()
