"""Numerical traps of the power-mean, importance and learned pools, each against a float64
reference: zero inputs with p < 1, powers that under- or overflow float32, unbounded logits,
and the dtype every layer hands back."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from poolbench.pooling import create_pool, list_pools, pooled_size, takes_stages
from poolbench.pooling.base import GEM_P_RANGE
from poolbench.pooling.global_ import global_gem, global_lp
from poolbench.pooling.learned import lip_pool2d
from poolbench.pooling.power import gem_pool2d, lp_pool2d


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def windows_of(x: torch.Tensor, F: int, S: int, P: int = 0, ceil_mode: bool = False):
    """Yield (i, j, values (N, C, k)) of each window's real (unpadded) inputs."""
    h, w = x.shape[-2:]
    for i in range(pooled_size(h, F, S, P, ceil_mode)):
        for j in range(pooled_size(w, F, S, P, ceil_mode)):
            rows = [r for r in range(i * S - P, i * S - P + F) if 0 <= r < h]
            cols = [q for q in range(j * S - P, j * S - P + F) if 0 <= q < w]
            yield i, j, x[:, :, rows][:, :, :, cols].flatten(2)


def reference(x, F, S, P, ceil_mode, reduce):
    """``reduce`` of every window, differentiable (float64 autograd through a Python loop)."""
    h, w = x.shape[-2:]
    oh, ow = pooled_size(h, F, S, P, ceil_mode), pooled_size(w, F, S, P, ceil_mode)
    rows = [[None] * ow for _ in range(oh)]
    for i, j, values in windows_of(x, F, S, P, ceil_mode):
        rows[i][j] = reduce(values)
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def lp_reference(p):
    """(sum |x|^p)^(1/p) in float64 with the subgradient 0 at x = 0 (``where`` selects it)."""

    def reduce(v):
        nonzero = v != 0
        safe = torch.where(nonzero, v, torch.ones_like(v))
        powered = torch.where(nonzero, safe.abs().pow(p), torch.zeros_like(v))
        return powered.sum(-1).pow(1 / p)

    return reduce


def gem_reference(p, eps):
    return lambda v: v.clamp_min(eps).pow(p).mean(-1).pow(1 / p)


# -- 1. lp with p < 1 at exact zeros ---------------------------------------------------------


def test_lp_below_one_has_the_zero_subgradient_at_zero_off_the_block_path():
    x = torch.arange(9.0).view(1, 1, 3, 3).requires_grad_()
    create_pool("lp", 1, F=2, S=1, p=0.5)(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0, 0, 0, 0] == 0


@pytest.mark.parametrize("p", [0.5, 0.8])
@pytest.mark.parametrize(
    ("F", "S", "P", "ceil_mode"),
    [(2, 2, 0, False), (2, 1, 0, False), (3, 2, 1, False), (2, 2, 0, True)],
)
def test_lp_below_one_gradients_match_the_float64_reference_on_both_paths(p, F, S, P, ceil_mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    x[x.abs() < 0.4] = 0.0  # exact zeros in most windows
    leaf = x.clone().requires_grad_()
    out = lp_pool2d(leaf, p, F, S, P, ceil_mode)
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(out, leaf, weights)
    ref_leaf = x.clone().requires_grad_()
    expected = reference(ref_leaf, F, S, P, ceil_mode, lp_reference(p))
    (expected_grad,) = torch.autograd.grad(expected, ref_leaf, weights)
    torch.testing.assert_close(out, expected.detach())
    torch.testing.assert_close(grad, expected_grad)
    assert torch.equal(grad[x == 0], torch.zeros_like(grad[x == 0]))


# -- 4. lp and global_lp at large p: overflow and underflow ----------------------------------


@pytest.mark.parametrize(
    ("F", "S", "P", "ceil_mode"), [(2, 2, 0, False), (2, 1, 0, False), (3, 2, 1, True)]
)
@pytest.mark.parametrize("level", [300.0, 1e-3])
def test_lp_at_large_p_neither_overflows_nor_underflows(F, S, P, ceil_mode, level):
    x = torch.full((1, 2, 4, 4), level).requires_grad_()
    out = lp_pool2d(x, 16.0, F, S, P, ceil_mode)
    counts = reference(
        torch.ones(1, 1, 4, 4, dtype=torch.float64), F, S, P, ceil_mode, lambda v: v.sum(-1)
    )
    expected = (counts ** (1 / 16) * level).expand(1, 2, -1, -1)
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=0)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad > 0).all()


def test_lp_at_large_p_on_a_2x2_window_of_300s_is_327():
    out = create_pool("lp", 1, p=16.0)(torch.full((1, 1, 2, 2), 300.0))
    assert out.item() == pytest.approx(4 ** (1 / 16) * 300, rel=1e-6)  # 327.2
    tiny = create_pool("lp", 1, p=16.0)(torch.full((1, 1, 2, 2), 1e-3))
    assert tiny.item() == pytest.approx(4 ** (1 / 16) * 1e-3, rel=1e-6)


