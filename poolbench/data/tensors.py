"""``tensors``: images and labels kept as tensor files, the way airbench-style pipelines keep
CIFAR: ``data=tensors data.path=...``.

``path`` is one of

- an ``.npz`` file (numpy) or a ``.pt`` file (a dict, ``torch.save``) with ``x_<split>`` and
  ``y_<split>`` for the splits ``train`` and ``test`` (``val`` optional): uint8 images, NCHW
  or NHWC, and integer labels;
- a directory with ``train.pt`` and ``test.pt`` (``val.pt`` optional), each a dict with
  ``images`` (uint8, NCHW or NHWC) and ``labels`` (airbench's ``CifarLoader`` files).

``data.test=val`` evaluates on another split of the file (a development file without a test
split, such as a tuning set, scores on its validation split; that number is then a
validation score, not a test one). A file's own ``val`` split is the run's validation split
(``train.eval_every``, ``train.select=best_val``); with one, ``train.val_fraction`` must be 0.
Per-channel mean and std come from the training images. Random flips (``flip``) and pad-crop
(``crop_pad``) as for CIFAR. Everything lives on the training device as uint8.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from poolbench.core.checks import check_bool, check_choice, check_int
from poolbench.core.errors import ConfigError, DataError
from poolbench.data.memory import InMemoryDataset, channel_stats
from poolbench.data.registry import register_dataset

LAYOUTS = ("auto", "nchw", "nhwc")


def _source(path: str) -> Path:
    if not isinstance(path, str) or path in ("", "???"):  # ???: the config's required marker
        raise ConfigError(
            "tensors: set data.path to an .npz or .pt file, or a directory of .pt files"
        )
    where = Path(path).expanduser()
    if not where.exists():
        raise DataError(
            f"tensors: no file or directory {where}; expected an .npz/.pt file with x_train, "
            f"y_train, x_test, y_test, or a directory with train.pt and test.pt"
        )
    return where


def _splits(where: Path) -> dict[str, tuple[str, str]]:
    """The splits a source holds and where each one's images and labels are: split ->
    (file or key of the images, key of the labels)."""
    if where.is_dir():
        return {p.stem: (p.name, "labels") for p in sorted(where.glob("*.pt"))}
    if where.suffix == ".npz":
        with zipfile.ZipFile(where) as archive:
            keys = {n.removesuffix(".npy") for n in archive.namelist()}
    elif where.suffix == ".pt":
        keys = set(_load_pt(where))
    else:
        raise DataError(f"tensors: expected an .npz or .pt file or a directory, got {where}")
    return {k[2:]: (k, f"y_{k[2:]}") for k in keys if k.startswith("x_") and f"y_{k[2:]}" in keys}


def _load_pt(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises RuntimeError, pickle errors, zipfile errors
        raise DataError(f"tensors: cannot read {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DataError(f"tensors: expected {path} to hold a dict, got {type(data).__name__}")
    return data


def _read(where: Path, split: str, kind: str) -> Tensor:
    """The images (``kind="x"``) or labels (``"y"``) of ``split``, as a CPU tensor."""
    images_key, labels_key = _splits(where)[split]
    if where.is_dir():
        data = _load_pt(where / images_key)
        key = "images" if kind == "x" else labels_key
        if key not in data:
            raise DataError(f"tensors: {where / images_key} has no '{key}'")
        value = data[key]
    elif where.suffix == ".npz":
        with np.load(where, allow_pickle=False) as archive:
            value = archive[images_key if kind == "x" else labels_key]
    else:
        value = _load_pt(where)[images_key if kind == "x" else labels_key]
    tensor = torch.as_tensor(np.asarray(value)) if not torch.is_tensor(value) else value
    return tensor.clone()


def _nchw(images: Tensor, layout: str, where: str) -> Tensor:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DataError(
            f"tensors: expected uint8 images of 4 dimensions (NCHW or NHWC) in {where}, got "
            f"{images.dtype} {tuple(images.shape)}"
        )
    if layout == "auto":
        nchw, nhwc = images.shape[1] in (1, 3), images.shape[3] in (1, 3)
        if nchw and nhwc:
            raise DataError(
                f"tensors: the images in {where}, {tuple(images.shape)}, read as NCHW or as "
                f"NHWC; set data.layout=nchw or data.layout=nhwc"
            )
        layout = "nchw" if nchw else "nhwc"
    out = images if layout == "nchw" else images.permute(0, 3, 1, 2)
    if out.shape[1] not in (1, 3) or out.shape[2] != out.shape[3]:
        raise DataError(
            f"tensors: expected 1 or 3 channels and square images in {where}, got "
            f"{tuple(out.shape)} as NCHW (data.layout={layout})"
        )
    return out.contiguous()


def _labels(labels: Tensor, n: int, where: str) -> Tensor:
    if labels.ndim != 1 or len(labels) != n or labels.is_floating_point():
        raise DataError(
            f"tensors: expected {n} integer labels in {where}, got {labels.dtype} "
            f"{tuple(labels.shape)}"
        )
    if len(labels) and int(labels.min()) < 0:
        raise DataError(f"tensors: expected labels >= 0 in {where}, got {int(labels.min())}")
    return labels.long()


def check_tensors(path: str = "", test: str = "test", **_: object) -> None:
    """Cheap pre-flight check: the source exists and holds train and the test split."""
    where = _source(path)
    found = _splits(where)
    missing = [s for s in ("train", test) if s not in found]
    if missing:
        held = ", ".join(sorted(found)) or "none"
        raise DataError(
            f"tensors: {where} has no {' or '.join(missing)} split (splits found: {held}); "
            f"expected x_<split>/y_<split> arrays or <split>.pt files"
            + ("; data.test=<split> names another test split" if test in missing else "")
        )


def describe_tensors(
    path: str = "", layout: str = "auto", test: str = "test", **_: object
) -> dict[str, Any]:
    """What a run needs to know before loading: the images' (C, H, W), the number of classes
    (from the training labels) and whether the source has its own val split."""
    check_tensors(path, test)
    where = _source(path)
    images = _nchw(_read(where, "train", "x"), layout, f"{where} (train)")
    labels = _read(where, "train", "y")
    return {
        "input_shape": tuple(images.shape[1:]),
        "num_classes": int(labels.max()) + 1,
        "has_val": "val" in _splits(where) and test != "val",
    }


@register_dataset(
    "tensors",
    description="images and labels in an .npz/.pt file or a directory of .pt (data.path=...)",
    in_channels=None,
    num_classes=None,
    image_size=None,
    check=check_tensors,
    describe=describe_tensors,
)
def tensors(
    path: str = "",
    test: str = "test",
    layout: str = "auto",
    flip: bool = True,
    crop_pad: int = 4,
) -> InMemoryDataset:
    """Train, test (``test`` names the split) and, when present, val from ``path``."""
    check_choice("layout", layout, LAYOUTS, where="tensors")
    check_bool("flip", flip, where="tensors")
    check_int("crop_pad", crop_pad, 0, where="tensors")
    check_tensors(path, test)
    where = _source(path)
    found = _splits(where)
    splits: dict[str, tuple[Tensor, Tensor]] = {}
    for split in ("train", test, *(["val"] if "val" in found and test != "val" else [])):
        label = f"{where} ({split})"
        images = _nchw(_read(where, split, "x"), layout, label)
        splits[split] = (images, _labels(_read(where, split, "y"), len(images), label))
    shapes = {tuple(x.shape[1:]) for x, _ in splits.values()}
    if len(shapes) != 1:
        raise DataError(f"tensors: the splits of {where} differ in image shape: {sorted(shapes)}")
    train_x, train_y = splits["train"]
    num_classes = int(train_y.max()) + 1  # as describe_tensors says: the training labels
    for split, (_, y) in splits.items():
        if len(y) and int(y.max()) >= num_classes:
            raise DataError(
                f"tensors: {where} ({split}) has label {int(y.max())}, which the training "
                f"labels (0-{num_classes - 1}) never use: a model trained on them has no "
                f"output for it"
            )
    mean, std = channel_stats(train_x)
    val = splits.get("val") if test != "val" else None
    return InMemoryDataset(
        name="tensors",
        train_x=train_x,
        train_y=train_y,
        test_x=splits[test][0],
        test_y=splits[test][1],
        num_classes=num_classes,
        mean=mean,
        std=std,
        stats_from_train=True,
        flip=flip,
        crop_pad=crop_pad,
        val_x=None if val is None else val[0],
        val_y=None if val is None else val[1],
        own_val=val is not None,
    )
