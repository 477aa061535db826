"""Load MedicalNet (Med3D) checkpoints into a `MedicalNetResNet` encoder, all or nothing.

Accepted files: `resnet_{10,18,34,50}.pth` and `resnet_*_23dataset.pth` from Tencent MedicalNet — a dict with a
`state_dict` entry or a bare state dict, keys with or without the `module.` prefix (nn.DataParallel),
possibly without `num_batches_tracked` (older PyTorch) and possibly with segmentation-head keys
(`conv_seg.*`). Files are read with `torch.load(weights_only=True)`: a checkpoint is untrusted input.

Rules:
- every encoder tensor is loaded from the file with equal shape, except the stem when the network has more
  input channels than the file (see `inflate_stem`); a missing tensor, an unexpected one (wrong depth or
  shortcut type), or a shape mismatch is a one-line `UserInputError` naming the key and file;
- `num_batches_tracked` absent from the file is tolerated (BatchNorm only reads it when momentum is None;
  ours is 0.1): the encoder keeps its own value, and the report lists it;
- with `norm="instance"` the encoder has no running statistics: the BatchNorm affine weight and bias load into
  the InstanceNorm affine parameters, the running statistics are skipped and reported;
- head keys (`conv_seg.*`) are skipped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.med3d.resnet import MedicalNetResNet

STEM_KEY = "conv1.weight"
HEAD_PREFIX = "conv_seg."
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class LoadReport:
    """What a MedicalNet checkpoint contributed to an encoder.

    loaded: encoder keys set from the file (each with the file's shape, or inflated for `conv1.weight`).
    inflated: {key: (file input channels, network input channels)} for stems inflated by `inflate_stem`.
    kept: encoder keys absent from the file that the encoder keeps (`num_batches_tracked` only).
    skipped: {file key (without `module.`): reason} for file tensors that were not loaded.
    """

    source: str
    depth: int
    in_channels: int
    norm: str
    loaded: list[str] = field(default_factory=list)
    inflated: dict[str, tuple[int, int]] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for a user: counts first, then what was inflated, kept and skipped."""
        lines = [
            f"{self.source}: MedicalNet ResNet-{self.depth} encoder ({self.norm} norm, {self.in_channels} "
            f"input channel{'s' if self.in_channels != 1 else ''}): {len(self.loaded)} tensors loaded, "
            f"0 missing, {len(self.skipped)} skipped"
        ]
        for key, (c_file, c_net) in self.inflated.items():
            lines.append(
                f"  inflated {key}: {c_file} -> {c_net} input channels (kernel repeated, divided by {c_net // c_file})"
            )
        if self.kept:
            lines.append(f"  not in file, encoder keeps its own value: {len(self.kept)} num_batches_tracked")
        reasons: dict[str, list[str]] = {}
        for key, reason in self.skipped.items():
            reasons.setdefault(reason, []).append(key)
        for reason, keys in reasons.items():
            shown = ", ".join(keys[:3]) + (f", ... ({len(keys)} in all)" if len(keys) > 3 else "")
            lines.append(f"  skipped ({reason}): {shown}")
        return "\n".join(lines)


def read_medicalnet_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a MedicalNet checkpoint file, keys without `module.`; UserInputError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file (MedicalNet weights, e.g. resnet_50.pth)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler raises many types on arbitrary bytes; all mean "not a checkpoint"
        message = str(e).strip().splitlines()[0].split(". ")[0][:160] if str(e).strip() else ""
        reason = f"{type(e).__name__}: {message}" if message else type(e).__name__
        raise UserInputError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise UserInputError(
            f"{path}: not a MedicalNet checkpoint (expected a state dict of tensors, "
            f"or a dict with one under 'state_dict')"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def inflate_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Inflate a stem kernel (O, c, 7, 7, 7) to `in_channels` = k·c inputs: repeat k times, divide by k.

    Dividing keeps the stem's response to an input whose channels are all equal to the original
    single-channel image unchanged; each modality then starts with an equal share of the filter.
    """
    c = weight.shape[1]
    if in_channels % c:
        raise ValueError(f"cannot inflate a stem with {c} input channels to {in_channels}")
    k = in_channels // c
    return weight.repeat(1, k, 1, 1, 1) / k


def load_medicalnet_weights(encoder: MedicalNetResNet, path: Path) -> LoadReport:
    """Load the file into `encoder` (in place); all encoder tensors or none. Returns what was done."""
    path = Path(path)
    file_state = read_medicalnet_state_dict(path)
    own = encoder.state_dict()
    in_channels = own[STEM_KEY].shape[1]
    report = LoadReport(source=str(path), depth=encoder.depth, in_channels=in_channels, norm=encoder.norm)
    what = f"MedicalNet ResNet-{encoder.depth} (shortcut type {encoder.shortcut_type})"

    new_state: dict[str, torch.Tensor] = {}
    for key, target in own.items():
        if key not in file_state:
            if key.endswith("num_batches_tracked"):
                report.kept.append(key)
                new_state[key] = target
                continue
            raise UserInputError(f"{path}: key {key!r} missing — not a {what} checkpoint (wrong depth?)")
        tensor = file_state[key]
        if (
            key == STEM_KEY
            and tensor.dim() == 5
            and tensor.shape[1] != in_channels
            and tensor.shape[1] > 0
            and in_channels % tensor.shape[1] == 0
            and tensor.shape[:1] + tensor.shape[2:] == target.shape[:1] + target.shape[2:]
        ):
            report.inflated[key] = (tensor.shape[1], in_channels)
            tensor = inflate_stem(tensor, in_channels)
        if tensor.shape != target.shape:
            hint = "input channels?" if key == STEM_KEY else "wrong depth?"
            raise UserInputError(
                f"{path}: key {key!r} has shape {tuple(tensor.shape)}, {what} with "
                f"{in_channels} input channel(s) needs {tuple(target.shape)} ({hint})"
            )
        if tensor.is_floating_point() != target.is_floating_point():
            raise UserInputError(f"{path}: key {key!r} has dtype {tensor.dtype}, expected {target.dtype}")
        new_state[key] = tensor
        report.loaded.append(key)

    for key in file_state:
        if key in own:
            continue
        if key.startswith(HEAD_PREFIX):
            report.skipped[key] = "segmentation head, not part of the encoder"
        elif encoder.norm == "instance" and key.rsplit(".", 1)[-1] in RUNNING_STATS:
            report.skipped[key] = "BatchNorm running statistics, no place in InstanceNorm"
        else:
            raise UserInputError(
                f"{path}: unexpected key {key!r} — not a {what} checkpoint (wrong depth or shortcut type?)"
            )
    encoder.load_state_dict(new_state, strict=True)
    return report


def check_medicalnet_file(path: Path, depth: int = 50, in_channels: int = 1, norm: str = "batch") -> LoadReport:
    """Whether a downloaded MedicalNet file loads into our ResNet-`depth` encoder; UserInputError says why not.

    Builds a throw-away encoder (a few seconds for depth 50) and loads the file into it.
    """
    if depth not in (10, 18, 34, 50):
        raise UserInputError(f"--depth must be 10, 18, 34 or 50, got {depth}")
    if in_channels < 1:
        raise UserInputError(f"--in-channels must be at least 1, got {in_channels}")
    return load_medicalnet_weights(MedicalNetResNet(depth, in_channels, norm=norm), path)