@pytest.mark.parametrize("p", [2.0, 1.5])
def test_lp_at_p_up_to_two_stays_exact_past_float32s_square_range(p):
    # 1e20^2 overflows float32; the sums are checked and such calls take the scaled form
    for F, S in ((2, 2), (3, 2)):
        x = torch.full((1, 1, 6, 6), 1e20).requires_grad_()
        out = lp_pool2d(x, p, F, S)
        torch.testing.assert_close(out, torch.full_like(out, (F * F) ** (1 / p) * 1e20))
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
        # and the scaled fallback's gradients, in float64 past its own range (1e200^2 = inf)
        y = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(F))
        y[0, 0, :2, :2] = 0.0
        assert gradcheck(
            lambda t, F=F, S=S: lp_pool2d(t * 1e200, p, F, S) / 1e200, (y.requires_grad_(),)
        )
        expected = reference(y.detach(), F, S, 0, False, lp_reference(p))
        torch.testing.assert_close(lp_pool2d(y.detach() * 1e200, p, F, S) / 1e200, expected)
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    assert gradcheck(lambda t: global_lp(t * 1e200, max(p, 1.0)) / 1e200, (z.requires_grad_(),))


@pytest.mark.parametrize("p", [16.0, 40.0])
def test_lp_large_p_matches_float64_reference_and_gradcheck(p):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 6, 5, generator=g, dtype=torch.float64) * 3
    for F, S, P, ceil_mode in ((2, 2, 0, False), (3, 2, 1, False), (2, 2, 0, True)):
        out = lp_pool2d(x, p, F, S, P, ceil_mode)
        expected = reference(x, F, S, P, ceil_mode, lp_reference(p))
        torch.testing.assert_close(out, expected)
        low = lp_pool2d(x.float() * 1e-3, p, F, S, P, ceil_mode)  # unscaled: 0 in float32
        torch.testing.assert_close(low.double(), expected * 1e-3, rtol=1e-5, atol=0)
        leaf = x.clone().requires_grad_()
        args = (p, F, S, P, ceil_mode)
        assert gradcheck(lambda t, args=args: lp_pool2d(t, *args), (leaf,))


@pytest.mark.parametrize("level", [300.0, 1e-3])
def test_global_lp_at_large_p_neither_overflows_nor_underflows(level):
    x = torch.full((2, 3, 2, 2), level).requires_grad_()
    out = global_lp(x, 16.0)
    torch.testing.assert_close(out, torch.full((2, 3), 4 ** (1 / 16) * level))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    g = torch.Generator().manual_seed(2)
    y = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64).requires_grad_()
    assert gradcheck(lambda t: global_lp(t, 16.0), (y,))
    ref = y.detach().abs().pow(16).sum((2, 3)).pow(1 / 16)
    torch.testing.assert_close(
        global_lp(y.detach().float() * level, 16.0).double(), ref * level, rtol=1e-5, atol=0
    )


# -- 2. GeM: windows at eps and large p ------------------------------------------------------


@pytest.mark.parametrize("name", ["gem", "global_gem"])
@pytest.mark.parametrize("p", [8.0, 30.0])
def test_gem_on_windows_at_eps_gives_eps_with_finite_gradients(name, p):
    module = create_pool(name, 1, p=p)
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    out = module(x)
    torch.testing.assert_close(out, torch.full_like(out, module.eps), rtol=1e-6, atol=0)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(module.p.grad).all()
    assert module.p.grad == 0  # every value equals eps: the mean of any power is eps


@pytest.mark.parametrize("p", [8.0, 20.0])
@pytest.mark.parametrize(
    ("F", "S", "P", "ceil_mode"), [(2, 2, 0, False), (3, 2, 1, False), (2, 2, 0, True)]
)
def test_gem_float32_at_large_p_matches_float64_reference_with_dp(p, F, S, P, ceil_mode):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 7, 6, generator=g, dtype=torch.float64) * 1e-3  # (1e-3)^8 underflows
    x[0, 0, :3, :3] = 0.0  # windows at eps
    weights = None
    grads = []
    for dtype in (torch.float32, torch.float64):
        leaf = x.to(dtype).requires_grad_()
        q = torch.tensor(p, dtype=dtype, requires_grad=True)
        if dtype == torch.float32:
            out = gem_pool2d(leaf, q, F, S, P, ceil_mode)
        else:
            out = reference(leaf, F, S, P, ceil_mode, gem_reference(q, 1e-6))
        if weights is None:
            weights = torch.rand(out.shape, generator=g, dtype=torch.float64) + 0.5
        grads.append((out, *torch.autograd.grad(out, (leaf, q), weights.to(dtype))))
    for ours, ref in zip(grads[0], grads[1], strict=True):
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours.double(), ref.double(), rtol=2e-4, atol=1e-12)


