"""The state an unlearning run carries from epoch to epoch beyond nnU-Net's checkpoint, for ``--c``.

nnU-Net's ``checkpoint_latest.pth`` holds weights, optimizer and logs. An unlearning run also has a
step counter (the strategies' schedules read ``progress``), the random generator its label noise and
other draws come from, and whatever the strategy keeps between steps (SCRUB's alternation). They are
written beside the latest checkpoint, at the same epoch, and removed with it when the run ends.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from nnunet_unlearning.artifacts import LATEST_CHECKPOINT, RESUME_STATE_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_bytes


@dataclass(frozen=True)
class ResumeState:
    """``epoch``: the epoch the run continues with (nnU-Net's ``current_epoch`` in the checkpoint);
    ``steps_taken``: optimizer steps so far; ``generator``: the strategies' generator state (uint8 tensor);
    ``strategy``: the strategy's resumable attributes."""

    epoch: int
    steps_taken: int
    generator: torch.Tensor | None
    strategy: dict


def save_resume_state(output_folder: str | Path, state: ResumeState) -> None:
    buffer = io.BytesIO()
    torch.save(asdict(state), buffer)
    atomic_write_bytes(Path(output_folder) / RESUME_STATE_FILE, buffer.getvalue())


def load_resume_state(output_folder: str | Path, epoch: int) -> ResumeState:
    """The saved state of the run in ``output_folder``, which must belong to ``epoch`` (the checkpoint's)."""
    path = Path(output_folder) / RESUME_STATE_FILE
    if not path.is_file():
        raise UserInputError(
            f"{path}: missing, so {LATEST_CHECKPOINT} cannot be resumed exactly; restart the run without --c"
        )
    state = ResumeState(**torch.load(path, map_location="cpu", weights_only=True))
    if state.epoch != epoch:
        raise UserInputError(
            f"{path}: saved at epoch {state.epoch}, but {LATEST_CHECKPOINT} is of epoch {epoch} "
            "(the run was stopped while saving); restart the run without --c"
        )
    return state


def remove_resume_state(output_folder: str | Path) -> None:
    (Path(output_folder) / RESUME_STATE_FILE).unlink(missing_ok=True)
