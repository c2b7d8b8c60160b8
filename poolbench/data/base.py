"""The interface ``train.py`` uses for every dataset, in memory or streamed from disk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class ImageData(Protocol):
    """Train/validation/test batches of normalised images on the training device.

    Implemented by :class:`~poolbench.data.memory.InMemoryDataset` (uint8 tensors on the
    device, batches by indexing) and :class:`~poolbench.data.loader.LoaderDataset` (files
    decoded by DataLoader workers into a shared uint8 cache). Both augment and normalise on the
    device, so a model sees the same kind of batch from either.
    """

    name: str
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]: ...

    @property
    def in_channels(self) -> int: ...

    def to(self, device: torch.device | str) -> ImageData: ...

    def split_validation(self, fraction: float, seed: int) -> None: ...

    @property
    def has_val(self) -> bool:
        """Whether there is a validation split (the data's own, or carved from train)."""
        ...

    def configure_augmentation(
        self,
        flip: str = "auto",
        translate: int | None = None,
        pad_mode: str = "zeros",
        seed: int = 0,
    ) -> object:
        """Set the recipe's augmentation (flip scheme, translation, pad mode)."""
        ...

    def train_batches(
        self, batch_size: int, generator: torch.Generator, augment: bool = True, epoch: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]: ...

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]: ...

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]: ...

    @property
    def num_test(self) -> int: ...

    def raw_test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Test images as uint8 on the device, in a fixed order, not normalised (invariance
        tests transform them first)."""
        ...

    def normalize(self, x: Tensor) -> Tensor: ...

    def steps_per_epoch(self, batch_size: int) -> int: ...
