"""The run config: types and defaults from the signatures, one-line refusals, where a run takes it from.

No nnU-Net here; the trainer's side is in test_run_config_e2e.py.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from nnunet_unlearning.artifacts import METRICS_FILE
from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.calibration import AcceptanceCriteria, CalibrationSettings
from nnunet_unlearning.evidence.comparison import non_default_text
from nnunet_unlearning.request import REQUEST_ENV, OriginalModel, UnlearningRequest
from nnunet_unlearning.unlearning.run_config import (
    CONFIG_ENV,
    LR_SCALE,
    RANGES,
    SECTIONS,
    STRATEGIES_KEY,
    TrainerSettings,
    check_config,
    read_config,
    resolve,
    run_settings,
    seed_global_rngs,
    strategy_parameters,
)
from nnunet_unlearning.unlearning.run_record import guard_settings
from nnunet_unlearning.unlearning.strategies import SCRUB, SSD, STRATEGIES, LearnNoise, NegGradPlus, NoisyLabel

DOCS = Path(__file__).resolve().parents[1] / "docs"
TRAINER_KEYS = {f.name for f in fields(TrainerSettings)}


def _request(run_config: dict | None = None) -> UnlearningRequest:
    original = OriginalModel("nnUNetTrainer", "nnUNetPlans", "3d_fullres", "0", "/r", "/r/c.pth", "0" * 64)
    return UnlearningRequest(501, "Dataset501_X", original, ("a",), ("b", "c"), ("d",), {}, "now", run_config)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.name)
def test_every_strategy_resolves_to_its_defaults(strategy):
    settings = resolve({}, strategy, "defaults")
    assert settings.non_default == {}
    assert settings.make_strategy(strategy).hyperparameters().keys() <= settings.hyperparameters().keys()
    json.dumps(settings.hyperparameters(), allow_nan=False)
    assert not set(strategy_parameters(strategy)) & (TRAINER_KEYS | {STRATEGIES_KEY})


def test_every_range_names_a_setting():
    settings = {(s.name, name) for s in STRATEGIES for name in strategy_parameters(s)}
    sections = {(key, f.name) for key, cls in SECTIONS.items() for f in fields(cls)}
    for key in RANGES:
        strategy, _, name = key.rpartition(".")
        in_section = (strategy, name) in sections
        assert in_section or name in TRAINER_KEYS or any(n == name and strategy in ("", s) for s, n in settings), key


def test_overrides_are_converted_and_only_changed_values_reported():
    config = {
        "seed": 7,
        "epochs": 3,
        "forget_batches_per_step": 2,
        STRATEGIES_KEY: {
            "SCRUB": {"kl_weight": 0.01, "lr_scale": 0.1, "temperature": 4},
            "LearnNoise": {"blob_size": [4, 16, 16]},
        },
    }
    scrub = resolve(config, SCRUB, "c.json")
    assert scrub.trainer == TrainerSettings(seed=7, epochs=3, iterations_per_epoch=None, forget_batches_per_step=2)
    assert scrub.lr_scale == 0.1 and scrub.arguments["kl_weight"] == 0.01
    assert isinstance(scrub.arguments["temperature"], float)
    assert scrub.non_default == {
        "seed": 7,
        "epochs": 3,
        "forget_batches_per_step": 2,
        "kl_weight": 0.01,
        "lr_scale": 0.1,
    }
    assert scrub.make_strategy(SCRUB).kl_weight == 0.01
    noise = resolve(config, LearnNoise, "c.json")
    assert noise.arguments["blob_size"] == (4.0, 16.0, 16.0) and noise.hyperparameters()["blob_size"] == [4, 16, 16]
    assert noise.lr_scale == 1.0 and LR_SCALE not in noise.arguments
    assert resolve(config, NoisyLabel, "c.json").hyperparameters() == {"forget_weight": 1.0, LR_SCALE: 1.0}
    assert non_default_text(scrub.to_json()) == (
        "epochs=3; forget_batches_per_step=2; kl_weight=0.01; lr_scale=0.1; seed=7"
    )
    assert non_default_text(resolve({}, SCRUB, "defaults").to_json()) == "defaults"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"sed": 1},
            "c.json: sed: unknown key (known: acceptance, calibration, epochs, forget_batches_per_step, "
            "iterations_per_epoch, seed, strategies)",
        ),
        ({"seed": 1.5}, "c.json: seed: expected an integer, got 1.5"),
        ({"seed": True}, "c.json: seed: expected an integer, got true"),
        ({"seed": -1}, "c.json: seed: must be in [0, 2147483647], got -1"),
        ({"epochs": 0}, "c.json: epochs: must be ≥ 1, got 0"),
        ({"forget_batches_per_step": "2"}, 'c.json: forget_batches_per_step: expected an integer, got "2"'),
        ([1], "c.json: expected a JSON object, got [1]"),
        ({STRATEGIES_KEY: []}, "c.json: strategies: expected a JSON object, got []"),
        ({STRATEGIES_KEY: {"Scrub": {}}}, "c.json: strategies.Scrub: unknown strategy (known: BadTeacher, "),
        ({STRATEGIES_KEY: {"SCRUB": 1}}, "c.json: strategies.SCRUB: expected a JSON object, got 1"),
        ({STRATEGIES_KEY: {"SCRUB": {"kl": 1}}}, "c.json: strategies.SCRUB.kl: unknown key (known: "),
        (
            {STRATEGIES_KEY: {"SCRUB": {"kl_weight": "0.1"}}},
            'c.json: strategies.SCRUB.kl_weight: expected a number, got "0.1"',
        ),
        ({STRATEGIES_KEY: {"SCRUB": {"kl_weight": -1}}}, "c.json: strategies.SCRUB.kl_weight: must be ≥ 0, got -1"),
        ({STRATEGIES_KEY: {"SCRUB": {"lr_scale": 0}}}, "c.json: strategies.SCRUB.lr_scale: must be > 0, got 0"),
        (
            {STRATEGIES_KEY: {"SalUn": {"fraction": 1.5}}},
            "c.json: strategies.SalUn.fraction: must be in [0, 1], got 1.5",
        ),
        ({STRATEGIES_KEY: {"SSD": {"alpha": 0}}}, "c.json: strategies.SSD.alpha: must be > 0, got 0"),
        (
            {STRATEGIES_KEY: {"SSD": {"forget_batches": 2.0}}},
            "c.json: strategies.SSD.forget_batches: expected an integer, got 2.0",
        ),
        (
            {STRATEGIES_KEY: {"LearnNoise": {"blob_size": [4, 0]}}},
            "c.json: strategies.LearnNoise.blob_size: must be > 0",
        ),
        (
            {STRATEGIES_KEY: {"LearnNoise": {"blob_size": "big"}}},
            'c.json: strategies.LearnNoise.blob_size: expected a number or a list of numbers, got "big"',
        ),
        (
            {STRATEGIES_KEY: {"NoisyLabel": {"forget_weight": math.inf}}},
            "c.json: strategies.NoisyLabel.forget_weight: must be ≥ 0, got Infinity",
        ),
        # constructors' own checks, naming the key they refuse
        (
            {STRATEGIES_KEY: {"NegGradPlus": {"loss_bound": 1, "alpha": 2}}},
            "c.json: strategies.NegGradPlus.alpha: NegGradPlus: alpha must lie in [0, 1]",
        ),
        ({STRATEGIES_KEY: {"SCRUB": {"max_step_every": 0}}}, "c.json: strategies.SCRUB.max_step_every: SCRUB: "),
        # the acceptance and calibration sections
        ({"calibrate": True}, "c.json: calibrate: unknown key (known: acceptance, calibration, epochs, "),
        (
            {"calibration": {"every": 2}},
            "c.json: calibration.every: unknown key (known: check_every, enabled, patches_per_case, patience, scores)",
        ),
        (
            {"calibration": {"scores": "tiles"}},
            "c.json: calibration.scores: must be one of volumes, patches, got 'tiles'",
        ),
        ({"calibration": {"patches_per_case": 0}}, "c.json: calibration.patches_per_case: must be ≥ 1, got 0"),
        ({"calibration": {"patience": 0}}, "c.json: calibration.patience: must be ≥ 1, got 0"),
        ({"calibration": {"patience": 2.5}}, "c.json: calibration.patience: expected an integer or null, got 2.5"),
        ({"calibration": {"enabled": "yes"}}, 'c.json: calibration.enabled: expected true or false, got "yes"'),
        ({"calibration": {"check_every": 0}}, "c.json: calibration.check_every: must be ≥ 1, got 0"),
        ({"calibration": []}, "c.json: calibration: expected a JSON object, got []"),
        ({"acceptance": {"utility_budget": 0}}, "c.json: acceptance.utility_budget: must be in (0, 1], got 0"),
        ({"acceptance": {"z": -1}}, "c.json: acceptance.z: must be ≥ 0, got -1"),
        (
            {"acceptance": {"score": "loss"}},
            "c.json: acceptance.score: must be one of dice, hard_mae, soft_mae, got 'loss'",
        ),
    ],
)
def test_mistakes_are_one_line_naming_the_key(config, message):
    with pytest.raises(UserInputError) as error:
        check_config(config, "c.json")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_sections_resolve_record_and_report_their_changes():
    config = {"acceptance": {"z": 2, "score": "soft_mae"}, "calibration": {"enabled": True}}
    settings = resolve(config, NoisyLabel, "c.json")
    assert settings.acceptance == AcceptanceCriteria(score="soft_mae", z=2.0)
    assert settings.calibration == CalibrationSettings(enabled=True, check_every=1)
    assert settings.non_default == {"acceptance.score": "soft_mae", "acceptance.z": 2.0, "calibration.enabled": True}
    recorded = settings.to_json()
    assert recorded["acceptance"]["utility_budget"] == 0.98 and recorded["calibration"]["enabled"] is True
    defaults = resolve({}, NoisyLabel, "defaults")
    assert (defaults.acceptance, defaults.calibration) == (AcceptanceCriteria(), CalibrationSettings())


def test_ascent_bounds_take_null_and_infinity():
    config = {
        STRATEGIES_KEY: {
            "SCRUB": {"divergence_bound": math.inf},
            "NegGradPlus": {"loss_bound": None},
            "SSD": {"alpha": None},
        }
    }
    check_config(config, "c.json")
    assert resolve(config, SCRUB, "c.json").arguments["divergence_bound"] == math.inf
    assert resolve(config, NegGradPlus, "c.json").non_default == {}
    assert resolve(config, SSD, "c.json").arguments["alpha"] is None


def test_read_config_refuses_unreadable_files_and_nan(tmp_path):
    with pytest.raises(UserInputError, match=r"missing\.json: cannot read the run config"):
        read_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{seed: 1}")
    with pytest.raises(UserInputError, match=r"bad\.json: not valid JSON"):
        read_config(tmp_path / "bad.json")
    (tmp_path / "nan.json").write_text('{"strategies": {"SCRUB": {"kl_weight": NaN}}}')
    with pytest.raises(UserInputError, match=r"nan\.json: not valid JSON \(NaN"):
        read_config(tmp_path / "nan.json")
    (tmp_path / "inf.json").write_text('{"strategies": {"SCRUB": {"divergence_bound": Infinity}}}')
    assert read_config(tmp_path / "inf.json")[STRATEGIES_KEY]["SCRUB"]["divergence_bound"] == math.inf


def test_environment_overrides_the_request_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv(REQUEST_ENV, str(tmp_path / "request.json"))
    assert run_settings(_request(), SCRUB).source == "defaults"
    embedded = run_settings(_request({"seed": 3}), SCRUB)
    assert embedded.trainer.seed == 3 and embedded.source.startswith(str(tmp_path / "request.json"))

    (tmp_path / "run.json").write_text(json.dumps({STRATEGIES_KEY: {"SCRUB": {"kl_weight": 0.5}}}))
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "run.json"))
    overridden = run_settings(_request({"seed": 3}), SCRUB)  # replaced, not merged
    assert (overridden.trainer.seed, overridden.arguments["kl_weight"]) == (12345, 0.5)
    assert overridden.source == str(tmp_path / "run.json")

    (tmp_path / "run.json").write_text(json.dumps({STRATEGIES_KEY: {"SSD": {"retain_batches": 0}}}))
    with pytest.raises(UserInputError, match=r"run\.json: strategies\.SSD\.retain_batches: must be ≥ 1"):
        run_settings(_request(), SCRUB)  # every section is checked, not only the running strategy's


def test_request_keeps_its_run_config(tmp_path):
    request = _request({"seed": 3, STRATEGIES_KEY: {"SCRUB": {"kl_weight": 0.5}}})
    (tmp_path / "r.json").write_text(request.to_json())
    again = UnlearningRequest.from_file(tmp_path / "r.json")
    assert again == request and again.request_id == _request().request_id


def test_forget_refuses_a_bad_config_before_anything_else(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"seed": "seven"}))
    code = main(
        ["forget", "-d", "999", "-c", "3d_fullres", "-f", "0", "--cases", "X", "--config", str(tmp_path / "c.json")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f'nnunet-unlearning forget: error: {tmp_path / "c.json"}: seed: expected an integer, got "seven"']


def test_resuming_under_other_settings_is_refused(tmp_path):
    settings = resolve({"seed": 7}, NoisyLabel, "a.json")
    guard_settings(tmp_path, settings)  # nothing recorded yet
    (tmp_path / METRICS_FILE).write_text(json.dumps({"settings": settings.to_json()}))
    guard_settings(tmp_path, resolve({"seed": 7}, NoisyLabel, "b.json"))  # same values from elsewhere
    with pytest.raises(UserInputError, match="started with seed = 7, the run config now gives 12345"):
        guard_settings(tmp_path, resolve({}, NoisyLabel, "defaults"))
    other = resolve({"seed": 7, STRATEGIES_KEY: {"NoisyLabel": {"forget_weight": 2}}}, NoisyLabel, "c")
    with pytest.raises(UserInputError, match="started with forget_weight = its default, the run config now gives 2"):
        guard_settings(tmp_path, other)


def test_seed_makes_global_draws_repeatable():
    seed_global_rngs(7)
    first = torch.rand(3)
    seed_global_rngs(7)
    assert torch.equal(first, torch.rand(3))


def _table(doc: Path, heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` in ``doc``, header and separator left out."""
    text = doc.read_text().split(heading, 1)[1]
    rows = re.findall(r"^\|(.+)\|$", text.split("\n## ", 1)[0], flags=re.MULTILINE)
    return [[cell.strip() for cell in row.split("|")] for row in rows[2:]]


