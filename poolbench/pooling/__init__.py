"""Pooling layers, by registry name (:mod:`poolbench.pooling.registry`). Each family lives in
its own module, which registers its layers on import; ``base`` holds what they share.

May import ``core`` only.
"""

from poolbench.core.registry import import_submodules
from poolbench.pooling.base import GlobalPool, LocalPool, pooled_size
from poolbench.pooling.registry import (
    POOLS,
    create_for_slot,
    create_pool,
    list_pools,
    pool_entry,
    register_pool,
    takes_stages,
)

# Importing the family modules registers their layers.
import_submodules(__name__, __path__, skip=("base", "ops", "registry"))

__all__ = [
    "GlobalPool",
    "LocalPool",
    "POOLS",
    "create_for_slot",
    "create_pool",
    "list_pools",
    "pool_entry",
    "pooled_size",
    "register_pool",
    "takes_stages",
]
