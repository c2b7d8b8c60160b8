"""Power-mean pooling: ``lp`` and ``gem``.

- ``lp``: Lp pooling, ``(sum_window |x|^p)^(1/p)`` (Sermanet, Chintala & LeCun 2012;
  Boureau, Ponce & LeCun 2010), the formula of ``torch.nn.LPPool2d`` made safe for negative
  inputs by taking ``|x|`` (so the output is the window's Lp norm).
- ``gem``: generalized-mean pooling, ``(mean_window clamp(x, eps)^p)^(1/p)`` with ``p``
  learnable (init 3) or fixed (Radenovic, Tolias & Chum 2018). p=1 is avg, p -> inf is max.

Both scale each window by its maximum before the power (see :func:`lp_pool2d`,
:func:`gem_pool2d`), so no p overflows or underflows.

Both compute their powers in float32, also under autocast (bf16 overflows/underflows at
powers of activations long before fp32 does), and return the input's dtype. Non-overlapping
blocks (the default F = S = 2) take a closed-form backward, which makes one pass where
autograd through the formula makes several.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import Tensor
from torch.autograd.function import once_differentiable

from poolbench.core.checks import check_number
from poolbench.pooling.base import LocalPool, gem_exponent, init_gem
from poolbench.pooling.ops import (
    abs_pow,
    block_max,
    block_view,
    crop_to_blocks,
    float32_at_least,
    per_block,
    sums_representable,
    tiles_into_blocks,
    window_view,
)
from poolbench.pooling.registry import register_pool


def _lp_root(total: Tensor, p: float) -> Tensor:
    # The root's derivative is infinite at 0; clamping makes all-zero windows output
    # tiny^(1/p) (< 1e-19 for p <= 2) with a zero gradient instead of NaN.
    total = total.clamp_min(torch.finfo(total.dtype).tiny)
    return total.sqrt() if p == 2 else total.pow(1.0 / p)


def _scaled_root(total: Tensor, p: float) -> Tensor:
    # Scaled sums are >= 1 (the window's largest term is exactly (M/M)^p = 1) except for
    # all-zero windows (0); setting those to 1 keeps the root and its slope finite there, and
    # the output M * root is 0 all the same. (Not clamp_min(1): its gradient is 0 at 1, the
    # sum of every window whose other terms vanish beside the largest.)
    total = torch.where(total > 0, total, 1.0)
    return total.sqrt() if p == 2 else total.pow(1.0 / p)


class _BlockLpPool(torch.autograd.Function):
    """Lp pooling over F x F blocks with the closed-form gradient.

    ``out = M * root`` with ``r = x / M``, ``y = |r|^p``, ``root = (sum_block y)^(1/p)`` and
    M the block's largest |x| (the scaled form), or M = 1 (the unscaled form, see
    :func:`lp_pool2d` for which is used). Since out is homogeneous in x,
    ``dx_i = g * sign(r_i) |r_i|^(p-1) / root^(p-1) = g * (y_i / r_i) / root^(p-1)``
    (one pass instead of autograd's five), taken as 0 at x = 0 (the subgradient; autograd
    gives NaN there for p < 1).
    """

    @staticmethod
    def forward(ctx, x: Tensor, p: float, F: int) -> Tensor:  # type: ignore[override]
        top = None
        if p <= 2:
            powered = x.square() if p == 2 else x.abs().pow(p)
            total = F_.avg_pool2d(powered, F, F, divisor_override=1)
            ratios = x
            if sums_representable(total):
                root = _lp_root(total, p)
            else:
                top = block_max(x.abs(), F)
        else:
            top = block_max(x.abs(), F)
        if top is not None:
            scale = torch.where(top > 0, top, 1.0)  # all-zero blocks: r = 0
            ratios = (block_view(x, F) / per_block(scale)).reshape(x.shape)
            powered = ratios.square() if p == 2 else ratios.abs().pow(p)
            total = F_.avg_pool2d(powered, F, F, divisor_override=1)
            root = _scaled_root(total, p)
        out = root if top is None else root * top
        ctx.save_for_backward(ratios, root, None if p == 2 else powered)
        ctx.p, ctx.F = p, F
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        ratios, root, powered = ctx.saved_tensors
        p, F = ctx.p, ctx.F
        if p == 2:
            scale = grad / root
            return (block_view(ratios, F) * per_block(scale)).reshape(ratios.shape), None, None
        scale = grad / root.pow(p - 1)
        signed = torch.where(ratios != 0, powered / ratios, 0.0)  # sign(r) |r|^(p-1)
        return (block_view(signed, F) * per_block(scale)).reshape(ratios.shape), None, None


def _unscaled_gem_may_be_exact(exponent: float, eps: float, dtype: torch.dtype) -> bool:
    """Whether every term clamp(x, eps)^p, being >= eps^p, is a normal float (no underflow);
    the caller still checks the window means for overflow (:func:`_gem_means_in_range`)."""
    return eps >= 1 or exponent * math.log(eps) >= math.log(torch.finfo(dtype).tiny)


def _gem_means_in_range(mean: Tensor) -> bool:
    """Unscaled window means below sqrt(largest float): no power, ``y ln y`` or gradient term
    overflowed. Reads only the output-sized means; one device sync."""
    if mean.numel() == 0:
        return True
    with torch.no_grad():
        return float(mean.amax()) <= torch.finfo(mean.dtype).max ** 0.5


def _gem_power(x: Tensor, top: Tensor | None, F: int, eps: float, exponent: float) -> Tensor:
    """clamp(x, eps)^p, or with ``top`` (M, the block maxima) (clamp(x, eps) / M)^p over
    F x F blocks: a new tensor."""
    y = x.clamp_min(eps)
    if top is not None:
        block_view(y, F).div_(per_block(top))
    return y.pow_(exponent)


class _BlockGeMPool(torch.autograd.Function):
    """GeM over F x F blocks with a closed-form gradient for x and a learnable p.

    With c = clamp(x, eps), M = max_block c, r = c / M, y = r^p, m = mean_block y,
    out = M m^(1/p), A = F*F. In this scaled form every r and y lies in (0, 1], the block's
    largest exactly 1, so m >= 1/A and nothing under- or overflows for any p. out is
    homogeneous in c, so M is a constant of the differentiation; with
    k = m^(1/p - 1) / A = out / (A m M):

    - ``dx_i = g k r_i^(p-1)`` where x_i > eps (else 0, the clamp's flat side);
    - ``dp = sum_blocks g k M (sum_block(y ln y) - A m ln m) / p^2``, since ``ln r = ln(y)/p``.

    Where that is exact (see :func:`gem_pool2d`) the same formulas run with M = 1, which
    saves the block maxima and two divisions over the input.

    On CPU a fresh full-size tensor costs more than the arithmetic on it (page faults), so
    one buffer serves both passes: the forward computes y in it (clamp, scale and power in
    place), the backward reduces ``y ln y`` in it and then overwrites it with the input
    gradient. A second backward through the same graph (``retain_graph``) finds the buffer
    spent and recomputes y from x. The power takes p as a Python number (a scalar-exponent
    kernel, with fast paths for p = 2, 3); on CUDA reading p is a device sync.
    """

    @staticmethod
    def forward(ctx, x: Tensor, p: Tensor, F: int, eps: float) -> Tensor:  # type: ignore[override]
        exponent = float(p)
        top = None
        unscaled = _unscaled_gem_may_be_exact(exponent, eps, x.dtype)
        if unscaled:
            y = _gem_power(x, None, F, eps, exponent)
            mean = F_.avg_pool2d(y, F, F)
            unscaled = _gem_means_in_range(mean)
        if not unscaled:
            top = block_max(x, F).clamp_min_(eps)  # M = max of clamp(x, eps)
            y = _gem_power(x, top, F, eps, exponent)
            mean = F_.avg_pool2d(y, F, F)  # in [1/A, 1]
        out = mean.pow(1.0 / exponent)
        k = torch.div(out, mean)
        if top is not None:
            out.mul_(top)
        k.div_(F * F)  # k = out / (A m M)
        ctx.save_for_backward(x, p, mean, top, k)
        # an intermediate, kept outside save_for_backward: backward overwrites it
        ctx.F, ctx.eps, ctx.exponent, ctx.buffer = F, eps, exponent, y
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor | None, None, None]:  # type: ignore[override]
        x, p, mean, top, k = ctx.saved_tensors
        F, eps, exponent, y = ctx.F, ctx.eps, ctx.exponent, ctx.buffer
        ctx.buffer = None
        if y is None:
            y = _gem_power(x, top, F, eps, exponent)
        scale = torch.mul(k, grad).contiguous()  # g k, NCHW like k whatever grad's layout
        grad_p = None
        if ctx.needs_input_grad[1]:
            # entr(y) = -y ln y: minus (block sums of y ln y minus A m ln m)
            spread = F_.avg_pool2d(torch.special.entr(y, out=y), F, F, divisor_override=1)
            spread.add_(torch.xlogy(mean, mean), alpha=F * F)
            weight = scale if top is None else scale * top  # g k M = g out / (A m)
            grad_p = (-torch.dot(weight.flatten(), spread.flatten()) / (p * p)).reshape(p.shape)
        grad_x = y.copy_(x)
        if exponent > 1:
            # threshold zeroes x <= eps (clamp's flat side: no gradient), and 0^(p-1) = 0
            F_.threshold_(grad_x, eps, 0.0)
            if top is not None:
                block_view(grad_x, F).div_(per_block(top))
            grad_x.pow_(exponent - 1)
        else:
            grad_x.clamp_min_(eps)
            if top is not None:
                block_view(grad_x, F).div_(per_block(top))
            grad_x.pow_(exponent - 1).masked_fill_(x < eps, 0.0)
        block_view(grad_x, F).mul_(per_block(scale))
        return grad_x, grad_p, None, None


def _window_lp(x: Tensor, p: float, F: int, S: int, padding: int, ceil_mode: bool) -> Tensor:
    """Lp pooling of any window setting through autograd (see :func:`lp_pool2d`)."""
    if p <= 2:
        # divisor 1: window sums (partial ceil-mode windows and zero padding included)
        total = F_.avg_pool2d(abs_pow(x, p), F, S, padding, ceil_mode, divisor_override=1)
        if sums_representable(total):
            return _lp_root(total, p)
    windows = window_view(x, F, S, padding, ceil_mode, 0.0)  # (N, C, H', W', F, F)
    top = windows.detach().abs().amax(dim=(-2, -1))  # M per window, (N, C, H', W')
    scale = torch.where(top > 0, top, 1.0)[..., None, None]  # all-zero windows: r = 0
    total = abs_pow(windows / scale, p).sum(dim=(-2, -1))
    return top * _scaled_root(total, p)


def lp_pool2d(
    x: Tensor, p: float, F: int, S: int, padding: int = 0, ceil_mode: bool = False
) -> Tensor:
    """Lp pooling of ``x (Tensor[N, C, H, W])``: ``(sum_window |x|^p)^(1/p)``.

    ``torch.nn.LPPool2d`` raises ``x`` itself to the power p, which is NaN for negative inputs
    and non-integer p, and signed for odd p; we use ``|x|`` so the result is the Lp norm of
    the window for any sign (identical to LPPool2d for x >= 0 or even integer p). Zero padding
    adds nothing to the sum, and partial ceil-mode windows sum what they hold. An input at
    exactly 0 gets the subgradient 0 for every p, on every window setting.

    Overflow and underflow. ``|x|^p`` leaves float32's range for moderate activations once p
    is large (p = 16: 300^16 overflows, 0.001^16 underflows), so the sum is formed in the
    scaled form ``M * (sum_window (|x| / M)^p)^(1/p)`` with M the window's largest |x|, whose
    terms lie in [0, 1] with the largest exactly 1: exact to rounding for any p, and the limit
    p -> inf is M, the window's max |x|. The rule for which form is used:

    - p > 2: always the scaled form (the window maxima and a division over the input);
    - p <= 2: first the plain sums, without extra full-size passes. They are exact unless a
      window sum overflowed or is subnormal, which is checked on the output-sized sums; such
      a call is recomputed in the scaled form. What the check cannot see is a window whose
      every ``|x|^p`` underflowed to exactly 0 (p = 2: every |x| < 4e-23): it outputs 0, within
      1e-22 of the true value. An all-zero window outputs 0 (unscaled: below 1e-19 for
      p <= 2, the sum being clamped at the smallest normal float before the root, whose slope
      is infinite at 0) with gradient 0.
    """
    with torch.autocast(x.device.type, enabled=False):
        xf = float32_at_least(x)
        if tiles_into_blocks(*xf.shape[-2:], F, S, padding, ceil_mode):
            out = _BlockLpPool.apply(crop_to_blocks(xf, F), p, F)
        else:
            out = _window_lp(xf, p, F, S, padding, ceil_mode)
    return out.to(x.dtype)


@register_pool("lp", kind="local", paper="Sermanet, Chintala & LeCun 2012 (Lp pooling)")
class LpPool(LocalPool):
    """Lp pooling ``(sum_window |x|^p)^(1/p)``: p=1 sums |x|, p -> inf is max |x| (any p is
    safe from overflow and underflow; see :func:`lp_pool2d`)."""

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
        self.p = check_number("p", p, 0, low_open=True, where=type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return lp_pool2d(x, self.p, self.F, self.S, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p:g}"


def _window_gem(
    x: Tensor, p: Tensor, F: int, S: int, padding: int, ceil_mode: bool, eps: float
) -> Tensor:
    """GeM of any window setting (or per-channel p) through autograd (see :func:`gem_pool2d`
    and :class:`_BlockGeMPool` for the two forms)."""
    per_channel = p.numel() > 1
    out_p = p.view(1, -1, 1, 1) if per_channel else p
    if _unscaled_gem_may_be_exact(float(p.detach().max()), eps, x.dtype):
        powered = x.clamp_min(eps).pow(out_p)
        mean = F_.avg_pool2d(powered, F, S, padding, ceil_mode, count_include_pad=False)
        if _gem_means_in_range(mean):
            return mean.pow(1.0 / out_p)
    windows = window_view(x.clamp_min(eps), F, S, padding, ceil_mode, 0.0)  # (N, C, H', W', F, F)
    top = windows.detach().amax(dim=(-2, -1))  # M >= eps per window; padding (0) never wins
    window_p = p.view(1, -1, 1, 1, 1, 1) if per_channel else p
    powered = (windows / top[..., None, None]).pow(window_p)  # padding: 0^p = 0
    # real inputs per window: padding and the ceil-mode overhang are not counted
    count = F_.avg_pool2d(torch.ones_like(x[:1, :1]), F, S, padding, ceil_mode, divisor_override=1)
    mean = powered.sum(dim=(-2, -1)) / count  # in [1/F^2, 1]
    return top * mean.pow(1.0 / out_p)


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

    Overflow and underflow. Unscaled, a window at eps gives eps^p = 0 in float32 from p ~ 7.5
    on (output 0 instead of eps, NaN gradients for x and p), and large activations overflow.
    The scaled form ``M * (mean_window (clamp(x, eps) / M)^p)^(1/p)``, M the window's largest
    clamped value, has its terms in (0, 1] with the largest 1, so no p under- or overflows.
    The rule for which form is used:

    - unscaled (no extra passes) when eps^p is a normal float, so no term underflows (p <= 6.3
      for eps = 1e-6 in float32), and no window mean exceeds sqrt(largest float), checked on
      the output-sized means, so no power, ``y ln y`` or gradient term overflowed: then it is
      exact to rounding;
    - scaled otherwise (the block maxima and a division over the input in each pass).

    The exponent used is p clamped to ``GEM_P_RANGE`` = [0.1, 1000]
    (:func:`~poolbench.pooling.base.gem_exponent`): a learned p that leaves the range is
    held at the bound and gets no gradient from the pool while outside.
    """
    with torch.autocast(x.device.type, enabled=False):
        xf = float32_at_least(x)
        pf = gem_exponent(p, xf.dtype)
        if pf.numel() == 1 and tiles_into_blocks(*xf.shape[-2:], F, S, padding, ceil_mode):
            out = _BlockGeMPool.apply(crop_to_blocks(xf, F), pf, F, eps)
        else:
            out = _window_gem(xf, pf, F, S, padding, ceil_mode, eps)
    return out.to(x.dtype)


@register_pool("gem", kind="local", paper="Radenovic, Tolias & Chum 2018 (GeM)", learnable=True)
class GeMPool(LocalPool):
    """Generalized-mean pooling with exponent p (learnable by default, init 3; configured and
    used within ``GEM_P_RANGE`` = [0.1, 1000])."""

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
        init_gem(self, p, eps, learnable_p)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return gem_pool2d(x, self.p, self.F, self.S, self.padding, self.ceil_mode, self.eps)

    def extra_repr(self) -> str:
        kind = "learnable" if self.learnable_p else "fixed"
        return f"{super().extra_repr()}, p={float(self.p.detach()):.3g} ({kind}), eps={self.eps:g}"
