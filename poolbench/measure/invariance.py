"""Does pooling make the network invariant? Measured on the test split.

The seeds claim that pooling makes a CNN invariant to small translations, rotations and
changes of scale. Each claim becomes a number per run (config node ``eval``):

- ``shift_consistency`` (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"):
  the probability that the top-1 predictions for two independent random translations of the
  same test image, each of up to ``eval.max_shift`` px in x and in y, agree. 1.0 = perfectly
  consistent.
- ``acc_shift_<k>`` for every k in ``eval.shifts``: top-1 accuracy with every image translated
  by k px, averaged over the four axis directions (right, left, down, up).
- ``acc_rot``: top-1 accuracy with every image rotated by +``eval.max_rot`` and by
  -``eval.max_rot`` degrees (bilinear, about the centre), averaged over both.
- ``acc_res_<size>`` for every size in ``eval.sizes``: top-1 accuracy with the test images
  resized (bilinear, antialiased) to ``size x size``; only for models with a global head (a
  fixed-size classifier cannot take another size) and sizes every pooling stage accepts,
  else the field is None.

Translations are **pad-crop** by default (``eval.shift_mode: pad``): the image moves and the
uncovered border is filled with background (raw pixel value 0, before normalisation), which is
what a camera sees when the object moves. ``eval.shift_mode: roll`` uses circular shifts
instead (the border wraps around), under which a network made of convolutions with circular
padding and a global pool would be exactly invariant. All transforms act on the raw test images,
before normalisation, on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poolbench.core.config import EvalConfig
from poolbench.core.errors import ShapeError
from poolbench.data.base import ImageData
from poolbench.measure.device import Precision
from poolbench.models.inspect import check_model, eval_mode
from poolbench.pooling.base import GlobalPool


def translate(x: Tensor, dy: Tensor, dx: Tensor, mode: str = "pad") -> Tensor:
    """Translate each image ``x[i]`` by ``(dy[i], dx[i])`` px (positive: down / right).

    x (Tensor[N, C, H, W]); ``mode="pad"`` fills the uncovered border with 0, ``"roll"`` wraps.
    """
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h) - dy.view(n, 1)  # source row per output
    cols = torch.arange(w, device=x.device).view(1, w) - dx.view(n, 1)
    if mode == "roll":
        rows, cols = rows % h, cols % w
        inside = torch.ones(n, 1, h, w, dtype=torch.bool, device=x.device)
    else:
        inside = ((rows >= 0) & (rows < h)).view(n, 1, h, 1) & ((cols >= 0) & (cols < w)).view(
            n, 1, 1, w
        )
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    out = x[batch, chan, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    return torch.where(inside, out, torch.zeros((), dtype=x.dtype, device=x.device))


def rotate(x: Tensor, degrees: float) -> Tensor:
    """Rotate every image by ``degrees`` (clockwise as displayed, rows down) about its centre.

    Bilinear, 0 fill.

    x (Tensor[N, C, H, W]) of any dtype; the result is float32.
    """
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # affine_grid maps output to input coordinates: the inverse rotation.
    matrix = torch.tensor([[cos, sin, 0.0], [-sin, cos, 0.0]], device=x.device)
    grid = F.affine_grid(matrix.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize to ``size x size`` (antialiased when shrinking); float32 result."""
    return F.interpolate(
        x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )


def has_global_head(model: nn.Module) -> bool:
    return any(isinstance(m, GlobalPool) for m in model.modules())


Transform = Callable[[Tensor, int], Tensor]  # (raw batch, index of its first image) -> images


