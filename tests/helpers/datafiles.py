"""Small fixtures in each dataset's real on-disk format, written with the formats' own tools
(pickle batches for CIFAR, JPEG/PNG trees for Imagenette and ImageFolder)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100

IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186")


class CIFAR10Unverified(CIFAR10):
    """torchvision's reader with the md5 of each real batch file removed: the fixtures hold
    the same pickle format with other bytes. Everything else is torchvision's own code."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class CIFAR100Unverified(CIFAR100):
    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


UNVERIFIED = {"cifar10": CIFAR10Unverified, "cifar100": CIFAR100Unverified}


def write_cifar(root: Path, name: str = "cifar10", per_batch: int = 8, seed: int = 0) -> Path:
    """The python batches torchvision reads: pickled dicts of (N, 3072) uint8 rows."""
    rng = np.random.default_rng(seed)
    cifar10 = name == "cifar10"
    folder = root / ("cifar-10-batches-py" if cifar10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    classes = 10 if cifar10 else 100
    label_key = "labels" if cifar10 else "fine_labels"
    files = (
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if cifar10 else ["train", "test"]
    )
    for file in files:
        n = per_batch * (5 if not cifar10 and file == "train" else 1)
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: [int(v) for v in rng.integers(0, classes, n)],
        }
        (folder / file).write_bytes(pickle.dumps(batch))
    meta_name, key = ("batches.meta", "label_names") if cifar10 else ("meta", "fine_label_names")
    (folder / meta_name).write_bytes(pickle.dumps({key: [f"c{i}" for i in range(classes)]}))
    return root


def _image(path: Path, size: tuple[int, int], value: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(value)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    array = np.clip(rng.normal(value, 20, shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def write_imagenette(root: Path, size: str = "160px", per_class: int = 4) -> Path:
    """``<root>/imagenette2-160/{train,val}/<wnid>/*.JPEG``, as in the extracted archive."""
    folder = root / ("imagenette2" if size == "full" else f"imagenette2-{size[:-2]}")
    for split, count in (("train", per_class), ("val", 2)):
        for c, wnid in enumerate(IMAGENETTE_WNIDS):
            for i in range(count):
                # non-square sizes: the loader resizes the shorter side, then centre-crops
                _image(folder / split / wnid / f"{wnid}_{i}.JPEG", (48 + 8 * i, 40), 60 * c + i)
    return root


def write_imagefolder(root: Path, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    """``<root>/{train,val}/<class>/*`` with PNG and JPEG files, one of them grey-scale."""
    for split, count in (("train", 6), ("val", 2)):
        for c, name in enumerate(classes):
            for i in range(count):
                ext = ".png" if i % 2 else ".jpg"
                mode = "L" if i == 1 else "RGB"
                _image(root / split / name / f"{i}{ext}", (40, 32 + 4 * i), 90 * c + 30, mode)
    return root


def write_tensors(
    path: Path,
    n_train: int = 40,
    n_test: int = 12,
    n_val: int = 0,
    layout: str = "nchw",
    size: int = 16,
    classes: int = 4,
    seed: int = 0,
) -> Path:
    """An .npz of uint8 images and int labels as airbench-style pipelines keep CIFAR:
    x_train, y_train, x_test, y_test (and x_val, y_val when ``n_val``); a .pt path gets the same
    dict through torch.save."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test), ("val", n_val)):
        if n == 0:
            continue
        shape = (n, 3, size, size) if layout == "nchw" else (n, size, size, 3)
        arrays[f"x_{split}"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"y_{split}"] = rng.integers(0, classes, n).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt":
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        np.savez(path, **arrays)
    return path
