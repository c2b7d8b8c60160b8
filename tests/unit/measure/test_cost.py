"""FLOP counts against hand counts (convention in poolbench/measure/cost.py)."""

from __future__ import annotations

import torch
from torch import nn

from poolbench.core.config import PoolSpec
from poolbench.measure.cost import model_cost
from poolbench.models.registry import create_model
from poolbench.pooling import create_pool
from poolbench.pooling.base import LocalPool
from tests.helpers import loads_dynamo


def test_max_pool_counts_comparisons() -> None:
    # 8 channels, 16x16 -> 8x8 outputs; each 2x2 window: 3 comparisons.
    cost = model_cost(create_pool("max", 8, F=2, S=2), (8, 16, 16))
    assert cost.pool_flops == 8 * 8 * 8 * 3
    assert cost.flops == cost.pool_flops and cost.macs == 0
    assert cost.activations == 8 * 8 * 8


def test_overlapping_max_pool() -> None:
    # F=3, S=2 on 15x15: (15-3)//2+1 = 7 -> 7x7 outputs, 8 comparisons each.
    cost = model_cost(create_pool("max", 4, F=3, S=2), (4, 15, 15))
    assert cost.pool_flops == 4 * 7 * 7 * 8


def test_avg_pool_counts_adds_and_division() -> None:
    cost = model_cost(create_pool("avg", 8, F=2, S=2), (8, 16, 16))
    assert cost.pool_flops == 8 * 8 * 8 * 4  # 3 adds + 1 division per output


def test_global_avg_counts_every_input() -> None:
    cost = model_cost(create_pool("global_avg", 8), (8, 4, 4))
    assert cost.pool_flops == 8 * 4 * 4  # 15 adds + 1 division per channel
    assert cost.activations == 8


class ConvThenPool(nn.Module):
    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = pool
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


def test_model_with_known_conv_and_linear_flops() -> None:
    cost = model_cost(ConvThenPool(create_pool("max", 8)), (1, 16, 16))
    conv_macs = 8 * 16 * 16 * 3 * 3 * 1
    fc_macs = 8 * 8 * 8 * 10
    assert cost.macs == conv_macs + fc_macs
    assert cost.pool_flops == 8 * 8 * 8 * 3
    assert cost.flops == 2 * (conv_macs + fc_macs) + 8 * 8 * 8 * 3  # BN/ReLU not counted
    assert cost.pool_params == 0


class ElementwisePool(LocalPool):
    """exp, then 2x2 average: 1 FLOP per input element + 4 per output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(torch.exp(x), self.F, self.S)


class OverriddenPool(ElementwisePool):
    def flops(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
        return 7


def test_elementwise_ops_inside_a_pool_are_counted() -> None:
    cost = model_cost(ElementwisePool(), (2, 4, 4))
    assert cost.pool_flops == 2 * 4 * 4 + 2 * 2 * 2 * 4


def test_layer_override_replaces_the_count() -> None:
    cost = model_cost(ConvThenPool(OverriddenPool()), (1, 16, 16))
    assert cost.pool_flops == 7
    (layer,) = cost.layers
    assert layer.counted_flops == 8 * 16 * 16 + 8 * 8 * 8 * 4
    assert cost.flops == 2 * cost.macs + 7


def test_vgg_cost_per_stage() -> None:
    model = create_model(
        "vgg", 10, 1, PoolSpec("max", {}), PoolSpec("global_avg", {}), widths=[8, 16, 16]
    )
    cost = model_cost(model, (1, 16, 16))
    convs = 8 * 16 * 16 * 9 * 1 + 16 * 8 * 8 * 9 * 8 + 16 * 4 * 4 * 9 * 16
    assert cost.macs == convs + 16 * 10
    pools = 8 * 8 * 8 * 3 + 16 * 4 * 4 * 3 + 16 * 2 * 2 * 3 + 16 * 2 * 2
    assert cost.pool_flops == pools
    assert cost.activations == 8 * 8 * 8 + 16 * 4 * 4 + 16 * 2 * 2 + 16


def test_counting_does_not_import_dynamo() -> None:
    """torch guards every dispatch mode with torch._dynamo (a second to import) unless the mode
    opts out; the counter does, so a run that compiles nothing never loads it."""
    code = (
        "from poolbench.core.config import PoolSpec\n"
        "from poolbench.measure.cost import model_cost\n"
        "from poolbench.models import create_model\n"
        "m = create_model('vgg', 10, 1, PoolSpec('max'), PoolSpec('global_avg'))\n"
        "assert model_cost(m, (1, 16, 16)).pool_flops > 0\n"
    )
    assert not loads_dynamo(code)
