"""Float64 references of the pooling formulas, written once for every pooling test.

Each is a plain Python loop over windows, bins or positions in float64: slow, and obviously
correct. None calls the layer it checks; the one piece of library code used is fractional
pooling's own draw of its region boundaries, which the reference must share to be comparable.

Padding: ``windows`` (and so ``window_reference``) hands a reduction only the window's real
input cells; padded cells take no part, as in every local pool compared with it (the max of the
real cells, a mean over the real cells). The two references that count padded cells as zeros
(``center`` reading 0 in the padding, ``strided_conv``'s zero-padded convolution) are spelled out
in their tests.
"""

from __future__ import annotations

import torch

from poolbench.pooling.stochastic import fractional_boundaries, fractional_size

# -- inputs --------------------------------------------------------------------------------

OUTLIERS = ("few", "masked", "grid")


def sample(*shape: int, seed: int = 0, scale: float = 3.0, outliers: str = "few") -> torch.Tensor:
    """A seeded float64 input, ``randn(shape) * scale``, with negatives, exact zeros and large
    values. ``shape`` is given as ints or as one tuple. ``outliers`` says where the zeros and
    the large values go:

    - ``few``: 5 zeros, 3 values just above 40 and 3 just below -40, at random positions; no
      other ties (the window and order-statistic pools);
    - ``masked``: each entry 0 with probability 0.2, then each entry times 1e3 with probability
      0.05 (the global heads);
    - ``grid``: 0 on every 3rd row and 2nd column, times 1e3 on every 4th row and 3rd column
      from (1, 1), so that most small windows hold both (the stochastic, learned, detection and
      strip pools).
    """
    if len(shape) == 1 and isinstance(shape[0], tuple | list | torch.Size):
        shape = tuple(shape[0])
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    if outliers == "few":
        flat = x.view(-1)
        idx = torch.randperm(flat.numel(), generator=g)
        flat[idx[:5]] = 0.0
        flat[idx[5:8]] = 40.0 + torch.rand(3, generator=g, dtype=torch.float64)
        flat[idx[8:11]] = -40.0 - torch.rand(3, generator=g, dtype=torch.float64)
    elif outliers == "masked":
        x[torch.rand(x.shape, generator=g) < 0.2] = 0.0
        x[torch.rand(x.shape, generator=g) < 0.05] *= 1e3
    elif outliers == "grid":
        x[..., ::3, ::2] = 0.0
        x[..., 1::4, 1::3] *= 1e3
    else:
        raise ValueError(f"outliers must be one of {', '.join(OUTLIERS)}, got {outliers!r}")
    return x


# -- windows -------------------------------------------------------------------------------


def window_starts(size: int, F: int, S: int, P: int = 0, ceil_mode: bool = False) -> list[int]:
    """The first index of each window along a side of ``size`` (padding ``P`` at both ends, so
    the first window starts at -P): every window that fits in the padded side; with
    ``ceil_mode`` one more, partial, where the last of those stops short of the padded end,
    unless it would start in the right padding (torch's rule)."""
    starts = []
    start = -P
    while start + F <= size + P:
        starts.append(start)
        start += S
    if ceil_mode and starts and starts[-1] + F < size + P and start < size:
        starts.append(start)
    return starts


def windows(x: torch.Tensor, F: int, S: int, P: int = 0, ceil_mode: bool = False):
    """Yield (i, j, values) for every output position: window (i, j)'s real (unpadded) input
    cells as (N, C, k), in row-major order."""
    h, w = x.shape[-2:]
    for i, r0 in enumerate(window_starts(h, F, S, P, ceil_mode)):
        for j, c0 in enumerate(window_starts(w, F, S, P, ceil_mode)):
            rows = [r for r in range(r0, r0 + F) if 0 <= r < h]
            cols = [q for q in range(c0, c0 + F) if 0 <= q < w]
            yield i, j, x[:, :, rows][:, :, :, cols].flatten(2)


