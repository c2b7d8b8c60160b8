"""A small on-disk cache for prepared datasets, so that a warm ``poolbench run`` skips slow
imports and preprocessing (scikit-learn alone takes about a second to import).

Location: :func:`poolbench.core.paths.cache_dir`.
Entries are dicts of tensors saved with ``torch.save``; a key names everything the content
depends on, and ``version`` is bumped when the way it is built changes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from poolbench.core.paths import cache_dir
from poolbench.core.storage import atomic_file


def cached_tensors(key: str, build: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """``build()``'s tensors, from the cache when present; written atomically when built.

    A cache that cannot be read or written (read-only home, corrupt file) is rebuilt: the
    cache only saves time, it never decides what a run computes.
    """
    path = cache_dir() / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except (OSError, RuntimeError, EOFError):
            path.unlink(missing_ok=True)
    tensors = build()
    try:
        with atomic_file(path, "wb") as fh:
            torch.save(tensors, fh)
    except OSError:
        pass  # not writable: the next run builds again, nothing else changes
    return tensors