@pytest.mark.parametrize("p", [2.7, 9.0, 31.0])
@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), [(2, 2, 0, False), (3, 2, 1, False)])
@pytest.mark.parametrize("level", [1.0, 1e60])
def test_gem_backward_gradcheck_and_matches_autograd_of_the_reference(p, F, S, P, ceil_mode, level):
    # GeM is homogeneous, gem(level * x, eps * level) = level * gem(x, eps): at level 1e60 the
    # unscaled means overflow float64's check and the scaled formulas run, at 1 the plain ones
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(1, 2, 6, 6, generator=g, dtype=torch.float64) + 1).requires_grad_()
    q = torch.tensor(p, dtype=torch.float64, requires_grad=True)

    def gem(t, e):
        return gem_pool2d(t * level, e, F, S, P, ceil_mode, 0.05 * level) / level

    assert gradcheck(gem, (x, q))
    out = gem(x, q)
    ref = reference(x, F, S, P, ceil_mode, gem_reference(q, 0.05))
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(out, (x, q), weights)
    theirs = torch.autograd.grad(ref, (x, q), weights)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(ours, theirs)


def test_global_gem_at_large_p_matches_float64_reference_with_dp():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 5, 4, generator=g, dtype=torch.float64) * 1e-3
    results = []
    for dtype in (torch.float32, torch.float64):
        leaf = x.to(dtype).requires_grad_()
        q = torch.tensor(9.0, dtype=dtype, requires_grad=True)
        if dtype == torch.float32:
            out = global_gem(leaf, q)
        else:
            out = leaf.clamp_min(1e-6).pow(q).mean((2, 3)).pow(1 / q)
        results.append((out, *torch.autograd.grad(out.sum(), (leaf, q))))
    for ours, ref in zip(*results, strict=True):
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours.double(), ref, rtol=2e-4, atol=1e-12)
    y = (torch.rand(1, 2, 3, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    assert gradcheck(
        lambda t, e: global_gem(t, e),
        (y, torch.tensor(12.0, dtype=torch.float64, requires_grad=True)),
    )


@pytest.mark.parametrize("name", ["gem", "global_gem"])
def test_gem_p_that_learning_pushes_out_of_range_is_held_at_the_bound(name):
    low, high = GEM_P_RANGE
    x = torch.rand(2, 3, 4, 4) + 0.1
    for bad, bound in ((-1.0, low), (0.0, low), (1e6, high), (float("inf"), high)):
        module = create_pool(name, 3)
        at_bound = create_pool(name, 3, p=bound, learnable_p=False)
        with torch.no_grad():
            module.p.fill_(bad)
        leaf = x.clone().requires_grad_()
        out = module(leaf)
        torch.testing.assert_close(out, at_bound(x))
        out.sum().backward()
        assert torch.isfinite(leaf.grad).all()
        assert module.p.grad == 0  # outside the range p gets no gradient (torch.clamp)


def test_gem_refuses_a_configured_p_outside_its_range():
    from poolbench.core.errors import ConfigError

    low, high = GEM_P_RANGE
    for name in ("gem", "global_gem"):
        for bad in (0.0, low / 2, high * 2, -3.0):
            with pytest.raises(ConfigError, match=r"expected p to be a number in \["):
                create_pool(name, 2, p=bad)


# -- 5. lip_pool2d with unbounded logits -----------------------------------------------------


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
    win_l = dict(((i, j), v) for i, j, v in windows_of(ld, F, S))
    for i, j, v in windows_of(xd, F, S):
        expected[:, :, i, j] = softmax_mean(v, win_l[i, j])
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(logit.grad).all()
    x64 = xd[:1, :2, :5, :5].clone().requires_grad_()
    l64 = ld[:1, :2, :5, :5] * torch.tensor([1.0, 200.0], dtype=torch.float64).view(1, 2, 1, 1)
    assert gradcheck(lambda a, b: lip_pool2d(a, b, F, S), (x64, l64.requires_grad_()))


# -- 3. every layer keeps the input's dtype --------------------------------------------------


def make(name: str, channels: int) -> nn.Module:
    params = {}
    if takes_stages(name):
        params["stage_channels"] = [channels, channels]
    return create_pool(name, channels, **params)


@pytest.mark.parametrize("name", list_pools())
@pytest.mark.parametrize("training", [False, True])
def test_every_pool_and_head_returns_the_input_dtype_in_bf16(name, training):
    torch.manual_seed(0)
    module = make(name, 4).to(torch.bfloat16).train(training)
    x = (torch.randn(2, 4, 8, 8) * 3).bfloat16()
    out = module([x, x]) if getattr(module, "takes_stages", False) else module(x)
    assert out.dtype == torch.bfloat16, f"{name} returned {out.dtype}"
    assert torch.isfinite(out.float()).all()


def test_tree_pool_feeds_a_bf16_convolution():
    model = nn.Sequential(create_pool("tree", 3), nn.Conv2d(3, 3, 1)).bfloat16()
    out = model(torch.randn(2, 3, 8, 8).bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 4, 4)
