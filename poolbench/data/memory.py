"""Datasets small enough to live on the training device as uint8 tensors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class InMemoryDataset:
    """Train and test images as uint8 ``(N, C, H, W)`` with int64 labels.

    Normalisation (per-channel ``mean``/``std`` on the 0-255 scale) and augmentation (random
    horizontal flip, zero-pad + random crop) run on whatever device the tensors are on.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = False
    crop_pad: int = 0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    def to(self, device: torch.device | str) -> InMemoryDataset:
        for key in ("train_x", "train_y", "test_x", "test_y"):
            setattr(self, key, getattr(self, key).to(device))
        return self

    def normalize(self, x: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float() - mean) / std

    def augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Random flip and pad-crop on a uint8 batch, on its own device."""
        n, _, h, w = x.shape
        if self.flip:
            flip = torch.rand(n, generator=generator, device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        if self.crop_pad > 0:
            pad = self.crop_pad
            padded = F.pad(x, (pad, pad, pad, pad))
            dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
            dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
            rows = (dy.view(-1, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
            cols = (dx.view(-1, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
            batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
            chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
            x = padded[batch, chan, rows, cols]
        return x

    def train_batches(
        self, batch_size: int, generator: torch.Generator, augment: bool = True
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of shuffled, augmented, normalised batches (the last partial one dropped
        when it would be smaller than half a batch, to keep BatchNorm statistics sane)."""
        n = len(self.train_y)
        order = torch.randperm(n, generator=generator, device=self.train_x.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < max(2, batch_size // 2) and start > 0:
                break
            x = self.train_x[idx]
            if augment:
                x = self.augment(x, generator)
            yield self.normalize(x), self.train_y[idx]

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.test_y), batch_size):
            end = start + batch_size
            yield self.normalize(self.test_x[start:end]), self.test_y[start:end]

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.train_y)
        full, rest = divmod(n, batch_size)
        return full + (1 if rest >= max(2, batch_size // 2) or full == 0 else 0)
