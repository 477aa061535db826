"""The unlearning request: which cases to forget, from which original model, and what remains.

Written by ``nnunet-unlearning forget`` into ``$nnUNet_preprocessed/Dataset<ID>_*/unlearning_request.json``
(env var ``nnUNet_unlearning_request`` may point a run at another file) and read by every unlearning
trainer and by the retrain oracle. The request pins the original checkpoint by SHA-256, so a run can prove
which model it started from.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_text, sha256_file

REQUEST_FILE = "unlearning_request.json"
REQUEST_ENV = "nnUNet_unlearning_request"
FORMAT = 1


@dataclass(frozen=True)
class OriginalModel:
    """The trained model the request forgets from (absolute paths).

    ``recipe``: how it was trained (``original_recipe.py``): its initialisation and parameter groups with
    their learning-rate scales, which unlearning keeps and the retrain oracle repeats.
    """

    trainer: str
    plans: str
    configuration: str
    fold: str
    results_folder: str
    checkpoint: str
    checkpoint_sha256: str
    recipe: dict | None = None


@dataclass(frozen=True)
class UnlearningRequest:
    """What to forget. Case lists are sorted; ``heldout`` is the original's validation split.

    ``run_config``: the run config given to ``forget --config`` (seed, schedule, hyperparameters; see
    ``run_config.py``), checked when the request was written, or ``None``. It is not part of
    :attr:`request_id`: it says how to forget, not what.
    """

    dataset_id: int
    dataset_name: str
    original: OriginalModel
    forget: tuple[str, ...]
    retain: tuple[str, ...]
    heldout: tuple[str, ...]
    source_files: dict
    created: str
    run_config: dict | None = None

    @property
    def request_id(self) -> str:
        """A short fingerprint of what is forgotten from which model (not of when it was asked)."""
        key = json.dumps([self.dataset_name, self.original.checkpoint_sha256, self.original.fold, list(self.forget)])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        content = {"format": FORMAT, "request_id": self.request_id, **asdict(self)}
        return json.dumps(content, indent=2) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> UnlearningRequest:
        try:
            content = json.loads(Path(path).read_text())
            if content.get("format") != FORMAT:
                raise UserInputError(f"{path}: unknown request format {content.get('format')!r}")
            content.pop("format")
            content.pop("request_id")
            original = OriginalModel(**content.pop("original"))
            forget, retain, heldout = (tuple(content.pop(k)) for k in ("forget", "retain", "heldout"))
            return cls(original=original, forget=forget, retain=retain, heldout=heldout, **content)
        except OSError as error:
            raise UserInputError(f"{path}: cannot read the unlearning request ({error.strerror})") from None
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise UserInputError(f"{path}: not a valid unlearning request ({error})") from None


def _dataset_name(dataset_id: int) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    try:
        return convert_id_to_dataset_name(dataset_id)
    except RuntimeError:
        raise UserInputError(
            f"dataset {dataset_id}: not found in nnUNet_raw, nnUNet_preprocessed or "
            "nnUNet_results (are the nnU-Net environment variables set?)"
        ) from None


def _env_folder(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        raise UserInputError(f"environment variable {name} is not set (nnU-Net needs it)")
    return Path(value)


def default_request_path(dataset_name: str) -> Path:
    """Where ``forget`` writes and trainers read the request, unless ``nnUNet_unlearning_request`` is set."""
    if os.environ.get(REQUEST_ENV):
        return Path(os.environ[REQUEST_ENV])
    return _env_folder("nnUNet_preprocessed") / dataset_name / REQUEST_FILE


def _fold_split(preprocessed: Path, fold: str) -> tuple[list[str], list[str], list[str]]:
    """(all training cases, the fold's training cases, the fold's validation cases) from splits_final.json."""
    splits_file = preprocessed / "splits_final.json"
    if not splits_file.is_file():
        raise UserInputError(f"{splits_file}: missing; train the original model first (nnU-Net writes it)")
    splits = json.loads(splits_file.read_text())
    all_cases = sorted({c for s in splits for c in s["train"] + s["val"]})
    index = int(fold)
    if not 0 <= index < len(splits):
        raise UserInputError(f"{splits_file}: has no fold {fold} (it defines folds 0-{len(splits) - 1})")
    return all_cases, sorted(splits[index]["train"]), sorted(splits[index]["val"])


def _check_case_ids(cases: list[str]) -> None:
    for case in cases:
        if "/" in case or "\\" in case or case.startswith(".") or case.endswith((".nii.gz", ".nii", ".npz")):
            raise UserInputError(
                f"case {case!r}: looks like a path or file name; give the case id (e.g. MRBrainS18_070)"
            )
    duplicates = sorted({c for c in cases if cases.count(c) > 1})
    if duplicates:
        raise UserInputError(f"case {duplicates[0]}: given more than once")


def build_request(
    dataset_id: int,
    configuration: str,
    fold: str,
    plans: str,
    trainer: str,
    cases: list[str],
    run_config: dict | None = None,
) -> UnlearningRequest:
    """Resolve the original model and the three case sets; refuse anything that cannot be forgotten.

    ``run_config`` (already checked) is embedded as it is.
    """
    _check_case_ids(cases)
    dataset_name = _dataset_name(dataset_id)
    preprocessed = _env_folder("nnUNet_preprocessed") / dataset_name
    fold = str(fold)
    if fold == "all":
        # nnU-Net's fold 'all' trains on every case and "validates" on training cases: no subject would be
        # held out, so neither nnU-Net's validation nor our held-out set could say what an unseen subject scores
        raise UserInputError(
            "fold all: the model trained on every case, so no held-out subjects remain to compare "
            "the forgotten ones with; forget from a cross-validation fold model (-f 0 ... 4)"
        )
    if not fold.isdigit():
        raise UserInputError(f"fold {fold!r}: must be the number of a cross-validation fold")
    all_cases, training, validation = _fold_split(preprocessed, fold)
    for case in cases:
        if case not in all_cases:
            raise UserInputError(f"case {case}: unknown in {dataset_name} (known: {', '.join(all_cases)})")
        if case not in training:
            raise UserInputError(
                f"case {case}: not in the original model's training split of fold {fold}; nothing to forget"
            )
    retain = sorted(set(training) - set(cases))
    if not retain:
        raise UserInputError(
            f"forgetting all {len(training)} training cases of fold {fold} leaves no retain "
            "set; retrain from scratch instead"
        )

    results_folder = (
        _env_folder("nnUNet_results") / dataset_name / f"{trainer}__{plans}__{configuration}" / f"fold_{fold}"
    )
    checkpoint = results_folder / "checkpoint_final.pth"
    if not checkpoint.is_file():
        raise UserInputError(f"{checkpoint}: original model checkpoint not found (finish training it first)")
    try:
        checkpoint_sha256 = sha256_file(checkpoint)
    except OSError as error:
        raise UserInputError(f"{checkpoint}: unreadable ({error.strerror})") from None

    subjects_file = _env_folder("nnUNet_raw") / dataset_name / "subjects.json"
    source_files = {}
    if subjects_file.is_file():
        known = json.loads(subjects_file.read_text()).get("cases", {})
        source_files = {case: known[case] for case in sorted(cases) if case in known}

    from nnunet_unlearning.unlearning.original_recipe import original_recipe  # reads trainer classes: lazily

    original = OriginalModel(
        trainer=trainer,
        plans=plans,
        configuration=configuration,
        fold=fold,
        results_folder=str(results_folder.resolve()),
        checkpoint=str(checkpoint.resolve()),
        checkpoint_sha256=checkpoint_sha256,
        recipe=original_recipe(trainer, results_folder),
    )
    return UnlearningRequest(
        dataset_id=dataset_id,
        dataset_name=dataset_name,
        original=original,
        forget=tuple(sorted(cases)),
        retain=tuple(retain),
        heldout=tuple(validation),
        source_files=source_files,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        run_config=run_config,
    )


def write_request(
    dataset_id: int,
    configuration: str,
    fold: str,
    plans: str,
    trainer: str,
    cases: list[str],
    out: Path | None = None,
    run_config: dict | None = None,
) -> Path:
    """Build the request and write it (atomically) to ``out`` or the default location; return the path."""
    request = build_request(dataset_id, configuration, fold, plans, trainer, cases, run_config)
    path = Path(out) if out is not None else default_request_path(request.dataset_name)
    atomic_write_text(path, request.to_json())
    return path


def load_request(dataset_name: str) -> UnlearningRequest:
    """The request a training run uses: ``$nnUNet_unlearning_request`` or the dataset's default file."""
    path = default_request_path(dataset_name)
    if not path.is_file():
        raise UserInputError(f"{path}: no unlearning request; write one with `nnunet-unlearning forget`")
    request = UnlearningRequest.from_file(path)
    if request.dataset_name != dataset_name:
        raise UserInputError(f"{path}: request is for {request.dataset_name}, this run trains {dataset_name}")
    return request
