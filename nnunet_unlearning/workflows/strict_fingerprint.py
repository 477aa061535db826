"""Strict mode: nnU-Net's intensity statistics fingerprinted again without the forgotten cases.

nnU-Net's fingerprint (``nnUNetv2_extract_fingerprint``) samples the foreground voxels of every case in
``imagesTr`` and stores, per input channel, their mean, median, standard deviation, minimum, maximum and 0.5th and
99.5th percentiles; the planner copies them into the plans as ``foreground_intensity_properties_per_channel``.
A forgotten patient is among those cases, so after approximate unlearning these numbers still derive from them.
`strict_fingerprint` computes them as nnU-Net's `DatasetFingerprintExtractor` would on the dataset without the
cases the request's lineage forgot (its ``analyze_case`` per case, the same sample budget spread over the cases
that remain), and compares them with the plans' own.

Whether that changes what the model sees depends on the configuration's normalisation scheme per channel:
``CTNormalization`` clips to the plans' percentiles and subtracts and divides by the plans' mean and standard
deviation, so its preprocessed data (and the model's input) change; ``ZScoreNormalization`` (MRI, MRBrainS18) and
nnU-Net's other schemes normalise each image by its own statistics and never read the plans' ones.

`write_strict_plans` (``nnunet-unlearning strict-plans``) writes the strict plans as a new plans file beside the
original's, for the retrain oracle (``nnUNetv2_train ... -tr nnUNetTrainerRetrain -p <name>``);
``nnunet-unlearning export --strict`` puts them into the deployable zip.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evidence.certificate import STRICT_PLANS_KEY
from nnunet_unlearning.files import atomic_write_text, read_json_object
from nnunet_unlearning.records import StrictChannelRecord, StrictFingerprintRecord
from nnunet_unlearning.request import UnlearningRequest
from nnunet_unlearning.workflows.erase import nnunet_folder

PLANS_KEY = "foreground_intensity_properties_per_channel"
#: nnU-Net's statistics per channel, in its fingerprint's order.
STATISTICS = ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")
#: Foreground voxels nnU-Net samples over the whole dataset per channel (``DatasetFingerprintExtractor``'s
#: ``num_foreground_voxels_for_intensitystats``, set in its constructor, which reads nnU-Net's folders as they
#: were when nnunetv2 was first imported); the test against nnU-Net's own fingerprint keeps the two equal.
FOREGROUND_SAMPLES = 10e7
#: nnU-Net's normalisation schemes and whether they read the plans' intensity statistics. A scheme not named here
#: (a custom one) is taken to read them: the safe assumption when a changed input must be refused.
READS_STATISTICS = {
    "CTNormalization": True,
    "ZScoreNormalization": False,
    "NoNormalization": False,
    "RescaleTo01Normalization": False,
    "RGBTo01Normalization": False,
}


@dataclass(frozen=True)
class ChannelChange:
    """One input channel: its normalisation and its foreground intensity statistics (image intensity units, e.g.
    Hounsfield units for CT, scanner units for MRI) as the plans have them and as the strict fingerprint gives them."""

    channel: str
    name: str
    normalization: str
    plans: dict[str, float]
    strict: dict[str, float]

    @property
    def reads_statistics(self) -> bool:
        return READS_STATISTICS.get(self.normalization, True)

    @property
    def input_changes(self) -> bool:
        """Whether nnU-Net's preprocessing of this channel, and so the model's input, differs under strict plans."""
        return self.reads_statistics and any(self.plans[key] != self.strict[key] for key in STATISTICS)

    def absolute(self) -> dict[str, float]:
        """strict − plans per statistic (intensity units)."""
        return {key: self.strict[key] - self.plans[key] for key in STATISTICS}

    def relative(self) -> dict[str, float | None]:
        """(strict − plans) / |plans| per statistic, a fraction; None where the plans' value is 0."""
        return {
            key: (self.strict[key] - self.plans[key]) / abs(self.plans[key]) if self.plans[key] else None
            for key in STATISTICS
        }

    def record(self) -> StrictChannelRecord:
        return {
            "name": self.name,
            "normalization": self.normalization,
            "reads_statistics": self.reads_statistics,
            "input_changes": self.input_changes,
        }

    def text(self) -> str:
        """One line: the channel, its scheme, and every statistic as plans → strict (relative change)."""
        relative = self.relative()
        changes = ", ".join(
            f"{key} {self.plans[key]:.6g} → {self.strict[key]:.6g} "
            + (f"({relative[key]:+.3%})" if relative[key] is not None else "(plans 0)")
            for key in STATISTICS
        )
        if not self.reads_statistics:
            effect = "does not read them: its input is unchanged"
        else:
            effect = "reads them: its input changes" if self.input_changes else "reads them; they are unchanged"
        return f"channel {self.channel} {self.name} ({self.normalization}, {effect}): {changes}"


