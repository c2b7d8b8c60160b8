"""What the speed options and the cost counter need from every registered pool.

``channels_last=auto`` turns NHWC on under autocast, so every layer must accept an NHWC input
(a ``.view`` on it fails; use ``.reshape`` or ``.flatten``) and give the same result; and
``model_cost`` must run through every layer and attribute it (a layer that only selects values,
such as ``center``, legitimately costs 0 FLOPs).
"""

from __future__ import annotations

import pytest
import torch

from poolbench.measure.cost import model_cost
from poolbench.pooling import create_pool, list_pools, takes_stages


def make(name: str, channels: int) -> torch.nn.Module:
    params = {}
    if takes_stages(name):
        params["stage_channels"] = [channels, channels]
    return create_pool(name, channels, **params).eval()


def run(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module([x, x]) if getattr(module, "takes_stages", False) else module(x)


@pytest.mark.parametrize("name", list_pools())
def test_channels_last_input_gives_the_same_output(name: str) -> None:
    torch.manual_seed(0)
    module = make(name, 4)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.manual_seed(1)
        ref = run(module, x)
        torch.manual_seed(1)
        out = run(
            module.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
        )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def random_in_training(module: torch.nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        torch.manual_seed(1)
        a = run(module, x)
        torch.manual_seed(2)
        return not torch.equal(a, run(module, x))


@pytest.mark.parametrize("name", list_pools())
@pytest.mark.parametrize("grad_format", ["same", "other"])
def test_channels_last_training_step_gives_the_same_gradients(name: str, grad_format: str):
    """Training under channels_last=auto runs backward with NHWC tensors, and the gradient that
    arrives from the next layer may be in either memory format: custom backward passes must not
    assume NCHW strides (a ``.view`` there fails only in training)."""
    grads = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        other = (
            torch.channels_last
            if memory_format is torch.contiguous_format
            else torch.contiguous_format
        )
        torch.manual_seed(0)
        module = make(name, 4).train().to(memory_format=memory_format)
        x = (torch.randn(2, 4, 8, 8) * 3).to(memory_format=memory_format).requires_grad_()
        torch.manual_seed(1)
        out = run(module, x)
        g = torch.ones_like(out)
        if out.dim() == 4:
            g = g.contiguous(memory_format=memory_format if grad_format == "same" else other)
        out.backward(g)
        assert torch.isfinite(x.grad).all()
        grads.append(x.grad.contiguous())
    if not random_in_training(make(name, 4).train(), torch.randn(2, 4, 8, 8)):
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)


class Holder(torch.nn.Module):
    """Feeds a multi-stage head the list it expects."""

    def __init__(self, pool: torch.nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run(self.pool, x)


@pytest.mark.parametrize("name", list_pools())
def test_cost_counter_attributes_every_pool(name: str) -> None:
    holder = Holder(make(name, 4))
    with torch.no_grad():
        out = holder.eval()(torch.randn(1, 4, 8, 8))
    cost = model_cost(holder, (4, 8, 8))
    (layer,) = cost.layers
    assert layer.output_shape == tuple(out.shape[1:])
    assert cost.activations == out[0].numel()
    assert isinstance(cost.pool_flops, int) and cost.pool_flops >= 0
