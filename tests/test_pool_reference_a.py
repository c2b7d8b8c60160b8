"""Float64 loop references, gradchecks and known numerical traps for the local pools of
classic.py (min, overlap, median, center, maxavg, none), power.py (lp, gem), softpool.py,
antialias.py (blur), wavelet.py and conv.py (strided_conv)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F_

from poolbench.core.errors import ConfigError
from poolbench.pooling import create_pool, pooled_size
from poolbench.pooling.antialias import blur_pool2d
from poolbench.pooling.classic import center_pool2d, median_pool2d
from poolbench.pooling.power import gem_pool2d, lp_pool2d
from poolbench.pooling.softpool import soft_pool2d
from poolbench.pooling.wavelet import WAVELETS, wavelet_pool2d


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Thousands of tiny ops (loops, gradcheck): a second OpenMP thread only adds waiting,
    # and on a loaded machine each parallel region can stall for a scheduler time slice.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# (F, S, padding, ceil_mode): non-overlapping, overlapping, stride 1, F=S=3, padded, ceil.
WINDOWS = [
    (2, 2, 0, False),
    (3, 2, 0, False),
    (2, 1, 0, False),
    (3, 3, 0, False),
    (3, 2, 1, False),
    (2, 2, 0, True),
    (3, 2, 1, True),
]
SHAPES = [(2, 3, 7, 9), (1, 2, 8, 8), (2, 2, 11, 6)]


def sample(shape: tuple[int, ...], seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    """float64 input with negatives, exact zeros, and a few large values, without ties."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    flat = x.view(-1)
    idx = torch.randperm(flat.numel(), generator=g)
    flat[idx[:5]] = 0.0
    flat[idx[5:8]] = 40.0 + torch.rand(3, generator=g, dtype=torch.float64)
    flat[idx[8:11]] = -40.0 - torch.rand(3, generator=g, dtype=torch.float64)
    return x


def window_reference(x, F, S, P, ceil_mode, reduce):
    """``reduce`` over each window's real (unpadded) inputs, with plain loops over windows."""
    n, c, h, w = x.shape
    oh, ow = pooled_size(h, F, S, P, ceil_mode), pooled_size(w, F, S, P, ceil_mode)
    out = torch.empty(n, c, oh, ow, dtype=torch.float64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * S - P, j * S - P
            rows = [r for r in range(r0, r0 + F) if 0 <= r < h]
            cols = [q for q in range(c0, c0 + F) if 0 <= q < w]
            values = x[:, :, rows][:, :, :, cols].reshape(n, c, -1)
            out[:, :, i, j] = reduce(values)
    return out


def lower_median(v):
    return v.sort(dim=-1).values[..., (v.shape[-1] - 1) // 2]


def lp_ref(p):
    return lambda v: v.abs().pow(p).sum(-1).pow(1 / p)


def gem_ref(p, eps):
    return lambda v: v.clamp_min(eps).pow(p).mean(-1).pow(1 / p)


def softpool_ref(v):
    return (torch.softmax(v, dim=-1) * v).sum(-1)


REDUCERS = {
    "min": lambda v: v.amin(-1),
    "median": lower_median,
    "maxavg": lambda v: 0.5 * v.amax(-1) + 0.5 * v.mean(-1),
    "lp": lp_ref(2.0),
    "softpool": softpool_ref,
    "overlap": lambda v: v.amax(-1),
}


@pytest.mark.parametrize("name", sorted(REDUCERS))
@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), WINDOWS)
def test_window_layers_match_loop_reference(name, F, S, P, ceil_mode):
    for k, shape in enumerate(SHAPES):
        x = sample(shape, seed=k)
        module = create_pool(name, shape[1], F=F, S=S, padding=P, ceil_mode=ceil_mode).double()
        expected = window_reference(x, F, S, P, ceil_mode, REDUCERS[name])
        torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), WINDOWS)
def test_lp_any_p_matches_reference(p, F, S, P, ceil_mode):
    x = sample((2, 3, 7, 9))
    out = create_pool("lp", 3, F=F, S=S, padding=P, ceil_mode=ceil_mode, p=p).double()(x)
    torch.testing.assert_close(out, window_reference(x, F, S, P, ceil_mode, lp_ref(p)))


