"""Seeds, schedules and hyperparameters without editing code: one small JSON file per experiment.

    {"seed": 7, "epochs": 5, "iterations_per_epoch": 40, "forget_batches_per_step": 2,
     "strategies": {"SCRUB": {"kl_weight": 0.01, "lr_scale": 0.1}, "NoisyLabel": {"forget_weight": 0.5}},
     "acceptance": {"utility_budget": 0.98}, "calibration": {"enabled": true, "check_every": 1}}

Every key is optional. The top level holds the trainer's settings, shared by every strategy
(:class:`TrainerSettings`); ``strategies`` holds, per strategy name, that strategy's constructor arguments
and ``lr_scale`` (the factor on nnU-Net's initial learning rate); ``acceptance`` and ``calibration`` (see
:data:`SECTIONS`) the criteria a run is judged by and whether it stops when it meets them. A run of one
strategy reads the top level and its own section; the other strategies' sections are checked, then
ignored. Types and defaults come from signatures (of :class:`TrainerSettings`, of each section's class
and of each strategy's ``__init__``), so nothing is listed twice; allowed ranges are declared once, in
:data:`RANGES`, or checked by the strategy's or section's constructor.

``nnunet-unlearning forget --config FILE`` checks the file and embeds it in the request; a trainer reads
the file named by ``$nnUNet_unlearning_config`` if set, else the request's copy, else uses the defaults.
Every mistake is a one-line :class:`UserInputError` naming the file and the key. docs/unlearning.md
explains the file; docs/strategies.md lists every default and where it comes from.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.evaluation.calibration import AcceptanceCriteria, CalibrationSettings
from nnunet_unlearning.request import UnlearningRequest, default_request_path
from nnunet_unlearning.unlearning.strategies import STRATEGIES
from nnunet_unlearning.unlearning.strategy import Strategy

CONFIG_ENV = "nnUNet_unlearning_config"
#: The key of a strategy's section that scales the trainer's learning rate (every strategy has it).
LR_SCALE = "lr_scale"
STRATEGIES_KEY = "strategies"
#: Sections of the top level with settings of their own, by key: the class that holds them.
SECTIONS: dict[str, type] = {"acceptance": AcceptanceCriteria, "calibration": CalibrationSettings}


@dataclass(frozen=True)
class TrainerSettings:
    """The config file's top level: what the unlearning trainer does, whatever the strategy.

    ``seed`` (ours; the value every run used before it could be set): the strategy's generator gets
    ``seed + local_rank`` and the process's global Python, NumPy and torch generators the same (see
    docs/unlearning.md for what that does and does not make reproducible). ``epochs`` and
    ``iterations_per_epoch``: the schedule; ``None`` keeps the trainer class's epochs (``_<N>epochs``, 20
    unsuffixed) and nnU-Net's 250 iterations. ``forget_batches_per_step``: forget batches per retain batch;
    they are concatenated into the one forget batch a strategy sees, so a strategy needs no change.
    """

    seed: int = 12345
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    forget_batches_per_step: int = 1


@dataclass(frozen=True)
class Range:
    """The numbers a setting admits: ``low ≤ x ≤ high`` (``low < x`` when ``exclusive_low``); a ``None``
    end is open. Only finite numbers, unless ``high`` is ``math.inf`` (an ascent bound may be infinite)."""

    low: float | None = None
    high: float | None = None
    exclusive_low: bool = False

    def admits(self, value: float) -> bool:
        if math.isnan(value) or (math.isinf(value) and self.high != math.inf):
            return False
        above = self.low is None or (value > self.low if self.exclusive_low else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None and self.high != math.inf:
            return f"in {'(' if self.exclusive_low else '['}{_number(self.low)}, {_number(self.high)}]"
        return f"{'>' if self.exclusive_low else '≥'} {_number(self.low)}" if self.low is not None else "finite"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_POSITIVE = Range(0, exclusive_low=True)
_NON_NEGATIVE = Range(0)
_COUNT = Range(1)
_SEED = Range(0, 2**31 - 1)
_BOUND = Range(0, math.inf, exclusive_low=True)
_FRACTION = Range(0, 1)

#: Allowed values by setting name; ``"<Strategy>.<name>"`` where a name means different things in different
#: strategies, ``"<section>.<name>"`` for a section's settings. A setting not listed is checked by its
#: strategy's constructor (NegGradPlus's ``alpha``, SCRUB's ``max_step_every``: their ValueError becomes the
#: user error) or is only type-checked.
RANGES: dict[str, Range] = {
    "seed": _SEED,
    "epochs": _COUNT,
    "iterations_per_epoch": _COUNT,
    "forget_batches_per_step": _COUNT,
    LR_SCALE: _POSITIVE,
    "forget_weight": _NON_NEGATIVE,
    "entropy_weight": _NON_NEGATIVE,
    "fraction": _FRACTION,
    "mask_batches": _COUNT,
    "loss_bound": _BOUND,
    "divergence_bound": _BOUND,
    "blob_size": _POSITIVE,
    "temperature": _POSITIVE,
    "task_weight": _NON_NEGATIVE,
    "kl_weight": _NON_NEGATIVE,
    "max_phase": _FRACTION,
    "teacher_seed": _SEED,
    "SSD.alpha": _POSITIVE,
    "dampening": _NON_NEGATIVE,
    "forget_batches": _COUNT,
    "retain_batches": _COUNT,
    "gamma": _NON_NEGATIVE,
    "acceptance.utility_budget": Range(0, 1, exclusive_low=True),
    "acceptance.z": _NON_NEGATIVE,
    "acceptance.tolerance": _NON_NEGATIVE,
    "acceptance.memorisation_tolerance": _NON_NEGATIVE,
    "calibration.check_every": _COUNT,
    "calibration.patches_per_case": _COUNT,
    "calibration.patience": _COUNT,
}


def _signature(target: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``target``'s constructor, annotations evaluated."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name: p for name, p in inspect.signature(target, eval_str=True).parameters.items() if p.kind in kinds}


def strategy_parameters(strategy: type[Strategy]) -> dict[str, inspect.Parameter]:
    """The settings of ``strategy``'s section: its constructor's parameters, and ``lr_scale``.

    A strategy without an ``lr_scale`` argument defaults to its class's ``default_lr_scale`` (1, the
    trainer's learning rate, unless the class says otherwise).
    """
    parameters = _signature(strategy)
    if LR_SCALE not in parameters:
        parameters[LR_SCALE] = inspect.Parameter(
            LR_SCALE, inspect.Parameter.KEYWORD_ONLY, annotation=float, default=strategy.default_lr_scale
        )
    return parameters


_NOT = object()  # "does not convert", distinct from every JSON value
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _options(annotation: object) -> tuple:
    return typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)


def _as(value: object, option: object) -> object:
    """``value`` (parsed JSON) as the type ``option``, or ``_NOT``."""
    if option in (type(None), bool, str):
        return value if type(value) is option else _NOT
    if option is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NOT
    if option is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _NOT
    if typing.get_origin(option) is tuple and typing.get_args(option)[1:] == (Ellipsis,):
        if not isinstance(value, list):
            return _NOT
        items = [_as(item, typing.get_args(option)[0]) for item in value]
        return _NOT if _NOT in items else tuple(items)
    raise TypeError(f"run config: unsupported annotation {option!r}")


def _describe(annotation: object) -> str:
    names = []
    for option in _options(annotation):
        if typing.get_origin(option) is tuple:
            names.append(f"a list of {_TYPE_NAMES[typing.get_args(option)[0]].split(' ', 1)[1]}s")
        else:
            names.append(_TYPE_NAMES[option])
    return " or ".join(names)


def _value(raw: object, parameter: inspect.Parameter, where: str, range_: Range | None) -> object:
    """``raw`` converted to ``parameter``'s annotation and checked against ``range_``."""
    value = next((v for v in (_as(raw, o) for o in _options(parameter.annotation)) if v is not _NOT), _NOT)
    if value is _NOT:
        raise UserInputError(f"{where}: expected {_describe(parameter.annotation)}, got {json.dumps(raw)}")
    range_ = range_ or Range()
    for number in value if isinstance(value, tuple) else (value,):
        if isinstance(number, (int, float)) and not range_.admits(number):
            raise UserInputError(f"{where}: must be {range_}, got {json.dumps(raw)}")
    return value


