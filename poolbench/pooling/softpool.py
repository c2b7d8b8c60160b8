"""SoftPool: ``softpool`` (Stergiou, Poppe & Kalliatakis 2021, "Refining activation
downsampling with SoftPool").

Each window is reduced to its softmax-weighted sum, ``sum_i softmax(x)_i * x_i``: between the
mean (flat windows) and the max (one dominant value), differentiable everywhere, and every
input receives a gradient ``w_i * (1 + x_i - out)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor
from torch.autograd.function import once_differentiable

from poolbench.pooling.base import LocalPool
from poolbench.pooling.ops import (
    block_view,
    crop_to_blocks,
    float32_at_least,
    per_block,
    tiles_into_blocks,
    window_view,
)
from poolbench.pooling.registry import register_pool

# exp() is used unshifted only while every window's mean exp lies in this range: then no exp
# overflowed and each window's largest term is a normal float, so the ratio is exact to
# rounding (the shift by the window max is a mathematical no-op). Outside it, we shift.
_SAFE_MEAN_EXP = (1e-30, 1e30)


class _BlockSoftPool(torch.autograd.Function):
    """SoftPool over non-overlapping F x F blocks (F == S, no padding), analytic backward.

    Autograd through the plain formula makes ~8 passes over the input in backward (exp, two
    products, two avg-pool backwards); the closed-form gradient needs two:
    ``dx_i = g * e_i * (1 + x_i - out) / sum(e)``, with ``e = exp(x - shift)``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, F: int) -> Tensor:  # type: ignore[override]
        e = torch.exp(x)
        mean_e = F_.avg_pool2d(e, F, F)
        lo, hi = _SAFE_MEAN_EXP
        smallest, largest = torch.aminmax(mean_e)
        if not (lo < float(smallest) and float(largest) < hi):
            # Large or very negative activations: shift each window by its max so the largest
            # term of every window is exp(0) = 1 (no overflow, no all-zero denominator).
            shift = F_.max_pool2d(x, F, F)
            e = (block_view(x, F) - per_block(shift)).exp_().reshape(x.shape)
            mean_e = F_.avg_pool2d(e, F, F)
        out = F_.avg_pool2d(e * x, F, F).div_(mean_e)
        ctx.save_for_backward(x, e, mean_e, out)
        ctx.F = F
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        x, e, mean_e, out = ctx.saved_tensors
        F = ctx.F
        scale = grad / (mean_e * (F * F))  # g / sum(e), per window
        offset = scale * (1.0 - out)
        gx = torch.addcmul(per_block(offset), per_block(scale), block_view(x, F))
        return gx.reshape(x.shape).mul_(e), None


def _window_softpool(x: Tensor, F: int, S: int, padding: int, ceil_mode: bool) -> Tensor:
    """General SoftPool (overlapping windows, padding, ceil mode) on a strided window view.

    Padding uses the most negative finite float: its weight exp(pad - max) is exactly 0 and,
    unlike -inf, ``pad * 0`` is 0, not NaN. Gradients come from autograd.
    """
    fill = torch.finfo(x.dtype).min
    windows = window_view(x, F, S, padding, ceil_mode, fill)  # (N, C, H', W', F, F)
    shift = windows.detach().amax(dim=(-2, -1), keepdim=True)
    e = torch.exp(windows - shift)
    return (e * windows).sum(dim=(-2, -1)) / e.sum(dim=(-2, -1))


def soft_pool2d(x: Tensor, F: int, S: int, padding: int = 0, ceil_mode: bool = False) -> Tensor:
    """SoftPool of ``x (Tensor[N, C, H, W])``: ``sum_window softmax(x)_i * x_i``.

    Stergiou et al. 2021. Numerically stable at any activation size: ``exp`` is shifted by the
    window max whenever the unshifted one could overflow or underflow (tested at 100 and 1000),
    and computed in float32 under autocast; the result has the input's dtype. The default
    non-overlapping case (F == S, no padding) has a closed-form backward; other window
    settings go through a strided window view and autograd (slower).
    """
    with torch.autocast(x.device.type, enabled=False):
        xf = float32_at_least(x)
        if tiles_into_blocks(*x.shape[-2:], F, S, padding, ceil_mode):
            out = _BlockSoftPool.apply(crop_to_blocks(xf, F), F)
        else:
            out = _window_softpool(xf, F, S, padding, ceil_mode)
    return out.to(x.dtype)


@register_pool(
    "softpool",
    kind="local",
    paper="Stergiou, Poppe & Kalliatakis 2021 (SoftPool)",
)
class SoftPool(LocalPool):
    """Softmax-weighted window sum ``sum_i softmax(x)_i * x_i`` (between avg and max)."""

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, padding: int = 0, ceil_mode: bool = False
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return soft_pool2d(x, self.F, self.S, self.padding, self.ceil_mode)
