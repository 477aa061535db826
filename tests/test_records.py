"""The TypedDicts of ``records.py`` against what the writers write: a run's metrics, request copy, audit,
certificate and report, built by the real writers around stand-ins for nnU-Net (a dataset and a predictor of
random logits), without training.

Every key a file holds must be declared in its record, every required key must be there, and plain values must
have the declared type; the files together must reach every record nested in the five top-level ones.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Union, get_args, get_origin, get_type_hints, is_typeddict

import numpy as np
import pytest
import torch

from nnunet_unlearning.artifacts import (
    AUDIT_FILE,
    CERTIFICATE_JSON,
    FINAL_CHECKPOINT,
    METRICS_FILE,
    REQUEST_FILE,
)
from nnunet_unlearning.evaluation.calibration import Calibration
from nnunet_unlearning.evaluation.hook import EvaluationHook
from nnunet_unlearning.files import sha256_file
from nnunet_unlearning.nnunet.glue import schedule_of
from nnunet_unlearning.records import (
    AuditRecord,
    CertificateRecord,
    MetricsRecord,
    ReportRecord,
    RequestRecord,
    RunningStatisticsRecord,
)
from nnunet_unlearning.request import OriginalModel, UnlearningRequest
from nnunet_unlearning.unlearning.run_config import resolve
from nnunet_unlearning.unlearning.run_record import RunRecord
from nnunet_unlearning.unlearning.strategies import NoisyLabel

DATASET = "Dataset501_Records"
PLANS, CONFIGURATION = "nnUNetPlans", "3d_fullres"
CASE_SETS = {"forget": ["f1"], "retain": ["r1", "r2"], "heldout": ["h1", "h2"]}
SHAPE = (8, 8, 8)
LABELS = 3  # background and two classes; class 2 is the critical one


# --- the check ---------------------------------------------------------------------------------------------------


def _check(value: object, annotation: object, where: str, seen: set[type]) -> None:
    """Assert that ``value`` has the shape ``annotation`` declares, recording every TypedDict met in ``seen``."""
    if is_typeddict(annotation):
        assert isinstance(value, dict), f"{where}: a {annotation.__name__} expected, found {type(value).__name__}"
        declared = annotation.__required_keys__ | annotation.__optional_keys__
        extra = set(value) - declared
        assert not extra, f"{where}: written, not declared in {annotation.__name__}: {extra}"
        missing = annotation.__required_keys__ - set(value)
        assert not missing, f"{where}: required in {annotation.__name__}, not written: {missing}"
        seen.add(annotation)
        hints = get_type_hints(annotation)
        for key, item in value.items():
            _check(item, hints[key], f"{where}.{key}", seen)
        return
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            _check(value, kinds[0], where, seen)
        else:  # a union of plain types (a label key: int | str)
            assert isinstance(value, tuple(kinds)), f"{where}: one of {kinds} expected, found {value!r}"
    elif origin is dict:
        assert isinstance(value, dict), f"{where}: a dict expected, found {type(value).__name__}"
        for key, item in value.items():
            _check(item, args[1], f"{where}[{key!r}]", seen)
    elif origin is list:
        assert isinstance(value, list), f"{where}: a list expected, found {type(value).__name__}"
        for index, item in enumerate(value):
            _check(item, args[0], f"{where}[{index}]", seen)
    elif annotation is float:
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{where}: a number, found {value!r}"
    elif annotation in (int, str, bool):
        assert type(value) is annotation, f"{where}: {annotation.__name__} expected, found {value!r}"


def _reachable(annotation: object, found: set[type]) -> set[type]:
    """Every TypedDict ``annotation`` holds, at any depth."""
    if is_typeddict(annotation):
        if annotation not in found:
            found.add(annotation)
            for hint in get_type_hints(annotation).values():
                _reachable(hint, found)
    else:
        for arg in get_args(annotation):
            _reachable(arg, found)
    return found


# --- stand-ins for nnU-Net ---------------------------------------------------------------------------------------


class _Dataset:
    """nnU-Net's dataset interface over small random cases: image (1, x, y, z), labels (1, x, y, z)."""

    def __init__(self, folder: str = "", identifiers: object = None) -> None:
        pass

    @staticmethod
    def get_identifiers(folder: str) -> list[str]:
        return [case for cases in CASE_SETS.values() for case in cases]

    def load_case(self, case: str):
        rng = np.random.default_rng(sum(map(ord, case)))
        labels = rng.integers(0, LABELS, (1, *SHAPE)).astype(np.int16)
        return rng.normal(size=(1, *SHAPE)).astype(np.float32), labels, None, None


