"""Global pooling heads: ``(N, C, H, W) -> (N, D)`` before the classifier.

- ``global_avg``: mean over all positions (Lin et al. 2013, Network in Network); D = C.
- ``global_max``: maximum over all positions; D = C.
- ``global_gem``: generalised mean (Radenović, Tolias & Chum 2018, "Fine-tuning CNN image
  retrieval with no human annotation"): (mean clamp(x, eps)^p)^(1/p), p learnable or fixed;
  p = 1 is the mean, p -> inf the maximum. D = C.
- ``global_lp``: the Lp norm over all positions, (Σ |x|^p)^(1/p), i.e. ``nn.LPPool2d`` with
  the window spanning the whole map, computed on |x| so negative inputs are defined. D = C.
- ``avgmax``: 0.5 (avg + max); ``catavgmax``: [avg, max] concatenated, D = 2C (both as in
  timm's ``adaptive_avgmax_pool``).
- ``adaptive_avg``, ``adaptive_max``: adaptive pooling to a fixed ``output_size`` grid,
  flattened (the seeds' "adaptive feature pooling": the window grows with the map, so any input
  size gives the same D = C·h·w; the same bins as SPP's one level, He et al. 2014).

Every head states ``out_features`` (D) at construction, so the classifier is sized without a
forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F_
from torch import Tensor

from poolbench.core.checks import check_int, check_int_list, check_number
from poolbench.pooling.base import GlobalPool, gem_exponent, init_gem
from poolbench.pooling.ops import abs_pow, float32_at_least, sums_representable
from poolbench.pooling.registry import register_pool


def parse_grid(name: str, value: object, layer: str) -> tuple[int, int]:
    """An ``output_size``-style grid: an int ``g`` (g x g) or ``[h, w]``, every side >= 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        side = check_int(name, value, 1, where=layer)
        return side, side
    height, width = check_int_list(name, value, 1, length=2, where=layer)
    return height, width


def global_gem(x: Tensor, p: Tensor | float, eps: float = 1e-6) -> Tensor:
    """Generalised mean pooling over all positions (Radenović et al. 2018).

    ``x (Tensor[N, C, H, W]) -> Tensor[N, C]``: (1/HW Σ clamp(x, eps)^p)^(1/p).

    The clamp comes before the pow so a negative or zero input cannot give NaN (a fractional
    power of a negative number) or an infinite gradient (x^(p-1) at 0 for p < 1). The pow runs
    in float32 even under bf16 autocast: with p = 3, bf16's 8-bit mantissa loses the small
    activations next to the large ones before the mean is taken. Each channel is scaled by
    its largest clamped value M first, ``M (1/HW Σ (clamp(x, eps)/M)^p)^(1/p)``, so no p
    under- or overflows (unscaled, a channel at eps gives eps^p = 0 in float32 from p ~ 7.5).
    The exponent is p clamped to ``GEM_P_RANGE`` (:func:`~poolbench.pooling.base.gem_exponent`).
    """
    dtype = x.dtype
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf = float32_at_least(x)
        pf = gem_exponent(p, xf.dtype)
        clamped = xf.clamp(min=eps)
        top = clamped.detach().amax(dim=(2, 3), keepdim=True)  # M per channel, (N, C, 1, 1)
        mean = (clamped / top).pow(pf).mean(dim=(2, 3))  # in [1/HW, 1]
        out = top[:, :, 0, 0] * mean.pow(1.0 / pf)
    return out.to(dtype)


def global_lp(x: Tensor, p: float) -> Tensor:
    """The Lp norm of each channel over all positions.

    ``x (Tensor[N, C, H, W]) -> Tensor[N, C]``: (Σ_{h,w} |x|^p)^(1/p), ``p >= 1``.

    ``nn.LPPool2d`` raises x itself to p, which is NaN for a negative x and a fractional p and
    changes sign for odd integer p; here negative inputs count by their magnitude, which makes
    the output the Lp norm (>= 0). In float32 under autocast. As in
    :func:`~poolbench.pooling.power.lp_pool2d`: p > 2 uses the scaled form
    ``M (Σ (|x|/M)^p)^(1/p)`` with M the channel's largest |x|, safe from overflow and
    underflow for any p; p <= 2 the plain sums, recomputed scaled if a sum overflowed or is
    subnormal. The 1/p root has an infinite slope at 0 (an all-zero channel after ReLU), so
    an all-zero channel gives exactly 0 with gradient 0.
    """
    dtype = x.dtype
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf = float32_at_least(x)
        out = None
        if p <= 2:
            total = abs_pow(xf, p).sum(dim=(2, 3))
            if sums_representable(total):
                root = total.clamp(min=torch.finfo(total.dtype).tiny).pow(1.0 / p)
                out = torch.where(total > 0, root, torch.zeros_like(root))
        if out is None:
            top = xf.detach().abs().amax(dim=(2, 3), keepdim=True)  # M, (N, C, 1, 1)
            scale = torch.where(top > 0, top, 1.0)  # all-zero channels: r = 0
            # the sums are >= 1 (the largest term is exactly 1), or 0 for all-zero channels
            total = abs_pow(xf / scale, p).sum(dim=(2, 3))
            total = torch.where(total > 0, total, 1.0)
            out = top[:, :, 0, 0] * total.pow(1.0 / p)
    return out.to(dtype)