@dataclass(frozen=True)
class StrictFingerprint:
    """The strict intensity statistics of a request's lineage beside the plans' own, for one configuration.

    ``cases``: cases fingerprinted (the dataset's training cases in ``nnUNet_raw`` the lineage did not forget);
    ``forgotten``: cases the lineage forgot (left out, or already erased from ``nnUNet_raw``).
    """

    request_id: str
    configuration: str
    cases: int
    forgotten: int
    channels: tuple[ChannelChange, ...]

    @property
    def input_changes(self) -> bool:
        """Whether any channel's preprocessed data differs under the strict statistics."""
        return any(channel.input_changes for channel in self.channels)

    def record(self) -> StrictFingerprintRecord:
        """What the strict plans and an export manifest state. Not the statistics' changes: beside the strict
        values they give back the original ones, and with both the forgotten cases' share."""
        return {
            "request_id": self.request_id,
            "configuration": self.configuration,
            "cases": self.cases,
            "forgotten": self.forgotten,
            "input_changes": self.input_changes,
            "channels": {channel.channel: channel.record() for channel in self.channels},
        }

    def plans(self, plans: Mapping, name: str | None = None) -> dict:
        """A copy of ``plans`` with the strict statistics and :data:`STRICT_PLANS_KEY` (:meth:`record`); renamed
        ``name`` when given. When the input of a channel changes, each configuration's ``data_identifier`` becomes
        ``<name>_<configuration>`` (nnU-Net's own naming), so that preprocessing for the new plans never writes
        into the original's preprocessed data; otherwise that data stays valid and the plans keep pointing at it."""
        strict = copy.deepcopy(dict(plans))
        strict[PLANS_KEY] = {channel.channel: dict(channel.strict) for channel in self.channels}
        strict[STRICT_PLANS_KEY] = self.record()
        if name is not None:
            strict["plans_name"] = name
            if self.input_changes:
                for configuration_name, configuration in strict["configurations"].items():
                    if "data_identifier" in configuration:
                        configuration["data_identifier"] = f"{name}_{configuration_name}"
        return strict

    def lines(self) -> list[str]:
        """What changes, for people: the cases, then one line per channel (:meth:`ChannelChange.text`)."""
        head = (
            f"strict intensity statistics of request {self.request_id}: {self.cases} cases, the lineage's "
            f"{self.forgotten} forgotten case(s) left out ({self.configuration})"
        )
        return [head, *(f"  {channel.text()}" for channel in self.channels)]


def forgotten_cases(request: UnlearningRequest) -> frozenset[str]:
    """Everyone the request's lineage forgot: its own cases and those of the requests before it."""
    return frozenset({*request.forget, *request.forgotten_before})


