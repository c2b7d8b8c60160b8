"""Float64 loop references and gradchecks for the stochastic, fractional, learned, detection
and strip pools."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F_

from poolbench.pooling import create_pool
from poolbench.pooling.detection import (
    cascade_corner_pool2d,
    center_cross_pool2d,
    corner_pool2d,
)
from poolbench.pooling.learned import gated_pool2d, lip_pool2d, mixed_pool2d, tree_pool2d
from poolbench.pooling.stochastic import (
    fractional_boundaries,
    fractional_max_pool2d,
    fractional_size,
    stochastic_pool2d,
)
from poolbench.pooling.strip import strip_gate

# (N, C, H, W, F, S): even, odd, F != S, S > F, tiny.
SHAPES = [(2, 3, 8, 8, 2, 2), (1, 2, 9, 7, 3, 2), (2, 2, 7, 10, 2, 3), (1, 1, 5, 5, 3, 1)]


def mixed_values(n, c, h, w, seed=0):
    """Negative, zero and large entries in one tensor (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    x[..., ::3, ::2] = 0.0
    x[..., 1::4, 1::3] *= 1e3
    return x


def windows(x, F, S):
    """Yield (i, j, window (N, C, F, F)) for every output position."""
    h_out = (x.shape[-2] - F) // S + 1
    w_out = (x.shape[-1] - F) // S + 1
    for i in range(h_out):
        for j in range(w_out):
            yield i, j, x[..., i * S : i * S + F, j * S : j * S + F]


def loop_pool(x, F, S, fn):
    """Output[..., i, j] = fn(window (N, C, F*F) flattened), via plain loops."""
    h_out = (x.shape[-2] - F) // S + 1
    w_out = (x.shape[-1] - F) // S + 1
    out = torch.empty(*x.shape[:2], h_out, w_out, dtype=x.dtype)
    for i, j, win in windows(x, F, S):
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                out[n, c, i, j] = fn(win[n, c].reshape(-1), n, c, i, j)
    return out


# --- stochastic -------------------------------------------------------------------------


def stochastic_eval_ref(v, *_):
    w = v.clamp(min=0)
    return (w * v).sum() / w.sum() if w.sum() > 0 else v.mean()


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES)
def test_stochastic_eval_matches_loop(n, c, h, w, F, S):
    x = mixed_values(n, c, h, w)
    x[0, 0, :F, :F] = -1.0  # an all-negative window: the mean
    ref = loop_pool(x, F, S, stochastic_eval_ref)
    torch.testing.assert_close(stochastic_pool2d(x, F, S, training=False), ref)
    positive = x.abs() + 0.5  # every window has mass: the path without the fallback
    ref = loop_pool(positive, F, S, stochastic_eval_ref)
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


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES)
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


def fractional_ref(x, ratio, pseudo_random, overlapping, seed):
    g = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    shrink = 1 if overlapping else 0
    a = fractional_boundaries(h - shrink, fractional_size(h, ratio), pseudo_random, g).tolist()
    b = fractional_boundaries(w - shrink, fractional_size(w, ratio), pseudo_random, g).tolist()
    out = torch.empty(*x.shape[:2], len(a) - 1, len(b) - 1, dtype=x.dtype)
    for i in range(len(a) - 1):
        for j in range(len(b) - 1):
            region = x[..., a[i] : a[i + 1] + shrink, b[j] : b[j + 1] + shrink]
            out[..., i, j] = region.amax(dim=(-2, -1))
    return out


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("pseudo_random", [False, True])
@pytest.mark.parametrize(("h", "w", "ratio"), [(9, 7, 0.7), (16, 11, 0.5), (5, 13, 0.9)])
def test_fractional_matches_loop(h, w, ratio, pseudo_random, overlapping):
    x = mixed_values(2, 3, h, w)
    g = torch.Generator().manual_seed(7)
    out = fractional_max_pool2d(x, ratio, pseudo_random, overlapping, g)
    torch.testing.assert_close(out, fractional_ref(x, ratio, pseudo_random, overlapping, 7))


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


