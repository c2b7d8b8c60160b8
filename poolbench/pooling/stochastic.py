"""Randomised pooling: ``stochastic`` and ``fractional``.

- ``stochastic``: Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep
  Convolutional Neural Networks", ICLR 2013. Training samples one activation per window with
  probability p_i = a_i / sum_k a_k (Sec. 3, Eq. 3-4); inference returns the probability-
  weighted sum sum_i p_i a_i (Sec. 3.1, Eq. 5).
- ``fractional``: Graham, "Fractional Max-Pooling", arXiv:1412.6071, 2014. Max over
  variable-size regions whose boundaries grow by 1 or 2, so the side shrinks by a
  non-integer factor alpha = 1/ratio in (1, 2] (Sec. 2).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from poolbench.core.checks import check_bool, check_int, check_number
from poolbench.core.errors import ShapeError
from poolbench.pooling.base import LocalPool, pooled_size
from poolbench.pooling.ops import block_view, float32_at_least
from poolbench.pooling.registry import register_pool


def stochastic_pool2d(x: Tensor, F: int = 2, S: int = 2, training: bool = True) -> Tensor:
    """Stochastic pooling of ``x (Tensor[N, C, H, W])`` -> ``Tensor[N, C, H', W']``.

    Probabilities come from the clamped activations w_i = max(a_i, 0): the paper assumes
    ReLU outputs (a_i >= 0), so negative inputs get probability 0 instead of a negative or
    undefined one. A window with no positive entry (all zero, or all negative) falls back to
    uniform probabilities 1/F^2: it samples uniformly in training and returns the window mean
    in evaluation, so it never divides by zero (for ReLU outputs the result is then 0).

    - training: y = a_k with k ~ Categorical(w / sum w); the gradient flows only to the
      sampled input (like max pooling). Disjoint windows (F == S) sample by inverse CDF (one
      uniform per window); overlapping ones by an exponential race (k = argmax w_i / E_i,
      E_i ~ Exp(1)) that native max pooling evaluates.
    - evaluation: y = sum_i w_i a_i / sum_i w_i = avg(w^2) / avg(w) (since w_i a_i = w_i^2),
      computed with two native average pools.

    Probabilities are computed in float32 under reduced precision; in float32 w^2 overflows
    only for activations above ~1.8e19.
    """
    h_out, w_out = pooled_size(x.shape[-2], F, S), pooled_size(x.shape[-1], F, S)
    if not training:
        xf = float32_at_least(x)
        w = xf.clamp(min=0)
        num = F_.avg_pool2d(w * w, F, S)
        den = F_.avg_pool2d(w, F, S)
        positive = den > 0
        if bool(positive.all()):  # the common case skips the fallback's extra pool
            return (num / den).to(x.dtype)
        weighted = num / torch.where(positive, den, torch.ones_like(den))
        return torch.where(positive, weighted, F_.avg_pool2d(xf, F, S)).to(x.dtype)

    n, c, height, width = x.shape
    if F == S:
        flat = _disjoint_sample(x, F, h_out, w_out)
    else:
        flat = _race_sample(x, F, S, h_out, w_out)
    picked = x.reshape(n, c, height * width).gather(2, flat.view(n, c, h_out * w_out))
    return picked.view(n, c, h_out, w_out)


def _disjoint_sample(x: Tensor, F: int, h_out: int, w_out: int) -> Tensor:
    """Flat index (N, C, H', W') of one sample per disjoint window (F == S): inverse CDF.

    One uniform u per window, scaled by the window's total weight; the pick is the first
    candidate (row-major) whose cumulative weight exceeds u, i.e. its offset is the sum of
    the offset steps of every candidate whose cumulative weight is <= u. Zero-weight
    candidates never exceed u first. This draws a quarter as many random numbers as the race
    and walks only strided views.
    """
    n, c, height, width = x.shape
    with torch.no_grad():
        xf = float32_at_least(x)[..., : h_out * F, : w_out * F]
        w6 = block_view(xf.clamp(min=0), F)  # (N, C, H', F, W', F)
        offsets = [a * width + b for a in range(F) for b in range(F)]
        cums = []
        total = None
        for a in range(F):
            for b in range(F):
                w = w6[:, :, :, a, :, b]
                total = w.clone() if total is None else total.add_(w)
                cums.append(total.clone() if len(cums) < F * F - 1 else total)
        assert total is not None
        r = torch.rand(total.shape, device=x.device, dtype=total.dtype)
        u = r * total
        # Offsets accumulate in float32 (exact below 2^24), then become indices once.
        off = torch.zeros_like(total)
        for j, cum in enumerate(cums[:-1]):
            off.add_(cum <= u, alpha=offsets[j + 1] - offsets[j])
        empty = total <= 0  # no positive entry: sample the window uniformly instead
        if empty.any():
            pick = (r * (F * F)).floor_().clamp_(max=F * F - 1)
            row = (pick / F).floor_()
            off = torch.where(empty, row * width + (pick - row * F), off)
        rows = torch.arange(h_out, device=x.device).view(h_out, 1) * (F * width)
        cols = torch.arange(w_out, device=x.device) * F
        return off.long().add_(rows + cols)


def _race_sample(x: Tensor, F: int, S: int, h_out: int, w_out: int) -> Tensor:
    """Flat index (N, C, H', W') of one sample per (possibly overlapping) window."""
    n, c, height, width = x.shape
    with torch.no_grad():
        # Exponential race: with E_i ~ Exp(1) i.i.d., argmax_i w_i / E_i is i with probability
        # w_i / sum w, so native max pooling over the keys draws every window's sample.
        xf = float32_at_least(x)
        keys = torch.rand_like(xf).log_()  # -E
        # x / E: positive entries race as w / E; zero and negative ones (w = 0) stay <= 0.
        keys = torch.div(xf, keys, out=keys).neg_()
        top, flat = F_.max_pool2d(keys, F, S, return_indices=True)
        empty = top <= 0  # no positive entry: sample the window uniformly instead
        if empty.any():
            offsets = torch.tensor([a * width + b for a in range(F) for b in range(F)])
            corners = torch.arange(h_out).view(h_out, 1) * (S * width) + torch.arange(w_out) * S
            pick = torch.randint(F * F, top.shape, device=x.device)
            uniform = corners.to(x.device) + offsets.to(x.device)[pick]
            flat = torch.where(empty, uniform, flat)
        return flat


@register_pool("stochastic", kind="local", paper="Zeiler & Fergus 2013 (ICLR)")
class StochasticPool(LocalPool):
    """Samples one activation per window (training); probability-weighted mean (eval)."""

    def __init__(self, channels: int, F: int = 2, S: int = 2) -> None:
        super().__init__(F, S)

    def forward(self, x: Tensor) -> Tensor:
        return stochastic_pool2d(x, self.F, self.S, self.training)  # (N, C, H', W')


def fractional_boundaries(
    length: int, n_out: int, pseudo_random: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Graham's boundary sequence 0 = a_0 < ... < a_{n_out} = length (int64, n_out + 1).

    Increments are floor(alpha) or ceil(alpha) with alpha = length / n_out, i.e. 1 or 2 for
    1 < alpha <= 2 (Graham 2014, Sec. 2):

    - pseudo_random: a_i = ceil(alpha (i + u)) with one u ~ U(0, 1), shifted so a_0 = 0. We
      use floor, which differs from ceil only by that constant shift, and exact integer
      arithmetic (u = m / 2^20), so a_{n_out} = length holds exactly.
    - random: a random permutation of the right numbers of small and large increments.
    """
    device = None if generator is None else generator.device
    if pseudo_random:
        scale = 1 << 20
        m = int(torch.randint(0, scale, (1,), generator=generator, device=device))
        i = torch.arange(n_out + 1, dtype=torch.long)
        return (length * (i * scale + m)) // (n_out * scale) - (length * m) // (n_out * scale)
    small = length // n_out
    n_large = length - small * n_out
    order = torch.randperm(n_out, generator=generator, device=device)
    increments = small + (order < n_large).long()
    return torch.cat([torch.zeros(1, dtype=torch.long), increments.cumsum(0)])


