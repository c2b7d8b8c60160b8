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
from dataclasses import dataclass

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


@dataclass
class _Predictor:
    model: nn.Module
    data: ImageData
    device: torch.device
    precision: Precision
    batch_size: int
    channels_last: bool = False
    _labels: Tensor | None = None

    @torch.no_grad()
    def predict(self, transform: Callable[[Tensor, int], Tensor] | None = None) -> Tensor:
        """Top-1 predictions on the (transformed) raw test images; ``transform(x, start)``."""
        preds = []
        start = 0
        for x, _ in self.data.raw_test_batches(self.batch_size):
            count = len(x)
            if transform is not None:
                x = transform(x, start)
            start += count
            x = self.data.normalize(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast(self.device):
                logits = self.model(x)
            preds.append(logits.float().argmax(dim=1))
        return torch.cat(preds)

    def labels(self) -> Tensor:
        return torch.cat([y for _, y in self.data.raw_test_batches(self.batch_size)])

    def accuracy(self, transform: Callable[[Tensor, int], Tensor] | None = None) -> float:
        predictions = self.predict(transform)
        if self._labels is None:
            self._labels = self.labels().to(predictions.device)
        return (predictions == self._labels).float().mean().item()


def has_global_head(model: nn.Module) -> bool:
    return any(isinstance(m, GlobalPool) for m in model.modules())


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
    mode it came in)."""
    if not cfg.enabled:
        return {}
    predictor = _Predictor(model, data, device, precision, cfg.batch_size, channels_last)
    n = data.num_test
    out: dict[str, float | None] = {}
    with eval_mode(model):
        generator = torch.Generator(device="cpu").manual_seed(seed)
        m = cfg.max_shift

        def offsets() -> tuple[Tensor, Tensor]:
            d = torch.randint(-m, m + 1, (2, n), generator=generator)
            return d[0], d[1]

        (dy1, dx1), (dy2, dx2) = offsets(), offsets()

        def shifted(dy: Tensor, dx: Tensor) -> Callable[[Tensor, int], Tensor]:
            def transform(x: Tensor, start: int) -> Tensor:
                end = start + len(x)
                offsets_y = dy[start:end].to(x.device)
                offsets_x = dx[start:end].to(x.device)
                return translate(x, offsets_y, offsets_x, cfg.shift_mode)

            return transform

        first = predictor.predict(shifted(dy1, dx1))
        second = predictor.predict(shifted(dy2, dx2))
        out["shift_consistency"] = (first == second).float().mean().item()

        for k in cfg.shifts:
            accs = []
            for sy, sx in ((0, k), (0, -k), (k, 0), (-k, 0)):
                dy = torch.full((n,), sy)
                dx = torch.full((n,), sx)
                accs.append(predictor.accuracy(shifted(dy, dx)))
            out[f"acc_shift_{k}"] = sum(accs) / len(accs)

        if cfg.max_rot > 0:
            accs = [
                predictor.accuracy(lambda x, _s, a=angle: rotate(x, a))
                for angle in (cfg.max_rot, -cfg.max_rot)
            ]
            out["acc_rot"] = sum(accs) / len(accs)

        for size in cfg.sizes:
            out[f"acc_res_{size}"] = _resolution_accuracy(predictor, size)
    return out


def _resolution_accuracy(predictor: _Predictor, size: int) -> float | None:
    if not has_global_head(predictor.model):
        return None
    try:
        check_model(predictor.model, (predictor.data.in_channels, size, size))
    except ShapeError:  # a stage cannot take this size: not measurable, recorded as None
        return None
    return predictor.accuracy(lambda x, _s: resize(x, size))


__all__ = [
    "EvalConfig",
    "invariance_metrics",
    "resize",
    "rotate",
    "translate",
]
