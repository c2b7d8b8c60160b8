"""Every config in configs/ composes, converts to a RunConfig and builds a working model."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolbench.data import list_datasets
from poolbench.hydra_app import plan
from poolbench.models import list_models
from poolbench.paths import config_dir
from poolbench.pooling import list_pools

CONFIGS = config_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_config_dir_is_the_repo_configs():
    assert CONFIGS == Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("group", ["pool", "head", "model", "data", "train", "experiment"])
def test_every_option_composes_and_validates(group: str):
    for option in options(group):
        the_plan = plan([f"{group}={option}"])
        assert the_plan.runs, option


def test_config_files_match_registries():
    assert options("pool") == list_pools("local")
    assert options("head") == list_pools("global")
    assert options("model") == list_models()
    assert options("data") == list_datasets()


def test_config_keys_are_factory_arguments():
    run = plan(["pool=max", "pool.F=3", "pool.S=1"]).runs[0]
    assert run.pool.name == "max" and run.pool.params == {"F": 3, "S": 1}