def _same(documented: str, default: object) -> bool:
    value = json.loads(documented.strip("`"))
    if isinstance(default, float) and isinstance(value, (int, float)):
        return math.isclose(value, default, rel_tol=1e-3)
    return value == default


def test_docs_give_every_default():
    documented = {
        (name, key.strip("`")): default
        for name, key, default, _ in _table(DOCS / "strategies.md", "## Defaults and where they come from")
    }
    for strategy in STRATEGIES:
        # a FixDecoder variant has its base strategy's rows and, where its default differs, rows of its own
        base = strategy.name.removesuffix("FixDecoder")
        rows = {key: default for (name, key), default in documented.items() if name == base}
        rows |= {key: default for (name, key), default in documented.items() if name == strategy.name}
        parameters = strategy_parameters(strategy)
        expected = {n for n in parameters if n != LR_SCALE or parameters[n].default != 1.0}
        assert rows.keys() == expected, strategy.name
        for name in expected:
            assert _same(rows[name], parameters[name].default), (strategy.name, name)
    top = {key.strip("`"): default for key, default, _ in _table(DOCS / "unlearning.md", "The top level applies")}
    assert top.keys() == TRAINER_KEYS
    assert all(_same(top[f.name], f.default) for f in fields(TrainerSettings))
    sections = {key.strip("`"): default for key, default, _ in _table(DOCS / "unlearning.md", "## Calibrated runs")}
    expected = {f"{key}.{f.name}": f.default for key, cls in SECTIONS.items() for f in fields(cls)}
    assert sections.keys() == expected.keys()
    assert all(_same(sections[key], default) for key, default in expected.items())
