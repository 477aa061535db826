"""Med3D U-Nets against nnU-Net's default PlainConvUNet, and BatchNorm against InstanceNorm. Measures only.

speed: one training step (forward, nnU-Net's deep-supervised Dice+CE loss, backward, SGD step) of
    Med3D ResNet-10 and ResNet-50 U-Nets (batch and instance norm) and of the PlainConvUNet nnU-Net's
    planner builds for the same spacing and patch (MRBrainS18: 3 × 0.958 × 0.958 mm, 2 channels,
    9 outputs), same batch, random data.
    Each network runs in its own fresh process (peak RSS is per process), in rounds that alternate the
    order; medians over all timed steps. Also printed: parameter counts and the GPU memory our planner's
    estimator assigns (mixed precision, `nnunet_unlearning.med3d.memory`, in nnU-Net-calibrated GB).

norm: Med3D ResNet-10 U-Net trained from scratch with norm="batch" and norm="instance", same seed, same
    batches, on real MRBrainS18 (IR + FLAIR, 5 training subjects) resampled to coarser voxels
    (3.83 × 3.83 × 6 mm), random crops and flips; then whole-volume prediction (eval mode) on the 2 held-out
    subjects, mean Dice over labels 1-8 (label 9 voxels ignored).

    .venv/bin/python benchmarks/med3d.py speed [--patch 16 96 96] [--batch 2] [--steps 5] [--rounds 2]
    .venv/bin/python benchmarks/med3d.py norm [--steps 300] [--seeds 0] [--data ../shared/data/MRBrainS18]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from scipy.ndimage import zoom
from torch import nn

from nnunet_unlearning.med3d.memory import PARAM_BYTES, activation_bytes, budget_bytes, nnunet_default_unet
from nnunet_unlearning.med3d.network import Med3DUNet
from nnunet_unlearning.med3d.plans import derive_strides
from nnunet_unlearning.med3d.resnet import NORMS

SPACING = [3.0, 0.958, 0.958]  # MRBrainS18, nnU-Net's order (slice axis first), mm
CHANNELS = 2
CLASSES = 9
SUBJECTS_TRAIN = ("1", "4", "5", "14", "070")
SUBJECTS_TEST = ("7", "148")
COARSE = (4, 4, 2)  # resampling factors (x, y, z) for the norm comparison: 3.83 × 3.83 × 6 mm
IGNORE = 9


def plain_conv_unet(patch: list[int]) -> nn.Module:
    """The PlainConvUNet nnU-Net's ExperimentPlanner derives for SPACING and this patch."""
    _, strides, kernels, _, _ = get_pool_and_conv_props(SPACING, patch, 4, 999999)
    return nnunet_default_unet(CHANNELS, CLASSES, kernels, strides)


def med3d_unet(depth: int, patch: list[int], norm: str) -> nn.Module:
    return Med3DUNet(CHANNELS, CLASSES, True, depth=depth, strides=derive_strides(SPACING, patch), norm=norm)


BUILDERS: dict[str, Callable[[list[int]], nn.Module]] = {
    "PlainConvUNet (nnU-Net default)": plain_conv_unet,
    **{
        f"Med3D ResNet-{depth} U-Net, {norm} norm": partial(med3d_unet, depth, norm=norm)
        for depth in (10, 50)
        for norm in NORMS
    },
}