@pytest.mark.parametrize("learnable_p", [True, False])
@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), WINDOWS)
def test_gem_matches_reference(learnable_p, F, S, P, ceil_mode):
    x = sample((2, 3, 9, 7))
    module = create_pool(
        "gem", 3, F=F, S=S, padding=P, ceil_mode=ceil_mode, p=2.5, learnable_p=learnable_p
    ).double()
    expected = window_reference(x, F, S, P, ceil_mode, gem_ref(2.5, 1e-6))
    torch.testing.assert_close(module(x), expected)
    assert len(list(module.parameters())) == int(learnable_p)


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


def dense_max(x, F, P):
    return window_reference(x, F, 1, P, False, lambda v: v.amax(-1))


def reflect(i, n):
    if n == 1:
        return 0
    while not 0 <= i < n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


@pytest.mark.parametrize("blur_size", [1, 2, 3, 5])
@pytest.mark.parametrize(("F", "S", "P"), [(2, 2, 0), (3, 2, 1), (2, 1, 0), (3, 3, 0)])
def test_blur_is_dense_max_then_binomial_blur(blur_size, F, S, P):
    x = sample((2, 3, 11, 9))
    d = dense_max(x, F, P)
    taps = [math.comb(blur_size - 1, k) / 2 ** (blur_size - 1) for k in range(blur_size)]
    left = (blur_size - 1) // 2
    dh, dw = d.shape[-2:]
    oh, ow = pooled_size(11, F, S, P), pooled_size(9, F, S, P)
    expected = torch.zeros(2, 3, oh, ow, dtype=torch.float64)
    for i in range(oh):
        for j in range(ow):
            for u, tu in enumerate(taps):
                for v, tv in enumerate(taps):
                    r, q = reflect(i * S + u - left, dh), reflect(j * S + v - left, dw)
                    expected[:, :, i, j] += tu * tv * d[:, :, r, q]
    out = create_pool("blur", 3, F=F, S=S, padding=P, blur_size=blur_size).double()(x)
    torch.testing.assert_close(out, expected)


def test_blur_ceil_mode_follows_the_size_rule():
    x = sample((1, 2, 10, 9))
    for F, S in [(2, 2), (3, 2), (2, 3)]:
        out = blur_pool2d(x, F, S, 0, True)
        assert out.shape[-2:] == (pooled_size(10, F, S, 0, True), pooled_size(9, F, S, 0, True))


# -- wavelet: literal second-level decomposition and one-level reconstruction ---------------


