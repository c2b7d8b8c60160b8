"""The corner pools of detection.py (corner, cascade_corner, center_cross) against their
full-resolution float64 loop definitions, with gradchecks and their switches."""

from __future__ import annotations

import pytest
import torch

from poolbench.pooling.detection import (
    cascade_corner_pool2d,
    center_cross_pool2d,
    corner_pool2d,
)
from tests.helpers.references import SHAPES_AND_WINDOWS, full_corner_maps, sample, subsample


@pytest.mark.parametrize(("n", "c", "h", "w", "F", "S"), SHAPES_AND_WINDOWS)
def test_detection_pools_match_full_resolution_loops(n, c, h, w, F, S):
    x = sample(n, c, h, w, scale=1.0, outliers="grid")
    down, right = full_corner_maps(x)
    torch.testing.assert_close(corner_pool2d(x, F, S), subsample(down + right, F, S))
    down_of = lambda t: full_corner_maps(t)[0]  # noqa: E731
    right_of = lambda t: full_corner_maps(t)[1]  # noqa: E731
    cascade = down_of(x + right) + right_of(x + down)
    torch.testing.assert_close(cascade_corner_pool2d(x, F, S), subsample(cascade, F, S))
    cross = torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            cross[..., i, j] = x[..., i, :].amax(-1) + x[..., :, j].amax(-1)
    expected = subsample(cross, F, S, offset=(F - 1) // 2)
    torch.testing.assert_close(center_cross_pool2d(x, F, S), expected)


def test_detection_gradchecks():
    x = torch.randn(1, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    for fn in (corner_pool2d, cascade_corner_pool2d, center_cross_pool2d):
        for F, S in ((2, 2), (3, 2), (2, 1)):
            assert torch.autograd.gradcheck(lambda t, fn=fn, F=F, S=S: fn(t, F, S), (x,))


@pytest.mark.parametrize(("h", "w", "F", "S"), [(8, 8, 2, 2), (9, 7, 3, 2), (6, 5, 2, 1)])
def test_corner_switch_is_the_first_maximum(h, w, F, S):
    # On a constant map (ties everywhere) both scans pick their first position, the sampled
    # corner (iS, jS) itself, so each output's gradient lands there twice and nowhere else.
    x = torch.zeros(2, 3, h, w, requires_grad=True)
    out = corner_pool2d(x, F, S)
    grad_out = torch.rand(out.shape) + 1
    out.backward(grad_out)
    expected = torch.zeros(2, 3, h, w)
    h_out, w_out = out.shape[-2:]
    expected[..., : (h_out - 1) * S + 1 : S, : (w_out - 1) * S + 1 : S] = 2 * grad_out
    torch.testing.assert_close(x.grad, expected)
