"""Pooling modules from keypoint detectors: ``corner``, ``cascade_corner``, ``center_cross``.

- ``corner``: CornerNet top-left corner pooling (Law & Deng, ECCV 2018, Sec. 3.4): at (i, j)
  the maximum of everything below in column j plus the maximum of everything to the right in
  row i.
- ``cascade_corner``: CenterNet cascade top-left corner pooling (Duan et al., ICCV 2019,
  Sec. 3.4): look along a boundary for its maximum, then inwards from it, in both orders.
- ``center_cross``: CenterNet center pooling (Duan et al. 2019, Sec. 3.4): the maximum of
  row i plus the maximum of column j.

The detectors use these modules at full resolution, each branch behind a learned 3x3 conv.
Here they fill a downsampling slot of a CNN, so:

- the conv branches are left out: the conv layer before the pool plays their role, and the
  layers stay parameter-free and comparable with ``max``/``avg``;
- each module is followed by **plain stride-S subsampling**, taking one fixed position per
  F x F window, so the output side follows the seeds' rule floor((W - F) / S) + 1. The
  position is the window's top-left corner for the corner modules (the corner-pooled value
  there looks right along the window's top row and down its left column, and further) and
  the window's centre, offset (F - 1) // 2, for ``center_cross``.

Only the subsampled positions are computed: each suffix maximum from position i*S is one
window of a max pooling at stride S (see ``_suffix_pool``). ``corner`` and ``center_cross``
locate their maxima without autograd and read them back with one gather (backward: one
scatter); ``cascade_corner`` differentiates through four block-max + ``cummax`` scans
directly (heavy by design).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor

from poolbench.pooling.base import LocalPool, pooled_size
from poolbench.pooling.registry import register_pool


def _suffix_max(x: Tensor, dim: int, S: int, count: int) -> Tensor:
    """``max(x[..., k, ...] for k >= i*S)`` along ``dim`` (2 or 3) for ``i < count``, as a
    block max then a ``cummax`` scan, differentiable (``cascade_corner`` scans sums that need
    gradients; under autograd this is cheaper than :func:`_suffix_pool`)."""
    size = x.shape[dim]
    if S > 1 and size >= S:
        kernel = (S, 1) if dim == 2 else (1, S)
        # Block i covers [i*S, i*S + S): the suffix max from i*S is the suffix max of blocks.
        x = F_.max_pool2d(x, kernel, kernel, ceil_mode=True)
    elif S > 1:
        x = x.amax(dim, keepdim=True)
    suffix = x.flip(dim).cummax(dim).values.flip(dim)
    return suffix.narrow(dim, 0, count)


def _suffix_pool(x: Tensor, dim: int, S: int, count: int, indices: bool = False):
    """``max(x[..., k, ...] for k >= i*S)`` along ``dim`` (2 or 3) for ``i < count``.

    One max pooling with a window as long as the whole axis, at stride S, over a copy of
    ``x`` padded with -inf after its end: window i covers [i*S, i*S + L), which holds all of
    the suffix and otherwise only padding. The copy is channels_last (NHWC), where the CPU
    kernel vectorises over channels (NCHW is much slower for such long windows, and so is a
    ``cummax`` scan with its argmax). With ``indices``, also the flat position of
    each maximum in the padded (H, W) plane, as ``F.max_pool2d`` returns it (first of equal
    maxima).
    """
    length = x.shape[dim]
    pad = (count - 1) * S
    shape = list(x.shape)
    shape[dim] += pad
    padded = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    padded.narrow(dim, 0, length).copy_(x)
    padded.narrow(dim, length, pad).fill_(float("-inf"))
    window, stride = ((length, 1), (S, 1)) if dim == 2 else ((1, length), (1, S))
    return F_.max_pool2d(padded, window, stride, return_indices=indices)


def _top_left_grid(x: Tensor, F: int, S: int) -> tuple[int, int, Tensor, Tensor]:
    h_out = pooled_size(x.shape[-2], F, S)
    w_out = pooled_size(x.shape[-1], F, S)
    rows = x[..., : (h_out - 1) * S + 1 : S, :]  # (N, C, H', W): rows i*S
    cols = x[..., : (w_out - 1) * S + 1 : S]  # (N, C, H, W'): columns j*S
    return h_out, w_out, rows, cols


def corner_pool2d(x: Tensor, F: int = 2, S: int = 2) -> Tensor:
    """Top-left corner pooling, sampled at each F x F window's top-left corner.

    x (Tensor[N, C, H, W]) -> Tensor[N, C, H', W'] with H' = floor((H - F)/S) + 1 and

        y[i, j] = max_{k >= iS} x[k, jS] + max_{k >= jS} x[iS, k]

    (Law & Deng 2018, Eq. for t_ij and l_ij with f_t = f_l = x). The maxima are located
    without autograd and read back with one gather, so the backward pass is a single scatter.
    """
    n, c, height, width = x.shape
    h_out, w_out, rows, cols = _top_left_grid(x, F, S)
    with torch.no_grad():
        # Flat positions in the padded planes: (H + pad, W') for down, (H', W + pad) for right.
        _, down_at = _suffix_pool(cols, 2, S, h_out, indices=True)  # (N, C, H', W')
        _, right_at = _suffix_pool(rows, 3, S, w_out, indices=True)  # (N, C, H', W')
        flat = torch.empty(n, c, h_out, 2 * w_out, dtype=torch.long, device=x.device)
        down, right = flat[..., :w_out], flat[..., w_out:]
        if width == S * w_out:  # row * W' + j -> row * W + j * S
            torch.mul(down_at, S, out=down)
        else:
            row = torch.div(down_at, w_out, rounding_mode="floor")
            torch.add(row * width, torch.arange(w_out, device=x.device) * S, out=down)
        # i * (W + pad) + k -> i * S * W + k
        padded_width = width + (w_out - 1) * S
        shift = torch.arange(h_out, device=x.device).view(h_out, 1) * (S * width - padded_width)
        torch.add(right_at, shift, out=right)
    picked = x.reshape(n, c, height * width).gather(2, flat.view(n, c, -1))
    down, right = picked.view(n, c, h_out, 2 * w_out).split(w_out, dim=3)
    return down + right


def cascade_corner_pool2d(x: Tensor, F: int = 2, S: int = 2) -> Tensor:
    """Cascade top-left corner pooling, sampled at each window's top-left corner.

    x (Tensor[N, C, H, W]) -> Tensor[N, C, H', W']. With ``T`` the max over positions below
    (k >= i, same column) and ``L`` the max over positions to the right (k >= j, same row):

        y = T(x + L(x)) + L(x + T(x))   evaluated at (iS, jS)

    ``L(x)`` finds the boundary maximum along each row, adding ``x`` and taking ``T`` then
    looks inwards (down) from it; the second term does the same with the roles swapped
    (Duan et al. 2019, Sec. 3.4, Fig. 5c, conv branches taken as identity).
    """
    h_out, w_out, rows, cols = _top_left_grid(x, F, S)
    # T(x + L(x)) at (iS, jS) needs x + L(x) on every row of the columns jS.
    right_all_rows = _suffix_max(x, 3, S, w_out)  # (N, C, H, W')
    first = _suffix_max(cols + right_all_rows, 2, S, h_out)
    down_all_cols = _suffix_max(x, 2, S, h_out)  # (N, C, H', W)
    second = _suffix_max(rows + down_all_cols, 3, S, w_out)
    return first + second


def center_cross_pool2d(x: Tensor, F: int = 2, S: int = 2) -> Tensor:
    """CenterNet center pooling, sampled at each F x F window's centre.

    x (Tensor[N, C, H, W]) -> Tensor[N, C, H', W'] with c = (F - 1) // 2 and

        y[i, j] = max_k x[iS + c, k] + max_k x[k, jS + c]

    (Duan et al. 2019, Sec. 3.4: "the max value in its horizontal and vertical directions").
    """
    n, ch, height, width = x.shape
    h_out = pooled_size(height, F, S)
    w_out = pooled_size(width, F, S)
    c = (F - 1) // 2
    with torch.no_grad():
        row_arg = x[..., c : c + (h_out - 1) * S + 1 : S, :].argmax(dim=3)  # (N, C, H')
        col_arg = x[..., c : c + (w_out - 1) * S + 1 : S].argmax(dim=2)  # (N, C, W')
        row_flat = (c + torch.arange(h_out, device=x.device) * S) * width + row_arg
        col_flat = col_arg * width + c + torch.arange(w_out, device=x.device) * S
        flat = torch.cat([row_flat, col_flat], dim=2)
    picked = x.reshape(n, ch, height * width).gather(2, flat)
    row_max, col_max = picked.split([h_out, w_out], dim=2)
    return row_max.unsqueeze(3) + col_max.unsqueeze(2)


class _SubsampledDetectionPool(LocalPool):
    def __init__(self, channels: int, F: int = 2, S: int = 2) -> None:
        super().__init__(F, S)


@register_pool(
    "corner",
    kind="local",
    paper="Law & Deng 2018 (CornerNet), top-left corner pooling + stride-S subsampling",
)
class CornerPool(_SubsampledDetectionPool):
    """Top-left corner pooling, then the top-left position of each F x F window."""

    def forward(self, x: Tensor) -> Tensor:
        return corner_pool2d(x, self.F, self.S)  # (N, C, H', W')


@register_pool(
    "cascade_corner",
    kind="local",
    paper="Duan et al. 2019 (CenterNet), cascade corner pooling + stride-S subsampling",
)
class CascadeCornerPool(_SubsampledDetectionPool):
    """Cascade top-left corner pooling, then the top-left position of each F x F window."""

    def forward(self, x: Tensor) -> Tensor:
        return cascade_corner_pool2d(x, self.F, self.S)  # (N, C, H', W')


@register_pool(
    "center_cross",
    kind="local",
    paper="Duan et al. 2019 (CenterNet), center pooling + stride-S subsampling",
)
class CenterCrossPool(_SubsampledDetectionPool):
    """Row max + column max, then the centre position of each F x F window."""

    def forward(self, x: Tensor) -> Tensor:
        return center_cross_pool2d(x, self.F, self.S)  # (N, C, H', W')


__all__ = ["cascade_corner_pool2d", "center_cross_pool2d", "corner_pool2d"]
