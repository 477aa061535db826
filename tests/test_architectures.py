"""The unlearning trainer works on any architecture the plans name: nnU-Net's residual-encoder U-Net and
our Med3D ResNet U-Net, besides the default PlainConvUNet every other test uses."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from nnunet_fixture import CONFIGURATION, DATASET_ID, DATASET_NAME, PLANS, load_trainer, shorten
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_unlearning.med3d.plans import plan_med3d
from nnunet_unlearning.nnunet.glue import bare_network
from nnunet_unlearning.request import REQUEST_ENV, write_request
from nnunet_unlearning.unlearning import base_trainer
from nnunet_unlearning.unlearning.running_statistics import stateful_norms
from nnunet_unlearning.unlearning.schedules import trainer_family
from nnunet_unlearning.unlearning.strategies import GradientAscent, NoisyLabelFixDecoder

RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"


def _resenc_plans(world) -> str:
    """A copy of the test plans whose network is nnU-Net's residual-encoder U-Net (same preprocessed data)."""
    folder = world.preprocessed / DATASET_NAME
    plans = json.loads((folder / f"{PLANS}.json").read_text())
    plans["plans_name"] = "nnUNetResEncTinyPlans"
    architecture = plans["configurations"][CONFIGURATION]["architecture"]
    architecture["network_class_name"] = RESENC
    kwargs = architecture["arch_kwargs"]
    kwargs["n_blocks_per_stage"] = kwargs.pop("n_conv_per_stage")
    (folder / "nnUNetResEncTinyPlans.json").write_text(json.dumps(plans, indent=2))
    return plans["plans_name"]


def _med3d_plans(world) -> str:
    """Med3D ResNet-10 U-Net plans (small decoder) over the same preprocessed data, via plan-med3d."""
    plan_med3d(DATASET_ID, CONFIGURATION, depth=10, name="nnUNetMed3DTinyPlans", decoder_channels=[8, 16, 16, 16, 16])
    return "nnUNetMed3DTinyPlans"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make_plans", "network_class"),
    [(_resenc_plans, "ResidualEncoderUNet"), (_med3d_plans, "Med3DUNet")],
    ids=["ResEnc", "Med3D"],
)
def test_unlearning_on_other_architectures(world, tmp_path, monkeypatch, make_plans, network_class):
    plans = make_plans(world)
    original = load_trainer(nnUNetTrainer, world, plans=plans)
    shorten(original, epochs=1, iterations=2)
    original.run_training()
    cases = sorted(original.do_split()[0])
    request = write_request(DATASET_ID, CONFIGURATION, "0", plans, "nnUNetTrainer", cases[:1], out=tmp_path / "r.json")
    monkeypatch.setenv(REQUEST_ENV, str(request))

    trainer = load_trainer(
        trainer_family(NoisyLabelFixDecoder, __name__)["nnUNetTrainerUnlearnNoisyLabelFixDecoder"], world, plans=plans
    )
    shorten(trainer)
    trainer.run_training()
    network = bare_network(trainer.network)
    assert type(network).__name__ == network_class
    before = torch.load(Path(original.output_folder) / "checkpoint_final.pth", weights_only=False)["network_weights"]
    after = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    # the whole frozen decoder, buffers (running statistics) included; nnU-Net's decoders also list the
    # encoder's tensors under "decoder.encoder.", which are the encoder's, not the decoder's
    decoder = [k for k in after if k.startswith("decoder.") and not k.startswith("decoder.encoder.")]
    assert all(torch.equal(after[k], before[k]) for k in decoder), [
        k for k in decoder if not torch.equal(after[k], before[k])
    ]
    assert any(not torch.equal(after[k], before[k]) for k, _ in network.named_parameters() if k.startswith("encoder."))
    metrics = json.loads((Path(trainer.output_folder) / "unlearning_metrics.json").read_text())
    assert metrics["forget"] == cases[:1] and metrics["figures"] is not None
    statistics = metrics["running_statistics"]
    if network_class == "Med3DUNet":  # BatchNorm: the decoder's layers kept, the encoder's recalibrated
        assert any(k.startswith("decoder.") and k.endswith("running_mean") for k in decoder)
        assert statistics["kept_layers"] > 0 and statistics["recalibrated_layers"] > 0
        assert statistics["batches"] == trainer.recalibration_batches
        _one_retain_draw_for_every_recalibration(world, plans, monkeypatch)
    else:  # nnU-Net's InstanceNorm keeps no running statistics
        assert statistics["recalibrated_layers"] == statistics["kept_layers"] == 0


def _one_retain_draw_for_every_recalibration(world, plans: str, monkeypatch) -> None:
    """Every recalibration of a run (each calibration check's and the end's) reads the same retain batches, drawn
    at the first; GradientAscent reads no retain batches, so they come from a retain stream built for that draw
    and finished at once."""
    built, finished = [], []
    real = base_trainer.train_loader

    def counted(trainer, dataset):
        loader = real(trainer, dataset)
        built.append(loader)
        # nnU-Net's single-threaded augmenter (no worker: nnUNet_n_proc_DA=0) has nothing to finish
        finish = getattr(loader, "_finish", lambda: None)
        monkeypatch.setattr(loader, "_finish", lambda: (finished.append(loader), finish())[1], raising=False)
        return loader

    monkeypatch.setattr(base_trainer, "train_loader", counted)
    trainer = load_trainer(
        trainer_family(GradientAscent, __name__)["nnUNetTrainerUnlearnGradientAscent"], world, plans=plans
    )
    shorten(trainer)
    trainer.on_train_start()
    streams = len(built)  # the run's own streams (its forget stream)
    network = bare_network(trainer.network)
    recalibrated = []
    for _ in range(2):  # as two checks of the same weights do: a copy with changed BatchNorm parameters
        candidate = copy.deepcopy(network)
        with torch.no_grad():
            next(m for m in stateful_norms(candidate).values() if m.weight is not None).weight.add_(0.1)
        assert trainer._recalibrated(candidate, across_ranks=False)["batches"] == trainer.recalibration_batches
        recalibrated.append({k: v.clone() for k, v in candidate.state_dict().items() if "running_" in k})
        assert len(built) == streams + 1 and built[-1] in finished
    # the same weights recalibrated on the same batches: the same statistics, bit for bit
    assert all(torch.equal(recalibrated[0][k], recalibrated[1][k]) for k in recalibrated[0])
    trainer.on_train_end()
