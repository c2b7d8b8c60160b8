"""BlurPool (antialias.py): a dense max, then a binomial blur with reflected edges, subsampled;
against a float64 loop reference."""

from __future__ import annotations

import math

import pytest
import torch

from poolbench.pooling import create_pool, pooled_size
from poolbench.pooling.antialias import blur_pool2d
from tests.helpers.references import dense_max, reflect, sample


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
