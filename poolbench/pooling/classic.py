"""Classic window pooling: ``max``, ``avg``, ``overlap``, ``min``, ``median``, ``center``,
``maxavg`` and ``none``.

- ``max``: window maximum; keeps the argmax "switches" (Zeiler & Fergus 2014, the seeds'
  backward rule: the gradient flows only to the input that won) for unpooling.
- ``avg``: window mean; the gradient is spread evenly, 1/F^2 to each input.
- ``overlap``: max pooling with F=3, S=2 (Krizhevsky et al. 2012, AlexNet).
- ``min``: window minimum; ``median``: window (lower) median; ``center``: the value at the
  window centre (the seeds' list of pooling variants). ``median`` at F = S = 2 (default) is
  a closed form of min/max ops on strided views; other windows copy the windows out and
  sort each one (slower).
- ``maxavg``: fixed ``alpha * max + (1 - alpha) * avg`` (the seeds' max-avg pooling; the
  fixed form of Lee, Gallagher & Tu 2016's mixed pooling).
- ``none``: identity, the no-pooling baseline (Springenberg et al. 2014, "Striving for
  simplicity"; the seeds' "getting rid of pooling").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor
from torch.autograd.function import once_differentiable

from poolbench.core.checks import check_bool, check_number
from poolbench.pooling.base import LocalPool, pooled_size
from poolbench.pooling.ops import crop_to_blocks, per_block, tiles_into_blocks, window_view
from poolbench.pooling.registry import register_pool


@register_pool("max", kind="local", paper="Ranzato et al. 2007; Jarrett et al. 2009")
class MaxPool(LocalPool):
    """Window maximum; ``return_indices`` keeps the switches for ``unpool``."""

    def __init__(
        self,
        channels: int,
        F: int = 2,
        S: int = 2,
        padding: int = 0,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)
        self.return_indices = check_bool(
            "return_indices", return_indices, where=type(self).__name__
        )
        self.switches: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        if not self.return_indices:
            return F_.max_pool2d(x, self.F, self.S, self.padding, ceil_mode=self.ceil_mode)
        out, self.switches = F_.max_pool2d(
            x, self.F, self.S, self.padding, ceil_mode=self.ceil_mode, return_indices=True
        )
        return out

    def unpool(self, y: Tensor, output_size: torch.Size | None = None) -> Tensor:
        """Place ``y`` back at the recorded switch positions (zeros elsewhere)."""
        if self.switches is None:
            raise RuntimeError("unpool needs a forward pass with return_indices=True first")
        return F_.max_unpool2d(
            y, self.switches, self.F, self.S, self.padding, output_size=output_size
        )


@register_pool("avg", kind="local", paper="LeCun et al. 1998 (subsampling layers)")
class AvgPool(LocalPool):
    """Window mean (zero padding is not counted in the mean)."""

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, padding: int = 0, ceil_mode: bool = False
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return F_.avg_pool2d(
            x, self.F, self.S, self.padding, ceil_mode=self.ceil_mode, count_include_pad=False
        )


@register_pool("overlap", kind="local", paper="Krizhevsky, Sutskever & Hinton 2012 (AlexNet)")
class OverlapPool(MaxPool):
    """Overlapping max pooling: windows F=3 at stride S=2 share a row/column with neighbours."""

    def __init__(
        self,
        channels: int,
        F: int = 3,
        S: int = 2,
        padding: int = 0,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> None:
        super().__init__(channels, F, S, padding, ceil_mode, return_indices)


def min_pool2d(x: Tensor, F: int, S: int, padding: int = 0, ceil_mode: bool = False) -> Tensor:
    """Window minimum of ``x (Tensor[N, C, H, W])``: ``min_window x = -max_window(-x)``.

    Padding never wins: ``max_pool2d`` pads ``-x`` with -inf, i.e. ``x`` with +inf.
    """
    return -F_.max_pool2d(-x, F, S, padding, ceil_mode=ceil_mode)


@register_pool("min", kind="local", paper="(the seeds' min pooling)")
class MinPool(LocalPool):
    """Window minimum (the gradient flows only to the input that was smallest)."""

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, padding: int = 0, ceil_mode: bool = False
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return min_pool2d(x, self.F, self.S, self.padding, self.ceil_mode)


class _Median2x2(torch.autograd.Function):
    """Lower median of each 2x2 block (F = S = 2, no padding) in closed form.

    The second smallest of {a, b, c, d} is ``min(max(min(a, b), min(c, d)),
    min(max(a, b), max(c, d)))``: six elementwise min/max ops on the four strided quarter
    views, where the general path copies every window out and sorts it. The backward routes
    the gradient to the first of a (top-left), b (top-right), c (bottom-left), d
    (bottom-right) that equals the median, so ties (and NaN windows, which go to d) send it
    to exactly one input, as ``torch.median`` does.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        oh, ow = x.shape[-2] // 2, x.shape[-1] // 2
        a, b, c, d = (x[:, :, i : 2 * oh : 2, j : 2 * ow : 2] for i in (0, 1) for j in (0, 1))
        low = torch.minimum(a, b)
        high = torch.maximum(a, b)
        torch.maximum(low, torch.minimum(c, d), out=low)
        torch.minimum(high, torch.maximum(c, d), out=high)
        median = torch.minimum(low, high, out=low)
        ctx.save_for_backward(x, median)
        return median

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, median = ctx.saved_tensors
        h, w = x.shape[-2:]
        oh, ow = h // 2, w // 2
        cropped = h != 2 * oh or w != 2 * ow
        grad_x = (torch.zeros_like if cropped else torch.empty_like)(x)
        zero = grad.new_zeros(())
        left = grad.clone()  # gradient not yet routed: zeroed in windows already served
        for i, j in ((0, 0), (0, 1), (1, 0)):
            region = grad_x[:, :, i : 2 * oh : 2, j : 2 * ow : 2]
            chosen = x[:, :, i : 2 * oh : 2, j : 2 * ow : 2] == median
            torch.where(chosen, left, zero, out=region)
            left.masked_fill_(chosen, 0.0)
        grad_x[:, :, 1 : 2 * oh : 2, 1 : 2 * ow : 2] = left
        return grad_x


