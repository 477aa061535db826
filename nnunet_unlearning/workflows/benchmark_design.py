"""Which MRBrainS18 subjects train the original model, which are held out, and which are forgotten.

The original model is trained on the release's subjects except the held-out ones (070 and 148 unless
``--heldout`` names others), which every evaluation reports. Forget sets: each training subject alone
(leave-one-subject-out), and nested sets of 2 and 3 subjects for the effect of the forget-set size. The first
training subject is the tuning subject: each strategy's settings are chosen on it alone (`benchmark_tuning`)
and judged on the other forget sets, so the nested sets are drawn from the judged subjects only (the first
ones after the tuning subject, in the release's order: 4 + 5 and 4 + 5 + 7 by default).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_unlearning.conversion.mrbrains18 import CASE_PREFIX, case_id
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_json

#: Subject ids as published, in the release's order.
SUBJECTS = ("1", "4", "5", "7", "14", "070", "148")
#: The default held-out pair: the two subjects without a registered T1, last in the release's order; fixed so
#: that every run of the benchmark with the defaults is comparable.
DEFAULT_HELDOUT = ("070", "148")
SIZES = (1, 2, 3)
#: A design keeps at least this many training subjects: forget sets of 1 and 2, a retain set left over.
MIN_TRAINING = 3


def subject_of(case: str) -> str:
    """The subject id of a case id, or the argument itself when it is already a subject id."""
    return case.removeprefix(CASE_PREFIX)


def forget_tag(forget: Sequence[str]) -> str:
    """A folder name for a forget set (``forget_1-4``)."""
    return "forget_" + "-".join(subject_of(c) for c in forget)


@dataclass(frozen=True)
class Design:
    """Who trains the original and who is held out (subject ids as published, release order)."""

    training: tuple[str, ...]
    heldout: tuple[str, ...]

    @classmethod
    def holding_out(cls, heldout: Sequence[str] = DEFAULT_HELDOUT) -> Design:
        """The design that holds out ``heldout`` (subject or case ids) and trains on the other subjects.

        Raises:
            UserInputError: an unknown or repeated subject, none held out, or fewer than `MIN_TRAINING` left.
        """
        chosen = [subject_of(s) for s in heldout]
        unknown = [s for s in chosen if s not in SUBJECTS]
        if unknown:
            raise UserInputError(f"--heldout {unknown[0]}: not an MRBrainS18 training subject ({', '.join(SUBJECTS)})")
        if len(set(chosen)) != len(chosen) or not chosen:
            raise UserInputError("--heldout: give one or more different subjects")
        training = tuple(s for s in SUBJECTS if s not in chosen)
        if len(training) < MIN_TRAINING:
            raise UserInputError(f"--heldout: at least {MIN_TRAINING} of the {len(SUBJECTS)} subjects must train")
        return cls(training, tuple(s for s in SUBJECTS if s in chosen))

    @property
    def tuning_subject(self) -> str:
        """The subject every strategy is tuned on (the first training subject); never a judged one."""
        return self.training[0]

    def training_cases(self) -> list[str]:
        return [case_id(s) for s in self.training]

    def heldout_cases(self) -> list[str]:
        return [case_id(s) for s in self.heldout]

    def forget_sets(self, sizes: Iterable[int] = SIZES, only: Sequence[str] | None = None) -> list[tuple[str, ...]]:
        """Forget sets as tuples of case ids: every single training subject for size 1, the first ``k`` judged
        subjects (never the tuning subject) for size ``k`` > 1; or just ``only`` (subject or case ids) when given."""
        if only:
            chosen = tuple(case_id(subject_of(c)) for c in only)
            unknown = [c for c in chosen if subject_of(c) not in self.training]
            if unknown:
                raise UserInputError(
                    f"--forget {subject_of(unknown[0])}: not one of the original model's training "
                    f"subjects ({', '.join(self.training)})"
                )
            if len(set(chosen)) != len(chosen):
                raise UserInputError(f"--forget: subject {subject_of(chosen[0])} given more than once")
            return [chosen]
        result: list[tuple[str, ...]] = []
        for size in sizes:
            if not 1 <= size < len(self.training):
                raise UserInputError(f"--sizes {size}: a forget set has 1 to {len(self.training) - 1} subjects")
            if size == 1:
                result += [(case_id(s),) for s in self.training]
            else:
                result.append(tuple(case_id(s) for s in self.training[1 : size + 1]))
        return result

    def tuning_set(self) -> tuple[str, ...]:
        """The tuning subject's forget set (its case ids)."""
        return (case_id(self.tuning_subject),)

    def case_sets(self, forget: Sequence[str]) -> dict[str, list[str]]:
        """The forget, retain and held-out case ids of a forget set."""
        return {
            "forget": list(forget),
            "retain": [c for c in self.training_cases() if c not in forget],
            "heldout": self.heldout_cases(),
        }

    def write_split(self, preprocessed_dataset: Path, cases: Iterable[str]) -> Path:
        """Write nnU-Net's ``splits_final.json`` with the benchmark's one fold (fold 0): train on the training
        subjects, validate on the held-out ones. Refuses a dataset that lacks one of them."""
        cases = set(cases)
        everyone = self.training + self.heldout
        missing = [case_id(s) for s in everyone if case_id(s) not in cases]
        if missing:
            raise UserInputError(
                f"{preprocessed_dataset}: case {missing[0]} is missing; the benchmark needs MRBrainS18 "
                f"subjects {', '.join(everyone)}"
            )
        path = preprocessed_dataset / "splits_final.json"
        atomic_write_json(path, [{"train": self.training_cases(), "val": self.heldout_cases()}])
        return path

    def keep(self, workdir: Path) -> None:
        """Record the design in ``workdir`` (``design.json``), or refuse when an earlier run there used another:
        its models were trained on other subjects."""
        path = workdir / DESIGN_FILE
        content = {"training": list(self.training), "heldout": list(self.heldout)}
        if path.is_file():
            kept = json.loads(path.read_text())
            if kept != content:
                raise UserInputError(
                    f"{workdir}: its benchmark holds out {', '.join(kept['heldout'])}, not {', '.join(self.heldout)}; "
                    "choose another --workdir or pass --overwrite"
                )
            return
        atomic_write_json(path, content)


DESIGN_FILE = "design.json"
#: The design with the default held-out pair.
DEFAULT = Design.holding_out()
