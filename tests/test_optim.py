"""grouped_sgd: nnU-Net's SGD in torch's fused implementation, the same update as the for-loop one."""

from __future__ import annotations

import torch

from nnunet_unlearning.optim import grouped_sgd


def _trained(fused: bool | None) -> list[torch.Tensor]:
    """Two parameter groups (1 × and 0.1 ×) after 30 steps of the same random gradients."""
    generator = torch.Generator().manual_seed(0)
    named = [
        ("decoder.conv.weight", torch.nn.Parameter(torch.randn(8, 4, 3, 3, 3, generator=generator))),
        ("encoder.conv.weight", torch.nn.Parameter(torch.randn(8, 4, 3, 3, 3, generator=generator))),
        ("encoder.norm.bias", torch.nn.Parameter(torch.randn(8, generator=generator))),
    ]
    optimizer, scheduler = grouped_sgd(named, [{"prefix": "encoder.", "lr_scale": 0.1}], 0.03, 3e-5, 3)
    if fused is None:  # torch's for-loop implementation of the same SGD, as nnU-Net builds it
        for group in optimizer.param_groups:
            group["fused"], group["foreach"] = None, False
    for epoch in range(3):
        scheduler.step(epoch)
        for _ in range(10):
            for _, param in named:
                param.grad = torch.randn(param.shape, generator=generator)
            optimizer.step()
    return [param.detach() for _, param in named]


def test_cpu_parameters_get_the_fused_sgd_with_the_for_loop_update():
    named = [("w", torch.nn.Parameter(torch.zeros(2)))]
    optimizer, _ = grouped_sgd(named, [], 0.01, 3e-5, 1)
    assert optimizer.param_groups[0]["fused"] is True
    assert optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["momentum"] == 0.99
    for fused, loop in zip(_trained(True), _trained(None), strict=True):
        torch.testing.assert_close(fused, loop, rtol=1e-6, atol=1e-7)
    # the update did something: the same start, 30 steps later, differs from the start
    assert not torch.equal(_trained(True)[0], torch.randn(8, 4, 3, 3, 3, generator=torch.Generator().manual_seed(0)))