def _object(raw: object, where: str) -> Mapping:
    if not isinstance(raw, Mapping):
        raise UserInputError(f"{where}: expected a JSON object, got {json.dumps(raw)}")
    return raw


def _values(
    raw: Mapping, parameters: Mapping[str, inspect.Parameter], source: str, prefix: str, strategy: str = ""
) -> dict[str, typing.Any]:
    """Every parameter's value: ``raw``'s, checked, where it has one; the default otherwise."""
    unknown = sorted(set(raw) - set(parameters))
    if unknown:
        raise UserInputError(
            f"{source}: {prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(parameters)) or 'none'})"
        )
    return {
        name: _value(raw[name], p, f"{source}: {prefix}{name}", RANGES.get(f"{strategy}.{name}", RANGES.get(name)))
        if name in raw
        else p.default
        for name, p in parameters.items()
    }


def _to_json(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class RunSettings:
    """What a run of one strategy uses: the trainer's settings, the strategy's section, where they came from.

    ``arguments``: the strategy's constructor arguments (defaults plus the config's values); ``lr_scale``:
    the factor on the trainer's initial learning rate; ``non_default``: every setting whose value differs
    from its default, by key (``seed``, ``kl_weight``, ``acceptance.z``, ...); ``source``: the config file,
    the request that embeds one, or ``"defaults"``; ``acceptance`` and ``calibration``: the sections.
    """

    trainer: TrainerSettings
    lr_scale: float
    arguments: dict[str, typing.Any]
    non_default: dict[str, typing.Any]
    source: str
    acceptance: AcceptanceCriteria = field(default_factory=AcceptanceCriteria)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)

    def make_strategy(self, strategy: type[Strategy]) -> Strategy:
        return strategy(**self.arguments)

    def hyperparameters(self) -> dict[str, object]:
        """The strategy's section as the run uses it (JSON values): every argument, and ``lr_scale``."""
        return {**{k: _to_json(v) for k, v in self.arguments.items()}, LR_SCALE: self.lr_scale}

    def to_json(self) -> dict[str, object]:
        """The top level as the run uses it (sections included), the settings that differ from their defaults,
        and the source."""
        sections = {"acceptance": asdict(self.acceptance), "calibration": asdict(self.calibration)}
        return {**asdict(self.trainer), **sections, "non_default": self.non_default, "source": self.source}