def window_reference(x, F, S, P, ceil_mode, reduce, *, each: bool = False) -> torch.Tensor:
    """The pooled map (N, C, oh, ow): ``reduce`` of every window's real cells (see ``windows``).

    ``each=False``: ``reduce(values (N, C, k)) -> (N, C)``, every sample and channel at once.
    ``each=True``: ``reduce(values (k,), n, c, i, j) -> scalar``, once per sample, channel and
    window, for formulas that branch per window or take per-channel parameters.

    Differentiable: the map is stacked from the loop's results, so autograd reaches ``x`` and
    every tensor ``reduce`` uses (a learnable p, say).
    """
    assert x.dtype == torch.float64, f"a float64 reference, got {x.dtype}"
    n, c = x.shape[:2]
    rows: dict[int, list[torch.Tensor]] = {}
    for i, j, values in windows(x, F, S, P, ceil_mode):
        if each:
            out = torch.stack(
                [
                    torch.stack(
                        [torch.as_tensor(reduce(values[b, ch], b, ch, i, j)) for ch in range(c)]
                    )
                    for b in range(n)
                ]
            )
        else:
            out = reduce(values)
        rows.setdefault(i, []).append(out)
    return torch.stack([torch.stack(row, dim=-1) for row in rows.values()], dim=-2)


def global_reference(x: torch.Tensor, reduce) -> torch.Tensor:
    """(N, C, H, W) -> (N, C): ``reduce(values (H·W,))`` of each sample's channel in turn."""
    assert x.dtype == torch.float64, f"a float64 reference, got {x.dtype}"
    n, c = x.shape[:2]
    return torch.stack(
        [
            torch.stack(
                [
                    torch.as_tensor(reduce(x[b, ch].flatten()), dtype=torch.float64)
                    for ch in range(c)
                ]
            )
            for b in range(n)
        ]
    )


