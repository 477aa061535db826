"""The benchmark's tuning grid: its points, their run configs and folders, and the choice on the tuning subject
(closest to the oracles' forget Dice under the utility budget; the most utility when no point keeps it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_unlearning.artifacts import METRICS_FILE, distinct_labels
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.unlearning.run_config import read_config, resolve
from nnunet_unlearning.unlearning.strategies import STRATEGIES
from nnunet_unlearning.workflows import benchmark_tuning as tuning
from nnunet_unlearning.workflows.benchmark_runs import Run
from nnunet_unlearning.workflows.profiles import PROFILES

SETS = {"forget": ["f"], "retain": ["r"], "heldout": ["h"]}


def _evaluation(forget: float, retain: float, heldout: float) -> dict:
    cases = {"f": forget, "r": retain, "h": heldout}
    return {
        "tag": "end",
        "cases": {c: {"n_valid_voxels": 1, "mean": {"dice": d}, "classes": {}} for c, d in cases.items()},
    }


def _finished(folder: Path, point: tuning.GridPoint, evaluation: dict) -> tuple[tuning.GridPoint, Run]:
    run = Run(point.trainer, "Dataset502_MRBrainS18", "3d_fullres", "plans", point.epochs, 1, folder / point.variant)
    run.folder.mkdir(parents=True)
    metrics = {
        "request_id": "x",
        "trainer": point.trainer,
        "evaluations": [evaluation],
        "seconds": {"wall": 1.0},
        **{name: cases for name, cases in SETS.items()},
    }
    (run.folder / METRICS_FILE).write_text(json.dumps(metrics))
    return point, run


def test_the_grid_and_its_run_configs(tmp_path):
    points = tuning.grid(["NoisyLabel", "SalUn"], (0.5, 1.0), (2, 5))
    assert len(points) == 8 and points[0] == tuning.GridPoint("NoisyLabel", 0.5, 2)
    assert points[0].trainer == "nnUNetTrainerUnlearnNoisyLabel_2epochs" and points[0].variant == "lr×0.5"
    assert tuning.run_config(points[2], tmp_path) is None and points[2].variant == ""  # scale 1: the default
    config = tuning.run_config(points[0], tmp_path)
    assert config == tmp_path / "lr_0.5" / "NoisyLabel.json"
    # a config the trainers accept, setting only the strategy's learning-rate scale
    noisy = next(s for s in STRATEGIES if s.name == "NoisyLabel")
    settings = resolve(read_config(config), noisy, str(config))
    assert settings.lr_scale == 0.5 and settings.non_default == {"lr_scale": 0.5}
    base = Run("", "D", "3d_fullres", "p", 0, 20, Path(), tmp_path / "request.json")
    run = tuning.point_run(points[1], tmp_path, base)
    assert run.results == tmp_path / "lr_0.5" / "nnUNet_results" and run.epochs == 5 and run.iterations == 20
    assert run.request == tmp_path / "request.json" and run.config == config
    assert tuning.point_run(points[3], tmp_path, base).results == tmp_path / "nnUNet_results"
    # the calibrated twin: its own folder, the same scale, calibration on
    twin = tuning.point_run(points[0], tmp_path, base, calibration="heldout")
    assert twin.results == tmp_path / "calibrated_lr_0.5" / "nnUNet_results" and twin.variant == "lr×0.5 calibrated"
    calibrated = resolve(read_config(twin.config), noisy, str(twin.config))
    assert calibrated.lr_scale == 0.5 and calibrated.calibration.enabled
    assert calibrated.acceptance.reference == "heldout"
    assert calibrated.calibration.scores == "volumes"
    # the memorisation twin: another folder, the same scale, the memorisation reference, checked on patches
    memorisation = tuning.point_run(points[0], tmp_path, base, calibration="memorisation_patches")
    assert memorisation.results == tmp_path / "calibrated_memorisation_patches_lr_0.5" / "nnUNet_results"
    assert memorisation.variant == "lr×0.5 calibrated memorisation patches"
    settings = resolve(read_config(memorisation.config), noisy, str(memorisation.config))
    assert settings.calibration.enabled and settings.acceptance.reference == "memorisation"
    assert settings.calibration.scores == "patches"


def test_judged_runs_are_the_tuned_point_and_its_calibrated_twins_on_the_long_horizon(tmp_path):
    base = Run("", "D", "3d_fullres", "p", 0, 20, Path(), tmp_path / "request.json")
    chosen = [tuning.GridPoint("SCRUB", 0.5, 2), tuning.GridPoint("FineTune", 1.0, 5)]
    runs = tuning.judged_runs(chosen, tmp_path, base, longest=5)
    assert [(r.trainer, r.variant) for r in runs] == [
        ("nnUNetTrainerUnlearnSCRUB_2epochs", "lr×0.5"),
        ("nnUNetTrainerUnlearnSCRUB_5epochs", "lr×0.5 calibrated"),
        ("nnUNetTrainerUnlearnSCRUB_5epochs", "lr×0.5 calibrated memorisation patches"),
        ("nnUNetTrainerUnlearnFineTune_5epochs", ""),
        ("nnUNetTrainerUnlearnFineTune_5epochs", "calibrated"),
        ("nnUNetTrainerUnlearnFineTune_5epochs", "calibrated memorisation patches"),
    ]
    assert len({r.results for r in runs[:3]}) == 3  # no two share a trainer folder
    assert [(r.epochs, r.iterations) for r in runs[:3]] == [(2, 20), (5, 20), (5, 20)]
    # checked every 5 steps: the twins train the same 100 steps in epochs of 5 (a check follows each epoch)
    checked = tuning.judged_runs(chosen, tmp_path, base, longest=5, check_steps=5)
    assert [(r.epochs, r.iterations) for r in checked[:3]] == [(2, 20), (20, 5), (20, 5)]
    assert [r.variant for r in checked] == [r.variant for r in runs]


def test_a_grid_scale_multiplies_the_strategys_own_default_rate(tmp_path):
    """SCRUB runs at 0.025 × the original's rate by default: scale 2 is 0.05, and its calibrated twin at
    scale 1 trains at the default, as the uncalibrated run at scale 1 (no config) does. LearnOthersFixDecoder
    has a default of its own (0.5), LearnOthers the trainer's."""
    scrub = next(s for s in STRATEGIES if s.name == "SCRUB")
    assert tuning.default_lr_scale("SCRUB") == 0.025 and tuning.default_lr_scale("NoisyLabel") == 1.0
    assert tuning.default_lr_scale("LearnOthersFixDecoder") == 0.5 and tuning.default_lr_scale("LearnOthers") == 1
    double = tuning.run_config(tuning.GridPoint("SCRUB", 2.0, 2), tmp_path)
    assert double is not None and resolve(read_config(double), scrub, str(double)).lr_scale == 0.05
    twin = tuning.run_config(tuning.GridPoint("SCRUB", 1.0, 2), tmp_path, calibration="heldout")
    assert twin is not None and resolve(read_config(twin), scrub, str(twin)).lr_scale == 0.025


