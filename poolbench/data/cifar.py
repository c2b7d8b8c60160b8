"""``cifar10`` and ``cifar100`` (Krizhevsky 2009): 60,000 32x32 colour images, read by
torchvision from the python pickle batches, kept on the device as uint8.

Standard recipe: per-channel normalisation with the training set's mean and std, random
horizontal flip and 4-pixel zero-pad + random 32x32 crop (He et al. 2015). ``data.root`` is the
directory that holds ``cifar-10-batches-py/`` (or ``cifar-100-python/``); ``data.download=true``
lets torchvision fetch the archive there (never in tests).

The check that runs before anything trains reads the batches (torchvision verifies each file's
md5 and unpickles it) and keeps them for the run in the same process to use; a batch file that
is missing, or present but truncated or corrupt, is named as such.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from poolbench.core.checks import check_bool, check_int
from poolbench.core.errors import DataError
from poolbench.data.memory import InMemoryDataset
from poolbench.data.registry import register_dataset

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


def missing(name: str, root: str | Path, files: list[str] | None = None) -> DataError:
    where = Path(root).expanduser() / FOLDERS[name]
    absent = f"; missing: {', '.join(files)}" if files else ""
    return DataError(
        f"{name}: expected the python batches ({FILES[name]}) in {where}{absent}; set "
        f"data.download=true to fetch them there, or data.root to the directory that holds "
        f"{FOLDERS[name]}/"
    )


def check_cifar(name: str, root: str = "data", download: bool = False, **_: object) -> None:
    """Before anything runs: every batch file is there and reads (kept for the run). With
    ``download=true`` and no batch folder yet, nothing to check: the run downloads it."""
    check_bool("download", download, where=name)
    if not (Path(root).expanduser() / FOLDERS[name]).is_dir():
        if download:
            return
        raise missing(name, root)
    read_batches(name, root, False)


_READ: dict[tuple[Any, ...], list[tuple[np.ndarray, list[int]]]] = {}


def read_batches(name: str, root: str, download: bool) -> list[tuple[np.ndarray, list[int]]]:
    """(images HWC uint8, labels) of the train and test splits, read once per process for the
    same files (paths, sizes, modification times)."""
    cls = dataset_class(name)
    folder = Path(root).expanduser() / FOLDERS[name]
    stats = (
        tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*")))
        if folder.is_dir()
        else ()
    )
    key = (cls, str(folder.resolve()), stats)
    if key in _READ:
        return _READ[key]
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(Path(root).expanduser()), train=train, download=download)
        # torchvision: "Dataset not found or corrupted" (a missing file or a wrong md5), or
        # whatever unpickling a damaged file raises
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError, KeyError):
            raise diagnose(name, root) from None
        splits.append((ds.data, list(ds.targets)))
    _READ[key] = splits
    return splits


def diagnose(name: str, root: str | Path) -> DataError:
    """Why torchvision could not read ``name`` from ``root``: the files that are missing, or
    the first that is there but truncated or corrupt (its md5 is not the published one, or,
    where no md5 is known, it does not unpickle)."""
    from torchvision.datasets.utils import check_integrity

    cls = dataset_class(name)
    folder = Path(root).expanduser() / FOLDERS[name]
    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    absent = [file for file, _ in files if not (folder / file).is_file()]
    if absent:
        return missing(name, root, absent)
    for file, md5 in files:
        path = folder / file
        if md5 is not None:
            broken = None if check_integrity(str(path), md5) else "its md5 is not the published one"
        else:
            try:
                with open(path, "rb") as fh:
                    pickle.load(fh, encoding="latin1")
                broken = None
            except (pickle.UnpicklingError, EOFError, ValueError, OSError) as err:
                broken = f"it does not unpickle: {err}"
        if broken is not None:
            return DataError(
                f"{name}: {path} is truncated or corrupt ({path.stat().st_size:,} bytes; "
                f"{broken}); delete it and set data.download=true to fetch it again, or "
                f"copy it anew"
            )
    return DataError(f"{name}: cannot read the python batches in {folder}")


def load_cifar(
    name: str, root: str, download: bool, image_size: int, crop_pad: int
) -> InMemoryDataset:
    check_int("image_size", image_size, 8, where=name)
    check_int("crop_pad", crop_pad, 0, where=name)
    check_cifar(name, root, download)
    splits = []
    for data, targets in read_batches(name, root, download):
        images = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2)
        if image_size != images.shape[-1]:
            images = F.interpolate(images.float(), size=image_size, mode="bilinear")
            images = images.round().clamp(0, 255).to(torch.uint8)
        splits.append((images.contiguous(), torch.tensor(targets, dtype=torch.int64)))
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
    check=lambda **params: check_cifar("cifar10", **params),
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
    check=lambda **params: check_cifar("cifar100", **params),
)
def cifar100(
    root: str = "data", download: bool = False, image_size: int = 32, crop_pad: int = 4
) -> InMemoryDataset:
    """CIFAR-100 (fine labels) from ``root/cifar-100-python``."""
    return load_cifar("cifar100", root, download, image_size, crop_pad)