# --- mixed, gated, tree, lip --------------------------------------------------------------


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES)
def test_mixed_and_gated_match_loop(n, c, h, w, F, S):
    x = mixed_values(n, c, h, w)
    a = torch.rand(c, dtype=torch.float64)
    ref = loop_pool(x, F, S, lambda v, _n, ch, *_: a[ch] * v.max() + (1 - a[ch]) * v.mean())
    torch.testing.assert_close(mixed_pool2d(x, a, F, S), ref)
    scalar_ref = loop_pool(x, F, S, lambda v, *_: 0.3 * v.max() + 0.7 * v.mean())
    torch.testing.assert_close(mixed_pool2d(x, torch.tensor(0.3, dtype=x.dtype), F, S), scalar_ref)

    mask = torch.randn(c, F, F, dtype=torch.float64) * 1e-3  # large inputs: keep gates unsaturated

    def gated(v, _n, ch, *_):
        s = torch.sigmoid((mask[ch].reshape(-1) * v).sum())
        return s * v.max() + (1 - s) * v.mean()

    torch.testing.assert_close(gated_pool2d(x, mask, F, S), loop_pool(x, F, S, gated))
    shared = mask[0]
    ref = loop_pool(x, F, S, lambda v, *_: gated(v, 0, 0))
    torch.testing.assert_close(gated_pool2d(x, shared, F, S), ref)


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES[:3])
def test_tree_matches_recursive_loop(n, c, h, w, F, S, levels):
    x = mixed_values(n, c, h, w) * 1e-2
    n_leaves = 2 ** (levels - 1)
    leaves = torch.randn(n_leaves, F, F, dtype=torch.float64)
    gates = torch.randn(n_leaves - 1, F, F, dtype=torch.float64)

    def node(v, k):
        # Heap order: internal nodes 0 .. L-2, then the leaves left to right.
        if k >= n_leaves - 1:
            return (leaves[k - (n_leaves - 1)].reshape(-1) * v).sum()
        s = torch.sigmoid((gates[k].reshape(-1) * v).sum())
        return s * node(v, 2 * k + 1) + (1 - s) * node(v, 2 * k + 2)

    ref = loop_pool(x, F, S, lambda v, *_: node(v, 0))
    torch.testing.assert_close(tree_pool2d(x, leaves, gates, F, S), ref)


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES)
def test_lip_matches_loop(n, c, h, w, F, S):
    x = mixed_values(n, c, h, w)
    logit = torch.rand(n, c, h, w, dtype=torch.float64) * 12

    def ref(v, n_, c_, i, j):
        lg = logit[n_, c_, i * S : i * S + F, j * S : j * S + F].reshape(-1)
        return (torch.exp(lg) * v).sum() / torch.exp(lg).sum()

    torch.testing.assert_close(lip_pool2d(x, logit, F, S), loop_pool(x, F, S, ref))
    huge = torch.full_like(logit, 500.0)  # without the shift exp(500) overflows
    torch.testing.assert_close(lip_pool2d(x, huge, F, S), F_.avg_pool2d(x, F, S))


def test_learned_gradchecks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, generator=g, requires_grad=True)

    def param(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=True)

    a = torch.rand(2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, m: mixed_pool2d(t, m, 3, 2), (x, a))
    assert torch.autograd.gradcheck(lambda t, m: gated_pool2d(t, m, 2, 2), (x, param(2, 2)))
    assert torch.autograd.gradcheck(lambda t, m: gated_pool2d(t, m, 3, 2), (x, param(2, 3, 3)))
    tree_args = (x, param(2, 2, 2), param(1, 2, 2))
    assert torch.autograd.gradcheck(lambda t, v, w: tree_pool2d(t, v, w, 2, 2), tree_args)
    assert torch.autograd.gradcheck(lambda t, lg: lip_pool2d(t, lg, 3, 2), (x, param(1, 2, 7, 6)))


@pytest.mark.parametrize("name", ["mixed", "gated", "tree"])
def test_learned_modules_start_as_documented(name):
    x = torch.randn(2, 3, 8, 8)
    module = create_pool(name, 3, per_channel=True)
    if name == "tree":
        assert module.leaves.shape == (3, 2, 2, 2) and module.gates.shape == (3, 1, 2, 2)
        return
    expected = 0.5 * F_.max_pool2d(x, 2, 2) + 0.5 * F_.avg_pool2d(x, 2, 2)
    torch.testing.assert_close(module(x), expected)


def test_paper_parameter_counts_with_3x3_windows():
    # Lee et al. 2016: 1, 9 and 27 extra parameters for mixed, gated and 2-level tree.
    counts = [
        sum(p.numel() for p in create_pool(name, 16, F=3, S=2).parameters())
        for name in ("mixed", "gated", "tree")
    ]
    assert counts == [1, 9, 27]


# --- corner, cascade_corner, center_cross -------------------------------------------------


def full_corner_maps(x):
    """T (max over k >= i in the column) and L (max over k >= j in the row), by loops."""
    down = torch.empty_like(x)
    right = torch.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        down[..., i, :] = x[..., i:, :].amax(dim=-2)
    for j in range(w):
        right[..., :, j] = x[..., :, j:].amax(dim=-1)
    return down, right


