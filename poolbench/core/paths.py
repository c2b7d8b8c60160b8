"""Where poolbench finds its Hydra configs (inside the installed package, or at the top of a
source checkout) and keeps its cache."""

from __future__ import annotations

import os
from pathlib import Path

from poolbench.core.errors import PoolbenchError

CONFIG_NAME = "config"  # configs/config.yaml: the primary config every command line composes


def config_dir() -> Path:
    here = Path(__file__).resolve().parent.parent  # the poolbench package
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise PoolbenchError(f"poolbench configs not found next to {here}; reinstall poolbench")


def cache_dir() -> Path:
    """``$POOLBENCH_CACHE``, else ``$XDG_CACHE_HOME/poolbench``, else ``~/.cache/poolbench``."""
    if os.environ.get("POOLBENCH_CACHE"):
        return Path(os.environ["POOLBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "poolbench"
