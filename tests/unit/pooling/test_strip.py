"""Strip pooling (strip.py): the gate against its full-resolution float64 definition."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F_

from poolbench.pooling import create_pool
from poolbench.pooling.strip import strip_gate
from tests.helpers.references import sample


@pytest.mark.parametrize(("n", "c", "h", "w"), [(2, 3, 8, 8), (1, 2, 5, 9)])
def test_strip_gate_matches_full_resolution_definition(n, c, h, w):
    x = sample(n, c, h, w, scale=1.0, outliers="grid")
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