def test_the_choice_is_closest_to_the_oracles_within_the_utility_budget(tmp_path):
    original = _evaluation(0.80, 0.80, 0.70)
    oracles = [_evaluation(f, 0.80, 0.70) for f in (0.70, 0.72, 0.74, 0.76)]  # mean 0.73, SD 0.0258
    points = [
        _finished(tmp_path, tuning.GridPoint("NoisyLabel", 1.0, 2), _evaluation(0.79, 0.80, 0.70)),  # too little
        _finished(tmp_path, tuning.GridPoint("NoisyLabel", 1.0, 5), _evaluation(0.73, 0.78, 0.69)),  # 97.5 %: no
        _finished(tmp_path, tuning.GridPoint("NoisyLabel", 2.0, 2), _evaluation(0.75, 0.79, 0.70)),  # chosen
        _finished(tmp_path, tuning.GridPoint("NoisyLabel", 2.0, 5), _evaluation(0.60, 0.70, 0.60)),
        _finished(tmp_path, tuning.GridPoint("SalUn", 1.0, 2), _evaluation(0.70, 0.70, 0.60)),
        _finished(tmp_path, tuning.GridPoint("SalUn", 1.0, 5), _evaluation(0.70, 0.74, 0.62)),
    ]
    chosen = tuning.choose(points, oracles, original, SETS)
    noisy = chosen["NoisyLabel"]
    assert (noisy["lr_scale"], noisy["epochs"]) == (2.0, 2) and noisy["reason"].startswith("closest")
    assert len(noisy["grid"]) == 4
    row = next(r for r in noisy["grid"] if (r["lr_scale"], r["epochs"]) == (2.0, 2))
    assert row["gap"] == pytest.approx(0.02) and row["utility"] == pytest.approx(0.79 / 0.80)
    # SalUn keeps 98 % nowhere: the point that keeps most utility, and the reason says so
    salun = chosen["SalUn"]
    assert (salun["lr_scale"], salun["epochs"]) == (1.0, 5) and salun["reason"].startswith("no point kept")
    assert tuning.chosen_point(chosen, "SalUn") == tuning.GridPoint("SalUn", 1.0, 5)
    assert tuning.chosen_point(chosen, "SCRUB") is None