def _statistics(values: np.ndarray) -> dict[str, float]:
    """nnU-Net's fingerprint statistics of one channel's sampled foreground intensities ``values``, shape (n,)."""
    percentile_00_5, median, percentile_99_5 = np.percentile(values, (0.5, 50.0, 99.5))
    return {
        "mean": float(np.mean(values)),
        "median": float(median),
        "std": float(np.std(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "percentile_99_5": float(percentile_99_5),
        "percentile_00_5": float(percentile_00_5),
    }


def dataset_statistics(
    raw_folder: Path, dataset_json: Mapping, leave_out: frozenset[str]
) -> tuple[int, dict[str, dict[str, float]]]:
    """(cases fingerprinted, channel → statistics) of the nnU-Net raw dataset in ``raw_folder`` (its
    ``dataset_json``) without the cases ``leave_out``, as nnU-Net's fingerprint computes them: each case read,
    cropped to its non-zero region and its foreground sampled by `DatasetFingerprintExtractor.analyze_case`, the
    sample budget spread over the cases fingerprinted, the samples pooled in nnU-Net's case order."""
    try:
        dataset = get_filenames_of_train_images_and_targets(str(raw_folder), dict(dataset_json))
    except (OSError, KeyError) as error:
        raise UserInputError(f"{raw_folder}: cannot list nnU-Net's training cases ({error})") from None
    cases = {case: files for case, files in dataset.items() if case not in leave_out}
    if not cases:
        raise UserInputError(f"{raw_folder}: no training case is left to fingerprint")
    channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {})))
    for case, files in cases.items():
        # nnU-Net lists the channel files it finds: a missing one would silently leave the case out of a channel
        if len(files["images"]) != channels:
            raise UserInputError(
                f"{raw_folder / 'imagesTr'}: case {case} has {len(files['images'])} image file(s) for the {channels} "
                "channels of dataset.json; the strict fingerprint reads every case the lineage keeps"
            )
        for path in [*files["images"], files["label"]]:
            if not Path(path).is_file():
                raise UserInputError(f"{path}: missing; the strict fingerprint reads every case the lineage keeps")
    reader = determine_reader_writer_from_dataset_json(dataset_json, next(iter(cases.values()))["images"][0])
    samples_per_case = int(FOREGROUND_SAMPLES // len(cases))
    pooled: list[list[np.ndarray]] = [[] for _ in range(channels)]
    for files in cases.values():
        sampled = DatasetFingerprintExtractor.analyze_case(files["images"], files["label"], reader, samples_per_case)[2]
        for channel, values in enumerate(sampled):
            pooled[channel].append(values)
    return len(cases), {str(channel): _statistics(np.concatenate(values)) for channel, values in enumerate(pooled)}


def strict_fingerprint(request: UnlearningRequest, plans: Mapping, source: Path) -> StrictFingerprint:
    """The strict statistics of ``request``'s lineage beside those of ``plans`` (read from ``source``, named in
    errors), for the request's configuration. Reads ``$nnUNet_raw/<dataset>``."""
    configuration = request.original.configuration
    try:
        schemes = PlansManager(dict(plans)).get_configuration(configuration).normalization_schemes
        recorded = plans[PLANS_KEY]
    except (RuntimeError, KeyError, TypeError) as error:
        raise UserInputError(f"{source}: not nnU-Net plans with configuration {configuration} ({error})") from None
    raw = nnunet_folder("nnUNet_raw", request.dataset_name)
    dataset_json = read_json_object(raw / "dataset.json", "nnU-Net dataset.json")
    forgotten = forgotten_cases(request)
    cases, statistics = dataset_statistics(raw, dataset_json, forgotten)
    names = dataset_json.get("channel_names", {})
    if len(schemes) != len(statistics) or any(key not in recorded for key in statistics):
        raise UserInputError(
            f"{source}: its intensity statistics and normalisation schemes do not cover the {len(statistics)} "
            f"channels of {raw / 'dataset.json'}"
        )
    channels = tuple(
        ChannelChange(
            channel=key,
            name=str(names.get(key, "")),
            normalization=scheme,
            plans={stat: float(recorded[key][stat]) for stat in STATISTICS},
            strict=statistics[key],
        )
        for key, scheme in zip(statistics, schemes, strict=True)
    )
    return StrictFingerprint(request.request_id, configuration, cases, len(forgotten), channels)


def check_plans_name(name: str) -> None:
    """Refuse a plans name nnU-Net could not use as ``-p``: a path, a file name, or one holding ``__`` (nnU-Net's
    separator in ``<Trainer>__<Plans>__<Configuration>``)."""
    if not name or "/" in name or "\\" in name or "__" in name or name.endswith(".json") or name.startswith("."):
        raise UserInputError(f"plans name {name!r}: give a name such as nnUNetPlans_strict (no path, .json or __)")


@dataclass(frozen=True)
class StrictPlans:
    """What `write_strict_plans` wrote: the plans file, its name, the fingerprint it holds and its request."""

    path: Path
    name: str
    fingerprint: StrictFingerprint
    request: UnlearningRequest


def write_strict_plans(request_file: Path, name: str | None = None, fold: str | None = None) -> StrictPlans:
    """Write the strict plans of the request in ``request_file`` (``fold``: its fold, for a request set) as
    ``$nnUNet_preprocessed/<dataset>/<name>.json``; ``name`` defaults to ``<plans>_strict_<request id, 8>``.

    The request's plans are the source; no existing file is replaced. Raises `UserInputError` for an unreadable
    request or plans, a bad or taken name, and raw data the fingerprint cannot read.
    """
    request = UnlearningRequest.from_file(Path(request_file), fold)
    name = name if name is not None else f"{request.original.plans}_strict_{request.request_id[:8]}"
    check_plans_name(name)
    folder = nnunet_folder("nnUNet_preprocessed", request.dataset_name)
    source = folder / f"{request.original.plans}.json"
    path = folder / f"{name}.json"
    if path.exists():
        raise UserInputError(f"{path}: already exists; choose another plans name (-o)")
    plans = read_json_object(source, "nnU-Net plans file")
    fingerprint = strict_fingerprint(request, plans, source)
    atomic_write_text(path, json.dumps(fingerprint.plans(plans, name), indent=4) + "\n")
    return StrictPlans(path, name, fingerprint, request)
