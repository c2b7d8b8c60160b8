"""Wavelet pooling (wavelet.py): the paper's literal second-level decomposition and one-level
reconstruction, in float64 loops."""

from __future__ import annotations

import pytest
import torch

from poolbench.core.errors import ConfigError
from poolbench.pooling import create_pool
from poolbench.pooling.wavelet import WAVELETS, wavelet_pool2d
from tests.helpers.references import dwt2d, idwt2d, sample, window_reference


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


@pytest.mark.parametrize("wavelet", sorted(WAVELETS))
def test_gradcheck_wavelet(wavelet):
    x = torch.randn(1, 2, 8, 6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: wavelet_pool2d(t, wavelet), (x,))
