"""Image-file datasets: ``imagenette`` (torchvision's Imagenette, Howard 2019, a 10-class
ImageNet subset) and ``imagefolder`` (any ImageNet subset laid out as ``train/`` and ``val/``
class folders, e.g. Tiny-ImageNet or ImageNet-100 after the usual re-layout).

Both stream through :class:`~poolbench.data.loader.LoaderDataset`: decoded once, resized
(shorter side) and centre-cropped to ``image_size``, cached as uint8; random flip and
pad-crop on the device; ImageNet channel statistics for normalisation.

Their checks (run before anything trains) decode every file, into the cache training then
uses (:func:`~poolbench.data.loader.decoded_images`): a file that does not decode fails there,
named. ``imagefolder`` also needs at least two classes, each with images in ``train/``. In a
class folder, entries without an image extension (``.DS_Store``, ``notes.txt``, a subfolder)
are skipped, and the run's log lists them; a file with an image extension that does not
decode is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from poolbench.core.checks import check_bool, check_choice, check_int
from poolbench.core.errors import DataError
from poolbench.data.loader import DecodedImages, LoaderDataset, decoded_images
from poolbench.data.registry import register_dataset

log = logging.getLogger("poolbench")

# ImageNet channel statistics on the 0-255 scale (the values torchvision's models use).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
SIZES = ("full", "320px", "160px")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _check_size(name: str, image_size: int) -> None:
    check_int("image_size", image_size, 8, where=name)


def imagenette_dir(root: str | Path, size: str) -> Path:
    """Where torchvision's Imagenette keeps ``size``: ``<root>/imagenette2[-320|-160]``."""
    return Path(root).expanduser() / (
        "imagenette2" if size == "full" else f"imagenette2-{size[:-2]}"
    )


def check_imagenette(
    root: str = "data",
    size: str = "160px",
    download: bool = False,
    image_size: int = 128,
    cache: bool = True,
    **_: object,
) -> None:
    """Before anything runs: the extracted archive is where torchvision looks, and every file
    decodes (into the cache the run uses). With ``download=true`` and no archive yet, only the
    settings are checked: the run downloads it."""
    check_choice("size", size, SIZES, where="imagenette")
    _check_size("imagenette", image_size)
    check_bool("cache", cache, where="imagenette")
    where = imagenette_dir(root, size)
    if not (where / "train").is_dir():
        if download:
            return
        raise DataError(
            f"imagenette: expected {where}/train and {where}/val with one folder per WordNet id; "
            f"set data.download=true to fetch it (size={size}) or data.root to where it is"
        )
    _imagenette_splits(root, size, False, image_size, cache)


def _imagenette_splits(
    root: str, size: str, download: bool, image_size: int, cache: bool
) -> list[DecodedImages]:
    from torchvision.datasets import Imagenette

    splits = []
    for split in ("train", "val"):
        try:
            ds = Imagenette(str(Path(root).expanduser()), split=split, size=size, download=download)
        except (RuntimeError, FileNotFoundError, KeyError) as err:
            raise DataError(
                f"imagenette: cannot read {imagenette_dir(root, size)}/{split} "
                f"({str(err).splitlines()[0]}); set data.download=true to fetch it"
            ) from None
        splits.append(decoded_images(ds._samples, image_size, 3, cache))
    return splits


@register_dataset(
    "imagenette",
    description="torchvision Imagenette (10 ImageNet classes), resized to image_size, streamed",
    in_channels=3,
    num_classes=10,
    image_size=128,
    check=check_imagenette,
)
def imagenette(
    root: str = "data",
    size: str = "160px",
    download: bool = False,
    image_size: int = 128,
    crop_pad: int = 8,
    workers: int = 2,
    cache: bool = True,
) -> LoaderDataset:
    """Imagenette ``size`` from ``root`` (torchvision's layout), at ``image_size`` px."""
    check_imagenette(root, size, download, image_size, cache)
    splits = _imagenette_splits(root, size, download, image_size, cache)
    return LoaderDataset(
        "imagenette", splits[0], splits[1], 10, IMAGENET_MEAN, IMAGENET_STD, True, crop_pad, workers
    )


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir()) if split_dir.is_dir() else []


