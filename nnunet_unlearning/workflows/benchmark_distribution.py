"""The benchmark's retrain distribution: K originals, K retrain oracles per forget set, and every run judged
against them (`evaluation/retrain_distribution.py`).

Replicate 0 of the original is the model every unlearning run starts from, replicate 0 of the oracle the one
each forget set's report and audit compare with; replicates 1 … K−1 train in folders of their own
(:func:`original_results`, :func:`oracle_results`). nnU-Net seeds nothing, so each replicate draws its own
initialisation, patches and augmentations: the spread between them is the spread of the recipe. The
originals have no evaluation hook of their own: each is scored once by the hook's code
(`evaluation/model_evaluation.py`) and the result kept beside it (:data:`ORIGINAL_EVALUATION`, tied to its
checkpoint's SHA-256); the oracles and the unlearning runs are read from their own ``unlearning_metrics.json``
(their end evaluation).

The targets of a run (the CPU study's issue; reported whether met or not): forget Dice within one oracle SD
(at least :data:`FORGET_TOLERANCE`) of the oracles' mean, retain and held-out Dice ≥ :data:`UTILITY` × the
original's (replicate 0), every forget subject "indistinguishable from retrained" by the membership test,
and wall time ≤ :data:`TIME_SHARE` of oracle replicate 0's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from nnunet_unlearning.artifacts import FINAL_CHECKPOINT, UNLEARN_PREFIX, load_run
from nnunet_unlearning.evaluation.retrain_distribution import (
    METRIC_SCORES,
    SCORE,
    SCORES,
    ReferenceModel,
    cases_mean,
    gap_to_distribution,
    membership_tests,
    power,
    spread,
)
from nnunet_unlearning.evaluation.subject_lira import INDISTINGUISHABLE, SubjectTest
from nnunet_unlearning.evidence.table_format import markdown_table
from nnunet_unlearning.files import atomic_write_json, sha256_file
from nnunet_unlearning.records import EvaluationRecord
from nnunet_unlearning.workflows.benchmark_runs import Run

ORIGINAL_EVALUATION = "original_evaluation.json"
FORGET_TOLERANCE = 0.02
UTILITY = 0.98
TIME_SHARE = 0.05


def original_results(workdir: Path, replicate: int) -> Path:
    """``nnUNet_results`` of original replicate ``replicate`` (0: the benchmark's own, in the workdir)."""
    folder = workdir if replicate == 0 else workdir / "originals" / f"seed_{replicate}"
    return folder / "nnUNet_results"


def oracle_results(forget_folder: Path, replicate: int) -> Path:
    """``nnUNet_results`` of a forget set's oracle replicate (0: the one its report compares with)."""
    folder = forget_folder if replicate == 0 else forget_folder / f"oracle_seed_{replicate}"
    return folder / "nnUNet_results"


def original_evaluation(run: Run, case_sets: Mapping[str, Sequence[str]], device: str) -> EvaluationRecord:
    """The hook's evaluation of a finished original replicate, computed once per checkpoint and kept in
    ``<results>/../original_evaluation.json``."""
    from nnunet_unlearning.evaluation.model_evaluation import evaluate_model_folder

    cache = run.results.parent / ORIGINAL_EVALUATION
    checksum = sha256_file(run.folder / FINAL_CHECKPOINT)
    if cache.is_file():
        kept = json.loads(cache.read_text())
        # an evaluation from before a measured membership score existed is recomputed
        voxel_scores = [s for s in SCORES if s not in METRIC_SCORES]
        scored = all(
            s in case.get("membership", {}) for case in kept["evaluation"]["cases"].values() for s in voxel_scores
        )
        if kept.get("checkpoint_sha256") == checksum and scored:
            return kept["evaluation"]
    evaluation = evaluate_model_folder(run.folder, case_sets, device, tag="original").to_json()
    atomic_write_json(cache, {"checkpoint_sha256": checksum, "evaluation": evaluation})
    return evaluation


def end_evaluation(run: Run) -> EvaluationRecord | None:
    """A finished oracle's or unlearning run's end evaluation (None when it has none)."""
    return load_run(run.folder).evaluation("end")


def _seconds(run: Run | None) -> dict[str, float] | None:
    """Where a run's wall time went, in seconds: ``training`` (the strategy's preparation and its steps, or the
    oracle's), ``evaluation`` (the hook's evaluations and a calibrated run's checks) and ``other`` (the rest:
    nnU-Net's start and end, checkpoints, the record); None for a model without a run (the original)."""
    if run is None:
        return None
    seconds = load_run(run.folder).metrics["seconds"]
    training = seconds.get("prepare", 0.0) + seconds["train"]
    return {
        "wall": seconds["wall"],
        "training": training,
        "evaluation": seconds["evaluation"],
        "other": seconds["wall"] - training - seconds["evaluation"],
    }


def _test_summary(test: SubjectTest | None) -> dict | None:
    if test is None:
        return None
    r = test.reference
    return {
        "verdict": test.verdict,
        "score": test.score,
        "p_value": test.p_value,
        "log_likelihood_ratio": test.log_likelihood_ratio,
        "mean_in": r.mean_in,
        "mean_out": r.mean_out,
        "std": r.std_out,
        "k_in": r.k_in,
        "k_out": r.k_out,
    }


def _targets(
    gaps: Mapping[str, Mapping], original: Mapping[str, float], tests: Mapping, wall: float | None, oracle_wall
) -> dict[str, bool | None]:
    forget = gaps["forget"]
    band = max(forget["oracle_std"] if not math.isnan(forget["oracle_std"]) else 0.0, FORGET_TOLERANCE)
    verdicts = [t["verdict"] for t in tests.values() if t is not None]
    return {
        "forget_within_oracle_sd": abs(forget["gap"]) <= band if not math.isnan(forget["gap"]) else None,
        "utility_kept": all(gaps[s]["value"] >= UTILITY * original[s] for s in ("retain", "heldout")),
        "membership_indistinguishable": all(v == INDISTINGUISHABLE for v in verdicts) if verdicts else None,
        "time_within_share": wall / oracle_wall <= TIME_SHARE if wall and oracle_wall else None,
    }


def distribution(
    originals: Sequence[tuple[Run, EvaluationRecord]],
    oracles: Mapping[tuple[str, ...], Sequence[Run]],
    runs: Mapping[tuple[str, ...], Sequence[Run]],
    training: Sequence[str],
    heldout: Sequence[str],
    subject_of,
) -> dict:
    """benchmark.json's ``retrain_distribution``: the originals' spread, the membership test's power, and per
    forget set the oracles' spread and every run (original and oracle replicate 0 included, each judged
    against the other references) against it.

    Args:
        originals: each original replicate's run and its evaluation (replicate 0 first).
        oracles: forget set (case ids) → its finished oracle replicates (replicate 0 first).
        runs: forget set → its finished unlearning runs.
        training, heldout: the original's training and held-out case ids.
        subject_of: case id → subject id.
    """
    references = [ReferenceModel(f"original {i}", frozenset(training), e) for i, (_, e) in enumerate(originals)]
    oracle_evaluations: dict[tuple[str, ...], list[tuple[Run, EvaluationRecord]]] = {}
    for forget, replicates in oracles.items():
        kept = [(r, e) for r in replicates if (e := end_evaluation(r)) is not None]
        oracle_evaluations[forget] = kept
        retained = frozenset(training) - set(forget)
        references += [ReferenceModel(f"oracle {i} {forget}", retained, e) for i, (_, e) in enumerate(kept)]
    subjects = {subject_of(c): [c] for c in training}
    everyone = {"training": list(training), "heldout": list(heldout)}
    original_dice = [{k: cases_mean(e, v) for k, v in everyone.items()} for _, e in originals]
    result: dict = {
        "k_originals": len(originals),
        "originals": {
            "dice": {k: spread([d[k] for d in original_dice]).to_dict() for k in everyone},
            "memorisation": spread([d["training"] - d["heldout"] for d in original_dice]).to_dict(),
        },
        "score": SCORE,
        "power": None,
        "power_by_score": {},
        "forget_sets": {},
    }
    for score in SCORES:
        found = power(references, subjects, score=score)
        result["power_by_score"][score] = None if found is None else found.to_dict()
    result["power"] = result["power_by_score"][SCORE]
    first = originals[0][1]
    for forget, kept in oracle_evaluations.items():
        sets = {"forget": list(forget), "retain": [c for c in training if c not in forget], "heldout": list(heldout)}
        original = {k: cases_mean(first, v) for k, v in sets.items()}
        evaluations = [e for _, e in kept]
        oracle_seconds = _seconds(kept[0][0]) if kept else None
        oracle_wall = oracle_seconds["wall"] if oracle_seconds else None
        forget_subjects = {subject_of(c): [c] for c in forget}
        candidates: list[tuple[str, EvaluationRecord, Run | None]] = [
            ("original", first, None),
            *(("retrain oracle", e, r) for r, e in kept[:1]),
        ]
        for unlearned in runs.get(forget, ()):
            end = end_evaluation(unlearned)
            if end is not None:
                label = " ".join(filter(None, (unlearned.trainer.removeprefix(UNLEARN_PREFIX), unlearned.variant)))
                candidates.append((label, end, unlearned))
        rows = []
        for model, evaluation, run in candidates:
            # a reference model is never judged against itself
            others = [m for m in references if m.evaluation is not evaluation]
            gaps = gap_to_distribution(evaluation, [e for e in evaluations if e is not evaluation], sets)
            tests = {s: _test_summary(t) for s, t in membership_tests(evaluation, others, forget_subjects).items()}
            seconds = _seconds(run)
            wall = seconds["wall"] if seconds else None
            rows.append(
                {
                    "model": model,
                    "gaps": gaps,
                    "membership": tests,
                    "wall_s": wall,
                    "seconds": seconds,
                    "targets": _targets(gaps, original, tests, wall, oracle_wall),
                }
            )
        result["forget_sets"]["-".join(subject_of(c) for c in forget)] = {
            "k_oracles": len(kept),
            "oracle": {k: spread([cases_mean(e, v) for e in evaluations]).to_dict() for k, v in sets.items()},
            "original": original,
            "rows": rows,
        }
    return json_ready(result)


def json_ready(value):
    """``value`` with every NaN (undefined: too few models) as None, which JSON can hold."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def _mean_sd(entry: Mapping | None) -> str:
    if entry is None or entry.get("mean") is None:
        return "–"
    sd = entry.get("std")
    return f"{entry['mean']:.3f} ± {sd:.3f}" if sd is not None else f"{entry['mean']:.3f}"


def _gap_cell(gap: Mapping) -> str:
    if gap["value"] is None:
        return "–"
    units = f" ({gap['gap_in_sd']:+.1f} SD)" if gap["gap_in_sd"] is not None else ""
    return f"{gap['value']:.3f}, Δ {gap['gap']:+.3f}{units}" if gap["gap"] is not None else f"{gap['value']:.3f}"


def _wall_cell(seconds: Mapping | None) -> str:
    """ "79 (15 / 35 / 29)": wall, then training / evaluation / other (`_seconds`); – without a run."""
    if not seconds:
        return "–"
    parts = " / ".join(f"{seconds[k]:.0f}" for k in ("training", "evaluation", "other"))
    return f"{seconds['wall']:.0f} ({parts})"


def _membership_cell(tests: Mapping) -> str:
    cells = [
        f"{subject}: {t['verdict']} (p {t['p_value']:.2g})" if t else f"{subject}: too few models"
        for subject, t in tests.items()
    ]
    return "; ".join(cells)


#: The targets' short names in benchmark.md, in `_targets`' order.
TARGET_NAMES = {
    "forget_within_oracle_sd": "forget",
    "utility_kept": "utility",
    "membership_indistinguishable": "membership",
    "time_within_share": "time",
}


def _targets_cell(targets: Mapping) -> str:
    """ "forget yes, utility no, membership –, time yes" (– : not measured)."""
    words = {True: "yes", False: "no", None: "–"}
    return ", ".join(f"{TARGET_NAMES[key]} {words[value]}" for key, value in targets.items())


def markdown(content: Mapping) -> str:
    """benchmark.md's section on the retrain distribution."""
    originals = content["originals"]
    lines = [
        "## Against the retrain distribution",
        "",
        f"{content['k_originals']} original replicate(s): Dice on the training subjects "
        f"{_mean_sd(originals['dice']['training'])}, held-out {_mean_sd(originals['dice']['heldout'])}; "
        f"memorisation (training − held-out) {_mean_sd(originals['memorisation'])}. Mean ± SD over replicates.",
        "",
        f"Membership test (offline LiRA per subject on the score {content.get('score', 'logit_confidence')}, "
        "docs/audit.md): "
        + (
            content["power"]["sentence"]
            if content["power"]
            else "its power is not measured: it needs at least 3 models trained with and 3 without a subject."
        ),
        "",
        *(
            f"- on {score}: {found['sentence']}"
            for score, found in content.get("power_by_score", {}).items()
            if found and score != content.get("score")
        ),
        "",
        f"Targets per run: forget Dice within one oracle SD (at least {FORGET_TOLERANCE}) of the oracles' mean; "
        f"retain and held-out Dice ≥ {UTILITY:.0%} of the original's; every forget subject indistinguishable "
        f"from retrained; wall time ≤ {TIME_SHARE:.0%} of the oracle's. A reference model (original, oracle) is "
        "judged against the others. Wall s: the run's wall time, and in brackets its training (a strategy's "
        "preparation and steps), its evaluations (the hook's, and a calibrated run's checks) and the rest "
        "(nnU-Net's start and end, checkpoints, the record).",
        "",
    ]
    columns = {
        "model": ("model", "s"),
        "forget": ("Dice forget", "s"),
        "retain": ("Dice retain", "s"),
        "heldout": ("Dice held-out", "s"),
        "membership": ("membership test", "s"),
        "wall_s": ("wall s (training / evaluation / other)", "s"),
        "targets": ("targets", "s"),
    }
    for tag, entry in content["forget_sets"].items():
        oracle = entry["oracle"]
        lines += [
            f"### Forget {tag}: {entry['k_oracles']} oracle replicate(s)",
            "",
            f"Oracles: forget {_mean_sd(oracle['forget'])}, retain {_mean_sd(oracle['retain'])}, held-out "
            f"{_mean_sd(oracle['heldout'])}.",
            "",
            markdown_table(
                [
                    {
                        "model": row["model"],
                        **{s: _gap_cell(row["gaps"][s]) for s in ("forget", "retain", "heldout")},
                        "membership": _membership_cell(row["membership"]),
                        "wall_s": _wall_cell(row.get("seconds")),
                        "targets": _targets_cell(row["targets"]),
                    }
                    for row in entry["rows"]
                ],
                list(columns),
                columns,
            ),
            "",
        ]
    return "\n".join(lines)
