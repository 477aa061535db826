"""The benchmark's design (subjects, forget sets, split) and its tables, on hand-made reports."""

from __future__ import annotations

import json

import pytest

from nnunet_unlearning.cli import main
from nnunet_unlearning.errors import UserInputError
from nnunet_unlearning.workflows import benchmark_design as design
from nnunet_unlearning.workflows import benchmark_tables as tables


def test_forget_sets_are_leave_one_out_plus_nested_sets():
    sets = design.DEFAULT.forget_sets((1, 2, 3))
    assert sets[:5] == [("MRBrainS18_1",), ("MRBrainS18_4",), ("MRBrainS18_5",), ("MRBrainS18_7",), ("MRBrainS18_14",)]
    # the nested sets leave the tuning subject out: nothing is judged on the subject it was tuned on
    assert design.DEFAULT.tuning_subject == "1"
    assert sets[5:] == [("MRBrainS18_4", "MRBrainS18_5"), ("MRBrainS18_4", "MRBrainS18_5", "MRBrainS18_7")]
    assert design.DEFAULT.forget_sets((4,)) == [tuple(design.case_id(s) for s in ("4", "5", "7", "14"))]
    assert design.DEFAULT.forget_sets((2,), only=["MRBrainS18_7", "14"]) == [("MRBrainS18_7", "MRBrainS18_14")]
    assert design.forget_tag(("MRBrainS18_7", "MRBrainS18_14")) == "forget_7-14"


@pytest.mark.parametrize(
    ("sizes", "only", "message"),
    [
        ((1,), ["070"], "--forget 070: not one of the original model's training subjects"),
        ((1,), ["1", "MRBrainS18_1"], "subject 1 given more than once"),
        ((5,), None, "--sizes 5: a forget set has 1 to 4 subjects"),
    ],
)
def test_forget_sets_refuse_what_the_design_cannot_run(sizes, only, message):
    with pytest.raises(UserInputError, match=message):
        design.DEFAULT.forget_sets(sizes, only)


def test_split_trains_on_five_and_holds_out_two(tmp_path):
    cases = [design.case_id(s) for s in design.DEFAULT.training + design.DEFAULT.heldout]
    split = json.loads(design.DEFAULT.write_split(tmp_path, cases).read_text())
    assert split == [{"train": cases[:5], "val": cases[5:]}]
    with pytest.raises(UserInputError, match="case MRBrainS18_148 is missing"):
        design.DEFAULT.write_split(tmp_path, cases[:-1])


def test_held_out_subjects_are_a_parameter_and_the_rest_train(tmp_path):
    chosen = design.Design.holding_out(["MRBrainS18_4", "148"])
    assert chosen.training == ("1", "5", "7", "14", "070") and chosen.heldout == ("4", "148")
    assert chosen.tuning_subject == "1" and chosen.tuning_set() == ("MRBrainS18_1",)
    assert chosen.case_sets(("MRBrainS18_070",)) == {
        "forget": ["MRBrainS18_070"],
        "retain": ["MRBrainS18_1", "MRBrainS18_5", "MRBrainS18_7", "MRBrainS18_14"],
        "heldout": ["MRBrainS18_4", "MRBrainS18_148"],
    }
    with pytest.raises(UserInputError, match="--forget 4: not one of the original model's training subjects"):
        chosen.forget_sets((1,), ["4"])
    split = json.loads(chosen.write_split(tmp_path, [design.case_id(s) for s in design.SUBJECTS]).read_text())
    assert split == [{"train": chosen.training_cases(), "val": chosen.heldout_cases()}]
    # a workdir keeps its design: a continued run must hold out the same subjects
    chosen.keep(tmp_path)
    chosen.keep(tmp_path)
    with pytest.raises(UserInputError, match="holds out 4, 148, not 070, 148; choose another --workdir"):
        design.DEFAULT.keep(tmp_path)


@pytest.mark.parametrize(
    ("heldout", "message"),
    [
        (["99"], "--heldout 99: not an MRBrainS18 training subject"),
        (["070", "070"], "--heldout: give one or more different subjects"),
        ([], "--heldout: give one or more different subjects"),
        (["1", "4", "5", "7", "14"], "at least 3 of the 7 subjects must train"),
    ],
)
def test_held_out_subjects_refused_in_one_line(heldout, message):
    with pytest.raises(UserInputError, match=message):
        design.Design.holding_out(heldout)


def _row(role, trainer, strategy, dice_forget, wall, settings="defaults"):
    return {
        "role": role,
        "non_default_settings": None if strategy is None else settings,
        "trainer": trainer,
        "strategy": strategy,
        "dice_forget": dice_forget,
        "dice_retain": 0.8,
        "dice_heldout": 0.7,
        "forget_drop_pct": None if role == "original" else 50.0,
        "wall_s": wall,
    }


