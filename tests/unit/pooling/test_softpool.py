"""SoftPool (softpool.py) against its float64 loop reference, at activations where a plain
exp overflows, and under bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from poolbench.pooling.softpool import soft_pool2d
from tests.helpers.references import softpool_reference, window_reference


@pytest.mark.parametrize("level", [100.0, 1000.0])
@pytest.mark.parametrize(("F", "S"), [(2, 2), (3, 2)])
def test_softpool_at_large_activations_is_finite_and_correct(level, F, S):
    g = torch.Generator().manual_seed(5)
    x = level + 10 * torch.randn(2, 3, 9, 9, generator=g)
    x[0, 0, :3, :3] = torch.tensor([[level, 0.0, -level]] * 3)  # huge spread in one window
    x.requires_grad_()
    out = soft_pool2d(x, F, S)
    assert torch.isfinite(out).all()
    expected = window_reference(x.detach().double(), F, S, 0, False, softpool_reference)
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
    expected = window_reference(x.double(), 2, 2, 0, False, softpool_reference)
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-1)
