"""The benchmark's tables, computed from the per-request reports (``report.json``) of one benchmark run.

Rows of a report are models (the original, the retrain oracle, each unlearning run); the benchmark keys
them by (forget set, model) and averages over forget sets: over the leave-one-subject-out sets for the
main table, and per forget-set size for the size table. Values are fractions (Dice) or percentages where
the name says ``_pct``; a mean skips undefined values and says over how many sets it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from nnunet_unlearning.evaluation.calibration import AcceptanceCriteria
from nnunet_unlearning.evaluation.summary import mean_of_defined
from nnunet_unlearning.evidence.table_format import format_value, markdown_table

#: The seed study's headline (Singh, Singh, Arora 2026): Noisy Label after 50 epochs.
SEED_FORGET_DROP_PCT = 93.0
SEED_RETAIN_RETENTION_PCT = 84.0
SEED_STRATEGY = "NoisyLabel"

#: Columns carried from the reports into the benchmark's rows and averaged.
VALUES = (
    "dice_forget",
    "dice_retain",
    "dice_heldout",
    "forget_drop_pct",
    "retain_retention_pct",
    "gap_dice_forget",
    "gap_dice_retain",
    "gap_dice_heldout",
    "avg_gap",
    "mia_efficacy",
    "wall_s",
    "speedup",
)
HEADERS = {
    "model": ("model", "s"),
    "horizon": ("epochs", "s"),
    "n": ("forget sets", "d"),
    "size": ("forget size", "d"),
    "dice_forget": ("Dice forget", ".3f"),
    "dice_retain": ("Dice retain", ".3f"),
    "dice_heldout": ("Dice held-out", ".3f"),
    "forget_drop_pct": ("forget drop %", ".1f"),
    "retain_retention_pct": ("retain retention %", ".1f"),
    "gap_dice_forget": ("Δ Dice forget", "+.3f"),
    "gap_dice_retain": ("Δ Dice retain", "+.3f"),
    "gap_dice_heldout": ("Δ Dice held-out", "+.3f"),
    "avg_gap": ("Avg. Gap", ".3f"),
    "mia_efficacy": ("MIA efficacy", ".3f"),
    "wall_s": ("wall s", ".0f"),
    "speedup": ("speed-up ×", ".1f"),
}
MAIN_COLUMNS = ("model", "horizon", "n", *VALUES)
#: The size table: the main table's columns but the oracle gaps on the retain and held-out sets, time and speed-up.
SIZE_COLUMNS = (
    "size",
    *(k for k in MAIN_COLUMNS if k not in ("gap_dice_retain", "gap_dice_heldout", "wall_s", "speedup")),
)
_EPOCHS = re.compile(r"_(\d+)epochs$")


def model_key(row: Mapping) -> tuple[str, str]:
    """(model, horizon) of a report row: the strategy, with the settings it changed from their defaults, and its
    epochs for an unlearning run; "original" and "retrain oracle" (horizon "-") otherwise."""
    if row["role"] == "original":
        return "original", "-"
    if row["role"] in ("oracle", "retrain"):
        return "retrain oracle", "-"
    match = _EPOCHS.search(row["trainer"] or "")
    # runs of one trainer under other settings (a tuned learning rate, calibration) are other models
    settings = row.get("non_default_settings")
    model = row["strategy"] or row["trainer"]
    return model + (f" [{settings}]" if settings not in (None, "defaults") else ""), match.group(1) if match else "-"


def benchmark_rows(reports: Mapping[tuple[str, ...], Mapping]) -> list[dict]:
    """One row per (forget set, model) from ``{forget set: report.json content}``."""
    rows = []
    for forget, report in reports.items():
        for row in report["rows"]:
            model, horizon = model_key(row)
            rows.append(
                {
                    "forget": list(forget),
                    "size": len(forget),
                    "model": model,
                    "horizon": horizon,
                    **{k: row.get(k) for k in VALUES},
                }
            )
    return rows


def average(rows: Sequence[Mapping], keys: Sequence[str]) -> list[dict]:
    """Mean of every value over the rows that share ``keys``, in first-seen order, with their count ``n``."""
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return [
        {**dict(zip(keys, key)), "n": len(members), **{v: mean_of_defined(m[v] for m in members) for v in VALUES}}
        for key, members in groups.items()
    ]


def _plain_seed_strategy(model: str) -> bool:
    """Whether a table's model is the seed study's strategy trained for a fixed schedule (at any learning rate),
    as the seed study ran it, not calibrated."""
    return model == SEED_STRATEGY or (model.startswith(f"{SEED_STRATEGY} [") and "calibration" not in model)


def seed_comparison(main: Sequence[Mapping]) -> dict | None:
    """The seed study's Noisy Label headline next to ours at our longest horizon, and next to the oracle."""
    ours = max(
        (r for r in main if _plain_seed_strategy(r["model"]) and r["horizon"].isdigit()),
        key=lambda r: int(r["horizon"]),
        default=None,
    )
    oracle = next((r for r in main if r["model"] == "retrain oracle"), None)
    if ours is None:
        return None
    return {
        "strategy": ours["model"],
        "horizon_epochs": ours["horizon"],
        "seed_forget_drop_pct": SEED_FORGET_DROP_PCT,
        "forget_drop_pct": ours["forget_drop_pct"],
        "seed_retain_retention_pct": SEED_RETAIN_RETENTION_PCT,
        "retain_retention_pct": ours["retain_retention_pct"],
        "dice_forget": ours["dice_forget"],
        "oracle_dice_forget": oracle["dice_forget"] if oracle else None,
        "gap_dice_forget": ours["gap_dice_forget"],
    }


