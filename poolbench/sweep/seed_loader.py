"""Hydra's config loader for a race, composing each configuration once (see
:class:`SeedCachingLoader`)."""

from __future__ import annotations

import copy
import re
from typing import Any

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

_SEED = re.compile(r"^seed=(\d+)$")


class SeedCachingLoader:
    """Hydra's config loader, composing each configuration of a race once: the jobs of one
    configuration differ in ``seed=N`` alone, so the second seed's config is the first one's
    with ``seed``, ``hydra.overrides.task`` and ``hydra.job.override_dirname`` set as a
    composition would set them (a test compares the two, key for key). Composing a job costs
    about 0.2 s on a slow CPU, a digits run 1-5 s. Everything else is the loader's own."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.composed: dict[tuple[str, ...], tuple[DictConfig, int]] = {}

    def __getattr__(self, name: str) -> Any:
        if name in ("loader", "composed") or name.startswith("__"):  # unpickling (joblib)
            raise AttributeError(name)
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> Any:
        seeds = [i for i, o in enumerate(sweep_overrides) if _SEED.match(o)]
        if len(seeds) != 1:
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        at = seeds[0]
        seed = int(sweep_overrides[at][len("seed=") :])
        key = (*sweep_overrides[:at], "seed=?", *sweep_overrides[at + 1 :])
        if key not in self.composed:
            config = self.loader.load_sweep_config(master_config, sweep_overrides)
            self.composed[key] = (copy.deepcopy(config), seed)
            return config
        first, first_seed = self.composed[key]
        config = copy.deepcopy(first)
        with open_dict(config):
            config.seed = seed
            task = list(config.hydra.overrides.task)
            old = f"seed={first_seed}"
            if task.count(old) != 1:  # not the plain override composed: compose as Hydra does
                return self.loader.load_sweep_config(master_config, sweep_overrides)
            task[task.index(old)] = f"seed={seed}"
            config.hydra.overrides.task = task
            dirname = config.hydra.job.config.override_dirname
            parser = OverridesParser.create(config_loader=self.loader)
            config.hydra.job.override_dirname = get_overrides_dirname(
                overrides=parser.parse_overrides(task),
                exclude_keys=list(dirname.exclude_keys),
                item_sep=dirname.item_sep,
                kv_sep=dirname.kv_sep,
            )
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config


__all__ = ["SeedCachingLoader"]
