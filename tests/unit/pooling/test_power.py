"""The power-mean pools of power.py, lp and gem, against float64 loop references: any p, p < 1
at exact zeros, powers that under- or overflow float32, GeM's learnable p and its range, and
reduced precision."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from poolbench.core.errors import ConfigError
from poolbench.pooling import create_pool
from poolbench.pooling.base import GEM_P_RANGE
from poolbench.pooling.global_ import global_lp
from poolbench.pooling.power import gem_pool2d, lp_pool2d
from tests.helpers.references import (
    GRAD_CASES,
    WINDOWS,
    gem_reference,
    lp_reference,
    sample,
    window_reference,
)

# -- lp: any p, against the loop reference ---------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), WINDOWS)
def test_lp_any_p_matches_reference(p, F, S, P, ceil_mode):
    x = sample((2, 3, 7, 9))
    out = create_pool("lp", 3, F=F, S=S, padding=P, ceil_mode=ceil_mode, p=p).double()(x)
    torch.testing.assert_close(out, window_reference(x, F, S, P, ceil_mode, lp_reference(p)))


@pytest.mark.parametrize("p", [2.0, 3.0, 1.5])
def test_lp_is_safe_for_negative_inputs(p):
    x = sample((2, 3, 8, 8)).float().requires_grad_()
    out = lp_pool2d(x, p, 2, 2)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, lp_pool2d(-x, p, 2, 2))  # the Lp norm ignores the sign
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    positive = x.detach().abs()
    torch.testing.assert_close(
        lp_pool2d(positive, p, 2, 2), torch.nn.LPPool2d(p, 2, 2)(positive), rtol=1e-5, atol=1e-5
    )


def test_lp_all_zero_window_has_finite_zero_gradient():
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    out = lp_pool2d(x, 2.0, 2, 2)
    out.sum().backward()
    assert out.max() < 1e-18 and torch.equal(x.grad, torch.zeros_like(x))


# -- lp with p < 1 at exact zeros ---------------------------------------------------------


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
    expected = window_reference(ref_leaf, F, S, P, ceil_mode, lp_reference(p))
    (expected_grad,) = torch.autograd.grad(expected, ref_leaf, weights)
    torch.testing.assert_close(out, expected.detach())
    torch.testing.assert_close(grad, expected_grad)
    assert torch.equal(grad[x == 0], torch.zeros_like(grad[x == 0]))


# -- lp at large p: overflow and underflow -----------------------------------------------


@pytest.mark.parametrize(
    ("F", "S", "P", "ceil_mode"), [(2, 2, 0, False), (2, 1, 0, False), (3, 2, 1, True)]
)
@pytest.mark.parametrize("level", [300.0, 1e-3])
def test_lp_at_large_p_neither_overflows_nor_underflows(F, S, P, ceil_mode, level):
    x = torch.full((1, 2, 4, 4), level).requires_grad_()
    out = lp_pool2d(x, 16.0, F, S, P, ceil_mode)
    counts = window_reference(
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
        expected = window_reference(y.detach(), F, S, 0, False, lp_reference(p))
        torch.testing.assert_close(lp_pool2d(y.detach() * 1e200, p, F, S) / 1e200, expected)
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    assert gradcheck(lambda t: global_lp(t * 1e200, max(p, 1.0)) / 1e200, (z.requires_grad_(),))


@pytest.mark.parametrize("p", [16.0, 40.0])
def test_lp_large_p_matches_float64_reference_and_gradcheck(p):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 6, 5, generator=g, dtype=torch.float64) * 3
    for F, S, P, ceil_mode in ((2, 2, 0, False), (3, 2, 1, False), (2, 2, 0, True)):
        out = lp_pool2d(x, p, F, S, P, ceil_mode)
        expected = window_reference(x, F, S, P, ceil_mode, lp_reference(p))
        torch.testing.assert_close(out, expected)
        low = lp_pool2d(x.float() * 1e-3, p, F, S, P, ceil_mode)  # unscaled: 0 in float32
        torch.testing.assert_close(low.double(), expected * 1e-3, rtol=1e-5, atol=0)
        leaf = x.clone().requires_grad_()
        args = (p, F, S, P, ceil_mode)
        assert gradcheck(lambda t, args=args: lp_pool2d(t, *args), (leaf,))


# -- GeM: against the loop reference, gradients with a learnable p ------------------------


@pytest.mark.parametrize("learnable_p", [True, False])
@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), WINDOWS)
def test_gem_matches_reference(learnable_p, F, S, P, ceil_mode):
    x = sample((2, 3, 9, 7))
    module = create_pool(
        "gem", 3, F=F, S=S, padding=P, ceil_mode=ceil_mode, p=2.5, learnable_p=learnable_p
    ).double()
    expected = window_reference(x, F, S, P, ceil_mode, gem_reference(2.5, 1e-6))
    torch.testing.assert_close(module(x), expected)
    assert len(list(module.parameters())) == int(learnable_p)


@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), GRAD_CASES)
def test_gradcheck_gem_with_learnable_p(F, S, P, ceil_mode):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=g).requires_grad_()
    p = torch.tensor(2.7, dtype=torch.float64, requires_grad=True)
    # eps=0.05 keeps the clamp kink away from gradcheck's finite-difference steps
    assert torch.autograd.gradcheck(lambda t, q: gem_pool2d(t, q, F, S, P, ceil_mode, 0.05), (x, p))


def test_gem_second_backward_through_a_retained_graph_gives_the_same_gradients():
    # the block GeM's backward overwrites its forward buffer; a retained graph must recompute it
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=g).requires_grad_()
    p = torch.tensor(2.6, dtype=torch.float64, requires_grad=True)
    out = gem_pool2d(x, p, 2, 2, eps=0.05)
    weights = torch.randn(out.shape, dtype=torch.float64, generator=g)
    first = torch.autograd.grad(out, (x, p), weights, retain_graph=True)
    second = torch.autograd.grad(out, (x, p), weights)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


# -- GeM: windows at eps and large p ------------------------------------------------------


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
            out = window_reference(leaf, F, S, P, ceil_mode, gem_reference(q, 1e-6))
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
    ref = window_reference(x, F, S, P, ceil_mode, gem_reference(q, 0.05))
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(out, (x, q), weights)
    theirs = torch.autograd.grad(ref, (x, q), weights)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(ours, theirs)


def test_gem_in_bf16_stays_finite_and_close_to_fp32():
    g = torch.Generator().manual_seed(6)
    x = torch.relu(torch.randn(4, 8, 16, 16, generator=g) * 20)  # zero windows and ~60s
    x[0, 0, :2, :2] = 0
    module = create_pool("gem", 8)
    reference = module(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = module(x.bfloat16())
    assert torch.isfinite(low.float()).all()
    torch.testing.assert_close(low.float(), reference, rtol=2e-2, atol=1e-3)
    xb = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        module(xb).float().sum().backward()
    assert torch.isfinite(xb.grad.float()).all() and torch.isfinite(module.p.grad).all()


# -- GeM's p: held inside its range -------------------------------------------------------


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


def test_invalid_hyperparameters_name_parameter_and_value():
    with pytest.raises(ConfigError, match="BlurPool: expected blur_size to be an integer >= 1"):
        create_pool("blur", 3, blur_size=0)
    with pytest.raises(ConfigError, match="eps"):
        create_pool("gem", 3, eps=0.0)
    with pytest.raises(ConfigError, match="LpPool: expected p to be a number > 0, got -2.0"):
        create_pool("lp", 3, p=-2.0)
