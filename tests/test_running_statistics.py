"""No forgotten subject in the model's buffers: BatchNorm running statistics during and after unlearning.

A toy network with BatchNorm in encoder and decoder (the plain toy has none, which is why nothing caught
forget batches leaking into running statistics), every strategy's preparation and steps as the trainer
runs them, and the end-of-run recalibration on retain batches.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from toy import NUM_CLASSES, toy_batch, toy_context, toy_stream

from nnunet_unlearning.unlearning.running_statistics import (
    buffers_kept,
    changed_norms,
    recalibrate,
    stateful_norms,
)
from nnunet_unlearning.unlearning.step import ParameterGuard, prepare_strategy, trainable_parameters, unlearning_step
from nnunet_unlearning.unlearning.strategies import STRATEGIES

RETAIN = toy_batch(2000, ("r1", "r2"))
FORGET = toy_batch(1000, ("f1", "f2"))


class ToyBatchNormNet(nn.Module):
    """The toy's shape (encoder/decoder, two deep-supervision heads) with a BatchNorm after every conv."""

    def __init__(self, in_channels: int = 2, num_classes: int = NUM_CLASSES, width: int = 8) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict(
            {
                "stem": nn.Conv3d(in_channels, width, 3, padding=1),
                "stem_norm": nn.BatchNorm3d(width),
                "down": nn.Conv3d(width, 2 * width, 3, stride=2, padding=1),
                "down_norm": nn.BatchNorm3d(2 * width),
            }
        )
        self.decoder = nn.ModuleDict(
            {
                "up": nn.ConvTranspose3d(2 * width, width, 2, stride=2),
                "up_norm": nn.BatchNorm3d(width),
                "head_full": nn.Conv3d(2 * width, num_classes, 1),
                "head_half": nn.Conv3d(2 * width, num_classes, 1),
            }
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        skip = F.leaky_relu(self.encoder["stem_norm"](self.encoder["stem"](x)))
        deep = F.leaky_relu(self.encoder["down_norm"](self.encoder["down"](skip)))
        up = F.leaky_relu(self.decoder["up_norm"](self.decoder["up"](deep)))
        return [self.decoder["head_full"](torch.cat([skip, up], dim=1)), self.decoder["head_half"](deep)]


def _original() -> ToyBatchNormNet:
    """A toy whose running statistics are those of some earlier training (not the defaults 0 and 1)."""
    torch.manual_seed(0)
    model = ToyBatchNormNet()
    with torch.no_grad():
        for seed in range(5):
            model(toy_batch(3000 + seed).data * 2.0 + 1.0)
    return model


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _buffers(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.named_buffers()}


def test_the_toy_has_running_statistics_that_a_forward_pass_changes():
    model = _original()
    assert len(stateful_norms(model)) == 3
    before = _buffers(model)
    model(FORGET.data)
    assert not any(torch.equal(before[k], v) for k, v in model.named_buffers() if k.endswith("running_mean"))


@pytest.mark.parametrize("strategy_class", [s for s in STRATEGIES if s.trains], ids=lambda s: s.name)
def test_no_step_or_preparation_changes_a_buffer(strategy_class):
    model = _original()
    original = copy.deepcopy(model).eval().requires_grad_(False)
    before = _state(model)
    strategy = strategy_class()
    ctx = toy_context(original=original if strategy.needs_original else None)
    prepare_strategy(strategy, model, ctx)
    guard = ParameterGuard(model, strategy.update_mask())
    optimizer = torch.optim.SGD(trainable_parameters(model, strategy), lr=0.05, momentum=0.9, weight_decay=1e-4)
    for _ in range(3):
        unlearning_step(
            model,
            strategy,
            optimizer,
            RETAIN if strategy.uses_retain else None,
            FORGET if strategy.uses_forget else None,
            ctx,
            guard,
        )
    after = _state(model)
    for key, _ in model.named_buffers():
        assert torch.equal(after[key], before[key]), key
    if strategy.name.endswith("FixDecoder"):  # the whole frozen part, parameters and buffers
        for key in after:
            if key.startswith("decoder."):
                assert torch.equal(after[key], before[key]), key


def test_ssd_preparation_changes_no_buffer():
    ssd = next(s for s in STRATEGIES if s.name == "SSD")(forget_batches=2, retain_batches=4)
    model = _original()
    before = _buffers(model)
    prepare_strategy(ssd, model, toy_context())
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())


def test_buffers_kept_restores_every_buffer_but_not_the_computation():
    model = _original().train()
    before = _buffers(model)
    reference = copy.deepcopy(model)
    with buffers_kept(model):
        outputs = model(FORGET.data)
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())
    assert torch.equal(outputs[0], reference(FORGET.data)[0])  # still normalised with the batch's statistics


def test_changed_norms_names_the_layers_whose_own_parameters_changed():
    model = _original()
    original = _state(model)
    assert changed_norms(model, original) == []
    with torch.no_grad():
        model.encoder["down_norm"].weight[0] += 1.0
        model.decoder["up"].weight.zero_()  # a conv, not a norm: no layer is named for it
    assert changed_norms(model, original) == ["encoder.down_norm"]


def test_recalibration_averages_retain_batches_and_keeps_every_other_buffer():
    model = _original()
    before = _buffers(model)
    batches = [toy_batch(2000 + i, ("r1", "r2")).data for i in range(4)]
    used = recalibrate(model.eval(), ["encoder.stem_norm"], iter(batches), 4)
    assert used == 4 and not model.training
    norm = model.encoder["stem_norm"]
    with torch.no_grad():
        features = [model.encoder["stem"](b) for b in batches]
    expected_mean = torch.stack([f.mean(dim=(0, 2, 3, 4)) for f in features]).mean(dim=0)
    expected_var = torch.stack([f.var(dim=(0, 2, 3, 4), unbiased=True) for f in features]).mean(dim=0)
    torch.testing.assert_close(norm.running_mean, expected_mean)
    torch.testing.assert_close(norm.running_var, expected_var)
    assert int(norm.num_batches_tracked) == 4 and norm.momentum == 0.1
    for key, value in model.named_buffers():
        if not key.startswith("encoder.stem_norm."):
            assert torch.equal(value, before[key]), key


def test_recalibration_reads_only_the_batches_it_is_given():
    """Two models unlearned alike and recalibrated on the same retain batches hold the same buffers, whatever
    forget batches passed through them before: nothing of the forget data is left in the statistics."""
    models = []
    for forget_scale in (1.0, 5.0):
        model = _original()
        model(FORGET.data * forget_scale)  # a forward outside any guard, as the old trainer did
        with torch.no_grad():
            model.encoder["stem_norm"].bias += 0.5
        retain = (batch.data for batch in toy_stream(2000, ("r1", "r2")))
        recalibrate(model, changed_norms(model, _state(_original())), retain, 3)
        models.append(model)
    a, b = (m.encoder["stem_norm"] for m in models)
    assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)