def median_pool2d(x: Tensor, F: int, S: int, padding: int = 0, ceil_mode: bool = False) -> Tensor:
    """Window median of ``x (Tensor[N, C, H, W])``.

    For an even number of values (F even) this is the *lower* median, the smaller of the two
    middle values (``torch.median``'s convention), so every output is one of its window's
    inputs and the gradient flows to that input alone. Padding is excluded from the median
    (padded with NaN, reduced with ``nanmedian``); every window holds at least one real input
    because padding <= F/2 and the last ceil-mode window starts inside the map. F = S = 2
    without padding (the default) takes a closed form of min/max ops (:class:`_Median2x2`).
    """
    if F == 2 and tiles_into_blocks(*x.shape[-2:], F, S, padding, ceil_mode):
        return _Median2x2.apply(x)
    padded = bool(padding) or ceil_mode
    windows = window_view(x, F, S, padding, ceil_mode, float("nan") if padded else 0.0)
    flat = windows.flatten(-2)  # (N, C, H', W', F*F); copies the overlapping view
    if padded:
        return flat.nanmedian(dim=-1).values
    return flat.median(dim=-1).values


@register_pool("median", kind="local", paper="(the seeds' median pooling; lower median for even F)")
class MedianPool(LocalPool):
    """Window median (lower median when the window has an even number of values)."""

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, padding: int = 0, ceil_mode: bool = False
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return median_pool2d(x, self.F, self.S, self.padding, self.ceil_mode)


def center_pool2d(x: Tensor, F: int, S: int, padding: int = 0, ceil_mode: bool = False) -> Tensor:
    """The value at the centre of each window of ``x (Tensor[N, C, H, W])``.

    The centre is offset ``F // 2`` from the window's top-left corner in each direction: the
    middle element for odd F, and for even F the lower-right of the four central elements
    (F=2: the bottom-right of each 2x2 block, i.e. ``x[..., 1::2, 1::2]`` at S=2). Because
    padding <= F // 2, a centre never falls in the top/left padding; a centre past the
    bottom/right edge (ceil mode) reads zero padding. Pure strided selection: no arithmetic.
    """
    h, w = x.shape[-2:]
    oh = pooled_size(h, F, S, padding, ceil_mode)
    ow = pooled_size(w, F, S, padding, ceil_mode)
    first = F // 2 - padding  # index of the first centre in unpadded coordinates
    last_h, last_w = first + (oh - 1) * S, first + (ow - 1) * S
    if last_h >= h or last_w >= w:
        x = F_.pad(x, (0, max(0, last_w - w + 1), 0, max(0, last_h - h + 1)))
    return x[:, :, first : last_h + 1 : S, first : last_w + 1 : S]


