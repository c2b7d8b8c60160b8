"""``cifar10`` and ``cifar100`` (Krizhevsky 2009): 60,000 32x32 colour images, read by
torchvision from the python pickle batches, kept on the device as uint8.

Standard recipe: per-channel normalisation with the training set's mean and std, random
horizontal flip and 4-pixel zero-pad + random 32x32 crop (He et al. 2015). ``data.root`` is the
directory that holds ``cifar-10-batches-py/`` (or ``cifar-100-python/``); ``data.download=true``
lets torchvision fetch the archive there (never in tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from poolbench.checks import check_bool, check_int
from poolbench.data import register_dataset
from poolbench.data.memory import InMemoryDataset
from poolbench.errors import DataError

# Per-channel statistics of the training images (0-1 scale), the values the literature uses.
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
FILES = {
    "cifar10": "data_batch_1..5, test_batch, batches.meta",
    "cifar100": "train, test, meta",
}


def dataset_class(name: str) -> Any:
    """The torchvision class that reads ``name`` (tests substitute one without checksums)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]


def missing(name: str, root: str | Path) -> DataError:
    where = Path(root).expanduser() / FOLDERS[name]
    return DataError(
        f"{name}: expected the python batches ({FILES[name]}) in {where}; set data.download=true "
        f"to fetch them there, or data.root to the directory that holds {FOLDERS[name]}/"
    )


def check_cifar(name: str, root: str = "data", download: bool = False) -> None:
    """Cheap pre-flight check: the batch folder exists (torchvision verifies the files)."""
    if not download and not (Path(root).expanduser() / FOLDERS[name]).is_dir():
        raise missing(name, root)


def load_cifar(
    name: str, root: str, download: bool, image_size: int, crop_pad: int
) -> InMemoryDataset:
    check_int("image_size", image_size, 8, where=name)
    check_int("crop_pad", crop_pad, 0, where=name)
    check_bool("download", download, where=name)
    check_cifar(name, root, download)
    cls = dataset_class(name)
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(Path(root).expanduser()), train=train, download=download)
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            raise missing(name, root) from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)
        if image_size != images.shape[-1]:
            images = F.interpolate(images.float(), size=image_size, mode="bilinear")
            images = images.round().clamp(0, 255).to(torch.uint8)
        splits.append((images.contiguous(), torch.tensor(ds.targets, dtype=torch.int64)))
    mean, std = STATS[name]
    return InMemoryDataset(
        name=name,
        train_x=splits[0][0],
        train_y=splits[0][1],
        test_x=splits[1][0],
        test_y=splits[1][1],
        num_classes=10 if name == "cifar10" else 100,
        mean=tuple(255 * m for m in mean),
        std=tuple(255 * s for s in std),
        flip=True,
        crop_pad=crop_pad,
    )


@register_dataset(
    "cifar10",
    description="CIFAR-10 (torchvision; data.download=true to fetch), on the device as uint8",
    in_channels=3,
    num_classes=10,
    image_size=32,
    check=lambda root="data", download=False, **_: check_cifar("cifar10", root, download),
)
def cifar10(
    root: str = "data", download: bool = False, image_size: int = 32, crop_pad: int = 4
) -> InMemoryDataset:
    """CIFAR-10 from ``root/cifar-10-batches-py``."""
    return load_cifar("cifar10", root, download, image_size, crop_pad)


@register_dataset(
    "cifar100",
    description="CIFAR-100 (torchvision; data.download=true to fetch), on the device as uint8",
    in_channels=3,
    num_classes=100,
    image_size=32,
    check=lambda root="data", download=False, **_: check_cifar("cifar100", root, download),
)
def cifar100(
    root: str = "data", download: bool = False, image_size: int = 32, crop_pad: int = 4
) -> InMemoryDataset:
    """CIFAR-100 (fine labels) from ``root/cifar-100-python``."""
    return load_cifar("cifar100", root, download, image_size, crop_pad)
