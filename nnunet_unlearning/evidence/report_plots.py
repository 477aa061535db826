"""The report's plots (PNG bytes): retain vs forget Dice per model, Dice per case, Dice per set over epochs.

Each model keeps one colour in every plot: the original grey, the retrain oracle black, the unlearning runs
matplotlib's tab10 colours in the report's row order.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from nnunet_unlearning.artifacts import SETS
from nnunet_unlearning.evaluation.plot_style import plain_style
from nnunet_unlearning.evidence.comparison import Model

SET_TITLES = {"forget": "forget", "retain": "retain", "heldout": "held-out"}


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _colours(models: Sequence[Model]) -> dict[str, str]:
    colours, others = {}, 0
    for model in models:
        if model.role == "original":
            colours[model.name] = "tab:gray"
        elif model.role == "oracle":
            colours[model.name] = "black"
        else:
            colours[model.name] = f"C{others % 10}"
            others += 1
    return colours


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    return buffer.getvalue()


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def forget_vs_retain(models: Sequence[Model]) -> bytes:
    """Mean Dice on the retain set (y) against the forget set (x), one point per model.

    The oracle's point has dashed guide lines: a run close to it forgot about as much as retraining would,
    a run far left of it over-forgot (which itself marks who was forgotten).
    """
    plt = _pyplot()
    colours = _colours(models)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100, layout="constrained")
    for model in models:
        x, y = (_number(model.end["sets"].get(s, {}).get("dice")) for s in ("forget", "retain"))
        marker = {"original": "s", "oracle": "*", "retrain": "*"}.get(model.role, "o")
        ax.scatter(
            [x],
            [y],
            s=140 if marker == "*" else 60,
            marker=marker,
            color=colours[model.name],
            label=model.name,
            zorder=3,
        )
        if model.role == "oracle":
            ax.axvline(x, color="black", ls="--", lw=0.8)
            ax.axhline(y, color="black", ls="--", lw=0.8)
    ax.set_xlabel("mean Dice, forget set")
    ax.set_ylabel("mean Dice, retain set")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def dice_per_case(models: Sequence[Model], case_sets: Mapping[str, Sequence[str]]) -> bytes:
    """Grouped bars: each case's mean Dice under every model (before: the original; after: the others)."""
    plt = _pyplot()
    colours = _colours(models)
    sets = [s for s in SETS if case_sets.get(s)]
    widths = [len(case_sets[s]) for s in sets]
    fig, axes = plt.subplots(
        1,
        len(sets),
        figsize=(min(4 + 0.5 * len(models) * sum(widths), 40), 4.5),
        dpi=100,
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
        layout="constrained",
    )
    bar = 0.8 / len(models)
    for ax, name in zip(axes[0], sets):
        cases = list(case_sets[name])
        for i, model in enumerate(models):
            values = [_number(model.end["cases"].get(c, {}).get("mean", {}).get("dice")) for c in cases]
            ax.bar(
                [k + (i - (len(models) - 1) / 2) * bar for k in range(len(cases))],
                values,
                bar,
                color=colours[model.name],
                label=model.name,
            )
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(cases, rotation=45, ha="right", fontsize=7)
        ax.set_title(SET_TITLES[name])
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("mean Dice of the case")
    fig.legend(
        *axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=min(len(models), 4), fontsize=7
    )
    return _png(fig)


def dice_over_epochs(models: Sequence[Model]) -> bytes:
    """Mean Dice per set against the epoch of each evaluation of every run; the original and the oracle as
    horizontal lines (the oracle trains for the original's schedule, far longer than unlearning)."""
    plt = _pyplot()
    colours = _colours(models)
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(SETS), figsize=(12, 4.5), dpi=100, sharey=True, layout="constrained")
    for ax, name in zip(axes, SETS):
        for model in models:
            if model.role in ("original", "oracle"):
                value = _number(model.end["sets"].get(name, {}).get("dice"))
                ax.axhline(
                    value, color=colours[model.name], ls=":" if model.role == "original" else "--", label=model.name
                )
                continue
            points = [(e["epoch"], _number(e["sets"].get(name, {}).get("dice"))) for e in model.history]
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color=colours[model.name], label=model.name)
        ax.set_title(SET_TITLES[name])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean Dice")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(len(models), 4), fontsize=7)
    return _png(fig)


def report_plots(models: Sequence[Model], case_sets: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, bytes]]:
    """File name -> (title, PNG bytes) of every plot of the report."""
    with plain_style():
        return {
            "report_forget_vs_retain.png": ("Retain vs forget Dice per model", forget_vs_retain(models)),
            "report_dice_per_case.png": (
                "Dice per case, before (original) and after",
                dice_per_case(models, case_sets),
            ),
            "report_dice_over_epochs.png": ("Dice per set over epochs", dice_over_epochs(models)),
        }