def _pick(planes: Tensor, dim: int, index: Tensor) -> Tensor:
    """Rows (``dim`` 1) or columns (``dim`` 2) ``index`` of ``planes (Tensor[P, H, W])``.

    An index_select of columns is several times slower than a max pool on CPU; a gather with
    an expanded (not materialised) index is not.
    """
    if dim == 1:
        return planes.index_select(1, index)
    return planes.gather(2, index.view(1, 1, -1).expand(planes.shape[0], planes.shape[1], -1))


class _Ranges(NamedTuple):
    """Inclusive index ranges [lo[i], hi[i]] along one axis of length ``size``, prepared once
    per call: ``steps[s]`` holds ``min(lo + s, hi)`` on the input's device (repeating the
    last index for shorter ranges leaves their max and switch unchanged); ``tiles`` says the
    ranges are disjoint and cover the axis (the default, non-overlapping mode)."""

    steps: list[Tensor]
    size: int
    tiles: bool


def _ranges(lo: Tensor, hi: Tensor, size: int, device: torch.device) -> _Ranges:
    """From CPU boundaries, so that nothing here waits on the device."""
    span = int((hi - lo).max()) + 1
    tiles = bool(lo[0] == 0 and hi[-1] == size - 1 and (lo[1:] == hi[:-1] + 1).all())
    steps = [torch.minimum(lo + step, hi).to(device) for step in range(span)]
    return _Ranges(steps, size, tiles)


