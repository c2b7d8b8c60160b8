"""Stochastic and fractional max pooling (stochastic.py) against float64 loop references, their
sampling frequencies, and gradchecks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F_

from poolbench.pooling import create_pool
from poolbench.pooling.stochastic import (
    fractional_boundaries,
    fractional_max_pool2d,
    fractional_size,
    stochastic_pool2d,
)
from tests.helpers.references import (
    SHAPES_AND_WINDOWS,
    fractional_reference,
    sample,
    stochastic_eval_reference,
    window_reference,
    windows,
)

# --- stochastic -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES_AND_WINDOWS)
def test_stochastic_eval_matches_loop(n, c, h, w, F, S):
    x = sample(n, c, h, w, scale=1.0, outliers="grid")
    x[0, 0, :F, :F] = -1.0  # an all-negative window: the mean
    ref = window_reference(x, F, S, 0, False, stochastic_eval_reference, each=True)
    torch.testing.assert_close(stochastic_pool2d(x, F, S, training=False), ref)
    positive = x.abs() + 0.5  # every window has mass: the path without the fallback
    ref = window_reference(positive, F, S, 0, False, stochastic_eval_reference, each=True)
    torch.testing.assert_close(stochastic_pool2d(positive, F, S, training=False), ref)


@pytest.mark.parametrize(("F", "S"), [(2, 2), (3, 3), (3, 2)])
def test_stochastic_training_frequencies_follow_a_over_sum(F, S):
    torch.manual_seed(0)
    window = torch.tensor([0.5, 1.5, 0.0, 3.0, -2.0, 1.0, 0.25, 2.0, 0.75], dtype=torch.float64)
    window = window[: F * F]
    trials = 20000
    x = window.view(1, 1, F, F).expand(1, trials, F, F).contiguous()
    out = stochastic_pool2d(x, F, S, training=True).flatten()
    probs = window.clamp(min=0) / window.clamp(min=0).sum()
    # Window values are distinct, so each output names the sampled position.
    picked = (out.view(-1, 1) == window.view(1, -1)).double()
    assert torch.equal(picked.sum(1), torch.ones(trials, dtype=torch.float64))
    counts = picked.sum(0)
    assert counts[probs == 0].sum() == 0, "a non-positive entry was sampled"
    expected = probs * trials
    keep = expected > 0
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum().item()
    # 99.9% quantile of chi-square with <= 7 degrees of freedom is < 24.4.
    assert chi2 < 24.4, (counts, expected)


def test_stochastic_all_zero_and_negative_windows_sample_uniformly_without_nan():
    torch.manual_seed(1)
    trials = 12000
    x = torch.zeros(1, trials, 2, 2, requires_grad=True)
    out = stochastic_pool2d(x, 2, 2, training=True)
    out.sum().backward()
    assert torch.isfinite(out).all() and (out == 0).all()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(x.grad.sum(dim=(2, 3)), torch.ones(1, trials))
    counts = x.grad.sum(dim=(0, 1)).flatten()  # which position got each sample
    chi2 = ((counts - trials / 4) ** 2 / (trials / 4)).sum().item()
    assert chi2 < 16.3  # 99.9% quantile, 3 degrees of freedom
    neg = -torch.rand(3, 5, 4, 4) - 0.1
    assert torch.isfinite(stochastic_pool2d(neg, 2, 2, training=True)).all()
    torch.testing.assert_close(
        stochastic_pool2d(neg, 2, 2, training=False), F_.avg_pool2d(neg, 2, 2)
    )
    assert (stochastic_pool2d(torch.zeros(1, 2, 4, 4), 2, 2, training=False) == 0).all()


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES_AND_WINDOWS)
def test_stochastic_training_picks_a_window_member_and_routes_gradient_to_it(n, c, h, w, F, S):
    torch.manual_seed(2)
    x = torch.rand(n, c, h, w, dtype=torch.float64, requires_grad=True)
    out = stochastic_pool2d(x, F, S, training=True)
    for i, j, win in windows(x.detach(), F, S):
        member = (win.flatten(2) == out[..., i, j].detach().unsqueeze(-1)).any(-1)
        assert member.all()
    out.sum().backward()
    h_out, w_out = out.shape[-2:]
    assert x.grad.sum().item() == pytest.approx(n * c * h_out * w_out)


def test_stochastic_large_activations_stay_finite():
    x = torch.rand(2, 3, 6, 6) * 1e6
    for training in (True, False):
        assert torch.isfinite(stochastic_pool2d(x, 2, 2, training=training)).all()


def test_stochastic_gradcheck():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: stochastic_pool2d(t, 3, 2, training=False), (x,))

    def sampled(t):
        torch.manual_seed(3)  # the same sample on every call gradcheck makes
        return stochastic_pool2d(t, 2, 2, training=True)

    assert torch.autograd.gradcheck(sampled, (x,))


# --- fractional -------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 0.6, 1 / math.sqrt(2), 0.9])
@pytest.mark.parametrize("size", [1, 2, 5, 8, 9, 32])
@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("pseudo_random", [False, True])
def test_fractional_sizes_and_regions_cover_the_input(ratio, size, overlapping, pseudo_random):
    n_out = fractional_size(size, ratio)
    assert n_out == max(1, math.ceil(round(size * ratio, 9)))
    assert size / n_out <= 2 + 1e-12
    length = size - 1 if overlapping else size
    g = torch.Generator().manual_seed(size)
    for _ in range(5):
        a = fractional_boundaries(length, n_out, pseudo_random, g)
        assert a[0] == 0 and a[-1] == length and len(a) == n_out + 1
        steps = set(a.diff().tolist())
        assert steps <= {length // n_out, -(-length // n_out)}
        covered = torch.zeros(size, dtype=torch.long)
        for lo, hi in zip(a[:-1].tolist(), a[1:].tolist(), strict=True):
            hi = hi if overlapping else hi - 1
            covered[lo : hi + 1] += 1
        assert (covered >= 1).all()
        if not overlapping:
            assert (covered == 1).all()
        elif length >= n_out:  # increments >= 1: neighbours share one row at most
            assert (covered <= 2).all()
    module = create_pool("fractional", 3, ratio=ratio, overlapping=overlapping)
    out = module(torch.randn(2, 3, size, size + 3))
    assert tuple(out.shape[-2:]) == module.output_size(size, size + 3)


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("pseudo_random", [False, True])
@pytest.mark.parametrize(("h", "w", "ratio"), [(9, 7, 0.7), (16, 11, 0.5), (5, 13, 0.9)])
def test_fractional_matches_loop(h, w, ratio, pseudo_random, overlapping):
    x = sample(2, 3, h, w, scale=1.0, outliers="grid")
    g = torch.Generator().manual_seed(7)
    out = fractional_max_pool2d(x, ratio, pseudo_random, overlapping, g)
    torch.testing.assert_close(out, fractional_reference(x, ratio, pseudo_random, overlapping, 7))


def test_fractional_eval_is_fixed_and_training_varies():
    module = create_pool("fractional", 2, pseudo_random=False)
    x = torch.randn(1, 2, 32, 32)
    torch.manual_seed(0)
    outs = {module(x).sum().item() for _ in range(6)}
    assert len(outs) > 1, "training draws no new regions"
    module.eval()
    first = module(x)
    torch.manual_seed(5)
    assert torch.equal(first, module(x))


def test_fractional_default_ratio_is_the_nearest_float_to_one_over_sqrt_2():
    from poolbench.pooling import pool_entry

    (ratio,) = [p.default for p in pool_entry("fractional").params if p.name == "ratio"]
    assert ratio == 2**-0.5 == 0.7071067811865476  # 1 / math.sqrt(2) rounds to ...475
    assert create_pool("fractional", 2).ratio == ratio


def test_fractional_rejects_bad_ratio():
    from poolbench.core.errors import ConfigError

    for bad in (0.4, 1.0, 0, "a"):
        with pytest.raises(ConfigError, match="ratio"):
            create_pool("fractional", 2, ratio=bad)


def test_fractional_gradcheck():
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    for overlapping in (False, True):

        def fn(t, overlapping=overlapping):
            g = torch.Generator().manual_seed(0)
            return fractional_max_pool2d(t, 0.7, True, overlapping, g)

        assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("overlapping", [False, True])
def test_fractional_switch_is_the_first_maximum_of_each_region(overlapping):
    # On ties (a constant input, as after a ReLU) each region sends its whole gradient to one
    # position, its first row and column, like max pooling's switches; nothing is split.
    x = torch.zeros(2, 3, 13, 11, requires_grad=True)
    g = torch.Generator().manual_seed(3)
    out = fractional_max_pool2d(x, 0.6, True, overlapping, g)
    grad_out = torch.rand(out.shape) + 1
    out.backward(grad_out)
    g = torch.Generator().manual_seed(3)
    shrink = 1 if overlapping else 0
    a = fractional_boundaries(13 - shrink, out.shape[2], True, g)
    b = fractional_boundaries(11 - shrink, out.shape[3], True, g)
    expected = torch.zeros(2, 3, 13, 11)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            expected[..., a[i], b[j]] += grad_out[..., i, j]
    torch.testing.assert_close(x.grad, expected)
