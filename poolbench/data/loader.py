"""Datasets too large for the device: image files decoded once, cached decoded, batched by
DataLoader workers.

Each image is decoded once (PIL), resized so its shorter side is ``image_size`` and
centre-cropped to a square, and kept as uint8 in a cache that every worker shares: a
file-backed mapping (``torch.from_file(shared=True)`` on an unlinked temporary file), which
forked workers inherit and which needs no ``/dev/shm``. Batches travel as uint8 through pinned
memory; flip, pad-crop and normalisation run on the device, as for
:class:`~poolbench.data.memory.InMemoryDataset`.

:func:`decoded_images` decodes every file before training (threads; PIL releases the GIL), so
that a file that does not decode fails the check that runs before anything starts, naming the
file, instead of a DataLoader worker mid-epoch. It keeps what it decoded for the life of the
process, keyed by the file list (paths, sizes, modification times) and the image size: the
command's check (``poolbench.run.runner.validate``) and the run it then starts in the same process
share one decoding, as do the runs of a sweep over one dataset. With ``cache=false`` the check
still decodes every file once (and keeps nothing), and training decodes as it goes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from poolbench.core.checks import check_int
from poolbench.core.errors import ConfigError, DataError
from poolbench.data.memory import Augmentation, normalize, resolve_augmentation, validation_split
from poolbench.data.memory import augment as augment_batch


def _shared_uint8(numel: int) -> Tensor:
    """A zeroed uint8 tensor backed by an unlinked temporary file, shared across fork."""
    fd, path = tempfile.mkstemp(prefix="poolbench-cache-")
    try:
        os.ftruncate(fd, max(numel, 1))
        tensor = torch.from_file(path, shared=True, size=max(numel, 1), dtype=torch.uint8)
    finally:
        os.close(fd)
        os.unlink(path)
    return tensor[:numel]


def decode_square(path: str | Path, size: int, channels: int = 3) -> Tensor:
    """Decode an image file, resize its shorter side to ``size``, centre-crop: uint8 (C, S, S)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            w, h = img.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    # PIL reports a damaged file as OSError (truncated, not an image), SyntaxError (broken
    # PNG chunks), ValueError or DecompressionBombError
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot decode image {path}: {err}; remove or replace it") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class DecodedImages(Dataset):
    """(path, label) samples -> uint8 (C, S, S) images, each decoded once into a shared cache."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        image_size: int,
        channels: int = 3,
        cache: bool = True,
        decode: Callable[[str | Path, int, int], Tensor] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.channels = channels
        self.decode = decode or decode_square
        n, side = len(self.samples), image_size
        self.images = (
            _shared_uint8(n * channels * side * side).view(n, channels, side, side)
            if cache
            else None
        )
        self.filled = _shared_uint8(n) if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        if self.images is None:
            return self.decode(path, self.image_size, self.channels), label
        if not self.filled[index]:
            self.images[index] = self.decode(path, self.image_size, self.channels)
            self.filled[index] = 1
        return self.images[index], label

    def decode_all(self, threads: int | None = None) -> None:
        """Decode every file not decoded yet (into the cache, if there is one); raise
        :class:`DataError` naming the first file, in sample order, that does not decode."""
        pending = [i for i in range(len(self)) if self.filled is None or not self.filled[i]]
        if not pending:
            return
        threads = threads or min(8, os.cpu_count() or 1)

        def one(index: int) -> None:
            image = self.decode(self.samples[index][0], self.image_size, self.channels)
            if self.images is not None:
                self.images[index] = image
                self.filled[index] = 1

        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="poolbench-decode")
        try:
            for future in [pool.submit(one, i) for i in pending]:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


_DECODED: dict[tuple[Any, ...], DecodedImages] = {}


def decoded_images(
    samples: Sequence[tuple[str, int]], image_size: int, channels: int = 3, cache: bool = True
) -> DecodedImages:
    """``samples`` with every file decoded (see the module docstring): the same object for the
    same files (paths, sizes, modification times) and size within one process."""
    try:
        files = tuple(
            (path, label, st.st_size, st.st_mtime_ns)
            for path, label in samples
            for st in (os.stat(path),)
        )
    except OSError as err:
        raise DataError(f"cannot read image {err.filename}: {err.strerror}") from None
    key = (files, image_size, channels, cache)
    found = _DECODED.get(key)
    if found is None:
        found = DecodedImages(samples, image_size, channels, cache)
        found.decode_all()
        _DECODED[key] = found
    return found


def forget_decoded() -> None:
    """Drop this process's decoded images (their memory returns when no dataset uses them)."""
    _DECODED.clear()