def tables(rows: Sequence[Mapping]) -> dict:
    """The main (leave-one-subject-out) table, the size table and the seed comparison, over the judged sets."""
    main = average([r for r in rows if r["size"] == 1], ("model", "horizon"))
    sizes = average(sorted(rows, key=lambda r: r["size"]), ("size", "model", "horizon"))
    return {"leave_one_subject_out": main, "sizes": sizes, "seed_comparison": seed_comparison(main)}


def _oracle_clause(dice: float | None, oracle: float | None, gap: float | None) -> str:
    """What the forget Dice's gap to the oracle's says, chosen by its size: within ``tolerance`` × the
    oracle's forget Dice (the acceptance criteria's default, 5 %) counts as about the oracle's."""
    if dice is None or oracle is None or gap is None:
        return "there is no retrain oracle's forget Dice to compare it with."
    close = AcceptanceCriteria().tolerance * abs(oracle)
    if abs(gap) <= close:
        return f"within {close:.3f} of the oracle's, so it forgot about as much as retraining would."
    if gap < 0:
        return "below the oracle's: it over-forgot, which marks the forgotten subject instead of hiding it."
    return "above the oracle's: it kept more of the forgotten subject than retraining would."


def _change(percent: str) -> str:
    """A drop in percent as a signed change: "93.0" -> "−93.0 %", "-5.0" -> "+5.0 %", "–" (undefined) kept."""
    if percent == "–":
        return percent
    return f"+{percent[1:]} %" if percent.startswith("-") else f"−{percent} %"


def seed_sentence(comparison: Mapping | None) -> str:
    """The honest comparison with the seed study, in words chosen by the measured values."""
    if comparison is None:
        return f"{SEED_STRATEGY} was not judged, so there is no comparison with the seed study."
    c = {
        k: v
        if isinstance(v, str)
        else format_value(v, "+.3f" if k.startswith("gap") else ".3f" if "dice" in k else ".1f")
        for k, v in comparison.items()
    }
    verdict = _oracle_clause(comparison["dice_forget"], comparison["oracle_dice_forget"], comparison["gap_dice_forget"])
    return (
        f"Seed study, {SEED_STRATEGY} after 50 epochs: forget Dice {_change(c['seed_forget_drop_pct'])}, retain "
        f"{c['seed_retain_retention_pct']} % kept. Here, {c['strategy']} after {c['horizon_epochs']} epochs: "
        f"forget Dice {_change(c['forget_drop_pct'])}, retain {c['retain_retention_pct']} % kept; its forget Dice "
        f"{c['dice_forget']} against the retrain oracle's {c['oracle_dice_forget']} (Δ {c['gap_dice_forget']}): "
        f"{verdict}"
    )


def markdown(content: Mapping) -> str:
    """benchmark.md: what ran, the main table, the size table, the seed comparison."""
    t = content["tables"]
    lines = [
        "# MRBrainS18 unlearning benchmark",
        "",
        f"Profile: {content['profile']}. Mirroring augmentation (the workdir's plans): {content['mirroring']}.",
        "",
        f"Original model trained on {', '.join(content['training'])}; held out: {', '.join(content['heldout'])}.",
        f"Forget sets run: {'; '.join(', '.join(f) for f in content['forget_sets'])}.",
        f"Machine: {content['machine']}. Wall time of the whole benchmark: {content['wall_s']:.0f} s.",
        "",
        "Dice: mean over the set's subjects of the mean over the profile's foreground labels; forget drop and "
        "retain retention relative to the original model; Δ = model − retrain oracle; Avg. Gap = mean |Δ| "
        "over Dice forget, retain, held-out and MIA efficacy (docs/report.md). Values are means over the "
        "forget sets counted in the 'forget sets' column.",
        "",
        "## Tuning",
        "",
        f"Each strategy's learning-rate scale ({', '.join(f'{s:g}' for s in content['lr_scales'])}) and "
        f"horizon were chosen on subject {content['tuning_subject']} alone (docs/benchmarks.md)"
        + (f", frozen in {frozen} (not tuned in this run)" if (frozen := content.get("tuning_frozen_from")) else "")
        + ", then judged unchanged on the other forget sets below:",
        "",
        *(
            f"- {name}: lr scale {c['lr_scale']:g}, {c['epochs']} epochs; {c['reason']}"
            for name, c in content["tuning"].items()
        ),
        "",
        *(
            [
                f"Subject {content['tuning_subject']} at the trainers' defaults (scale 1), not a judged result:",
                "",
                markdown_table(t["tuning_subject"], MAIN_COLUMNS, HEADERS),
                "",
            ]
            if t["tuning_subject"]
            else []
        ),
        "## Leave one subject out (forget size 1), judged",
        "",
        markdown_table(t["leave_one_subject_out"], MAIN_COLUMNS, HEADERS)
        if t["leave_one_subject_out"]
        else "No judged forget set of size 1 was run.",
        "",
        "## Forget-set size, judged",
        "",
        markdown_table(t["sizes"], SIZE_COLUMNS, HEADERS) if t["sizes"] else "No judged forget set was run.",
        "",
        "## Against the seed study and the retrain oracle",
        "",
        seed_sentence(t["seed_comparison"]),
        "",
    ]
    if content["failed_runs"]:
        lines += ["## Runs that failed (not in the tables)", "", *(f"- {line}" for line in content["failed_runs"]), ""]
    return "\n".join(lines)
