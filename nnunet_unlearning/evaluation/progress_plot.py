"""``unlearning_progress.png``: mean Dice per case set across a run's evaluations."""

from __future__ import annotations

import io
from collections.abc import Sequence

from nnunet_unlearning.evaluation.plot_style import plain_style

SET_COLOURS = {"forget": "tab:red", "retain": "tab:blue", "heldout": "tab:green"}


def plot_progress(evaluations: Sequence[dict], title: str) -> bytes:
    """PNG bytes of Dice (y, 0-1) per set against the epoch of each evaluation (x)."""
    with plain_style():
        return _draw(evaluations, title)


def _draw(evaluations: Sequence[dict], title: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = [e["epoch"] for e in evaluations]
    for name, colour in SET_COLOURS.items():
        values = [e["sets"].get(name, {}).get("dice") for e in evaluations]
        if any(v is not None for v in values):
            ax.plot(epochs, [float("nan") if v is None else v for v in values], "o-", color=colour, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
