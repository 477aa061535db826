"""Which cases belong to which subject (patient): an erasure request names a patient, nnU-Net knows cases.

Two sources, in this order: a user's CSV with the header ``case,subject`` (one row per case; any nnU-Net
dataset), or the converter's ``$nnUNet_raw/<dataset>/subjects.json`` (``{"cases": {case: {"subject": id}}}``).
A subject may have several cases (visits, scanners, time points); forgetting the subject forgets all of them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from nnunet_unlearning.errors import UserInputError

SUBJECTS_FILE = "subjects.json"
CSV_HEADER = ("case", "subject")


def subject_map(raw_dataset: Path, known_cases: Iterable[str], csv_file: Path | None = None) -> tuple[dict, str]:
    """``({subject: [case, ...]}, where it came from)`` for a dataset whose cases are ``known_cases``.

    ``csv_file`` wins over the converter's subjects.json in ``raw_dataset``. Raises `UserInputError` when
    neither exists, or the CSV is malformed, names a case twice or names a case the dataset does not have.
    """
    known = set(known_cases)
    if csv_file is not None:
        return _from_csv(Path(csv_file), known), str(Path(csv_file).resolve())
    path = Path(raw_dataset) / SUBJECTS_FILE
    if not path.is_file():
        raise UserInputError(
            f"{path}: not found, so subjects cannot be resolved to cases; give a CSV with --subject-map "
            "(header case,subject) or forget by --cases"
        )
    try:
        records = json.loads(path.read_text())["cases"]
        pairs = [(case, str(record["subject"])) for case, record in records.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserInputError(f"{path}: not a subjects file ({type(error).__name__}: {error})") from None
    # a subject whose cases are not training cases (the release's test subjects) stays, with no cases
    return _group(pairs, known), str(path.resolve())


def _from_csv(path: Path, known: set[str]) -> dict[str, list[str]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as error:
        raise UserInputError(f"{path}: cannot read the subject map ({error.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserInputError(f"{path}: not a CSV file ({error})") from None
    if not rows or tuple(cell.strip() for cell in rows[0]) != CSV_HEADER:
        raise UserInputError(f"{path}: the first line must be the header {','.join(CSV_HEADER)}")
    pairs, seen = [], set()
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2 or not all(cell.strip() for cell in row):
            raise UserInputError(f"{path}: line {number}: expected two values, case and subject")
        case, subject = (cell.strip() for cell in row)
        if case not in known:
            raise UserInputError(f"{path}: line {number}: case {case} is not a case of this dataset")
        if case in seen:
            raise UserInputError(f"{path}: line {number}: case {case} is listed twice")
        seen.add(case)
        pairs.append((case, subject))
    return _group(pairs)


def _group(pairs: Iterable[tuple[str, str]], known: set[str] | None = None) -> dict[str, list[str]]:
    """Subject → its cases (those in ``known`` when given), both sorted."""
    grouped: dict[str, list[str]] = {}
    for case, subject in pairs:
        cases = grouped.setdefault(subject, [])
        if known is None or case in known:
            cases.append(case)
    return {subject: sorted(cases) for subject, cases in sorted(grouped.items())}


def cases_of(subjects: Sequence[str], mapping: dict[str, list[str]], source: str) -> dict[str, list[str]]:
    """``{subject: its cases}`` for the requested subjects; `UserInputError` for an unknown or repeated one."""
    repeated = sorted({s for s in subjects if list(subjects).count(s) > 1})
    if repeated:
        raise UserInputError(f"subject {repeated[0]}: given more than once")
    for subject in subjects:
        if subject not in mapping:
            known = " ".join(mapping) or "none"
            raise UserInputError(f"subject {subject}: unknown in {source} (known subjects: {known})")
        if not mapping[subject]:
            raise UserInputError(f"subject {subject}: has no case among the dataset's training cases ({source})")
    return {subject: mapping[subject] for subject in subjects}
