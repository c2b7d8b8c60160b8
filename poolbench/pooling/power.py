"""Power-mean pooling: ``lp`` and ``gem``.

- ``lp``: Lp pooling, ``(sum_window |x|^p)^(1/p)`` (Sermanet, Chintala & LeCun 2012;
  Boureau, Ponce & LeCun 2010), the formula of ``torch.nn.LPPool2d`` made safe for negative
  inputs by taking ``|x|`` (so the output is the window's Lp norm).
- ``gem``: generalized-mean pooling, ``(mean_window clamp(x, eps)^p)^(1/p)`` with ``p``
  learnable (init 3) or fixed (Radenovic, Tolias & Chum 2018). p=1 is avg, p -> inf is max.

Both compute their powers in float32, also under autocast (bf16 overflows/underflows at
powers of activations long before fp32 does), and return the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from poolbench.pooling import register_pool
from poolbench.pooling.base import LocalPool, check_positive


def _fp32(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def lp_pool2d(
    x: Tensor, p: float, F: int, S: int, padding: int = 0, ceil_mode: bool = False
) -> Tensor:
    """Lp pooling of ``x (Tensor[N, C, H, W])``: ``(sum_window |x|^p)^(1/p)``.

    ``torch.nn.LPPool2d`` raises ``x`` itself to the power p, which is NaN for negative inputs
    and non-integer p, and signed for odd p; we use ``|x|`` so the result is the Lp norm of
    the window for any sign (identical to LPPool2d for x >= 0 or even integer p). Zero padding
    adds nothing to the sum. An all-zero window outputs 0 with gradient 0 (the sum is clamped
    to the smallest normal float before the root, whose derivative is infinite at 0).
    """
    with torch.autocast(x.device.type, enabled=False):
        xf = _fp32(x)
        powered = xf.square() if p == 2 else xf.abs().pow(p)
        total = F_.avg_pool2d(powered, F, S, padding, ceil_mode, count_include_pad=True)
        total = total * (F * F)
        # The root's derivative is infinite at 0; clamping makes all-zero windows output
        # tiny^(1/p) (< 1e-19 for p <= 2) with a zero gradient instead of NaN.
        total = total.clamp_min(torch.finfo(total.dtype).tiny)
        out = total.sqrt() if p == 2 else total.pow(1.0 / p)
    return out.to(x.dtype)


@register_pool("lp", kind="local", paper="Sermanet, Chintala & LeCun 2012 (Lp pooling)")
class LpPool(LocalPool):
    """Lp pooling ``(sum_window |x|^p)^(1/p)``: p=1 sums |x|, p -> inf is max |x|."""

    def __init__(
        self,
        channels: int,
        F: int = 2,
        S: int = 2,
        padding: int = 0,
        ceil_mode: bool = False,
        p: float = 2.0,
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)
        self.p = check_positive("p", p, type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return lp_pool2d(x, self.p, self.F, self.S, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p:g}"


def gem_pool2d(
    x: Tensor,
    p: Tensor | float,
    F: int,
    S: int,
    padding: int = 0,
    ceil_mode: bool = False,
    eps: float = 1e-6,
) -> Tensor:
    """Generalized mean of ``x (Tensor[N, C, H, W])``: ``(mean_window clamp(x, eps)^p)^(1/p)``.

    Radenovic, Tolias & Chum 2018. The clamp keeps the power real for negative inputs and the
    root's argument positive. Padding is not counted in the mean. ``p`` may be a tensor (a
    learnable exponent), broadcast over channels if it has one value per channel.
    """
    with torch.autocast(x.device.type, enabled=False):
        xf = _fp32(x)
        pf = p.to(xf.dtype) if isinstance(p, Tensor) else p
        if isinstance(pf, Tensor) and pf.numel() > 1:
            pf = pf.view(1, -1, 1, 1)
        powered = xf.clamp_min(eps).pow(pf)
        mean = F_.avg_pool2d(powered, F, S, padding, ceil_mode, count_include_pad=False)
        out = mean.pow(1.0 / pf)
    return out.to(x.dtype)


@register_pool("gem", kind="local", paper="Radenovic, Tolias & Chum 2018 (GeM)", learnable=True)
class GeMPool(LocalPool):
    """Generalized-mean pooling with exponent p (learnable by default, init 3)."""

    def __init__(
        self,
        channels: int,
        F: int = 2,
        S: int = 2,
        padding: int = 0,
        ceil_mode: bool = False,
        p: float = 3.0,
        learnable_p: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)
        layer = type(self).__name__
        p = check_positive("p", p, layer)
        self.eps = check_positive("eps", eps, layer)
        self.learnable_p = bool(learnable_p)
        if self.learnable_p:
            self.p = nn.Parameter(torch.tensor(p))
        else:
            self.register_buffer("p", torch.tensor(p))

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        p = self.p if self.learnable_p else float(self.p)
        return gem_pool2d(x, p, self.F, self.S, self.padding, self.ceil_mode, self.eps)

    def extra_repr(self) -> str:
        kind = "learnable" if self.learnable_p else "fixed"
        return f"{super().extra_repr()}, p={float(self.p):.3g} ({kind}), eps={self.eps:g}"
