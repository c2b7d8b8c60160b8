"""Datasets, by registry name.

``create_dataset(name, **params)`` returns an :class:`InMemoryDataset`: uint8 images that live
on the training device, normalised and augmented there, batched by indexing (no DataLoader).
"""

from __future__ import annotations

from typing import Any

from poolbench.data.memory import InMemoryDataset
from poolbench.registry import Registry, import_submodules

DATASETS = Registry("dataset")
register_dataset = DATASETS.register


def list_datasets() -> list[str]:
    return DATASETS.names()


def create_dataset(name: str, **params: Any) -> InMemoryDataset:
    entry = DATASETS.get(name)
    DATASETS.check_params(name, params)
    return entry.factory(**params)


def dataset_input_shape(name: str, params: dict[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) of the images ``name`` yields with ``params``, without loading it."""
    entry = DATASETS.get(name)
    size = params.get("image_size", entry.meta["image_size"])
    return (entry.meta["in_channels"], size, size)


import_submodules(__name__, __path__, skip=("memory",))

__all__ = ["DATASETS", "InMemoryDataset", "create_dataset", "dataset_input_shape", "list_datasets"]
