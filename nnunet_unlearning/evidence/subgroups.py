"""The comparison per subgroup of cases (sex, age band, scanner, ...): the table's rows over each group's cases.

Groups come from a CSV with the columns ``case`` and ``group``. MIA, clinical risk and time are measured per
model, not per case, so the subgroup rows leave them out. Definitions: docs/report.md.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypedDict

from nnunet_unlearning.artifacts import SETS
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.summary import mean_of_defined
from nnunet_unlearning.evidence.comparison import Model, table_row
from nnunet_unlearning.evidence.table_format import TABLES
from nnunet_unlearning.records import CaseRecord, SetScores, TableRow


def read_groups(path: Path) -> dict[str, str]:
    """Case id -> group from a CSV with the columns ``case`` and ``group`` (others ignored)."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"case", "group"} <= {f.strip() for f in reader.fieldnames}:
                raise UserInputError(
                    f"{path}: needs the columns 'case' and 'group' (found: "
                    f"{', '.join(reader.fieldnames or []) or 'none'})"
                )
            groups: dict[str, str] = {}
            for line, record in enumerate(reader, start=2):
                record = {(k or "").strip(): (v or "").strip() for k, v in record.items()}
                case, group = record["case"], record["group"]
                if not case or not group:
                    raise UserInputError(f"{path}: line {line} has an empty case or group")
                if case in groups:
                    raise UserInputError(f"{path}: case {case} is listed more than once")
                groups[case] = group
    except OSError as error:
        raise UserInputError(f"{path}: cannot read the groups file ({error.strerror})") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise UserInputError(f"{path}: not a readable CSV ({error})") from None
    return groups


class GroupEvaluation(TypedDict):
    """An evaluation over one group's cases (`restrict_evaluation`): its tag, per set the group's cases' scores
    (those the table and `summary.gaps` read), and the group's cases."""

    tag: str | None
    sets: dict[str, SetScores]
    cases: dict[str, CaseRecord]


def restrict_evaluation(
    evaluation: Mapping, case_sets: Mapping[str, Sequence[str]], members: set[str]
) -> GroupEvaluation:
    """An evaluation's Dice, hard and soft MAE per set over only the cases in ``members``.

    Per set: the mean over its member cases of each case's mean (``cases.<id>.mean``), undefined values left
    out, as `summary.aggregate` does; ``n_cases`` counts the member cases. Keeps ``cases`` for the members.
    """
    sets: dict[str, SetScores] = {}
    for name in SETS:
        chosen = [c for c in case_sets.get(name, ()) if c in members]
        means = [evaluation["cases"][c]["mean"] for c in chosen]
        sets[name] = {
            "n_cases": len(chosen),
            "dice": mean_of_defined([m.get("dice") for m in means]),
            "hard_mae": mean_of_defined([m.get("hard_mae") for m in means]),
            "soft_mae": mean_of_defined([m.get("soft_mae") for m in means]),
        }
    return {
        "tag": evaluation.get("tag"),
        "sets": sets,
        "cases": {c: v for c, v in evaluation["cases"].items() if c in members},
    }


#: The columns of the subgroup table (no MIA, clinical risk or time: those are measured per model, not per case).
GROUP_KEYS = (
    "group",
    "run",
    "n_forget",
    "n_retain",
    "n_heldout",
    *TABLES["Scores"][1:],
    "gap_dice_forget",
    "gap_dice_retain",
    "gap_dice_heldout",
    "avg_gap",
)


def group_rows(
    models: Sequence[Model], oracle: Model | None, case_sets: Mapping[str, Sequence[str]], groups: Mapping[str, str]
) -> list[TableRow]:
    """The table's rows per subgroup: each model's scores, figures and oracle gaps over the group's cases.

    Cases of the runs that the groups file does not list form the group "(unlisted)".
    """
    every_case = {c for cases in case_sets.values() for c in cases}
    if not every_case & set(groups):
        raise UserInputError(f"the groups file lists none of the runs' cases ({', '.join(sorted(every_case))})")
    membership = {case: groups.get(case, "(unlisted)") for case in every_case}
    rows = []
    for group in sorted(set(membership.values())):
        members = {case for case, g in membership.items() if g == group}

        def narrow(model: Model, members: set[str] = members) -> Model:
            before = None if model.before is None else restrict_evaluation(model.before, case_sets, members)
            return replace(
                model,
                end=restrict_evaluation(model.end, case_sets, members),
                before=before,
                mia=None,
                wall_seconds=None,
            )

        group_oracle = narrow(oracle) if oracle is not None else None
        for model in models:
            narrowed = narrow(model)
            row = table_row(narrowed, group_oracle) | {"group": group}
            row |= {f"n_{name}": narrowed.end["sets"][name]["n_cases"] for name in SETS}
            rows.append({key: row.get(key) for key in GROUP_KEYS})
    return rows
