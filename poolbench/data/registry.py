"""The dataset registry.

``create_dataset(name, **params)`` returns an :class:`ImageData`: an :class:`InMemoryDataset`
(uint8 images on the training device, normalised and augmented there, batched by indexing)
for data that fits in memory, a :class:`~poolbench.data.loader.LoaderDataset` (DataLoader
workers, pinned memory, a decoded-image cache) for image files. A dataset registered with a
``check`` callable is checked on disk before anything runs (:func:`check_dataset`), so a
missing download, a truncated file or an image that does not decode fails in one line before
training; checks that read the files keep what they read for the run in the same process.
"""

from __future__ import annotations

from typing import Any

from poolbench.core.checks import check_int
from poolbench.core.registry import Registry
from poolbench.data.base import ImageData

DATASETS = Registry("dataset")
register_dataset = DATASETS.register


def list_datasets() -> list[str]:
    return DATASETS.names()


def create_dataset(name: str, **params: Any) -> ImageData:
    entry = DATASETS.get(name)
    DATASETS.check_params(name, params)
    return entry.factory(**params)


def describe_dataset(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """What a run needs before loading ``name`` with ``params``: ``input_shape`` (C, H, W),
    ``num_classes`` (None: read from the data when it loads) and ``has_val`` (the data comes
    with its own validation split), without loading the images."""
    entry = DATASETS.get(name)
    describe = entry.meta.get("describe")
    if describe is not None:
        return describe(**params)
    return {
        "input_shape": dataset_input_shape(name, params),
        "num_classes": entry.meta["num_classes"],
        "has_val": False,
    }


def dataset_input_shape(name: str, params: dict[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) of the images ``name`` yields with ``params``, without loading it."""
    entry = DATASETS.get(name)
    if entry.meta.get("describe") is not None:
        return entry.meta["describe"](**params)["input_shape"]
    size = check_int(
        "image_size", params.get("image_size", entry.meta["image_size"]), 8, where=name
    )
    return (entry.meta["in_channels"], size, size)


def check_dataset(name: str, params: dict[str, Any]) -> None:
    """Raise :class:`~poolbench.core.errors.DataError` now if ``name``'s files are missing or do
    not read (see the module docstring)."""
    entry = DATASETS.get(name)
    check = entry.meta.get("check")
    if check is not None:
        check(**params)