def _constructor_error(strategy: type[Strategy], arguments: Mapping[str, object]) -> ValueError | None:
    try:
        strategy(**arguments)
    except ValueError as error:
        return error
    return None


def _check_constructor(strategy: type[Strategy], arguments: Mapping[str, object], source: str) -> None:
    """Build ``strategy`` once, so that its constructor's own checks fail now, naming the key they refuse
    (the first argument that is refused on its own, the others at their defaults)."""
    error = _constructor_error(strategy, arguments)
    if error is None:
        return
    defaults = {name: p.default for name, p in _signature(strategy).items()}
    culprit = next(
        (
            name
            for name, value in arguments.items()
            if value != defaults[name] and _constructor_error(strategy, {**defaults, name: value}) is not None
        ),
        None,
    )
    key = f"{STRATEGIES_KEY}.{strategy.name}" + (f".{culprit}" if culprit else "")
    raise UserInputError(f"{source}: {key}: {error}")


def _trainer_settings(top: Mapping, source: str) -> TrainerSettings:
    parameters = _signature(TrainerSettings)
    nested = {STRATEGIES_KEY, *SECTIONS}
    unknown = sorted(set(top) - set(parameters) - nested)
    if unknown:
        raise UserInputError(
            f"{source}: {unknown[0]}: unknown key (known: {', '.join(sorted([*parameters, *nested]))})"
        )
    return TrainerSettings(**_values({k: v for k, v in top.items() if k not in nested}, parameters, source, ""))


def _sections(top: Mapping, source: str) -> dict[str, typing.Any]:
    """Each section of :data:`SECTIONS`, checked (its class's own checks naming the key); defaults when absent."""
    result = {}
    for key, cls in SECTIONS.items():
        values = _values(_object(top.get(key, {}), f"{source}: {key}"), _signature(cls), source, f"{key}.", key)
        try:
            result[key] = cls(**values)
        except ValueError as error:
            culprit = next(name for name in values if name in top.get(key, {}))
            raise UserInputError(f"{source}: {key}.{culprit}: {error}") from None
    return result


