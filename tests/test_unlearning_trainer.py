"""The unlearning trainer on real nnU-Net data (MRBrainS18 when present, else the phantom), in-process.

Every strategy runs end to end with a one-epoch, two-step schedule; one run goes through the real
``nnUNetv2_train`` console script with ``nnUNet_extTrainer``. Two steps show the mechanics (what may
change, what must not), not a direction: the direction each strategy promises (forget loss up, forget
predictions moved more than retain's) is checked on a toy that has memorised its forget subjects, where a
few steps make it measurable (``test_strategies_seed.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, load_trainer, shorten

from nnunet_unlearning.artifacts import CERTIFICATE_JSON, MASK_FILE, METRICS_FILE, PROGRESS_FILE, SETS
from nnunet_unlearning.nnunet.glue import EVALUATION_TILE_STEP, bare_network, make_predictor
from nnunet_unlearning.request import REQUEST_ENV, build_request
from nnunet_unlearning.unlearning.retrain_trainer import nnUNetTrainerRetrain, original_epochs
from nnunet_unlearning.unlearning.schedules import trainer_family
from nnunet_unlearning.unlearning.strategies import STRATEGIES
from nnunet_unlearning.unlearning.strategy import DECODER_PREFIX, ENCODER_PREFIX

TESTS = Path(__file__).resolve().parent


def _trainer_class(strategy, schedule: str = "_5epochs"):
    return trainer_family(strategy, __name__)[f"nnUNetTrainerUnlearn{strategy.name}{schedule}"]


def _original_weights(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["network_weights"]


def test_starts_from_the_whole_original_model(request_world, original_checkpoint):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer = load_trainer(_trainer_class(STRATEGIES[0], "_50epochs"), request_world)
    shorten(trainer)
    trainer.on_train_start()
    network = bare_network(trainer.network)
    original = _original_weights(original_checkpoint)
    assert any(".seg_layers." in key for key in original)
    for key, value in network.state_dict().items():
        assert torch.equal(value.cpu(), original[key]), key

    reference = nnUNetPredictor(
        tile_step_size=EVALUATION_TILE_STEP, use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False
    )
    reference.initialize_from_trained_model_folder(
        str(original_checkpoint.parents[1]), use_folds=(0,), checkpoint_name=original_checkpoint.name
    )
    case = trainer.request.forget[0]
    data = torch.from_numpy(np.asarray(trainer.hook._dataset.load_case(case)[0]))
    trainer.set_deep_supervision_enabled(False)
    ours = make_predictor(trainer, network).predict_sliding_window_return_logits(data)
    assert torch.equal(ours, reference.predict_sliding_window_return_logits(data))


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.name)
def test_every_strategy_runs_end_to_end(request_world, original_checkpoint, strategy):
    trainer = load_trainer(_trainer_class(strategy), request_world)
    shorten(trainer, epochs=1 if strategy.trains else 0)
    trainer.run_training()
    out = Path(trainer.output_folder)

    metrics = json.loads((out / METRICS_FILE).read_text())
    assert [e["tag"] for e in metrics["evaluations"]] == ["start", "end"]
    for evaluation in metrics["evaluations"]:
        assert {name: evaluation["sets"][name]["n_cases"] for name in SETS} == {
            "forget": 1,
            "retain": len(trainer.request.retain),
            "heldout": len(trainer.request.heldout),
        }
        assert 0.0 <= evaluation["sets"]["forget"]["dice"] <= 1.0
    assert metrics["figures"]["forget_drop_pct"] is not None
    assert metrics["strategy"] == strategy.name
    assert (out / PROGRESS_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "unlearning_request.json").read_text())["request_id"] == trainer.request.request_id
    assert (out / "checkpoint_final.pth").is_file()

    original = _original_weights(original_checkpoint)
    # parameter names, not state-dict keys: nnU-Net's decoders also list the encoder's tensors under
    # "decoder.encoder.", and named_parameters() names each tensor once, by its owner
    final = {k: v.detach().cpu() for k, v in bare_network(trainer.network).named_parameters()}
    changed = {k for k in final if not torch.equal(final[k], original[k])}
    assert changed, "unlearning left every weight unchanged"
    if strategy.name.endswith("FixDecoder"):
        assert not any(k.startswith(DECODER_PREFIX) for k in changed), "a FixDecoder variant changed the decoder"
    if strategy.name.startswith("RandomEncoder"):
        encoder = {k for k in final if k.startswith(ENCODER_PREFIX)}
        assert encoder and encoder <= changed, f"not re-initialised: {sorted(encoder - changed)[:3]}"
    if (out / MASK_FILE).is_file():
        masks = torch.load(out / MASK_FILE, weights_only=True)
        for name, may_change in masks.items():
            assert torch.equal(final[name][~may_change], original[name][~may_change]), name
    if not strategy.trains:
        assert trainer.num_epochs == 0


def test_resumed_run_continues_the_same_record_and_mask(request_world, original_checkpoint):
    salun = next(s for s in STRATEGIES if s.name == "SalUn")
    trainer = load_trainer(_trainer_class(salun, "_20epochs"), request_world)
    shorten(trainer, epochs=2, iterations=1)
    trainer.save_every = 1
    finish_epoch = trainer.on_epoch_end

    def interrupted():
        finish_epoch()
        raise KeyboardInterrupt

    trainer.on_epoch_end = interrupted
    with pytest.raises(KeyboardInterrupt):
        trainer.run_training()
    out = Path(trainer.output_folder)
    assert (out / "checkpoint_latest.pth").is_file()

    resumed = load_trainer(_trainer_class(salun, "_20epochs"), request_world, continue_training=True)
    shorten(resumed, epochs=2, iterations=1)
    resumed.load_checkpoint(str(out / "checkpoint_latest.pth"))
    resumed.run_training()
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert [e["tag"] for e in metrics["evaluations"]] == ["start", "end"]
    original = _original_weights(original_checkpoint)
    final = bare_network(resumed.network).state_dict()
    for name, may_change in torch.load(out / MASK_FILE, weights_only=True).items():
        assert torch.equal(final[name].cpu()[~may_change], original[name][~may_change]), name


def test_retrain_oracle_trains_on_retain_only(request_world, original_checkpoint):
    # a subclass of its own, so that this run does not replace the session's finished retrain run
    retrain = type("nnUNetTrainerRetrain_inprocess", (nnUNetTrainerRetrain,), {})
    trainer = load_trainer(retrain, request_world)
    assert trainer.num_epochs == original_epochs(str(original_checkpoint)) == 2
    assert trainer.do_split() == (list(trainer.request.retain), list(trainer.request.heldout))
    assert not set(trainer.request.forget) & set(trainer.do_split()[0])
    shorten(trainer)
    trainer.run_training()
    metrics = json.loads((Path(trainer.output_folder) / METRICS_FILE).read_text())
    assert [e["tag"] for e in metrics["evaluations"]] == ["end"]
    assert metrics["evaluations"][0]["sets"]["forget"]["n_cases"] == 1


def test_refuses_an_original_with_another_architecture(request_world, capsys):
    folder = request_world.preprocessed / DATASET_NAME
    plans = json.loads((folder / f"{PLANS}.json").read_text())
    plans["plans_name"] = "nnUNetPlansWide"
    plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]["features_per_stage"] = [16, 32, 64, 128]
    (folder / "nnUNetPlansWide.json").write_text(json.dumps(plans))
    trainer = load_trainer(_trainer_class(STRATEGIES[0]), request_world, plans="nnUNetPlansWide")
    shorten(trainer)
    with pytest.raises(SystemExit) as exit_info:
        trainer.on_train_start()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "plans differ from this run's in 'architecture'" in err[-1]


def test_refuses_a_results_folder_of_another_request(request_world, original_checkpoint, capsys):
    cls = _trainer_class(STRATEGIES[1], "_50epochs")
    folder = request_world.results / DATASET_NAME / f"{cls.__name__}__{PLANS}__{CONFIGURATION}" / "fold_0"
    folder.mkdir(parents=True)
    splits = json.loads((request_world.preprocessed / DATASET_NAME / "splits_final.json").read_text())
    other = build_request(DATASET_ID, CONFIGURATION, "0", PLANS, "nnUNetTrainer", [splits[0]["train"][-1]])
    (folder / "unlearning_request.json").write_text(other.to_json())
    with pytest.raises(SystemExit) as exit_info:
        load_trainer(cls, request_world)
    assert exit_info.value.code == 2
    assert "holds a run of another request" in capsys.readouterr().err
    assert json.loads((folder / "unlearning_request.json").read_text())["request_id"] == other.request_id


def test_missing_request_is_one_line_exit_2(world, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(REQUEST_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(SystemExit) as exit_info:
        load_trainer(_trainer_class(STRATEGIES[0]), world)
    assert exit_info.value.code == 2
    assert "no unlearning request" in capsys.readouterr().err


@pytest.mark.slow
def test_nnunetv2_train_console_script_finds_and_runs_our_trainer(request_world, console_script_run):
    out, env = console_script_run  # nnUNetv2_train -tr nnUNetTrainerUnlearnNoisyLabel_test, exit 0
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["figures"] is not None
    assert (out / "validation" / "summary.json").is_file()  # nnU-Net's own final validation, on held-out cases
    # calibrated through the run config: checked at the original and after the one epoch, and stopped
    decision = metrics["calibration"]["decision"]
    assert metrics["calibration"]["checks"][0]["epoch"] == 0
    assert decision["reason"] in ("forgotten", "utility_budget", "over_forgotten", "schedule_end")
    certificate = json.loads((out / CERTIFICATE_JSON).read_text())
    assert certificate["verdict"]["calibration"].startswith("Calibrated run: stopped at epoch")

    train = Path(sys.executable).parent / "nnUNetv2_train"
    trainer = out.parent.name.split("__")[0]
    env = {**env, REQUEST_ENV: str(Path(env[REQUEST_ENV]).parent / "absent.json")}
    refused = subprocess.run(
        [str(train), str(DATASET_ID), CONFIGURATION, "0", "-tr", trainer, "-device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(f"{trainer}: error: ")
    assert "Traceback" not in refused.stderr
