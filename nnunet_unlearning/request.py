"""The unlearning request: which cases to forget, from which original model, and what remains.

Written by ``nnunet-unlearning forget`` into ``$nnUNet_preprocessed/Dataset<ID>_*/unlearning_request.json``
(env var ``nnUNet_unlearning_request`` may point a run at another file) and read by every unlearning
trainer and by the retrain oracle. The request pins the original checkpoint by SHA-256, so a run can prove
which model it started from.

Requests follow each other: a request may start from the model an earlier request produced (its run folder
holds that request's copy and certificate). The new request then inherits the lineage: every case forgotten
so far (``forgotten_before``) stays out of the retain set and out of the oracle's training, and ``previous``
names the earlier request and the SHA-256 of its certificate, so the chain of certificates can be checked.

A request covers one fold's model, or several at once (``forget -f 0 1 2 3 4``): nnU-Net deploys the 5-fold
ensemble, and a patient is in the training split of four folds and the validation split of the fifth. The
file then holds a *request set*, one request per fold (``{"format": 1, "request_set": {"0": {...}, ...}}``),
and each fold's run reads its own (:func:`load_request`). A fold whose model never trained on the forgotten
cases (they are all in its validation split) gets an ``untouched`` request: its run keeps the model as it is
and certifies that, so the unlearned ensemble has all of its folds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, ERASURE_FILE, FINAL_CHECKPOINT, REQUEST_FILE
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.files import atomic_write_text, sha256_file
from nnunet_unlearning.subjects import cases_of, subject_map

REQUEST_ENV = "nnUNet_unlearning_request"
FORMAT = 1


@dataclass(frozen=True)
class OriginalModel:
    """The trained model the request forgets from (absolute paths).

    ``recipe``: how it was trained (``med3d/original_recipe.py``): its initialisation and parameter groups with
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

    ``forgotten_before``: cases earlier requests of this model lineage forgot (never in ``retain``);
    ``previous``: ``{"request_id", "run_folder", "certificate", "certificate_sha256"}`` of the request whose
    unlearned model this one starts from, or ``None`` when it starts from a trained original.
    ``subjects``: for a request by subject (``forget --subjects``), subject id → all of its case ids and
    where the mapping came from (``{"source": ..., "cases": {...}}``); ``None`` for a request by case.
    ``untouched``: the fold's model never trained on the ``forget`` cases (all in its validation split; a
    fold of a request set): its run changes nothing and certifies the model as it is. ``set_id``: for a fold
    of a request set, the set's id (:attr:`run_name_id`); not part of :attr:`request_id`.
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
    forgotten_before: tuple[str, ...] = ()
    previous: dict | None = None
    subjects: dict | None = None
    untouched: bool = False
    set_id: str | None = None

    @property
    def request_id(self) -> str:
        """A short fingerprint of what is forgotten from which model (not of when it was asked)."""
        key = json.dumps([self.dataset_name, self.original.checkpoint_sha256, self.original.fold, list(self.forget)])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def run_name_id(self) -> str:
        """The id that names a chained run's results folder (``artifacts.CHAINED_RUN_MARK``): the request set's,
        so that every fold of the set trains into the same ``<Trainer>_request-<id8>`` folder (one ensemble for
        ``nnUNetv2_predict -f ...``), else the request's own."""
        return self.set_id or self.request_id

    def content(self) -> dict:
        """The request as its file holds it, without the file's ``format``."""
        return {"request_id": self.request_id, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **self.content()}, indent=2) + "\n"

    @classmethod
    def from_file(cls, path: Path, fold: str | None = None) -> UnlearningRequest:
        """The request in ``path``; for a request set, the request of ``fold`` (required then)."""
        try:
            content = json.loads(Path(path).read_text())
            if content.get("format") != FORMAT:
                raise UserInputError(f"{path}: unknown request format {content.get('format')!r}")
            if "request_set" in content:
                content = _fold_of_set(path, content["request_set"], fold)
            content.pop("format")
            content.pop("request_id")
            original = OriginalModel(**content.pop("original"))
            forget, retain, heldout = (tuple(content.pop(k)) for k in ("forget", "retain", "heldout"))
            forgotten_before = tuple(content.pop("forgotten_before", ()))
            return cls(
                original=original,
                forget=forget,
                retain=retain,
                heldout=heldout,
                forgotten_before=forgotten_before,
                **content,
            )
        except OSError as error:
            raise UserInputError(f"{path}: cannot read the unlearning request ({error.strerror})") from None
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise UserInputError(f"{path}: not a valid unlearning request ({error})") from None


def _fold_of_set(path: Path, requests: dict, fold: str | None) -> dict:
    """One fold's request content from a request set (a copy; ``format`` as a single request has it)."""
    if fold is None:
        raise UserInputError(f"{path}: a request set (folds {', '.join(requests)}); name the fold")
    if str(fold) not in requests:
        raise UserInputError(f"{path}: the request set covers folds {', '.join(requests)}, not fold {fold}")
    return {"format": FORMAT, **requests[str(fold)]}


