"""Where the Hydra configs are: inside the installed package (wheel) or at the repo top."""

from __future__ import annotations

from pathlib import Path

from poolbench.core.errors import PoolbenchError


def config_dir() -> Path:
    here = Path(__file__).resolve().parent.parent  # the poolbench package
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise PoolbenchError(f"poolbench configs not found next to {here}; reinstall poolbench")
