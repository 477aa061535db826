"""Which MRBrainS18 subjects train the original model, which are held out, and which are forgotten.

The original model is trained on five of the seven training subjects and validated on the other two (the
held-out set every evaluation reports). Forget sets: each training subject alone (leave-one-subject-out),
and nested sets of 2 and 3 subjects (the first subjects in `TRAINING_SUBJECTS` order) for the effect of
the forget-set size. The first training subject is the tuning subject: each strategy's settings are chosen
on it alone (`benchmark_tuning`) and judged on the other forget sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from nnunet_unlearning.conversion.mrbrains18 import CASE_PREFIX, case_id
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_json

#: Subject ids as published. The held-out pair are the two subjects without a registered T1 that come
#: last in the release's order; the choice is fixed so that every run of the benchmark is comparable.
TRAINING_SUBJECTS = ("1", "4", "5", "7", "14")
HELDOUT_SUBJECTS = ("070", "148")
SIZES = (1, 2, 3)
#: The subject every strategy is tuned on; it is never one the tuned settings are judged on.
TUNING_SUBJECT = TRAINING_SUBJECTS[0]


def subject_of(case: str) -> str:
    """The subject id of a case id, or the argument itself when it is already a subject id."""
    return case.removeprefix(CASE_PREFIX)


def forget_sets(sizes: Iterable[int] = SIZES, only: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """Forget sets as tuples of case ids: every single training subject for size 1, the first ``k`` subjects
    for size ``k`` > 1; or just ``only`` (subject or case ids) when given."""
    if only:
        chosen = tuple(case_id(subject_of(c)) for c in only)
        unknown = [c for c in chosen if subject_of(c) not in TRAINING_SUBJECTS]
        if unknown:
            raise UserInputError(
                f"--forget {subject_of(unknown[0])}: not one of the original model's training "
                f"subjects ({', '.join(TRAINING_SUBJECTS)})"
            )
        if len(set(chosen)) != len(chosen):
            raise UserInputError(f"--forget: subject {subject_of(chosen[0])} given more than once")
        return [chosen]
    result: list[tuple[str, ...]] = []
    for size in sizes:
        if not 1 <= size < len(TRAINING_SUBJECTS):
            raise UserInputError(f"--sizes {size}: a forget set has 1 to {len(TRAINING_SUBJECTS) - 1} subjects")
        if size == 1:
            result += [(case_id(s),) for s in TRAINING_SUBJECTS]
        else:
            result.append(tuple(case_id(s) for s in TRAINING_SUBJECTS[:size]))
    return result


def tuning_set() -> tuple[str, ...]:
    """The tuning subject's forget set (its case ids)."""
    return (case_id(TUNING_SUBJECT),)


def case_sets(forget: Sequence[str]) -> dict[str, list[str]]:
    """The forget, retain and held-out case ids of a forget set."""
    training = [case_id(s) for s in TRAINING_SUBJECTS]
    return {
        "forget": list(forget),
        "retain": [c for c in training if c not in forget],
        "heldout": [case_id(s) for s in HELDOUT_SUBJECTS],
    }


def forget_tag(forget: Sequence[str]) -> str:
    """A folder name for a forget set (``forget_1-4``)."""
    return "forget_" + "-".join(subject_of(c) for c in forget)


def write_split(preprocessed_dataset: Path, cases: Iterable[str]) -> Path:
    """Write nnU-Net's ``splits_final.json`` with the benchmark's one fold (fold 0): train on the training
    subjects, validate on the held-out ones. Refuses a dataset that lacks one of them."""
    cases = set(cases)
    missing = [case_id(s) for s in TRAINING_SUBJECTS + HELDOUT_SUBJECTS if case_id(s) not in cases]
    if missing:
        raise UserInputError(
            f"{preprocessed_dataset}: case {missing[0]} is missing; the benchmark needs MRBrainS18 "
            f"subjects {', '.join(TRAINING_SUBJECTS + HELDOUT_SUBJECTS)}"
        )
    split = [{"train": [case_id(s) for s in TRAINING_SUBJECTS], "val": [case_id(s) for s in HELDOUT_SUBJECTS]}]
    path = preprocessed_dataset / "splits_final.json"
    atomic_write_json(path, split)
    return path