def _region_max(
    planes: Tensor, dim: int, ranges: _Ranges, locate: bool
) -> tuple[Tensor, Tensor | None]:
    """Max of ``planes`` over ``ranges`` along ``dim``, and (with ``locate``) which step of
    each range holds it, as a float tensor: the first of equal maxima, like max pooling's
    switches."""
    best = _pick(planes, dim, ranges.steps[0])
    which = None
    for step, index in enumerate(ranges.steps[1:], 1):
        part = _pick(planes, dim, index)
        if locate:
            # Arithmetic, not torch.where: a where on a bool mask is much slower on CPU.
            later = (part > best).to(part.dtype)
            which = later if which is None else which + later * (step - which)
        best = torch.maximum(best, part)
    return best, which


def _route_back(grad: Tensor, which: Tensor | None, dim: int, ranges: _Ranges) -> Tensor:
    """Inverse of :func:`_region_max`: each range's gradient onto the position of its max."""
    shape = list(grad.shape)
    shape[dim] = ranges.size
    span, tiles = len(ranges.steps), ranges.tiles
    # Disjoint ranges that tile the input (the default) cover each position once: plain
    # copies, last step first, so that a one-wide range's own step 0 is written last.
    out = grad.new_empty(shape) if tiles else grad.new_zeros(shape)
    rest = grad
    for step in range(span - 1, -1, -1):
        index = ranges.steps[step]
        if step == 0:
            part = rest  # what no later step took
        else:
            assert which is not None
            mask = which if span == 2 else (which == step).to(grad.dtype)
            part = grad * mask
            rest = rest - part
        if dim == 1:
            (out.index_copy_ if tiles else out.index_add_)(1, index, part)
        else:
            index = index.view(1, 1, -1).expand_as(part)
            (out.scatter_ if tiles else out.scatter_add_)(2, index, part)
    return out