def bins(size: int, n: int) -> list[range]:
    """Adaptive bin i of n over a side: [floor(i·size/n), ceil((i+1)·size/n))."""
    return [range(i * size // n, -(-(i + 1) * size // n)) for i in range(n)]


def grid_reference(x: torch.Tensor, gh: int, gw: int, reduce: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, C·gh·gw): the max or the mean (``reduce``) of every adaptive bin, by
    looping over every bin and value in Python floats."""
    n, c, h, w = x.shape
    out = torch.empty(n, c, gh, gw, dtype=torch.float64)
    for b in range(n):
        for ch in range(c):
            for i, rows in enumerate(bins(h, gh)):
                for j, cols in enumerate(bins(w, gw)):
                    vals = [float(x[b, ch, r, q]) for r in rows for q in cols]
                    out[b, ch, i, j] = max(vals) if reduce == "max" else sum(vals) / len(vals)
    return out.flatten(1)


# -- reductions of one window's values (the last dimension) ----------------------------------


def lp_reference(p):
    """(sum |v|^p)^(1/p), with the subgradient 0 at v = 0 (``where`` selects it: |v|^p has an
    infinite slope there for p < 1); the values are those of the plain formula."""

    def reduce(v):
        nonzero = v != 0
        safe = torch.where(nonzero, v, torch.ones_like(v))
        powered = torch.where(nonzero, safe.abs().pow(p), torch.zeros_like(v))
        return powered.sum(-1).pow(1 / p)

    return reduce


def gem_reference(p, eps):
    """(mean max(v, eps)^p)^(1/p); ``p`` may be a tensor that takes a gradient."""
    return lambda v: v.clamp_min(eps).pow(p).mean(-1).pow(1 / p)


def softpool_reference(v):
    return (torch.softmax(v, dim=-1) * v).sum(-1)


def lower_median(v):
    return v.sort(dim=-1).values[..., (v.shape[-1] - 1) // 2]


def stochastic_eval_reference(v, *_):
    """Stochastic pooling at test time: the mean weighted by the positive part, or the plain
    mean of a window with no positive value (one window, ``each=True``)."""
    w = v.clamp(min=0)
    return (w * v).sum() / w.sum() if w.sum() > 0 else v.mean()


REDUCERS = {
    "min": lambda v: v.amin(-1),
    "median": lower_median,
    "maxavg": lambda v: 0.5 * v.amax(-1) + 0.5 * v.mean(-1),
    "lp": lp_reference(2.0),
    "softpool": softpool_reference,
    "overlap": lambda v: v.amax(-1),
}


# -- fractional max pooling ----------------------------------------------------------------


def fractional_reference(x, ratio, pseudo_random, overlapping, seed):
    """The max of each region, the regions drawn as the layer draws them from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    shrink = 1 if overlapping else 0
    a = fractional_boundaries(h - shrink, fractional_size(h, ratio), pseudo_random, g).tolist()
    b = fractional_boundaries(w - shrink, fractional_size(w, ratio), pseudo_random, g).tolist()
    out = torch.empty(*x.shape[:2], len(a) - 1, len(b) - 1, dtype=x.dtype)
    for i in range(len(a) - 1):
        for j in range(len(b) - 1):
            region = x[..., a[i] : a[i + 1] + shrink, b[j] : b[j + 1] + shrink]
            out[..., i, j] = region.amax(dim=(-2, -1))
    return out


# -- antialiased (blur) pooling ------------------------------------------------------------


def dense_max(x, F, P):
    """Max pooling at stride 1: the map BlurPool blurs before it subsamples."""
    return window_reference(x, F, 1, P, False, lambda v: v.amax(-1))


def reflect(i, n):
    """Index ``i`` reflected into [0, n) without repeating the edge (``reflect`` padding)."""
    if n == 1:
        return 0
    while not 0 <= i < n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


# -- wavelet pooling: a literal periodic orthonormal DWT and its inverse -----------------------


def dwt1d(x, h):
    """Periodic orthonormal DWT along the last axis: approximation and detail halves."""
    n, taps = x.shape[-1], len(h)
    g = [(-1) ** k * h[taps - 1 - k] for k in range(taps)]
    a = torch.zeros(*x.shape[:-1], n // 2, dtype=x.dtype)
    d = torch.zeros_like(a)
    for k in range(n // 2):
        for m in range(taps):
            a[..., k] += h[m] * x[..., (2 * k + m) % n]
            d[..., k] += g[m] * x[..., (2 * k + m) % n]
    return a, d


def idwt1d(a, d, h):
    n, taps = 2 * a.shape[-1], len(h)
    g = [(-1) ** k * h[taps - 1 - k] for k in range(taps)]
    x = torch.zeros(*a.shape[:-1], n, dtype=a.dtype)
    for k in range(n // 2):
        for m in range(taps):
            x[..., (2 * k + m) % n] += h[m] * a[..., k] + g[m] * d[..., k]
    return x


def dwt2d(x, h):
    lo, hi = dwt1d(x, h)  # along W
    ll, lh = (t.transpose(-1, -2) for t in dwt1d(lo.transpose(-1, -2), h))
    hl, hh = (t.transpose(-1, -2) for t in dwt1d(hi.transpose(-1, -2), h))
    return ll, lh, hl, hh


def idwt2d(ll, lh, hl, hh, h):
    lo = idwt1d(ll.transpose(-1, -2), lh.transpose(-1, -2), h).transpose(-1, -2)
    hi = idwt1d(hl.transpose(-1, -2), hh.transpose(-1, -2), h).transpose(-1, -2)
    return idwt1d(lo, hi, h)


# -- corner pooling (detection) ------------------------------------------------------------


def full_corner_maps(x):
    """T (max over k >= i in the column) and L (max over k >= j in the row), by loops."""
    down = torch.empty_like(x)
    right = torch.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        down[..., i, :] = x[..., i:, :].amax(dim=-2)
    for j in range(w):
        right[..., :, j] = x[..., :, j:].amax(dim=-1)
    return down, right


def subsample(full, F, S, offset=0):
    """A full-resolution map read at the window positions of an unpadded F, S pool."""
    h_out = len(window_starts(full.shape[-2], F, S))
    w_out = len(window_starts(full.shape[-1], F, S))
    return full[..., offset::S, offset::S][..., :h_out, :w_out]


# -- the window settings and shapes the references are compared at ---------------------------

# (F, S, padding, ceil_mode): non-overlapping, overlapping, stride 1, F=S=3, padded, ceil.
WINDOWS = [
    (2, 2, 0, False),
    (3, 2, 0, False),
    (2, 1, 0, False),
    (3, 3, 0, False),
    (3, 2, 1, False),
    (2, 2, 0, True),
    (3, 2, 1, True),
]
# (F, S, padding, ceil_mode) for gradchecks: a block, a padded overlap, a ceil-mode edge.
GRAD_CASES = [(2, 2, 0, False), (3, 2, 1, False), (2, 2, 0, True)]
# (N, C, H, W, F, S): even, odd, F != S, S > F, tiny.
SHAPES_AND_WINDOWS = [
    (2, 3, 8, 8, 2, 2),
    (1, 2, 9, 7, 3, 2),
    (2, 2, 7, 10, 2, 3),
    (1, 1, 5, 5, 3, 1),
]