class _Predictor:
    """The part of nnU-Net's predictor the hook and the audit call: random logits, one seed per model."""

    configuration_manager = types.SimpleNamespace(patch_size=list(SHAPE), data_identifier="records_3d")
    label_manager = types.SimpleNamespace(ignore_label=None)
    network = torch.nn.Identity()  # no cpu_bf16 setting: predicts in fp32

    def __init__(self, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(seed)

    def predict_sliding_window_return_logits(self, data: torch.Tensor) -> torch.Tensor:
        return torch.randn(LABELS, *data.shape[1:], generator=self._generator)


def _model_folder(results: Path, trainer: str, content: bytes) -> Path:
    """An nnU-Net fold folder with a final checkpoint (``content``), plans.json and dataset.json."""
    fold = results / DATASET / f"{trainer}__{PLANS}__{CONFIGURATION}" / "fold_0"
    fold.mkdir(parents=True)
    (fold / FINAL_CHECKPOINT).write_bytes(content)
    (fold.parent / "plans.json").write_text(json.dumps({"dataset_name": DATASET}))
    (fold.parent / "dataset.json").write_text("{}")
    return fold


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, dict]:
    """The five files as the writers write them: a calibrated NoisyLabel run (start and end evaluations), its
    audit with the original model and a retrain model, its certificate, and the report with a groups file."""
    from nnunet_unlearning.evaluation.audit import run_audit
    from nnunet_unlearning.evidence.certificate import write_certificate
    from nnunet_unlearning.evidence.report import write_report

    root = tmp_path_factory.mktemp("records")
    results = root / "results"
    original = _model_folder(results, "nnUNetTrainer", b"original")
    request = UnlearningRequest(
        dataset_id=501,
        dataset_name=DATASET,
        original=OriginalModel(
            "nnUNetTrainer",
            PLANS,
            CONFIGURATION,
            "0",
            str(original),
            str(original / FINAL_CHECKPOINT),
            sha256_file(original / FINAL_CHECKPOINT),
        ),
        forget=tuple(CASE_SETS["forget"]),
        retain=tuple(CASE_SETS["retain"]),
        heldout=tuple(CASE_SETS["heldout"]),
        source_files={},
        created="2026-01-01T00:00:00+00:00",
    )
    run = _model_folder(results, "nnUNetTrainerUnlearnNoisyLabel", b"unlearned")
    retrain = _model_folder(results, "nnUNetTrainerRetrain", b"retrained")
    (root / "preprocessed" / DATASET / "records_3d").mkdir(parents=True)

    settings = resolve({"calibration": {"enabled": True}}, NoisyLabel, "defaults")
    strategy = settings.make_strategy(NoisyLabel)
    record = RunRecord(request, "nnUNetTrainerUnlearnNoisyLabel", strategy, settings)
    record.write_request_copy(run / REQUEST_FILE)
    record.schedule = schedule_of(types.SimpleNamespace(num_epochs=1, num_iterations_per_epoch=2))
    calibration = Calibration(settings.acceptance, settings.calibration, CASE_SETS)
    for tag, epoch, seed in (("start", 0, 1), ("end", 1, 2)):
        predictor = _Predictor(seed)
        hook = EvaluationHook(_Dataset(), CASE_SETS, [1, 2], None, [1.0] * 3, [2], lambda _, p=predictor: p)
        evaluation = hook.evaluate(torch.nn.Identity(), tag, epoch)
        calibration.add(evaluation.to_json(), 2 * epoch, lambda: None, last=tag == "end")
        record.calibration = calibration.to_json()
        record.add(evaluation.to_json(), run)
    record.steps_taken = 2
    record.strategy_state = strategy.resumable_state_dict()
    record.finish(run, run / FINAL_CHECKPOINT)

    with pytest.MonkeyPatch.context() as patch:
        import nnunetv2.training.dataloading.nnunet_dataset as nnunet_dataset

        patch.setenv("nnUNet_preprocessed", str(root / "preprocessed"))
        patch.delenv("nnUNet_raw", raising=False)
        patch.setattr(nnunet_dataset, "infer_dataset_class", lambda folder: _Dataset)
        patch.setattr("nnunet_unlearning.evaluation.audit.trained_predictor", lambda model, device: _Predictor(3))
        run_audit([run, retrain], patch_size=[4, 4, 4], patches_per_case=4, bootstrap=10)
        write_certificate(run)
    groups = root / "groups.csv"
    groups.write_text("case,group\nf1,A\nr1,A\nr2,B\nh1,A\nh2,B\n")
    write_report([run], root / "report", groups=groups)
    return {
        "metrics": json.loads((run / METRICS_FILE).read_text()),
        "request": json.loads((run / REQUEST_FILE).read_text()),
        "audit": json.loads((run / AUDIT_FILE).read_text()),
        "certificate": json.loads((run / CERTIFICATE_JSON).read_text()),
        "report": json.loads((root / "report" / "report.json").read_text()),
    }


FILES = {
    "metrics": MetricsRecord,
    "request": RequestRecord,
    "audit": AuditRecord,
    "certificate": CertificateRecord,
    "report": ReportRecord,
}


@pytest.mark.parametrize("name", FILES)
def test_every_written_key_is_declared_and_every_required_key_written(written, name):
    _check(written[name], FILES[name], name, set())


def test_the_files_reach_every_nested_record(written):
    seen: set[type] = set()
    for name, record in FILES.items():
        _check(written[name], record, name, seen)
    reachable: set[type] = set()
    for record in FILES.values():
        _reachable(record, reachable)
    # the unlearning trainer writes it at the end of a real run (base_trainer._recalibrated); see test_architectures
    assert {r.__name__ for r in reachable - seen} == {RunningStatisticsRecord.__name__}


def test_a_record_that_drifts_from_its_writer_fails_the_check(written):
    renamed = {**written["audit"], "requested_by": "x"}
    with pytest.raises(AssertionError, match="not declared in AuditRecord"):
        _check(renamed, AuditRecord, "audit", set())
    without = {k: v for k, v in written["metrics"].items() if k != "seconds"}
    with pytest.raises(AssertionError, match="not written"):
        _check(without, MetricsRecord, "metrics", set())