def subsample(full, F, S, offset=0):
    h_out = (full.shape[-2] - F) // S + 1
    w_out = (full.shape[-1] - F) // S + 1
    return full[..., offset::S, offset::S][..., :h_out, :w_out]


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES)
def test_detection_pools_match_full_resolution_loops(n, c, h, w, F, S):
    x = mixed_values(n, c, h, w)
    down, right = full_corner_maps(x)
    torch.testing.assert_close(corner_pool2d(x, F, S), subsample(down + right, F, S))
    down_of = lambda t: full_corner_maps(t)[0]  # noqa: E731
    right_of = lambda t: full_corner_maps(t)[1]  # noqa: E731
    cascade = down_of(x + right) + right_of(x + down)
    torch.testing.assert_close(cascade_corner_pool2d(x, F, S), subsample(cascade, F, S))
    cross = torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            cross[..., i, j] = x[..., i, :].amax(-1) + x[..., :, j].amax(-1)
    expected = subsample(cross, F, S, offset=(F - 1) // 2)
    torch.testing.assert_close(center_cross_pool2d(x, F, S), expected)


def test_detection_gradchecks():
    x = torch.randn(1, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    for fn in (corner_pool2d, cascade_corner_pool2d, center_cross_pool2d):
        for F, S in ((2, 2), (3, 2), (2, 1)):
            assert torch.autograd.gradcheck(lambda t, fn=fn, F=F, S=S: fn(t, F, S), (x,))


@pytest.mark.parametrize(("h", "w", "F", "S"), [(8, 8, 2, 2), (9, 7, 3, 2), (6, 5, 2, 1)])
def test_corner_switch_is_the_first_maximum(h, w, F, S):
    # On a constant map (ties everywhere) both scans pick their first position, the sampled
    # corner (iS, jS) itself, so each output's gradient lands there twice and nowhere else.
    x = torch.zeros(2, 3, h, w, requires_grad=True)
    out = corner_pool2d(x, F, S)
    grad_out = torch.rand(out.shape) + 1
    out.backward(grad_out)
    expected = torch.zeros(2, 3, h, w)
    h_out, w_out = out.shape[-2:]
    expected[..., : (h_out - 1) * S + 1 : S, : (w_out - 1) * S + 1 : S] = 2 * grad_out
    torch.testing.assert_close(x.grad, expected)


# --- strip ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "c", "h", "w"), [(2, 3, 8, 8), (1, 2, 5, 9)])
def test_strip_gate_matches_full_resolution_definition(n, c, h, w):
    x = mixed_values(n, c, h, w)
    g = torch.Generator().manual_seed(1)
    row, col = (torch.randn(c, c, 3, dtype=x.dtype, generator=g) for _ in range(2))
    fuse = torch.randn(c, c, dtype=x.dtype, generator=g)
    bias = torch.randn(c, dtype=x.dtype, generator=g)
    y_h = torch.zeros(n, c, h, dtype=x.dtype)
    y_v = torch.zeros(n, c, w, dtype=x.dtype)
    row_mean = torch.stack([x[..., i, :].mean(-1) for i in range(h)], -1)
    col_mean = torch.stack([x[..., :, j].mean(-1) for j in range(w)], -1)
    for i in range(h):  # 1D convolution with kernel 3, zero padding 1
        for k in range(3):
            if 0 <= i + k - 1 < h:
                y_h[..., i] += torch.einsum("dc,nc->nd", row[:, :, k], row_mean[..., i + k - 1])
    for j in range(w):
        for k in range(3):
            if 0 <= j + k - 1 < w:
                y_v[..., j] += torch.einsum("dc,nc->nd", col[:, :, k], col_mean[..., j + k - 1])
    y = y_h.unsqueeze(3) + y_v.unsqueeze(2)  # y_ij = y^h_i + y^v_j at full resolution
    ref = F_.conv2d(y, fuse.view(c, c, 1, 1), bias)
    torch.testing.assert_close(strip_gate(x, row, col, fuse, bias), ref)

    module = create_pool("strip", c).double()
    with torch.no_grad():
        module.row_conv.copy_(row)
        module.col_conv.copy_(col)
        module.fuse.copy_(fuse)
        module.fuse_bias.copy_(bias)
    expected = F_.max_pool2d(x * torch.sigmoid(ref), 2, 2)
    torch.testing.assert_close(module(x), expected)


def test_strip_gradcheck():
    g = torch.Generator().manual_seed(2)
    args = [
        torch.randn(*s, dtype=torch.float64, generator=g, requires_grad=True)
        for s in ((1, 2, 5, 6), (2, 2, 3), (2, 2, 3), (2, 2), (2,))
    ]
    assert torch.autograd.gradcheck(strip_gate, tuple(args))
