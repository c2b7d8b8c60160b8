"""Wavelet pooling: ``wavelet`` (Williams & Li 2018, "Wavelet pooling for convolutional neural
networks", ICLR).

The paper pools by a second-level fast wavelet transform: decompose the map twice, discard
the first-level detail sub-bands, and reconstruct one level (inverse FWT) from the
second-level sub-bands, which halves each side. Because the transform is orthogonal and
perfectly reconstructing, that reconstruction *is* the first-level approximation band LL1, so
we compute LL1 directly (one low-pass branch instead of three transforms; the tests check it
against the literal decompose-twice-reconstruct-once procedure in float64).

Orthonormal filters, so for Haar ``LL1 = (a + b + c + d) / 2`` over each 2x2 block, i.e.
``2 * avg_pool2d(x, 2, 2)``: the scale grows by 2 per stage, as in the paper's transform.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import Tensor

from poolbench.core.checks import check_choice
from poolbench.pooling.base import LocalPool
from poolbench.pooling.ops import compute_dtype, depthwise_conv2d
from poolbench.pooling.registry import register_pool

_SQRT3 = math.sqrt(3.0)

# Orthonormal low-pass (scaling) filters h[n], as published (Daubechies 1988).
WAVELETS: dict[str, tuple[float, ...]] = {
    "haar": (1 / math.sqrt(2), 1 / math.sqrt(2)),
    "db2": tuple(v / (4 * math.sqrt(2)) for v in (1 + _SQRT3, 3 + _SQRT3, 3 - _SQRT3, 1 - _SQRT3)),
}


def wavelet_lowpass(name: str) -> tuple[float, ...]:
    return WAVELETS[check_choice("wavelet", name, WAVELETS, where="WaveletPool")]


def wavelet_taps(name: str, device: torch.device | None = None) -> Tensor | None:
    """The low-pass filter of wavelet ``name`` as a float64 tensor, or None for Haar (which
    :func:`wavelet_pool2d` computes as a scaled 2x2 average)."""
    h = wavelet_lowpass(name)
    return None if len(h) == 2 else torch.tensor(h, dtype=torch.float64, device=device)


def wavelet_pool2d(x: Tensor, wavelet: str = "haar", taps: Tensor | None = None) -> Tensor:
    """First-level approximation band of ``x (Tensor[N, C, H, W])``, ``(N, C, H//2, W//2)``.

    ``LL1[k, l] = sum_{m, n} h[m] h[n] x[(2k + m) mod H, (2l + n) mod W]`` with the wavelet's
    orthonormal low-pass filter ``h`` and periodic extension (only filters longer than 2 taps
    reach past the edge). An odd last row/column is dropped first, so H' = floor(H/2) like
    2x2 max pooling. This equals Williams & Li's second-level wavelet pooling (see module).
    ``taps``: the filter as :func:`wavelet_taps` gives it (:class:`WaveletPool` holds it).
    """
    h = wavelet_lowpass(wavelet)
    rows, cols = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[:, :, :rows, :cols]
    if len(h) == 2:  # Haar: h[0] = h[1] = 1/sqrt(2), so LL1 = 2 * (2x2 block mean)
        return F_.avg_pool2d(x, 2, 2) * 2.0
    reach = len(h) - 2
    x = F_.pad(x, (0, reach, 0, reach), mode="circular")
    if taps is None:
        taps = wavelet_taps(wavelet, x.device)
    h1 = taps.to(compute_dtype(x.dtype))
    kernel = torch.outer(h1, h1).expand(x.shape[1], 1, len(h), len(h))
    return depthwise_conv2d(x, kernel, 2)


@register_pool("wavelet", kind="local", paper="Williams & Li 2018 (wavelet pooling)")
class WaveletPool(LocalPool):
    """Second-level wavelet pooling (Haar by default; db2): halves each side, no F/S.

    The transform fixes the geometry: a 2x2 block per output for Haar (window 2, stride 2),
    so F and S are not parameters; the output side is floor(H/2).
    """

    def __init__(self, channels: int, wavelet: str = "haar") -> None:
        super().__init__(F=2, S=2)
        # Built once, in float64 so that a float64 model gets the exact filter (a model cast
        # to bfloat16 casts it too, as every buffer); not in checkpoints: the name fixes it.
        self.register_buffer("taps", wavelet_taps(wavelet), persistent=False)
        self.wavelet = wavelet

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H // 2, W // 2)
        return wavelet_pool2d(x, self.wavelet, self.taps)

    def extra_repr(self) -> str:
        return f"wavelet={self.wavelet!r}"