def test_tables_average_over_forget_sets_per_model_and_horizon():
    def report(forget_dice):
        return {
            "rows": [
                _row("original", "nnUNetTrainerMed3D_scratch", None, 0.9, None),
                _row("oracle", "nnUNetTrainerRetrain", None, 0.6, 100.0),
                _row("unlearned", "nnUNetTrainerUnlearnNoisyLabel_2epochs", "NoisyLabel", forget_dice, 10.0),
                _row("unlearned", "nnUNetTrainerUnlearnNoisyLabel_5epochs", "NoisyLabel", 0.1, 20.0),
                # the same trainer under other settings is another model
                _row("unlearned", "nnUNetTrainerUnlearnNoisyLabel_5epochs", "NoisyLabel", 0.3, 20.0, "lr_scale=2.0"),
            ]
        }

    reports = {
        ("MRBrainS18_1",): report(0.2),
        ("MRBrainS18_4",): report(0.4),
        ("MRBrainS18_1", "MRBrainS18_4"): report(0.0),
    }
    rows = tables.benchmark_rows(reports)
    assert len(rows) == 15 and {r["size"] for r in rows} == {1, 2}
    result = tables.tables(rows)
    main = {(r["model"], r["horizon"]): r for r in result["leave_one_subject_out"]}
    assert set(main) == {
        ("original", "-"),
        ("retrain oracle", "-"),
        ("NoisyLabel", "2"),
        ("NoisyLabel", "5"),
        ("NoisyLabel [lr_scale=2.0]", "5"),
    }
    assert main[("NoisyLabel [lr_scale=2.0]", "5")]["dice_forget"] == pytest.approx(0.3)
    assert main[("NoisyLabel", "2")]["n"] == 2  # the size-2 set is not in the leave-one-out table
    assert main[("NoisyLabel", "2")]["dice_forget"] == pytest.approx(0.3)
    assert main[("original", "-")]["forget_drop_pct"] is None  # undefined stays undefined
    sizes = {(r["size"], r["model"], r["horizon"]): r for r in result["sizes"]}
    assert sizes[(2, "NoisyLabel", "2")]["dice_forget"] == 0.0 and sizes[(2, "NoisyLabel", "2")]["n"] == 1
    seed = result["seed_comparison"]
    assert seed["horizon_epochs"] == "5" and seed["dice_forget"] == pytest.approx(0.1)
    assert seed["oracle_dice_forget"] == pytest.approx(0.6)
    assert "forget Dice −93.0 %" in tables.seed_sentence(seed) and "0.600" in tables.seed_sentence(seed)
    # tuned to another learning rate, the strategy still stands for the seed study's; calibrated, it does not
    tuned = [r for r in result["leave_one_subject_out"] if r["model"] != "NoisyLabel"]
    assert tables.seed_comparison(tuned)["strategy"] == "NoisyLabel [lr_scale=2.0]"
    calibrated = [{**r, "model": "NoisyLabel [calibration.enabled=True]"} for r in tuned if r["model"] != "original"]
    assert tables.seed_comparison(calibrated) is None


@pytest.mark.parametrize(
    ("dice", "oracle", "words"),
    [
        (0.171, 0.175, "forgot about as much as retraining would"),  # Δ −0.004: within 5 % of the oracle's
        (0.058, 0.175, "over-forgot, which marks the forgotten subject"),  # Δ −0.117
        (0.400, 0.175, "kept more of the forgotten subject than retraining would"),
        (0.058, None, "no retrain oracle's forget Dice"),
    ],
)
def test_seed_sentence_words_follow_the_gap(dice, oracle, words):
    comparison = {
        "strategy": "NoisyLabel",
        "horizon_epochs": "5",
        "seed_forget_drop_pct": 93.0,
        "forget_drop_pct": -5.0,
        "seed_retain_retention_pct": 84.0,
        "retain_retention_pct": 99.0,
        "dice_forget": dice,
        "oracle_dice_forget": oracle,
        "gap_dice_forget": None if oracle is None else dice - oracle,
    }
    sentence = tables.seed_sentence(comparison)
    assert words in sentence and "forget Dice +5.0 %" in sentence
    clauses = ("about as much as retraining", "over-forgot", "kept more of", "no retrain oracle's")
    assert [c for c in clauses if c in sentence] == [c for c in clauses if c in words]  # only the one chosen


def test_benchmark_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["benchmark", str(tmp_path), "--workdir", str(tmp_path / "w")]) == 2
    assert "no training/ folder" in capsys.readouterr().err
    (tmp_path / "training").mkdir()
    assert main(["benchmark", str(tmp_path), "--strategies", "Forgetful", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "--strategies Forgetful: unknown strategy" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "keep.txt").write_text("x")
    assert main(["benchmark", str(tmp_path), "--workdir", str(tmp_path / "precious")]) == 2
    assert "not an earlier benchmark folder" in capsys.readouterr().err