def request_set_json(requests: dict[str, UnlearningRequest]) -> str:
    """The request set file's text: fold → that fold's request (:meth:`UnlearningRequest.content`)."""
    content = {fold: request.content() for fold, request in requests.items()}
    return json.dumps({"format": FORMAT, "request_set": content}, indent=2) + "\n"


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
    cases: Sequence[str],
    run_config: dict | None = None,
    subjects: Sequence[str] | None = None,
    subject_csv: Path | None = None,
    in_a_set: bool = False,
) -> UnlearningRequest:
    """Resolve the original model and the three case sets; refuse anything that cannot be forgotten.

    ``cases``: case ids to forget; or ``subjects``: subject (patient) ids, each forgotten with all of its
    cases, resolved through ``subject_csv`` (``case,subject``) or the converter's subjects.json. A subject's
    cases outside the fold's training split are not forgotten (the model never trained on them) but leave the
    held-out set, which must hold subjects the model never saw. ``run_config`` (already checked) is embedded
    as it is. ``in_a_set``: one fold of a request over several folds (:func:`build_fold_requests`): given cases
    outside the training split are treated as a subject's are, and a fold that trained on none of them gets
    an ``untouched`` request instead of a refusal.
    """
    cases = list(cases)
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
    by_subject = None
    everything = set(cases)
    if subjects is not None:
        mapping, source = subject_map(_env_folder("nnUNet_raw") / dataset_name, all_cases, subject_csv)
        resolved = cases_of(subjects, mapping, source)
        for subject, subject_cases in resolved.items():
            if not in_a_set and not set(subject_cases) & set(training):
                raise UserInputError(
                    f"subject {subject}: none of its cases ({', '.join(subject_cases)}) is in the original "
                    f"model's training split of fold {fold}; nothing to forget"
                )
        by_subject = {"source": source, "cases": resolved}
        everything = {c for subject_cases in resolved.values() for c in subject_cases}
    if subjects is not None or in_a_set:
        unknown = sorted(everything - set(all_cases))  # the loop below sees only the cases this fold keeps
        if unknown:
            raise UserInputError(f"case {unknown[0]}: unknown in {dataset_name} (known: {', '.join(all_cases)})")
        validation = sorted(set(validation) - everything)
        trained = sorted(everything & set(training))
        # a fold that trained on none of them keeps its model: the request names them, marked untouched
        untouched = in_a_set and not trained
        cases = sorted(everything) if untouched else trained
    else:
        untouched = False
    results_folder = (
        _env_folder("nnUNet_results") / dataset_name / f"{trainer}__{plans}__{configuration}" / f"fold_{fold}"
    )
    checkpoint = results_folder / FINAL_CHECKPOINT
    if not checkpoint.is_file():
        raise UserInputError(f"{checkpoint}: original model checkpoint not found (finish training it first)")
    previous = previous_request(results_folder)
    forgotten_before = () if previous is None else tuple(sorted({*previous.forget, *previous.forgotten_before}))
    for case in cases:
        if case not in all_cases:
            raise UserInputError(f"case {case}: unknown in {dataset_name} (known: {', '.join(all_cases)})")
        if case in forgotten_before:
            raise UserInputError(
                f"case {case}: already forgotten by an earlier request of this model lineage "
                f"(request {previous.request_id if previous else ''} in {results_folder})"
            )
        if case not in training and not untouched:
            raise UserInputError(
                f"case {case}: not in the original model's training split of fold {fold}; nothing to forget"
            )
    retain = sorted(set(training) - set(cases) - set(forgotten_before))
    if not retain:
        left = len(training) - len(forgotten_before)
        raise UserInputError(
            f"forgetting all {left} training cases left in fold {fold} leaves no retain set; "
            "retrain from scratch instead"
        )
    try:
        checkpoint_sha256 = sha256_file(checkpoint)
    except OSError as error:
        raise UserInputError(f"{checkpoint}: unreadable ({error.strerror})") from None

    subjects_file = _env_folder("nnUNet_raw") / dataset_name / "subjects.json"
    source_files = {}
    if subjects_file.is_file():
        known = json.loads(subjects_file.read_text()).get("cases", {})
        source_files = {case: known[case] for case in sorted(cases) if case in known}

    from nnunet_unlearning.med3d.original_recipe import original_recipe, recipe_of  # reads trainer classes

    original = OriginalModel(
        trainer=trainer,
        plans=plans,
        configuration=configuration,
        fold=fold,
        results_folder=str(results_folder.resolve()),
        checkpoint=str(checkpoint.resolve()),
        checkpoint_sha256=checkpoint_sha256,
        # an unlearned model keeps the recipe of the trained model at the root of its lineage
        recipe=original_recipe(trainer, results_folder) if previous is None else recipe_of(previous.original),
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
        forgotten_before=forgotten_before,
        previous=None if previous is None else _previous_entry(previous, results_folder),
        subjects=by_subject,
        untouched=untouched,
    )