def nnunet_loss(n_outputs: int) -> nn.Module:
    """nnU-Net's training loss: Dice + CE per deep-supervision output, weights 1/2^i, the lowest one 0."""
    weights = np.array([1 / 2**i for i in range(n_outputs)])
    weights[-1] = 0
    loss = DC_and_CE_loss(
        {"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False},
        {},
        weight_ce=1,
        weight_dice=1,
        ignore_label=None,
        dice_class=MemoryEfficientSoftDiceLoss,
    )
    return DeepSupervisionWrapper(loss, weights / weights.sum())


def downsampled_targets(target: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The label map (B, 1, X, Y, Z) at each output's resolution (nearest neighbour)."""
    return [nn.functional.interpolate(target.float(), size=o.shape[2:], mode="nearest") for o in outputs]


def sgd(net: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), 0.01, weight_decay=3e-5, momentum=0.99, nesterov=True)


def time_steps(name: str, patch: list[int], batch: int, steps: int, queue) -> None:
    """Child process: build one network, run 1 + `steps` training steps, report times and memory."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = BUILDERS[name](patch)
    optimizer, loss_fn = sgd(net), None
    x = torch.randn(batch, CHANNELS, *patch)
    y = torch.randint(0, CLASSES, (batch, 1, *patch))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        outputs = net(x)
        loss_fn = loss_fn or nnunet_loss(len(outputs))
        loss_fn(outputs, downsampled_targets(y, outputs)).backward()
        optimizer.step()
        if step:  # the first step allocates optimizer state and warms up kernels
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    queue.put((name, times, peak * 1024, sum(p.numel() for p in net.parameters())))


def speed(args: argparse.Namespace) -> None:
    patch, batch = list(args.patch), args.batch
    context = multiprocessing.get_context("spawn")
    times: dict[str, list[float]] = {name: [] for name in BUILDERS}
    peaks: dict[str, list[int]] = {name: [] for name in BUILDERS}
    params: dict[str, int] = {}
    for round_ in range(args.rounds):
        names = list(BUILDERS) if round_ % 2 == 0 else list(reversed(BUILDERS))
        for name in names:
            queue = context.Queue()
            child = context.Process(target=time_steps, args=(name, patch, batch, args.steps, queue))
            child.start()
            _, step_times, peak, params[name] = queue.get()
            child.join()
            times[name] += step_times
            peaks[name].append(peak)
    budget_8gb = budget_bytes(8.0)
    base = statistics.median(times["PlainConvUNet (nnU-Net default)"])
    print(
        f"patch {patch}, batch {batch}, {args.rounds} rounds × {args.steps} timed steps, "
        f"torch {torch.__version__}, 2 threads\n"
    )
    print(
        "| network | parameters (M) | step s (median) | vs PlainConvUNet | peak RSS increase GiB (CPU, fp32) "
        "| planner estimate GB (GPU, AMP) |"
    )
    print("|---|---|---|---|---|---|")
    for name in BUILDERS:
        per_sample, n_params = activation_bytes(partial(BUILDERS[name], patch), (1, CHANNELS, *patch))
        estimate = (batch * per_sample + PARAM_BYTES * n_params) / budget_8gb * 8.0
        median = statistics.median(times[name])
        print(
            f"| {name} | {params[name] / 1e6:.1f} | {median:.2f} | {median / base:.2f} | "
            f"{statistics.median(peaks[name]) / 2**30:.2f} | {estimate:.2f} |"
        )


def load_subject(root: Path, subject: str) -> tuple[np.ndarray, np.ndarray]:
    """(image (2, X, Y, Z) z-scored per channel, labels (X, Y, Z)), voxels COARSE times larger per axis."""
    folder = root / "training" / subject
    factors = [1 / f for f in COARSE]
    channels = []
    for modality in ("IR", "FLAIR"):
        image = zoom(
            np.asarray(nib.Nifti1Image.from_filename(folder / "orig" / f"{modality}.nii.gz").dataobj, dtype=np.float32),
            factors,
            order=1,
        )
        channels.append((image - image.mean()) / image.std())
    labels = zoom(
        np.asarray(nib.Nifti1Image.from_filename(folder / "segm.nii.gz").dataobj, dtype=np.uint8), factors, order=0
    )
    return np.stack(channels), labels


def random_batch(
    data: list[tuple[np.ndarray, np.ndarray]], patch: list[int], batch: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for _ in range(batch):
        image, label = data[rng.integers(len(data))]
        corner = [rng.integers(0, s - p + 1) for s, p in zip(label.shape, patch, strict=True)]
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
        image, label = image[(slice(None), *window)], label[window]
        for axis in range(3):
            if rng.random() < 0.5:
                image, label = np.flip(image, axis + 1), np.flip(label, axis)
        images.append(image.copy())
        labels.append(np.where(label == IGNORE, 0, label)[None].copy())  # label 9 trained as background
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)).long()


def mean_dice(net: nn.Module, image: np.ndarray, labels: np.ndarray, divisor: list[int]) -> float:
    """Whole-volume prediction (zero-padded to the total stride); mean Dice over labels 1-8, label 9 ignored."""
    pad = [(0, -s % d) for s, d in zip(labels.shape, divisor, strict=True)]
    x = torch.from_numpy(np.pad(image, [(0, 0), *pad]))[None]
    with torch.no_grad():
        logits = net(x)
    predicted = logits.argmax(1)[0].numpy()[tuple(slice(0, s) for s in labels.shape)]
    keep = labels != IGNORE
    dice = []
    for label in range(1, 9):
        p, t = (predicted == label) & keep, (labels == label) & keep
        dice.append(2 * (p & t).sum() / max(p.sum() + t.sum(), 1))
    return float(np.mean(dice))


def norm(args: argparse.Namespace) -> None:
    torch.set_num_threads(2)
    train = [load_subject(args.data, s) for s in SUBJECTS_TRAIN]
    test = [load_subject(args.data, s) for s in SUBJECTS_TEST]
    spacing = [s * f for s, f in zip((0.958, 0.958, 3.0), COARSE, strict=True)]  # the arrays' order (x, y, z)
    patch = list(args.patch)
    strides = derive_strides(spacing, patch)
    divisor = [int(v) for v in np.prod(strides, axis=0)]
    print(
        f"volumes {train[0][1].shape} at {spacing} mm, patch {patch}, batch {args.batch}, strides {strides}, "
        f"{args.steps} steps, poly lr 0.01\n"
    )
    print("| norm | seed | train loss (last 50 steps) | held-out mean Dice (labels 1-8) | s per step |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        for kind in ("batch", "instance"):
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            net = Med3DUNet(CHANNELS, CLASSES, True, depth=10, strides=strides, norm=kind)
            optimizer = sgd(net)
            loss_fn, losses = None, []
            start = time.perf_counter()
            for step in range(args.steps):
                for group in optimizer.param_groups:
                    group["lr"] = 0.01 * (1 - step / args.steps) ** 0.9
                x, y = random_batch(train, patch, args.batch, rng)
                outputs = net(x)
                loss_fn = loss_fn or nnunet_loss(len(outputs))
                loss = loss_fn(outputs, downsampled_targets(y, outputs))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            seconds = (time.perf_counter() - start) / args.steps
            net.eval()
            net.decoder.deep_supervision = False
            dice = statistics.mean(mean_dice(net, image, labels, divisor) for image, labels in test)
            print(f"| {kind} | {seed} | {statistics.mean(losses[-50:]):.3f} | {dice:.3f} | {seconds:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--patch", type=int, nargs=3, default=[16, 96, 96])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.set_defaults(run=speed)
    p = sub.add_parser("norm")
    p.add_argument("--patch", type=int, nargs=3, default=[48, 48, 16])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data" / "MRBrainS18"
    )
    p.set_defaults(run=norm)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