def test_runs_of_one_trainer_in_several_results_folders_get_distinct_labels(tmp_path):
    """The audit and the report label runs this way: a grid point and its calibrated twin share a trainer."""
    fold = "nnUNetTrainerUnlearnNoisyLabel_5epochs__p__3d_fullres/fold_0"
    folders = [tmp_path / setting / "nnUNet_results" / "D" / fold for setting in ("lr_2", "calibrated_lr_2")]
    folders.append(tmp_path / "nnUNet_results" / "D" / "nnUNetTrainerUnlearnSSD__p__3d_fullres" / "fold_0")
    short = ["nnUNetTrainerUnlearnNoisyLabel_5epochs"] * 2 + ["nnUNetTrainerUnlearnSSD"]
    assert distinct_labels(short, folders) == [f"{fold} in lr_2", f"{fold} in calibrated_lr_2", short[2]]


def test_frozen_settings_are_read_back_and_refused_when_they_cannot_apply(tmp_path):
    path = tmp_path / "tuning.json"
    tuned = {"NoisyLabel": {"lr_scale": 0.5, "epochs": 2, "default_lr_scale": 1.0, "reason": "r", "grid": []}}
    tuning.write_tuning(path, tuned, "1")
    assert tuning.read_tuning(path, "1", ["NoisyLabel"]) == tuned
    with pytest.raises(UserInputError, match="tuned on subject 1, the design tunes on subject 4"):
        tuning.read_tuning(path, "4", ["NoisyLabel"])
    with pytest.raises(UserInputError, match="no tuned setting for SCRUB"):
        tuning.read_tuning(path, "1", ["NoisyLabel", "SCRUB"])
    with pytest.raises(UserInputError, match=r"not a benchmark tuning\.json"):
        tuning.read_tuning(tmp_path / "missing.json", "1", ["NoisyLabel"])
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(UserInputError, match=r"other\.json: not a benchmark tuning\.json"):
        tuning.read_tuning(tmp_path / "other.json", "1", ["NoisyLabel"])