def check_imagefolder(
    root: str = "data/imagefolder", image_size: int = 64, cache: bool = True, **_: object
) -> None:
    """Before anything runs: the layout, two classes or more, and every image decodes (into
    the cache the run uses)."""
    _imagefolder_splits(root, image_size, cache)


def _imagefolder_splits(
    root: str, image_size: int, cache: bool
) -> tuple[list[str], list[DecodedImages], list[str]]:
    """The classes, the train and val images (decoded), and the entries skipped as not
    images (``<split>/<class>/<name>``)."""
    _check_size("imagefolder", image_size)
    check_bool("cache", cache, where="imagefolder")
    base = Path(root).expanduser()
    for split in ("train", "val"):
        if not _class_folders(base / split):
            raise DataError(
                f"imagefolder: expected {base / split}/<class>/<image> (train/ and val/ with one "
                f"folder per class, the same names in both); set data.root to that directory"
            )
    classes = _class_folders(base / "train")
    val_classes = _class_folders(base / "val")
    if val_classes != classes:
        extra = sorted(set(val_classes) ^ set(classes))
        raise DataError(
            f"imagefolder: train/ and val/ must have the same class folders under {base}; "
            f"differing: {', '.join(extra[:5])}"
        )
    if len(classes) < 2:
        raise DataError(
            f"imagefolder: expected at least 2 class folders in {base / 'train'}, found "
            f"{len(classes)} ({', '.join(classes)}): one class is learnt perfectly by any model"
        )
    index = {c: i for i, c in enumerate(classes)}
    splits, skipped = [], []
    for split in ("train", "val"):
        samples = []
        for c in classes:
            found = 0
            for f in sorted((base / split / c).iterdir()):
                if f.is_file() and f.suffix.lower() in EXTENSIONS:
                    samples.append((str(f), index[c]))
                    found += 1
                else:
                    skipped.append(f"{split}/{c}/{f.name}")
            if not found and split == "train":
                raise DataError(
                    f"imagefolder: class folder {base / split / c} holds no "
                    f"{'/'.join(EXTENSIONS)} image"
                )
        if not samples:
            raise DataError(f"imagefolder: no {'/'.join(EXTENSIONS)} images under {base / split}")
        splits.append(decoded_images(samples, image_size, 3, cache))
    return classes, splits, skipped


@register_dataset(
    "imagefolder",
    description="any ImageNet subset on disk: data.root with train/ and val/ class folders",
    in_channels=3,
    num_classes=None,  # read from the class folders
    image_size=64,
    check=check_imagefolder,
)
def imagefolder(
    root: str = "data/imagefolder",
    image_size: int = 64,
    crop_pad: int = 4,
    workers: int = 2,
    cache: bool = True,
) -> LoaderDataset:
    """``root/train/<class>/*`` and ``root/val/<class>/*``, classes in sorted folder order."""
    classes, splits, skipped = _imagefolder_splits(root, image_size, cache)
    if skipped:
        more = f", ... ({len(skipped) - 10} more)" if len(skipped) > 10 else ""
        shown = ", ".join(skipped[:10]) + more
        log.warning(
            "imagefolder: skipped %d entr%s of %s without an image extension (%s): %s",
            len(skipped),
            "y" if len(skipped) == 1 else "ies",
            Path(root).expanduser(),
            ", ".join(EXTENSIONS),
            shown,
        )
    return LoaderDataset(
        "imagefolder",
        splits[0],
        splits[1],
        len(classes),
        IMAGENET_MEAN,
        IMAGENET_STD,
        True,
        crop_pad,
        workers,
    )