class _Indexed(Dataset):
    """``dataset``'s samples with their index, so that a batch knows which images it holds."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image, label = self.dataset[index]
        return image, label, index


class LoaderDataset:
    """Train and test image files behind DataLoaders, with the :class:`ImageData` interface."""

    def __init__(
        self,
        name: str,
        train: DecodedImages,
        test: DecodedImages,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        flip: bool = True,
        crop_pad: int = 0,
        workers: int = 2,
    ) -> None:
        check_int("workers", workers, 0, where=name)
        self.name = name
        self.train: Dataset = train
        self.val: Dataset | None = None
        self.test = test
        self.num_classes = num_classes
        self.mean, self.std = mean, std
        self.flip, self.crop_pad = flip, crop_pad
        self.workers = workers
        self.device = torch.device("cpu")
        self._channels, self._size = train.channels, train.image_size
        self.augmentation: Augmentation = resolve_augmentation(flip, crop_pad)

    def configure_augmentation(
        self,
        flip: str = "auto",
        translate: int | None = None,
        pad_mode: str = "zeros",
        seed: int = 0,
    ) -> Augmentation:
        """The recipe's augmentation (see :func:`~poolbench.data.memory.resolve_augmentation`)."""
        self.augmentation = resolve_augmentation(
            self.flip, self.crop_pad, flip, translate, pad_mode, seed
        )
        return self.augmentation

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self._channels, self._size, self._size)

    @property
    def in_channels(self) -> int:
        return self._channels

    def to(self, device: torch.device | str) -> LoaderDataset:
        self.device = torch.device(device)
        return self

    @property
    def has_val(self) -> bool:
        return self.val is not None

    def split_validation(self, fraction: float, seed: int) -> None:
        val, keep = (idx.tolist() for idx in validation_split(len(self.train), fraction, seed))
        self.val = Subset(self.train, val)
        self.train = Subset(self.train, keep)

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            **kwargs,
        )

    def _to_device(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        non_blocking = self.device.type == "cuda"
        return x.to(self.device, non_blocking=non_blocking), y.to(
            self.device, non_blocking=non_blocking
        )

    def train_batches(
        self, batch_size: int, generator: torch.Generator, augment: bool = True, epoch: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]:
        # The DataLoader shuffles on the CPU; its generator is drawn from the run's generator.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        order = torch.Generator().manual_seed(seed)
        loader = self._loader(
            _Indexed(self.train),
            batch_size,
            shuffle=True,
            generator=order,
            drop_last=len(self.train) > batch_size,
        )
        aug = self.augmentation
        base = aug.flips(len(self.train)) if aug.flip == "alternating" else None
        for x, y, idx in loader:
            x, y = self._to_device(x, y)
            if augment:
                flips = None if base is None else base[idx] ^ (epoch % 2 == 0)
                flip = aug.flip if base is None else False
                x = augment_batch(x, generator, flip, aug.translate, aug.pad_mode, flips)
            yield normalize(x, self.mean, self.std), y

    def normalize(self, x: Tensor) -> Tensor:
        return normalize(x, self.mean, self.std)

    def _eval_batches(self, dataset: Dataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self._raw_batches(dataset, batch_size):
            yield self.normalize(x), y

    def _raw_batches(self, dataset: Dataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self._loader(dataset, batch_size, shuffle=False):
            yield self._to_device(x, y)

    @property
    def num_test(self) -> int:
        return len(self.test)

    def raw_test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._raw_batches(self.test, batch_size)

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self.val is None:
            raise ConfigError("no validation split: set train.val_fraction > 0")
        return self._eval_batches(self.val, batch_size)

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._eval_batches(self.test, batch_size)

    def steps_per_epoch(self, batch_size: int) -> int:
        n = len(self.train)
        return n // batch_size if n > batch_size else 1
