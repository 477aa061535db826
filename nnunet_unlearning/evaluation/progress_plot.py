"""``unlearning_progress.png``: mean Dice per case set across a run's evaluations; for a calibrated run, a
second panel with the forgetting test at every check (forget mean, held-out band, the state kept)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from nnunet_unlearning.evaluation.calibration import band_name
from nnunet_unlearning.evaluation.plot_style import plain_style

SET_COLOURS = {"forget": "tab:red", "retain": "tab:blue", "heldout": "tab:green"}


def plot_progress(evaluations: Sequence[Mapping], title: str, calibration: Mapping | None = None) -> bytes:
    """PNG bytes of Dice (y, 0-1) per set against the epoch of each evaluation (x); with ``calibration``
    (``Calibration.to_json``: criteria, checks, decision) a panel of the calibrated score per check."""
    with plain_style():
        return _draw(evaluations, title, calibration)


def _draw(evaluations: Sequence[Mapping], title: str, calibration: Mapping | None) -> bytes:
    import matplotlib.pyplot as plt

    panels = 2 if calibration and calibration["checks"] else 1
    fig, axes = plt.subplots(panels, 1, figsize=(6, 4 * panels), dpi=100, squeeze=False)
    ax = axes[0][0]
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
    if panels == 2 and calibration is not None:
        _draw_calibration(axes[1][0], calibration)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _draw_calibration(ax, calibration: Mapping) -> None:
    """Forget mean (red) and the band it is tested against (green: held-out or memorisation band) per check;
    the kept check circled; stop reason above."""
    checks = calibration["checks"]
    epochs = [c["epoch"] for c in checks]
    # records written before the memorisation reference have no "target": their band is the held-out one
    centres = [c.get("target", c["heldout_mean"]) for c in checks]
    low = [centre - c["half_width"] for centre, c in zip(centres, checks, strict=True)]
    high = [centre + c["half_width"] for centre, c in zip(centres, checks, strict=True)]
    band = band_name(checks[0].get("memorisation")) if checks else band_name(None)
    ax.fill_between(epochs, low, high, color=SET_COLOURS["heldout"], alpha=0.2, label=band)
    ax.plot(epochs, [c["heldout_mean"] for c in checks], "-", color=SET_COLOURS["heldout"], label="held-out mean")
    ax.plot(epochs, [c["forget_mean"] for c in checks], "o-", color=SET_COLOURS["forget"], label="forget mean")
    over = [c for c in checks if not c["within_budget"]]
    if over:
        ax.plot([c["epoch"] for c in over], [c["forget_mean"] for c in over], "kx", label="utility budget broken")
    decision = calibration.get("decision")
    headline = "calibration: undecided"
    if decision:
        kept = next(c for c in checks if c["tag"] == decision["kept_tag"])
        ax.plot([kept["epoch"]], [kept["forget_mean"]], "o", mfc="none", mec="black", ms=12, label="kept")
        headline = (
            f"stopped: {decision['reason'].replace('_', ' ')}; kept epoch {decision['kept_epoch']} "
            f"({decision['steps_used']} steps); target {'reached' if decision['target_reached'] else 'not reached'}"
        )
    ax.set_title(headline, fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean {calibration['criteria']['score']} per set")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
