"""SalUn's saliency mask and masked updates, and SalUnCRA's treatment of clinically critical voxels."""

from __future__ import annotations

import math
from itertools import islice

import torch
from toy import NUM_CLASSES, ToyNet, toy_batch, toy_context, toy_task_loss

from nnunet_unlearning.unlearning.step import ParameterGuard, trainable_parameters, unlearning_step
from nnunet_unlearning.unlearning.strategies.fine_tune import FineTune
from nnunet_unlearning.unlearning.strategies.salun import SalUn, largest_entries, saliency_mask
from nnunet_unlearning.unlearning.strategies.salun_cra import SalUnCRA, critical_voxels, mean_entropy
from nnunet_unlearning.unlearning.strategy import as_list

CRITICAL = (3,)


def _model(seed: int = 0) -> ToyNet:
    torch.manual_seed(seed)
    return ToyNet()


def _forget(seed: int = 2):
    return toy_batch(seed, ("f1", "f2"))


def test_largest_entries_picks_exactly_count_with_ties_in_index_order():
    values = torch.tensor([0.5, 2.0, 1.0, 1.0, 1.0, 3.0])
    assert largest_entries(values, 3).tolist() == [False, True, True, False, False, True]
    assert not largest_entries(values, 0).any() and largest_entries(values, 6).all()


def test_saliency_mask_keeps_the_largest_summed_forget_gradients():
    model, batches = _model(), [_forget(2), _forget(3)]
    mask = saliency_mask(model, batches, toy_context(), fraction=0.3)
    model.eval()  # the reference computes saliency in eval mode; independent route: .grad accumulation
    for batch in batches:
        toy_task_loss(model(batch.data), batch.target).backward()
    names = [name for name, _ in model.named_parameters()]
    magnitude = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
    chosen = torch.cat([mask[name].flatten() for name in names])
    assert chosen.dtype == torch.bool and int(chosen.sum()) == round(0.3 * chosen.numel())
    assert float(magnitude[chosen].min()) >= float(magnitude[~chosen].max())
    assert all(mask[n].shape == p.shape for n, p in model.named_parameters())


def test_saliency_mask_leaves_the_model_as_it_found_it():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    saliency_mask(model, [_forget()], toy_context(), fraction=0.5)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_saliency_mask_over_two_ranks_equals_the_mask_over_all_their_batches():
    """The gradient sums are all-reduced signed, before the magnitude and the threshold."""
    model, rank0, rank1 = _model(), [_forget(2)], [_forget(3)]
    sent = {}

    def capture(t):
        sent["rank1"] = t.clone()
        return t

    saliency_mask(model, rank1, toy_context(all_reduce_sum=capture), fraction=0.4)
    assert bool((sent["rank1"] < 0).any()), "magnitudes were reduced instead of signed gradients"
    two_ranks = saliency_mask(model, rank0, toy_context(all_reduce_sum=lambda t: t.add_(sent["rank1"])), fraction=0.4)
    one_process = saliency_mask(model, rank0 + rank1, toy_context(), fraction=0.4)
    alone = saliency_mask(model, rank0, toy_context(), fraction=0.4)
    assert all(torch.equal(two_ranks[n], one_process[n]) for n in one_process)
    assert not all(torch.equal(alone[n], one_process[n]) for n in one_process), "test cannot tell them apart"


def _train(strategy, model, ctx, steps: int = 4):
    retain, forget = toy_batch(1, ("r1", "r2")), _forget()
    strategy.prepare(model, ctx)
    guard = ParameterGuard(model, strategy.update_mask())
    optimizer = torch.optim.SGD(trainable_parameters(model, strategy), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for _ in range(steps):
        unlearning_step(model, strategy, optimizer, retain, forget, ctx, guard)


def test_salun_changes_only_the_salient_weights():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    strategy = SalUn(mask_batches=2)
    _train(strategy, model, toy_context())
    mask = strategy.update_mask()
    total = sum(m.numel() for m in mask.values())
    assert abs(sum(int(m.sum()) for m in mask.values()) / total - 0.5) < 1e-3
    for name, param in model.named_parameters():
        assert torch.equal(param[~mask[name]], before[name][~mask[name]]), name
    changed = sum(int((p != before[n]).sum()) for n, p in model.named_parameters())
    assert changed > 0.9 * sum(int(m.sum()) for m in mask.values())
    assert strategy.hyperparameters() == {"forget_weight": 1.0, "fraction": 0.5, "mask_batches": 2}


def test_salun_cra_never_targets_a_healthy_label_on_critical_voxels():
    forget, ctx = _forget(), toy_context(critical_classes=CRITICAL)
    for own, new in zip(forget.target, SalUnCRA().forget_target(forget, ctx)):
        critical = critical_voxels(own, CRITICAL)
        assert bool(critical.any()) and torch.equal(new[critical], own[critical])
        healthy_fg = ~critical & (own != 0)
        assert bool((new[healthy_fg] != own[healthy_fg]).all()), "non-critical voxels are relabelled as SalUn"


def test_salun_cra_pushes_critical_voxels_only_toward_uncertainty():
    forget, ctx = _forget(), toy_context(critical_classes=CRITICAL)
    outputs = [o.detach().requires_grad_() for o in as_list(_model()(forget.data))]
    strategy = SalUnCRA(entropy_weight=1.0)
    grads = torch.autograd.grad(strategy.forget_loss(outputs, forget, ctx), outputs)
    critical = [critical_voxels(t, CRITICAL) for t in forget.target]
    assert torch.equal(grads[1] * critical[1], torch.zeros_like(grads[1])), "task term reaches critical voxels"
    entropy_only = torch.autograd.grad(-mean_entropy(outputs[0], critical[0]), outputs[0])[0]
    assert torch.allclose(grads[0] * critical[0], entropy_only, atol=1e-7)
    step = outputs[0].detach() - 10.0 * grads[0]
    assert mean_entropy(step, critical[0]) > mean_entropy(outputs[0].detach(), critical[0])


def test_salun_cra_training_raises_entropy_on_critical_forget_voxels_of_a_trained_model():
    model, ctx = _model(), toy_context(critical_classes=CRITICAL)
    fit = torch.optim.Adam(model.parameters(), lr=3e-2)
    for batch in islice(ctx.retain_batches(), 40):
        unlearning_step(model, FineTune(), fit, batch, None, ctx)
    forget = _forget()
    critical = critical_voxels(forget.target[0], CRITICAL)

    def entropy() -> float:
        with torch.no_grad():
            return float(mean_entropy(as_list(model(forget.data))[0], critical))

    before = entropy()
    assert before < 0.7 * math.log(NUM_CLASSES), "the model should be confident before unlearning"
    _train(SalUnCRA(mask_batches=1), model, ctx, steps=6)
    assert entropy() > before + 0.1
