"""Numerical traps of the power-mean, importance and learned pools, each against a float64
reference: zero inputs with p < 1, powers that under- or overflow float32, unbounded logits,
and the dtype every layer hands back."""

from __future__ import annotations

import pytest
import torch

from poolbench.pooling import create_pool, pooled_size
from poolbench.pooling.power import lp_pool2d


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