def build_fold_requests(
    dataset_id: int,
    configuration: str,
    folds: Sequence[str],
    plans: str,
    trainer: str,
    cases: Sequence[str],
    run_config: dict | None = None,
    subjects: Sequence[str] | None = None,
    subject_csv: Path | None = None,
) -> dict[str, UnlearningRequest]:
    """One request per fold of ``folds`` (the request set of a multi-fold ``forget``), each for that fold's
    model of ``trainer``; a fold whose training split holds none of the cases gets an ``untouched`` one.
    Refuses a fold given twice, and a set in which no fold trained on them."""
    folds = [str(f) for f in folds]
    if len(set(folds)) != len(folds):
        raise UserInputError(f"fold {next(f for f in folds if folds.count(f) > 1)}: given more than once")
    requests = {
        fold: build_request(
            dataset_id, configuration, fold, plans, trainer, cases, run_config, subjects, subject_csv, in_a_set=True
        )
        for fold in folds
    }
    if all(request.untouched for request in requests.values()):
        raise UserInputError(f"folds {', '.join(folds)}: none trained on the cases to forget; nothing to forget")
    set_id = hashlib.sha256(json.dumps([r.request_id for r in requests.values()]).encode()).hexdigest()[:16]
    return {fold: replace(request, set_id=set_id) for fold, request in requests.items()}


def previous_request(model_folder: Path) -> UnlearningRequest | None:
    """The request whose run produced the model in ``model_folder`` (a ``fold_N`` folder), or ``None`` for a
    model trained without one. Refuses an unlearning run that has not finished (no certificate yet)."""
    copy = Path(model_folder) / REQUEST_FILE
    if not copy.is_file():
        return None
    if not (Path(model_folder) / CERTIFICATE_JSON).is_file():
        raise UserInputError(
            f"{model_folder}: an unlearning run without {CERTIFICATE_JSON}; it has not finished, so a new "
            "request cannot start from its model"
        )
    return UnlearningRequest.from_file(copy)


def lineage_root(request: UnlearningRequest) -> OriginalModel:
    """The trained model at the root of a request's lineage: the original that no request produced.

    The retrain oracle repeats that model's schedule (an unlearned model's own schedule is the unlearning's).
    Follows ``previous`` through the earlier run folders' request copies.
    """
    seen = {request.request_id}
    while request.previous is not None:
        copy = Path(request.previous["run_folder"]) / REQUEST_FILE
        if not copy.is_file():
            raise UserInputError(f"{copy}: missing; the lineage of request {request.request_id} cannot be followed")
        request = UnlearningRequest.from_file(copy)
        if request.request_id in seen:
            raise UserInputError(f"{copy}: request {request.request_id} appears twice in its own lineage")
        seen.add(request.request_id)
    return request.original


def _previous_entry(previous: UnlearningRequest, model_folder: Path) -> dict:
    """The link to the earlier request: its certificate and, once its data was erased, the erasure record."""
    folder = Path(model_folder).resolve()
    entry = {
        "request_id": previous.request_id,
        "run_folder": str(folder),
        "certificate": str(folder / CERTIFICATE_JSON),
        "certificate_sha256": sha256_file(folder / CERTIFICATE_JSON),
    }
    if (folder / ERASURE_FILE).is_file():
        entry |= {"erasure": str(folder / ERASURE_FILE), "erasure_sha256": sha256_file(folder / ERASURE_FILE)}
    return entry


def write_request(
    dataset_id: int,
    configuration: str,
    fold: str,
    plans: str,
    trainer: str,
    cases: Sequence[str],
    out: Path | None = None,
    run_config: dict | None = None,
) -> Path:
    """Build the request and write it (atomically) to ``out`` or the default location; return the path."""
    request = build_request(dataset_id, configuration, fold, plans, trainer, cases, run_config)
    path = Path(out) if out is not None else default_request_path(request.dataset_name)
    atomic_write_text(path, request.to_json())
    return path


def load_request(dataset_name: str, fold: str) -> UnlearningRequest:
    """The request a training run of ``fold`` uses: ``$nnUNet_unlearning_request`` or the dataset's default
    file (from a request set, the fold's request); refuses one written for another dataset or fold."""
    path = default_request_path(dataset_name)
    if not path.is_file():
        raise UserInputError(f"{path}: no unlearning request; write one with `nnunet-unlearning forget`")
    request = UnlearningRequest.from_file(path, str(fold))
    if request.dataset_name != dataset_name:
        raise UserInputError(f"{path}: request is for {request.dataset_name}, this run trains {dataset_name}")
    if request.original.fold != str(fold):
        raise UserInputError(
            f"{path}: request is for fold {request.original.fold}, this run trains fold {fold}; "
            f"write one for fold {fold} (forget -f {request.original.fold} {fold} covers both)"
        )
    return request