def _section(top: Mapping, strategy: type[Strategy], source: str) -> Mapping:
    """``strategy``'s section of the config (empty when it has none); refuses unknown strategy names."""
    sections = _object(top.get(STRATEGIES_KEY, {}), f"{source}: {STRATEGIES_KEY}")
    known = {s.name for s in STRATEGIES} | {strategy.name}
    unknown = sorted(set(sections) - known)
    if unknown:
        raise UserInputError(
            f"{source}: {STRATEGIES_KEY}.{unknown[0]}: unknown strategy (known: {', '.join(sorted(known))})"
        )
    return _object(sections.get(strategy.name, {}), f"{source}: {STRATEGIES_KEY}.{strategy.name}")


def _changed(settings: typing.Any, prefix: str = "") -> dict[str, object]:
    """The fields of a settings dataclass that differ from its class's defaults, keyed ``prefix + name``."""
    defaults = type(settings)()
    return {
        prefix + f.name: getattr(settings, f.name)
        for f in fields(settings)
        if getattr(settings, f.name) != getattr(defaults, f.name)
    }


def _non_default(
    trainer: TrainerSettings,
    sections: Mapping[str, typing.Any],
    values: Mapping[str, object],
    parameters: Mapping[str, inspect.Parameter],
) -> dict[str, object]:
    changed = _changed(trainer)
    for key, section in sections.items():
        changed |= _changed(section, f"{key}.")
    return changed | {name: _to_json(v) for name, v in values.items() if v != parameters[name].default}


def resolve(config: object, strategy: type[Strategy], source: str) -> RunSettings:
    """The settings of a run of ``strategy`` under ``config`` (parsed JSON), checked; ``source`` names the
    config in errors. An empty config gives the defaults."""
    top = _object(config, source)
    trainer = _trainer_settings(top, source)
    sections = _sections(top, source)
    parameters = strategy_parameters(strategy)
    values = _values(
        _section(top, strategy, source), parameters, source, f"{STRATEGIES_KEY}.{strategy.name}.", strategy.name
    )
    arguments = {name: values[name] for name in _signature(strategy)}
    _check_constructor(strategy, arguments, source)
    return RunSettings(
        trainer,
        typing.cast(float, values[LR_SCALE]),
        arguments,
        _non_default(trainer, sections, values, parameters),
        source,
        **sections,
    )


def check_config(config: object, source: str) -> None:
    """Check the whole of ``config``: the top level and the section of every strategy."""
    for strategy in STRATEGIES:
        resolve(config, strategy, source)


def _no_nan(constant: str) -> float:
    if constant == "NaN":
        raise ValueError("NaN is not a number a setting can take")
    return float(constant.replace("Infinity", "inf"))


def read_config(path: str | Path) -> dict:
    """The run config file ``path``, parsed and checked (:func:`check_config`)."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(), parse_constant=_no_nan)
    except OSError as error:
        raise UserInputError(f"{path}: cannot read the run config ({error.strerror})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise UserInputError(f"{path}: not valid JSON ({error})") from None
    check_config(content, str(path))
    return content


def run_settings(request: UnlearningRequest, strategy: type[Strategy]) -> RunSettings:
    """The settings of a trainer's run: from ``$nnUNet_unlearning_config`` when set, else from the config
    the request embeds, else the defaults."""
    path = os.environ.get(CONFIG_ENV)
    if path:
        return resolve(read_config(path), strategy, path)
    if request.run_config is not None:
        source = f"{default_request_path(request.dataset_name)} (its run_config)"
        check_config(request.run_config, source)
        return resolve(request.run_config, strategy, source)
    return resolve({}, strategy, "defaults")


def seed_global_rngs(seed: int) -> None:
    """Seed the process's Python, NumPy and torch (CPU and every GPU) generators.

    nnU-Net draws its patches and augmentations from them when it augments in its own process
    (``nnUNet_n_proc_DA=0``); its augmentation worker processes seed themselves and are not reproducible.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
