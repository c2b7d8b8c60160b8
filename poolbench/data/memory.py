"""Datasets small enough to live on the training device as uint8 tensors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from poolbench.core.errors import ConfigError


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> float, per channel ``(x - mean) / std`` on the 0-255 scale."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() - m) / s


FLIPS = ("random", "alternating", "none")
PAD_MODES = ("zeros", "reflect")


@dataclass(frozen=True)
class Augmentation:
    """How training batches are augmented, on the device.

    ``flip``: ``random`` (each image with probability 1/2, every epoch), ``alternating``
    (airbench, Jordan 2024: each image gets one random flip, then every image flips on every
    other epoch, so that each is seen both ways in any two epochs) or ``none``.
    ``translate``: pad by this many px and crop back at a random offset; ``pad_mode``: the pad's
    fill, ``zeros`` or ``reflect``.
    """

    flip: str = "random"
    translate: int = 0
    pad_mode: str = "zeros"
    seed: int = 0  # draws the alternating scheme's per-image flips

    def flips(self, n: int) -> Tensor:
        """The alternating scheme's flip of each of ``n`` training images in odd epochs."""
        return torch.rand(n, generator=torch.Generator().manual_seed(self.seed)) < 0.5


def augment(
    x: Tensor,
    generator: torch.Generator,
    flip: bool | str,
    crop_pad: int,
    pad_mode: str = "zeros",
    flips: Tensor | None = None,
) -> Tensor:
    """Horizontal flips and pad + random crop of a uint8 batch, on its own device.

    ``flip``: True/``random`` draws a flip per image; ``flips`` (bool per image) gives them.
    """
    n, _, h, w = x.shape
    if flips is None and flip in (True, "random"):
        flips = torch.rand(n, generator=generator, device=x.device) < 0.5
    if flips is not None:
        x = torch.where(flips.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)
    if crop_pad > 0:
        pad = crop_pad
        if pad_mode == "reflect" and pad < min(h, w):
            padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
        else:
            padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
        rows = (dy.view(-1, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (dx.view(-1, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        x = padded[batch, chan, rows, cols]
    return x


def validation_split(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded indices (validation, kept for training) that move ``fraction`` of ``n`` training
    images to a validation split; both parts must be non-empty."""
    n_val = int(round(fraction * n))
    if not 0 < n_val < n:
        raise ConfigError(
            f"validation split of {fraction} leaves {n - n_val} of {n} training images; "
            f"expected 0 < train.val_fraction < 1 with both parts non-empty"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:n_val], order[n_val:]


def resolve_augmentation(
    data_flip: bool,
    data_pad: int,
    flip: str = "auto",
    translate: int | None = None,
    pad_mode: str = "zeros",
    seed: int = 0,
) -> Augmentation:
    """A recipe's augmentation on data whose config says whether flips are valid
    (``data_flip``: digits are not mirror-symmetric) and how far to translate (``data_pad``).

    ``flip="auto"`` is the data's random flips; ``alternating`` or ``random`` apply only where
    the data flips; ``translate=None`` is the data's ``crop_pad``.
    """
    if not data_flip or flip == "none":
        mode = "none"
    else:
        mode = "random" if flip == "auto" else flip
    return Augmentation(mode, data_pad if translate is None else translate, pad_mode, seed)


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``images (N, C, H, W)``, 0-255 scale."""
    x = images.float()
    mean = tuple(float(m) for m in x.mean(dim=(0, 2, 3)))
    std = tuple(float(s) for s in x.std(dim=(0, 2, 3)))
    return mean, std


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
    val_x: Tensor | None = None
    val_y: Tensor | None = None
    own_val: bool = False  # the source came with its validation split
    # mean/std were measured on train_x (not published constants): a validation split held
    # out of it measures them again on what remains, so no validation image informs training
    stats_from_train: bool = False
    augmentation: Augmentation | None = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    def to(self, device: torch.device | str) -> InMemoryDataset:
        for key in ("train_x", "train_y", "test_x", "test_y", "val_x", "val_y"):
            if getattr(self, key) is not None:
                setattr(self, key, getattr(self, key).to(device))
        return self

    @property
    def has_val(self) -> bool:
        return self.val_y is not None

    def normalize(self, x: Tensor) -> Tensor:
        return normalize(x, self.mean, self.std)

    def configure_augmentation(
        self,
        flip: str = "auto",
        translate: int | None = None,
        pad_mode: str = "zeros",
        seed: int = 0,
    ) -> Augmentation:
        """The recipe's augmentation (see :func:`resolve_augmentation`); reflect padding must
        be narrower than the images (torch's rule), which is checked here, before training."""
        aug = resolve_augmentation(self.flip, self.crop_pad, flip, translate, pad_mode, seed)
        side = min(self.input_shape[1:])
        if aug.pad_mode == "reflect" and aug.translate >= side:
            raise ConfigError(
                f"{self.name}: train.pad_mode=reflect needs a translation under the image side "
                f"({side} px), got {aug.translate} px; lower train.translate or set "
                f"train.pad_mode=zeros"
            )
        self.augmentation = aug
        return aug

    def augment(
        self, x: Tensor, generator: torch.Generator, idx: Tensor | None = None, epoch: int = 1
    ) -> Tensor:
        aug = self.augmentation or resolve_augmentation(self.flip, self.crop_pad)
        flips = None
        if aug.flip == "alternating" and idx is not None:
            flips = aug.flips(len(self.train_y))[idx.cpu()] ^ (epoch % 2 == 0)
        flip = aug.flip if aug.flip != "alternating" else False
        return augment(x, generator, flip, aug.translate, aug.pad_mode, flips)

    def split_validation(self, fraction: float, seed: int) -> None:
        """Move a seeded ``fraction`` of the training images to a validation split.

        Model selection (best epoch, early stopping, hyperparameters) reads this split; the
        test split is only ever read for the final number.
        """
        if self.own_val:
            raise ConfigError(
                f"{self.name}: the data has its own val split; set train.val_fraction=0 to use "
                f"it (a fraction of train would be held out besides)"
            )
        val, keep = validation_split(len(self.train_y), fraction, seed)
        val, keep = val.to(self.train_y.device), keep.to(self.train_y.device)
        self.val_x, self.val_y = self.train_x[val], self.train_y[val]
        self.train_x, self.train_y = self.train_x[keep], self.train_y[keep]
        if self.stats_from_train:
            self.mean, self.std = channel_stats(self.train_x)

    def train_batches(
        self, batch_size: int, generator: torch.Generator, augment: bool = True, epoch: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch (``epoch``, from 1) of shuffled, augmented, normalised batches (the last
        partial one dropped when it would be smaller than half a batch, to keep BatchNorm
        statistics sane)."""
        n = len(self.train_y)
        order = torch.randperm(n, generator=generator, device=self.train_x.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < max(2, batch_size // 2) and start > 0:
                break
            x = self.train_x[idx]
            if augment:
                x = self.augment(x, generator, idx, epoch)
            yield self.normalize(x), self.train_y[idx]

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.raw_test_batches(batch_size):
            yield self.normalize(x), y

    @property
    def num_test(self) -> int:
        return len(self.test_y)

    def raw_test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.test_y), batch_size):
            end = start + batch_size
            yield self.test_x[start:end], self.test_y[start:end]

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self.val_y is None:
            raise ConfigError("no validation split: set train.val_fraction > 0")
        for start in range(0, len(self.val_y), batch_size):
            end = start + batch_size
            yield self.normalize(self.val_x[start:end]), self.val_y[start:end]

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.train_y)
        full, rest = divmod(n, batch_size)
        return full + (1 if rest >= max(2, batch_size // 2) or full == 0 else 0)