def dwt1d(x, h):
    """Periodic orthonormal DWT along the last axis: approximation and detail halves."""
    n, taps = x.shape[-1], len(h)
    g = [(-1) ** k * h[taps - 1 - k] for k in range(taps)]
    a = torch.zeros(*x.shape[:-1], n // 2, dtype=x.dtype)
    d = torch.zeros_like(a)
    for k in range(n // 2):
        for m in range(taps):
            a[..., k] += h[m] * x[..., (2 * k + m) % n]
            d[..., k] += g[m] * x[..., (2 * k + m) % n]
    return a, d


def idwt1d(a, d, h):
    n, taps = 2 * a.shape[-1], len(h)
    g = [(-1) ** k * h[taps - 1 - k] for k in range(taps)]
    x = torch.zeros(*a.shape[:-1], n, dtype=a.dtype)
    for k in range(n // 2):
        for m in range(taps):
            x[..., (2 * k + m) % n] += h[m] * a[..., k] + g[m] * d[..., k]
    return x


def dwt2d(x, h):
    lo, hi = dwt1d(x, h)  # along W
    ll, lh = (t.transpose(-1, -2) for t in dwt1d(lo.transpose(-1, -2), h))
    hl, hh = (t.transpose(-1, -2) for t in dwt1d(hi.transpose(-1, -2), h))
    return ll, lh, hl, hh


def idwt2d(ll, lh, hl, hh, h):
    lo = idwt1d(ll.transpose(-1, -2), lh.transpose(-1, -2), h).transpose(-1, -2)
    hi = idwt1d(hl.transpose(-1, -2), hh.transpose(-1, -2), h).transpose(-1, -2)
    return idwt1d(lo, hi, h)


@pytest.mark.parametrize("wavelet", sorted(WAVELETS))
def test_wavelet_pooling_is_the_papers_second_level_procedure(wavelet):
    h = WAVELETS[wavelet]
    x = sample((2, 3, 8, 12))
    assert torch.allclose(idwt2d(*dwt2d(x, h), h), x)  # the reference is perfectly reconstructing
    level1 = dwt2d(x, h)
    level2 = dwt2d(level1[0], h)  # decompose the approximation again
    pooled = idwt2d(*level2, h)  # discard level-1 details, reconstruct one level
    out = create_pool("wavelet", 3, wavelet=wavelet).double()(x)
    assert out.shape == (2, 3, 4, 6)
    torch.testing.assert_close(out, pooled)


def test_haar_wavelet_pooling_on_odd_sizes_drops_the_last_row_and_column():
    x = sample((1, 2, 7, 9))
    expected = 2 * window_reference(x[:, :, :6, :8], 2, 2, 0, False, lambda v: v.mean(-1))
    torch.testing.assert_close(wavelet_pool2d(x), expected)


def test_wavelet_unknown_name_lists_choices():
    with pytest.raises(ConfigError, match=r"one of haar, db2, got 'db9'"):
        create_pool("wavelet", 3, wavelet="db9")


@pytest.mark.parametrize(("F", "S", "P"), [(2, 2, 0), (3, 2, 1), (3, 3, 0)])
def test_strided_conv_is_a_learned_convolution(F, S, P):
    torch.manual_seed(0)
    module = create_pool("strided_conv", 3, F=F, S=S, padding=P).double()
    x = sample((2, 3, 9, 8))
    weight, bias = module.conv.weight, module.conv.bias
    padded = F_.pad(x, (P, P, P, P))
    oh, ow = pooled_size(9, F, S, P), pooled_size(8, F, S, P)
    expected = torch.empty(2, 3, oh, ow, dtype=torch.float64)
    for i in range(oh):
        for j in range(ow):
            patch = padded[:, :, i * S : i * S + F, j * S : j * S + F]
            expected[:, :, i, j] = torch.einsum("ncuv,ocuv->no", patch, weight) + bias
    torch.testing.assert_close(module(x), expected.detach())
    assert {n for n, _ in module.named_parameters()} == {"conv.weight", "conv.bias"}


# -- gradients -------------------------------------------------------------------------------

GRAD_CASES = [(2, 2, 0, False), (3, 2, 1, False), (2, 2, 0, True)]


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


@pytest.mark.parametrize(("F", "S", "P", "ceil_mode"), GRAD_CASES)
def test_gradcheck_gem_with_learnable_p(F, S, P, ceil_mode):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=g).requires_grad_()
    p = torch.tensor(2.7, dtype=torch.float64, requires_grad=True)
    # eps=0.05 keeps the clamp kink away from gradcheck's finite-difference steps
    assert torch.autograd.gradcheck(lambda t, q: gem_pool2d(t, q, F, S, P, ceil_mode, 0.05), (x, p))


@pytest.mark.parametrize("wavelet", sorted(WAVELETS))
def test_gradcheck_wavelet(wavelet):
    x = torch.randn(1, 2, 8, 6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: wavelet_pool2d(t, wavelet), (x,))


# -- known traps -----------------------------------------------------------------------------


@pytest.mark.parametrize("level", [100.0, 1000.0])
@pytest.mark.parametrize(("F", "S"), [(2, 2), (3, 2)])
def test_softpool_at_large_activations_is_finite_and_correct(level, F, S):
    g = torch.Generator().manual_seed(5)
    x = level + 10 * torch.randn(2, 3, 9, 9, generator=g)
    x[0, 0, :3, :3] = torch.tensor([[level, 0.0, -level]] * 3)  # huge spread in one window
    x.requires_grad_()
    out = soft_pool2d(x, F, S)
    assert torch.isfinite(out).all()
    expected = window_reference(x.detach().double(), F, S, 0, False, softpool_ref)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-3)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_softpool_shifted_and_unshifted_paths_agree():
    # softpool(x + c) = softpool(x) + c; c = 500 forces the shifted branch, x alone does not
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(soft_pool2d(x + 500, 2, 2), soft_pool2d(x, 2, 2) + 500)


def test_softpool_under_bf16_autocast_computes_in_fp32():
    x = (torch.randn(2, 3, 8, 8) * 30).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = soft_pool2d(x, 2, 2)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    expected = window_reference(x.double(), 2, 2, 0, False, softpool_ref)
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-1)


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


def test_invalid_hyperparameters_name_parameter_and_value():
    with pytest.raises(ConfigError, match="BlurPool: expected blur_size to be an integer >= 1"):
        create_pool("blur", 3, blur_size=0)
    with pytest.raises(ConfigError, match="eps"):
        create_pool("gem", 3, eps=0.0)
    with pytest.raises(ConfigError, match="LpPool: expected p to be a number > 0, got -2.0"):
        create_pool("lp", 3, p=-2.0)


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
