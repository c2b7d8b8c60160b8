"""Anti-aliased pooling: ``blur`` (Zhang 2019, "Making convolutional networks shift-invariant
again", the MaxBlurPool layer).

Max pooling is two steps, a dense max (stride 1) and a subsampling; only the subsampling
aliases. Zhang inserts a low-pass binomial filter between them: max with window F at stride
1, then a ``blur_size``-tap binomial blur applied at stride S.

Cost, heavy by design: the dense max evaluates a window at every position (F=2, S=2: four
times the windows of max pooling) and the blur is a depthwise convolution on that full-size
map. Both run in channels_last (NHWC) layout, the layout where the CPU kernels vectorise over
channels. The full-size intermediates make the layer sensitive to the allocator: with glibc's
defaults they page-fault afresh on every call (``poolbench bench`` keeps them on the heap).
A dense max from shifted views and a blur from two 2x2 average pools are not faster.
Measured figures: the README's Speed section and ``benchmarks/``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import Tensor

from poolbench.core.checks import check_int
from poolbench.pooling.base import LocalPool, pooled_size
from poolbench.pooling.ops import compute_dtype, depthwise_conv2d
from poolbench.pooling.registry import register_pool


def binomial_filter(blur_size: int) -> list[float]:
    """Row ``blur_size - 1`` of Pascal's triangle, normalised: 3 -> [1, 2, 1] / 4."""
    taps = [math.comb(blur_size - 1, k) for k in range(blur_size)]
    return [t / sum(taps) for t in taps]


def binomial_taps(blur_size: int, device: torch.device | None = None) -> Tensor:
    """:func:`binomial_filter` as a float64 tensor (``blur_size``,)."""
    return torch.tensor(binomial_filter(blur_size), dtype=torch.float64, device=device)


def binomial_blur2d(
    x: Tensor,
    blur_size: int,
    S: int,
    extra: tuple[int, int] = (0, 0),
    taps: Tensor | None = None,
) -> Tensor:
    """Blur ``x (Tensor[N, C, H, W])`` with the 2-D binomial filter of ``blur_size`` taps per
    side (outer product of :func:`binomial_filter`, or of ``taps`` when given, as
    :class:`BlurPool` holds them) and sample at stride S.

    As in Zhang's code, the map is reflect-padded by ``blur_size - 1`` in total per axis
    (top/left ``(n-1)//2``, bottom/right the rest), plus ``extra`` = (bottom, right) rows and
    columns for ceil mode, so the output side is ``floor((H + extra - 1)/S) + 1``. Reflection
    needs a map wider than the pad; a narrower one is replicate-padded instead. One depthwise
    convolution (on the CPU cheaper than the separable pair or a cascade of 2x2 average
    pools).
    """
    dtype = x.dtype  # CPU autocast pads in float32; the result keeps the input's dtype
    total = blur_size - 1
    left = total // 2
    pad = (left, total - left + extra[1], left, total - left + extra[0])
    if any(pad):
        mode = "reflect" if min(x.shape[-2:]) > max(pad) else "replicate"
        x = F_.pad(x, pad, mode=mode)
    if blur_size == 1:
        return x[:, :, ::S, ::S].to(dtype)
    if taps is None:
        taps = binomial_taps(blur_size, x.device)
    taps = taps.to(compute_dtype(x.dtype))  # float64 stays float64
    kernel = torch.outer(taps, taps).expand(x.shape[1], 1, blur_size, blur_size)
    return depthwise_conv2d(x, kernel, S).to(dtype)


def blur_pool2d(
    x: Tensor,
    F: int,
    S: int,
    padding: int = 0,
    ceil_mode: bool = False,
    blur_size: int = 3,
    taps: Tensor | None = None,
) -> Tensor:
    """Anti-aliased max pooling of ``x (Tensor[N, C, H, W])`` (Zhang 2019, MaxBlurPool).

    ``max_pool2d(x, F, stride=1, padding)`` then :func:`binomial_blur2d` at stride S. The
    output side is the usual ``floor((H - F + 2P)/S) + 1`` (ceil with ``ceil_mode``).
    """
    h, w = x.shape[-2:]
    nhwc = torch.channels_last
    was_nhwc = x.is_contiguous(memory_format=nhwc) and not x.is_contiguous()
    x = x.contiguous(memory_format=nhwc)  # see the module docstring: NHWC is the fast layout
    dense = F_.max_pool2d(x, F, 1, padding)  # (N, C, H - F + 2P + 1, W - F + 2P + 1)
    extra = (0, 0)
    if ceil_mode:
        dh, dw = dense.shape[-2:]
        oh = pooled_size(h, F, S, padding, True)
        ow = pooled_size(w, F, S, padding, True)
        extra = ((oh - 1) * S + 1 - dh, (ow - 1) * S + 1 - dw)
    out = binomial_blur2d(dense, blur_size, S, (max(0, extra[0]), max(0, extra[1])), taps)
    return out if was_nhwc else out.contiguous()


@register_pool("blur", kind="local", paper="Zhang 2019 (anti-aliased MaxBlurPool)")
class BlurPool(LocalPool):
    """Anti-aliased max pooling: max at stride 1, then a binomial blur at stride S."""

    def __init__(
        self,
        channels: int,
        F: int = 2,
        S: int = 2,
        padding: int = 0,
        ceil_mode: bool = False,
        blur_size: int = 3,
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)
        self.blur_size = check_int("blur_size", blur_size, 1, where=type(self).__name__)
        # Built once, in float64 so that a float64 model gets the exact filter (a model cast
        # to bfloat16 casts it too, as every buffer); not in checkpoints: blur_size fixes it.
        self.register_buffer("taps", binomial_taps(self.blur_size), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return blur_pool2d(
            x, self.F, self.S, self.padding, self.ceil_mode, self.blur_size, self.taps
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, blur_size={self.blur_size}"
