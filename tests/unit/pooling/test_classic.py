"""The classic local pools of classic.py (min, overlap, median, center, maxavg, none; max's
switches) against float64 loop references, and gradchecks of every custom window layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F_

from poolbench.core.errors import ConfigError
from poolbench.pooling import create_pool, pooled_size
from poolbench.pooling.antialias import blur_pool2d
from poolbench.pooling.classic import center_pool2d, median_pool2d
from poolbench.pooling.power import lp_pool2d
from poolbench.pooling.softpool import soft_pool2d
from tests.helpers.references import GRAD_CASES, REDUCERS, WINDOWS, sample, window_reference

SHAPES = [(2, 3, 7, 9), (1, 2, 8, 8), (2, 2, 11, 6)]


@pytest.mark.parametrize("name", sorted(REDUCERS))
@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), WINDOWS)
def test_window_layers_match_loop_reference(name, F, S, P, ceil_mode):
    for k, shape in enumerate(SHAPES):
        x = sample(shape, seed=k)
        module = create_pool(name, shape[1], F=F, S=S, padding=P, ceil_mode=ceil_mode).double()
        expected = window_reference(x, F, S, P, ceil_mode, REDUCERS[name])
        torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), WINDOWS)
def test_center_is_the_element_at_offset_F_div_2(F, S, P, ceil_mode):
    x = sample((2, 3, 7, 9))
    n, c, h, w = x.shape
    oh, ow = pooled_size(h, F, S, P, ceil_mode), pooled_size(w, F, S, P, ceil_mode)
    expected = torch.zeros(n, c, oh, ow, dtype=torch.float64)  # centres in padding read 0
    for i in range(oh):
        for j in range(ow):
            r, q = i * S - P + F // 2, j * S - P + F // 2
            if 0 <= r < h and 0 <= q < w:
                expected[:, :, i, j] = x[:, :, r, q]
    module = create_pool("center", 3, F=F, S=S, padding=P, ceil_mode=ceil_mode)
    torch.testing.assert_close(module(x), expected, rtol=0, atol=0)


def test_center_even_window_takes_lower_right_of_the_middle():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(center_pool2d(x, 2, 2), x[:, :, 1::2, 1::2])
    assert center_pool2d(torch.arange(16.0).view(1, 1, 4, 4), 4, 4).item() == 10.0


def test_median_of_an_even_window_is_the_lower_middle_value():
    x = torch.tensor([[[[4.0, 1.0], [3.0, 2.0]]]])
    assert median_pool2d(x, 2, 2).item() == 2.0


def test_median_2x2_closed_form_matches_sorting_on_odd_maps_and_ties():
    g = torch.Generator().manual_seed(6)
    # small integers: many ties inside windows; 7x5 leaves a row and a column uncovered
    x = torch.randint(0, 3, (2, 3, 7, 5), generator=g).double().requires_grad_()
    out = median_pool2d(x, 2, 2)
    expected = x.detach()[:, :, :6, :4].unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)
    torch.testing.assert_close(out, expected.median(-1).values, rtol=0, atol=0)
    out.backward(torch.ones_like(out))
    grad = x.grad
    assert torch.equal(grad[:, :, 6], torch.zeros_like(grad[:, :, 6]))
    assert torch.equal(grad[:, :, :, 4], torch.zeros_like(grad[:, :, :, 4]))
    per_window = grad[:, :, :6, :4].unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)
    # exactly one input per window takes the gradient, and it holds the median's value
    assert torch.equal((per_window != 0).sum(-1), torch.ones_like(out, dtype=torch.long))
    picked = (per_window != 0).double().argmax(-1, keepdim=True)
    torch.testing.assert_close(expected.gather(-1, picked).squeeze(-1), out.detach())


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_maxavg_weighting(alpha):
    x = sample((2, 3, 8, 8))
    out = create_pool("maxavg", 3, alpha=alpha).double()(x)
    expected = alpha * F_.max_pool2d(x, 2, 2) + (1 - alpha) * F_.avg_pool2d(x, 2, 2)
    torch.testing.assert_close(out, expected)
    module = create_pool("maxavg", 3, alpha=alpha).double()
    small = x[:1, :2, :6, :4].clone().requires_grad_()  # whole blocks: the fused backward
    assert torch.autograd.gradcheck(module, (small,))
    with pytest.raises(ConfigError, match="alpha"):
        create_pool("maxavg", 3, alpha=1.5)


def test_none_is_identity_with_input_sized_output():
    module = create_pool("none", 3)
    x = sample((2, 3, 5, 7))
    assert module(x) is x
    assert module.output_size(5, 7) == (5, 7)
    assert not list(module.parameters())


@pytest.mark.parametrize("name", ["max", "overlap"])
def test_max_keeps_switches_for_unpooling(name):
    x = sample((2, 3, 9, 9)).float()
    module = create_pool(name, 3, return_indices=True)
    y = module(x)
    restored = module.unpool(y, output_size=x.shape[-2:])
    # the switches index each window's maximum, and unpooling puts y back exactly there
    at_switches = restored.flatten(2).gather(2, module.switches.flatten(2)).view_as(y)
    assert torch.equal(at_switches, y)
    assert torch.equal(x.flatten(2).gather(2, module.switches.flatten(2)).view_as(y), y)
    assert (restored != 0).sum() <= y.numel()


# -- gradients of the custom window layers ------------------------------------------------


@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), GRAD_CASES)
def test_gradcheck_custom_layers(F, S, P, ceil_mode):
    x = (
        torch.randn(1, 2, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        .mul(2)
        .requires_grad_()
    )
    cases = {
        "softpool": lambda t: soft_pool2d(t, F, S, P, ceil_mode),
        "softpool_large": lambda t: soft_pool2d(t * 60 + 300, F, S, P, ceil_mode),
        "lp2": lambda t: lp_pool2d(t, 2.0, F, S, P, ceil_mode),
        "lp3": lambda t: lp_pool2d(t, 3.0, F, S, P, ceil_mode),
        "median": lambda t: median_pool2d(t, F, S, P, ceil_mode),
        "center": lambda t: center_pool2d(t, F, S, P, ceil_mode),
        "blur": lambda t: blur_pool2d(t, F, S, P, ceil_mode),
        "min": lambda t: create_pool("min", 3, F=F, S=S, padding=P, ceil_mode=ceil_mode)(t),
        "maxavg": lambda t: create_pool("maxavg", 3, F=F, S=S, padding=P, ceil_mode=ceil_mode)(t),
    }
    for name, fn in cases.items():
        assert torch.autograd.gradcheck(fn, (x,)), name