@register_pool("center", kind="local", paper="(the seeds' center pooling)")
class CenterPool(LocalPool):
    """The value at each window's centre (offset F//2; lower-right of the middle for even F)."""

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, padding: int = 0, ceil_mode: bool = False
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return center_pool2d(x, self.F, self.S, self.padding, self.ceil_mode)


class _BlockMaxAvgPool(torch.autograd.Function):
    """``alpha * max + (1 - alpha) * mean`` over F x F blocks with a one-pass backward: the
    mean's share of the gradient is broadcast over each block, then the max's share is added
    at the switches (autograd would run both pooling backwards and sum two full-size maps)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float, F: int) -> Tensor:  # type: ignore[override]
        mx, switches = F_.max_pool2d(x, F, F, return_indices=True)
        ctx.save_for_backward(switches)
        ctx.alpha, ctx.F, ctx.shape = alpha, F, x.shape
        return torch.lerp(F_.avg_pool2d(x, F, F), mx, alpha)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (switches,) = ctx.saved_tensors
        alpha, F = ctx.alpha, ctx.F
        n, c, h, w = grad.shape
        share = per_block(grad * ((1 - alpha) / (F * F)))
        grad_x = share.expand(n, c, h, F, w, F).reshape(ctx.shape)  # (N, C, H, W), a copy
        grad_x.view(n, c, -1).scatter_add_(
            2, switches.view(n, c, -1), (grad * alpha).view(n, c, -1)
        )
        return grad_x, None, None


def max_avg_pool2d(
    x: Tensor, alpha: float, F: int, S: int, padding: int = 0, ceil_mode: bool = False
) -> Tensor:
    """``alpha * max_window x + (1 - alpha) * mean_window x`` for ``x (Tensor[N, C, H, W])``.

    The mean excludes zero padding. Non-overlapping blocks (F == S, no padding) take a fused
    backward; other settings use autograd.
    """
    if tiles_into_blocks(*x.shape[-2:], F, S, padding, ceil_mode):
        return _BlockMaxAvgPool.apply(crop_to_blocks(x, F), alpha, F)
    mx = F_.max_pool2d(x, F, S, padding, ceil_mode=ceil_mode)
    avg = F_.avg_pool2d(x, F, S, padding, ceil_mode=ceil_mode, count_include_pad=False)
    return torch.lerp(avg, mx, alpha)


@register_pool(
    "maxavg",
    kind="local",
    paper="(the seeds' max-avg pooling; fixed mix as in Lee et al. 2016)",
)
class MaxAvgPool(LocalPool):
    """Fixed max-avg mix: ``alpha * max + (1 - alpha) * avg`` (alpha=0.5: the plain mean of both).

    The seeds name "max-avg pooling" without a weighting; we use Lee, Gallagher & Tu's 2016
    mixed max-average form with a fixed, not learned, ``alpha`` (default 0.5, the same equal
    weighting as timm's avg-max pooling). ``mixed`` is the learned version.
    """

    def __init__(
        self,
        channels: int,
        F: int = 2,
        S: int = 2,
        padding: int = 0,
        ceil_mode: bool = False,
        alpha: float = 0.5,
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)
        self.alpha = check_number("alpha", alpha, 0, 1, where=type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return max_avg_pool2d(x, self.alpha, self.F, self.S, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}"


@register_pool("none", kind="local", paper="(baseline: no pooling)")
class NoPool(LocalPool):
    """Identity: the stage keeps its resolution (the "getting rid of pooling" baseline).

    It has no F or S: internally a 1x1 window at stride 1, so ``output_size`` is the input
    size and any map of at least 1x1 is accepted.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(F=1, S=1)

    def forward(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return ""