def test_frozen_scales_are_read_in_todays_default_so_each_point_keeps_its_rate(tmp_path):
    """A file tuned when SCRUB's default was 0.05 chose scale 0.5 (0.025): read today (default 0.025), that is
    scale 1, the trainer's default, and the grid's scales move with it; a file that does not record its
    default is taken to be in today's."""
    path = tmp_path / "tuning.json"
    row = {"lr_scale": 2.0, "epochs": 5, "dice_forget": 0.7, "utility": 0.99}
    then = {"lr_scale": 0.5, "epochs": 2, "default_lr_scale": 0.05, "reason": "r", "grid": [row]}
    unrecorded = {"lr_scale": 0.5, "epochs": 5, "reason": "r", "grid": []}
    tuning.write_tuning(path, {"SCRUB": then, "NoisyLabel": unrecorded}, "1")
    read = tuning.read_tuning(path, "1", ["SCRUB", "NoisyLabel"])
    assert read["SCRUB"] == {
        **then, "lr_scale": 1.0, "default_lr_scale": 0.025, "grid": [{**row, "lr_scale": 4.0}], tuning.FOLDER: 0.5
    }  # fmt: skip
    # the point runs at today's scale 1 (0.025), in the folder its runs were written to under scale 0.5
    point = tuning.chosen_point(read, "SCRUB")
    assert point == tuning.GridPoint("SCRUB", 1.0, 2, folder_scale=0.5)
    base = Run("", "D", "3d_fullres", "p", 0, 20, Path(), tmp_path / "request.json")
    run = tuning.point_run(point, tmp_path, base, calibration="memorisation_patches")
    assert run.results == tmp_path / "calibrated_memorisation_patches_lr_0.5" / "nnUNet_results"
    assert run.config is not None
    assert json.loads(run.config.read_text())["strategies"]["SCRUB"]["lr_scale"] == pytest.approx(0.025)
    assert tuning.point_run(point, tmp_path, base).results == tmp_path / "lr_0.5" / "nnUNet_results"
    # written again (the benchmark's tuning.json) and read back, it keeps its folder
    tuning.write_tuning(path, read, "1")
    assert tuning.read_tuning(path, "1", ["SCRUB"])["SCRUB"][tuning.FOLDER] == 0.5
    assert read["NoisyLabel"] == {**unrecorded, "default_lr_scale": 1.0}
    # a fresh choice records the default its scales multiply
    original = _evaluation(0.8, 0.8, 0.7)
    point = _finished(tmp_path, tuning.GridPoint("SCRUB", 1.0, 2), _evaluation(0.75, 0.8, 0.7))
    assert tuning.choose([point], [original, original], original, SETS)["SCRUB"]["default_lr_scale"] == 0.025


def test_the_shipped_tuning_file_freezes_a_setting_for_every_strategy():
    """docs/results/cpu_k4_all_strategies.tuning.json is what `--tuning` judges every strategy with: a strategy
    added without a frozen setting fails here, and each setting is a point of the profile's grid."""
    path = Path(__file__).resolve().parents[1] / "docs" / "results" / "cpu_k4_all_strategies.tuning.json"
    names = [s.name for s in STRATEGIES]
    settings = tuning.read_tuning(path, "1", names)
    assert sorted(settings) == sorted(names)
    shipped = json.loads(path.read_text())
    for name, setting in settings.items():
        assert setting["lr_scale"] in PROFILES["cpu"].lr_scales and setting["epochs"] in PROFILES["cpu"].horizons, name
        source = json.loads((path.parent / f"{shipped['frozen_from'][name]}.tuning.json").read_text())
        frozen = shipped["strategies"][name]
        # the source may predate the recorded default; it is the same setting
        assert {tuning.DEFAULT: frozen[tuning.DEFAULT]} | source["strategies"][name] == frozen, name
        # the rate it was tuned at, whatever the default is today
        rate = frozen["lr_scale"] * frozen["default_lr_scale"]
        assert setting["lr_scale"] * tuning.default_lr_scale(name) == pytest.approx(rate), name
    # SCRUB and LearnOthersFixDecoder ship their tuned rates: their frozen settings are today's defaults
    assert [settings[name]["lr_scale"] for name in ("SCRUB", "LearnOthersFixDecoder")] == [1.0, 1.0]
