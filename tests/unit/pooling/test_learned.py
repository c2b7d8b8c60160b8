"""The learned pools of learned.py (mixed, gated, tree, lip) against float64 loop references,
with gradchecks, unbounded logits, and their documented starting point."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F_
from torch import nn
from torch.autograd import gradcheck

from poolbench.pooling import create_pool
from poolbench.pooling.learned import gated_pool2d, lip_pool2d, mixed_pool2d, tree_pool2d
from tests.helpers.references import SHAPES_AND_WINDOWS, sample, window_reference, windows


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES_AND_WINDOWS)
def test_mixed_and_gated_match_loop(n, c, h, w, F, S):
    x = sample(n, c, h, w, scale=1.0, outliers="grid")
    a = torch.rand(c, dtype=torch.float64)
    ref = window_reference(
        x, F, S, 0, False, lambda v, _n, ch, *_: a[ch] * v.max() + (1 - a[ch]) * v.mean(), each=True
    )
    torch.testing.assert_close(mixed_pool2d(x, a, F, S), ref)
    scalar_ref = window_reference(
        x, F, S, 0, False, lambda v, *_: 0.3 * v.max() + 0.7 * v.mean(), each=True
    )
    torch.testing.assert_close(mixed_pool2d(x, torch.tensor(0.3, dtype=x.dtype), F, S), scalar_ref)

    mask = torch.randn(c, F, F, dtype=torch.float64) * 1e-3  # large inputs: keep gates unsaturated

    def gated(v, _n, ch, *_):
        s = torch.sigmoid((mask[ch].reshape(-1) * v).sum())
        return s * v.max() + (1 - s) * v.mean()

    torch.testing.assert_close(
        gated_pool2d(x, mask, F, S), window_reference(x, F, S, 0, False, gated, each=True)
    )
    shared = mask[0]
    ref = window_reference(x, F, S, 0, False, lambda v, *_: gated(v, 0, 0), each=True)
    torch.testing.assert_close(gated_pool2d(x, shared, F, S), ref)


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES_AND_WINDOWS[:3])
def test_tree_matches_recursive_loop(n, c, h, w, F, S, levels):
    x = sample(n, c, h, w, scale=1.0, outliers="grid") * 1e-2
    n_leaves = 2 ** (levels - 1)
    leaves = torch.randn(n_leaves, F, F, dtype=torch.float64)
    gates = torch.randn(n_leaves - 1, F, F, dtype=torch.float64)

    def node(v, k):
        # Heap order: internal nodes 0 .. L-2, then the leaves left to right.
        if k >= n_leaves - 1:
            return (leaves[k - (n_leaves - 1)].reshape(-1) * v).sum()
        s = torch.sigmoid((gates[k].reshape(-1) * v).sum())
        return s * node(v, 2 * k + 1) + (1 - s) * node(v, 2 * k + 2)

    ref = window_reference(x, F, S, 0, False, lambda v, *_: node(v, 0), each=True)
    torch.testing.assert_close(tree_pool2d(x, leaves, gates, F, S), ref)


def test_tree_pool_feeds_a_bf16_convolution():
    model = nn.Sequential(create_pool("tree", 3), nn.Conv2d(3, 3, 1)).bfloat16()
    out = model(torch.randn(2, 3, 8, 8).bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 4, 4)


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES_AND_WINDOWS)
def test_lip_matches_loop(n, c, h, w, F, S):
    x = sample(n, c, h, w, scale=1.0, outliers="grid")
    logit = torch.rand(n, c, h, w, dtype=torch.float64) * 12

    def ref(v, n_, c_, i, j):
        lg = logit[n_, c_, i * S : i * S + F, j * S : j * S + F].reshape(-1)
        return (torch.exp(lg) * v).sum() / torch.exp(lg).sum()

    torch.testing.assert_close(
        lip_pool2d(x, logit, F, S), window_reference(x, F, S, 0, False, ref, each=True)
    )
    huge = torch.full_like(logit, 500.0)  # without the shift exp(500) overflows
    torch.testing.assert_close(lip_pool2d(x, huge, F, S), F_.avg_pool2d(x, F, S))


@pytest.mark.parametrize(("F", "S"), [(2, 2), (3, 2), (2, 1), (3, 3)])
def test_lip_pool2d_is_safe_for_logits_spread_by_1000(F, S):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 8, 7, generator=g)
    logit = torch.randn(2, 3, 8, 7, generator=g) * 5
    logit[:, :, :4] -= 1000.0  # the top half lies 1000 below the bottom half
    x.requires_grad_()
    logit.requires_grad_()
    out = lip_pool2d(x, logit, F, S)
    assert torch.isfinite(out).all()

    def softmax_mean(values, logits):
        return (torch.softmax(logits, -1) * values).sum(-1)

    xd, ld = x.detach().double(), logit.detach().double()
    expected = torch.empty(out.shape, dtype=torch.float64)
    win_l = dict(((i, j), v) for i, j, v in windows(ld, F, S))
    for i, j, v in windows(xd, F, S):
        expected[:, :, i, j] = softmax_mean(v, win_l[i, j])
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(logit.grad).all()
    x64 = xd[:1, :2, :5, :5].clone().requires_grad_()
    l64 = ld[:1, :2, :5, :5] * torch.tensor([1.0, 200.0], dtype=torch.float64).view(1, 2, 1, 1)
    assert gradcheck(lambda a, b: lip_pool2d(a, b, F, S), (x64, l64.requires_grad_()))


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
