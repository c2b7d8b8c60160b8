"""The strided convolution (conv.py) as a pool: a learned convolution, checked by a float64
loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F_

from poolbench.pooling import create_pool, pooled_size
from tests.helpers.references import sample


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
