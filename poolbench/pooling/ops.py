"""Tensor helpers shared by the pooling families: the float32 upcast, the strided window view,
the block view of non-overlapping windows, and the depthwise convolution.

A pool that needs one of these imports it from here, so each exists once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import Tensor

from poolbench.pooling.base import pooled_size


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a pool computes its powers, exponentials and gates in: float32 for the
    16-bit floats (and integers), float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def float32_at_least(x: Tensor) -> Tensor:
    """``x`` in :func:`compute_dtype` (a no-op for float32 and float64 tensors)."""
    return x.to(compute_dtype(x.dtype))


def window_view(x: Tensor, F: int, S: int, padding: int, ceil_mode: bool, fill: float) -> Tensor:
    """``x (Tensor[N, C, H, W])`` as a strided view ``(N, C, H', W', F, F)`` of its windows.

    The map is padded with ``fill`` by ``padding`` on the left/top and by as much as the last
    (ceil-mode) window needs on the right/bottom, so H' and W' follow :func:`pooled_size`.
    Without padding the result is a view of ``x``; overlapping windows share memory, so a
    reduction over the last two axes reads each input once per window that holds it.
    """
    h, w = x.shape[-2:]
    oh = pooled_size(h, F, S, padding, ceil_mode)
    ow = pooled_size(w, F, S, padding, ceil_mode)
    extra_h = max(0, (oh - 1) * S + F - h - padding)
    extra_w = max(0, (ow - 1) * S + F - w - padding)
    if padding or extra_h or extra_w:
        x = F_.pad(x, (padding, extra_w, padding, extra_h), value=fill)
    windows = x.unfold(2, F, S).unfold(3, F, S)
    return windows[:, :, :oh, :ow]


def tiles_into_blocks(
    height: int, width: int, F: int, S: int, padding: int = 0, ceil_mode: bool = False
) -> bool:
    """Whether the windows are non-overlapping F x F blocks (F == S, no padding, and in ceil
    mode a map that tiles exactly): the case the closed-form backward passes handle."""
    return F == S and not padding and (not ceil_mode or (height % F == 0 and width % F == 0))


def crop_to_blocks(x: Tensor, F: int) -> Tensor:
    """Drop the rows/columns no floor-mode window reaches, so the map tiles into F x F blocks
    (contiguous in NCHW, as :func:`block_view` needs)."""
    h, w = x.shape[-2] // F * F, x.shape[-1] // F * F
    return x[:, :, :h, :w].contiguous()


def block_view(x: Tensor, F: int) -> Tensor:
    """(N, C, H, W) -> (N, C, H/F, F, W/F, F): axes 3 and 5 run over each block."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // F, F, w // F, F)


def per_block(t: Tensor) -> Tensor:
    """(N, C, H', W') -> (N, C, H', 1, W', 1): one value per block, broadcasting over a
    :func:`block_view`."""
    return t[:, :, :, None, :, None]


def block_max(x: Tensor, F: int) -> Tensor:
    """The maximum of each F x F block of ``x`` (a :func:`crop_to_blocks` map), (N, C, H/F,
    W/F): elementwise maxima of the block rows, then a reduction over the contiguous last
    axis (NaN propagates). No indices and no gradient; on the CPU several times cheaper
    than ``max_pool2d`` in NCHW."""
    blocks = block_view(x, F)
    rows = blocks[:, :, :, 0]  # (N, C, H', W', F)
    for a in range(1, F):
        rows = torch.maximum(rows, blocks[:, :, :, a])
    return rows.amax(dim=-1)


def depthwise_conv2d(x: Tensor, kernel: Tensor, stride: int, keep_float32: bool = False) -> Tensor:
    """``conv2d(x, kernel, stride, groups=C)`` for ``x (Tensor[N, C, H, W])`` and ``kernel
    (Tensor[C * K, 1, F, F])`` (K responses per channel).

    On the CPU the convolution runs in float32 whenever ``x`` is 16-bit or CPU autocast is
    on: oneDNN has no fast bfloat16 depthwise kernel on CPUs without AMX, and its bfloat16
    backward is far slower than the float32 one. Elsewhere (CUDA) it runs as autocast or
    ``x``'s dtype says. The result has ``x``'s dtype, or with ``keep_float32`` at least
    float32 (for gates and products computed from it).
    """
    dtype = compute_dtype(x.dtype) if keep_float32 else x.dtype
    low = x.dtype in (torch.bfloat16, torch.float16)
    if x.device.type == "cpu" and (low or torch.is_autocast_enabled("cpu")):
        xf = float32_at_least(x)
        with torch.autocast("cpu", enabled=False):
            out = F_.conv2d(xf, kernel.to(xf.dtype), stride=stride, groups=x.shape[1])
        return out.to(dtype)
    return F_.conv2d(x, kernel.to(x.dtype), stride=stride, groups=x.shape[1]).to(dtype)


class _AbsPow(torch.autograd.Function):
    """``|x|^p`` (p < 1) with the subgradient 0 at x = 0, where autograd's
    ``p |x|^(p-1) sign(x)`` is ``inf * 0 = NaN``."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:  # type: ignore[override]
        powered = x.abs().pow(p)
        ctx.save_for_backward(x, powered)
        ctx.p = p
        return powered

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        x, powered = ctx.saved_tensors
        signed = torch.where(x != 0, powered / x, 0.0)  # sign(x) |x|^(p-1)
        return grad * signed * ctx.p, None


def abs_pow(x: Tensor, p: float) -> Tensor:
    """``|x|^p`` for a number ``p > 0``, differentiable everywhere: the gradient at x = 0 is
    the subgradient 0 for every p (autograd's own is NaN there for p < 1)."""
    if p == 2:
        return x.square()
    if p >= 1:
        return x.abs().pow(p)
    return _AbsPow.apply(x, p)


def sums_representable(total: Tensor) -> bool:
    """Whether every sum in ``total`` is 0 or a finite normal float: then a sum of powers
    formed without scaling lost nothing to overflow and nothing to gradual underflow (its
    largest term was a normal float). Reads only ``total`` (output-sized); one device sync."""
    if total.numel() == 0:
        return True
    tiny = torch.finfo(total.dtype).tiny
    with torch.no_grad():
        low, high = torch.aminmax(total.masked_fill(total == 0, tiny))
    return float(low) >= tiny and math.isfinite(float(high))