def invariance_metrics(
    model: nn.Module,
    data: ImageData,
    cfg: EvalConfig,
    device: torch.device,
    precision: Precision,
    seed: int = 0,
    channels_last: bool = False,
) -> dict[str, float | None]:
    """The ``eval`` metrics of a trained ``model`` on ``data``'s test split (model left in the
    mode it came in), in one pass over the test images: each batch is read once and every
    transform of it is scored, several transforms of one size per forward call."""
    if not cfg.enabled:
        return {}
    n = data.num_test
    generator = torch.Generator(device="cpu").manual_seed(seed)
    m = cfg.max_shift

    def offsets() -> tuple[Tensor, Tensor]:
        d = torch.randint(-m, m + 1, (2, n), generator=generator)
        return d[0], d[1]

    (dy1, dx1), (dy2, dx2) = offsets(), offsets()

    def shifted(dy: Tensor, dx: Tensor) -> Transform:
        def transform(x: Tensor, start: int) -> Tensor:
            end = start + len(x)
            offsets_y, offsets_x = dy[start:end].to(x.device), dx[start:end].to(x.device)
            return translate(x, offsets_y, offsets_x, cfg.shift_mode)

        return transform

    # Transforms that keep the image's size, scored together; then one group per size.
    same: dict[str, Transform] = {"consistency_1": shifted(dy1, dx1)}
    same["consistency_2"] = shifted(dy2, dx2)
    for k in cfg.shifts:
        for sy, sx in ((0, k), (0, -k), (k, 0), (-k, 0)):
            same[f"shift_{k}_{sy}_{sx}"] = shifted(torch.full((n,), sy), torch.full((n,), sx))
    if cfg.max_rot > 0:
        for angle in (cfg.max_rot, -cfg.max_rot):
            same[f"rot_{angle}"] = lambda x, _s, a=angle: rotate(x, a)
    sizes = [s for s in cfg.sizes if _takes_size(model, data.in_channels, s)]

    predictions: dict[str, list[Tensor]] = {name: [] for name in [*same, *map(str, sizes)]}
    labels = []
    # as many transforms of a batch per forward call as fit in four eval batches
    with eval_mode(model), torch.no_grad():
        for x, y in data.raw_test_batches(cfg.batch_size):
            start = sum(len(b) for b in labels)
            labels.append(y)
            per_call = max(1, 4 * cfg.batch_size // max(1, len(x)))
            names = list(same)
            for first in range(0, len(names), per_call):
                chunk = names[first : first + per_call]
                images = torch.cat([same[name](x, start) for name in chunk])
                for name, p in zip(
                    chunk,
                    _predict(model, data, images, device, precision, channels_last).split(len(x)),
                    strict=True,
                ):
                    predictions[name].append(p)
            for size in sizes:
                p = _predict(model, data, resize(x, size), device, precision, channels_last)
                predictions[str(size)].append(p)
    truth = torch.cat(labels)
    joined = {name: torch.cat(p) for name, p in predictions.items()}

    def accuracy(name: str) -> float:
        return (joined[name] == truth.to(joined[name].device)).float().mean().item()

    out: dict[str, float | None] = {}
    agree = joined["consistency_1"] == joined["consistency_2"]
    out["shift_consistency"] = agree.float().mean().item()
    for k in cfg.shifts:
        accs = [accuracy(f"shift_{k}_{sy}_{sx}") for sy, sx in ((0, k), (0, -k), (k, 0), (-k, 0))]
        out[f"acc_shift_{k}"] = sum(accs) / len(accs)
    if cfg.max_rot > 0:
        out["acc_rot"] = (accuracy(f"rot_{cfg.max_rot}") + accuracy(f"rot_{-cfg.max_rot}")) / 2
    for size in cfg.sizes:
        out[f"acc_res_{size}"] = accuracy(str(size)) if size in sizes else None
    return out


def _predict(
    model: nn.Module,
    data: ImageData,
    raw: Tensor,
    device: torch.device,
    precision: Precision,
    channels_last: bool,
) -> Tensor:
    """Top-1 predictions of ``model`` on raw (transformed, not yet normalised) images."""
    x = data.normalize(raw)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with precision.autocast(device):
        logits = model(x)
    return logits.float().argmax(dim=1)


def _takes_size(model: nn.Module, in_channels: int, size: int) -> bool:
    """Whether ``model`` can be scored at ``size x size``: it has a global head (a fixed-size
    classifier cannot take another size) and every pooling stage takes that size."""
    if not has_global_head(model):
        return False
    try:
        check_model(model, (in_channels, size, size))
    except ShapeError:  # a stage cannot take this size: not measurable, recorded as None
        return False
    return True