@register_pool("global_avg", kind="global", paper="Lin et al. 2013 (Network in Network)")
class GlobalAvgPool(GlobalPool):
    """Mean over all H x W positions; D = C."""

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C)
        return x.mean(dim=(2, 3))


@register_pool("global_max", kind="global", paper="Oquab et al. 2015 (global max pooling)")
class GlobalMaxPool(GlobalPool):
    """Maximum over all H x W positions; D = C."""

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C)
        return x.amax(dim=(2, 3))


@register_pool(
    "global_gem",
    kind="global",
    paper="Radenović, Tolias & Chum 2018 (GeM)",
    learnable=True,
)
class GlobalGeM(GlobalPool):
    """Generalised mean (mean clamp(x, eps)^p)^(1/p); p learnable (init ``p``) or fixed, in
    ``GEM_P_RANGE``; D = C."""

    def __init__(
        self, channels: int, p: float = 3.0, eps: float = 1e-6, learnable_p: bool = True
    ) -> None:
        super().__init__(channels)
        init_gem(self, p, eps, learnable_p)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C)
        return global_gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p.item():.3g}, learnable_p={self.learnable_p}"


@register_pool("global_lp", kind="global", paper="Sermanet et al. 2012; Bruna et al. 2014 (Lp)")
class GlobalLpPool(GlobalPool):
    """Lp norm over all positions, (Σ |x|^p)^(1/p) with p >= 1; negative inputs by magnitude."""

    def __init__(self, channels: int, p: float = 2.0) -> None:
        super().__init__(channels)
        # Below 1 the "norm" is not one, and |x|^p has an infinite slope at 0.
        self.p = check_number("p", p, 1, where=type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C)
        return global_lp(x, self.p)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p:g}"


@register_pool("avgmax", kind="global", paper="timm adaptive_avgmax_pool (fixed 1:1 mix)")
class AvgMaxPool(GlobalPool):
    """0.5 (global mean + global max); D = C."""

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C)
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))


@register_pool("catavgmax", kind="global", paper="timm adaptive_catavgmax_pool")
class CatAvgMaxPool(GlobalPool):
    """Global mean and global max, concatenated along channels; D = 2C."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.out_features = 2 * self.channels

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, 2C): the means first, then the maxima
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class _AdaptiveGridPool(GlobalPool):
    """Adaptive pooling to a fixed ``output_size`` grid, flattened; D = C·h·w."""

    def __init__(self, channels: int, output_size: int | Sequence[int] = 2) -> None:
        super().__init__(channels)
        self.output_size = parse_grid("output_size", output_size, type(self).__name__)
        self.out_features = self.channels * self.output_size[0] * self.output_size[1]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, output_size={list(self.output_size)}"


@register_pool("adaptive_avg", kind="global", paper="He et al. 2014 (adaptive bins, as SPP)")
class AdaptiveAvgPool(_AdaptiveGridPool):
    """Mean over each cell of a fixed h x w grid, flattened channel-major; D = C·h·w."""

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, h, w) -> (N, C·h·w)
        return F_.adaptive_avg_pool2d(x, self.output_size).flatten(1)


@register_pool("adaptive_max", kind="global", paper="He et al. 2014 (adaptive bins, as SPP)")
class AdaptiveMaxPool(_AdaptiveGridPool):
    """Maximum over each cell of a fixed h x w grid, flattened channel-major; D = C·h·w."""

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, h, w) -> (N, C·h·w)
        return F_.adaptive_max_pool2d(x, self.output_size).flatten(1)
