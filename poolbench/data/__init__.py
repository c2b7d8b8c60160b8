"""Datasets, by registry name (:mod:`poolbench.data.registry`): in-memory tensors on the training
device (``memory``) or image files through DataLoader workers (``loader``), and the on-disk
cache of prepared data (``cache``).

May import ``core`` only. Importing the package registers every dataset.
"""

from poolbench.core.registry import import_submodules
from poolbench.data.base import ImageData
from poolbench.data.memory import InMemoryDataset
from poolbench.data.registry import (
    DATASETS,
    check_dataset,
    create_dataset,
    dataset_input_shape,
    describe_dataset,
    list_datasets,
    register_dataset,
)

import_submodules(__name__, __path__, skip=("memory", "base", "loader", "registry", "cache"))

__all__ = [
    "DATASETS",
    "ImageData",
    "InMemoryDataset",
    "check_dataset",
    "create_dataset",
    "dataset_input_shape",
    "describe_dataset",
    "list_datasets",
    "register_dataset",
]