class _FractionalMax(torch.autograd.Function):
    """Separable region max with a hand-written backward: the row stage, then the column
    stage, each remembering its switch; the gradient retraces them (per step of a range one
    row copy and one column scatter, accumulating only where ranges overlap; no int64 index
    arithmetic on the full tensor)."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: _Ranges, cols: _Ranges):
        n, c, height, width = x.shape
        planes = x.reshape(n * c, height, width)
        row_max, row_which = _region_max(planes, 1, rows, locate=True)  # (NC, H', W)
        out, col_which = _region_max(row_max, 2, cols, locate=True)  # (NC, H', W')
        ctx.rows, ctx.cols, ctx.which, ctx.shape = rows, cols, (row_which, col_which), x.shape
        return out.view(n, c, out.shape[1], out.shape[2])

    @staticmethod
    def backward(ctx, grad: Tensor):
        n, c, height, width = ctx.shape
        row_which, col_which = ctx.which
        grad = grad.reshape(n * c, grad.shape[2], grad.shape[3])
        grad_rows = _route_back(grad, col_which, 2, ctx.cols)  # (NC, H', W)
        grad_x = _route_back(grad_rows, row_which, 1, ctx.rows)  # (NC, H, W)
        return grad_x.view(n, c, height, width), None, None


def fractional_max_pool2d(
    x: Tensor,
    ratio: float,
    pseudo_random: bool = True,
    overlapping: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fractional max pooling of ``x (Tensor[N, C, H, W])`` -> ``Tensor[N, C, H', W']``.

    H' = ceil(ratio * H) (so alpha = H / H' <= 1/ratio <= 2 and every region has 1 or 2 rows).
    Rows and columns get independent boundary sequences a, b (Graham 2014, Sec. 2); region
    (i, j) is [a_i, a_{i+1} - 1] x [b_j, b_{j+1} - 1] (disjoint), or with ``overlapping``
    [a_i, a_{i+1}] x [b_j, b_{j+1}] where the sequences end at H - 1 and W - 1 so the last
    region stays inside the input. Either way the regions cover the whole input. (When
    H' >= H - 1 in overlapping mode, alpha < 1 and some increments are 0: single-row
    regions.) One pair of sequences is drawn per call (shared by the batch and channels);
    pass a seeded ``generator`` for a fixed sequence.

    The region max is separable: the max over each region's rows, then over its columns.
    The backward pass sends each region's gradient to one position (the first maximum, as
    max pooling's switches do; shared positions of overlapping regions accumulate).
    """
    n, c, height, width = x.shape
    h_out, w_out = fractional_size(height, ratio), fractional_size(width, ratio)
    shrink = 1 if overlapping else 0
    a = fractional_boundaries(height - shrink, h_out, pseudo_random, generator).cpu()
    b = fractional_boundaries(width - shrink, w_out, pseudo_random, generator).cpu()
    rows = _ranges(a[:-1], a[1:] - 1 + shrink, height, x.device)
    cols = _ranges(b[:-1], b[1:] - 1 + shrink, width, x.device)
    if torch.is_grad_enabled() and x.requires_grad:
        return _FractionalMax.apply(x, rows, cols)
    row_max, _ = _region_max(x.reshape(n * c, height, width), 1, rows, locate=False)
    out, _ = _region_max(row_max, 2, cols, locate=False)
    return out.view(n, c, h_out, w_out)


def fractional_size(size: int, ratio: float) -> int:
    # The small epsilon keeps exact products such as 8 * 0.5 from rounding up.
    return max(1, math.ceil(size * ratio - 1e-9))


@register_pool("fractional", kind="local", paper="Graham 2014 (Fractional Max-Pooling)")
class FractionalMaxPool(LocalPool):
    """Max over pseudorandom or random 1-2 wide regions; output side ceil(ratio * input).

    There is no window F or stride S: ``ratio`` (in [0.5, 1)) sets the output size. Training
    draws new regions every call; evaluation uses one fixed sequence per input size (a
    generator seeded with ``eval_seed``), so inference is deterministic.
    """

    def __init__(
        self,
        channels: int,
        ratio: float = 2**-0.5,  # exactly 0.7071067811865476, as configs/pool/fractional.yaml
        pseudo_random: bool = True,
        overlapping: bool = False,
        eval_seed: int = 0,
    ) -> None:
        nn.Module.__init__(self)  # no F / S: LocalPool's window checks do not apply
        layer = type(self).__name__
        self.ratio = check_number("ratio", ratio, 0.5, 1, high_open=True, where=layer)
        self.pseudo_random = check_bool("pseudo_random", pseudo_random, where=layer)
        self.overlapping = check_bool("overlapping", overlapping, where=layer)
        self.eval_seed = check_int("eval_seed", eval_seed, where=layer)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return fractional_size(height, self.ratio), fractional_size(width, self.ratio)

    def check_input(self, height: int, width: int, where: str = "pool") -> None:
        if height < 1 or width < 1:
            raise ShapeError(
                f"{where} (fractional, ratio={self.ratio:.4g}) needs input >= 1, "
                f"feature map is {height}x{width} (output side = ceil(ratio * W1))"
            )

    def forward(self, x: Tensor) -> Tensor:
        generator = None
        if not self.training:
            generator = torch.Generator().manual_seed(self.eval_seed)
        return fractional_max_pool2d(  # (N, C, ceil(rH), ceil(rW))
            x, self.ratio, self.pseudo_random, self.overlapping, generator
        )

    def extra_repr(self) -> str:
        return (
            f"ratio={self.ratio:.4g}, pseudo_random={self.pseudo_random}, "
            f"overlapping={self.overlapping}"
        )
