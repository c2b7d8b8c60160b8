"""Every config in configs/ composes, converts to a RunConfig and builds a working model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from poolbench.core.paths import config_dir
from poolbench.data import list_datasets
from poolbench.engine.loggers import list_loggers
from poolbench.models.registry import list_models
from poolbench.pooling import POOLS, list_pools
from poolbench.sweep.plan import plan
from tests.helpers import REPO
from tests.helpers.datafiles import write_cifar, write_imagefolder, write_imagenette, write_tensors

CONFIGS = config_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def experiment_dataset(name: str) -> str | None:
    """The dataset an experiment file selects (``override /data: X`` in its defaults)."""
    config = yaml.safe_load((CONFIGS / "experiment" / f"{name}.yaml").read_text()) or {}
    for item in config.get("defaults", []):
        if isinstance(item, dict) and "override /data" in item:
            return item["override /data"]
    return None


def test_config_dir_is_the_repo_configs():
    assert CONFIGS == REPO / "configs"


@pytest.mark.parametrize(
    "group", ["pool", "head", "model", "data", "train", "experiment", "logger"]
)
def test_every_option_composes_and_validates(group: str, tmp_path: Path, unverified_cifar: None):
    # Datasets on disk are read when validated: point them at fixtures.
    roots = (
        {
            "cifar10": write_cifar(tmp_path / "c10", "cifar10"),
            "cifar100": write_cifar(tmp_path / "c100", "cifar100"),
            "imagenette": write_imagenette(tmp_path / "inette"),
            "imagefolder": write_imagefolder(tmp_path / "folder"),
            "tensors": write_tensors(tmp_path / "tensors.npz"),
        }
        if group in ("data", "experiment")
        else {}
    )
    for option in options(group):
        dataset = option if group == "data" else None
        if group == "experiment":
            dataset = experiment_dataset(option)
        key = "path" if dataset == "tensors" else "root"
        extra = [f"data.{key}={roots[dataset]}"] if dataset in roots else []
        the_plan = plan([f"{group}={option}", *extra])
        assert the_plan.runs, option


def test_config_files_match_registries():
    assert options("pool") == list_pools("local")
    assert options("head") == list_pools("global")
    assert options("model") == list_models()
    assert options("data") == list_datasets()
    assert options("logger") == list_loggers()


def test_config_keys_are_factory_arguments():
    run = plan(["pool=max", "pool.F=3", "pool.S=1"]).runs[0]
    assert run.pool.name == "max"
    assert run.pool.params == {
        "F": 3,
        "S": 1,
        "padding": None,  # unset: the model's window, else the layer's default
        "ceil_mode": False,
        "return_indices": False,
    }


WINDOW_KEYS = ("F", "S", "padding")


@pytest.mark.parametrize("group,kind", [("pool", "local"), ("head", "global")])
def test_pool_configs_list_every_factory_parameter_at_its_default(group: str, kind: str):
    """One source of truth: each configs/<group>/<name>.yaml holds exactly the factory's
    keyword parameters at the factory's defaults; a local pool's window keys are null (the
    model's window, else the factory default)."""
    for name in list_pools(kind):
        config = yaml.safe_load((CONFIGS / group / f"{name}.yaml").read_text())
        assert config.pop("name") == name
        params = {p.name: p.default for p in POOLS.get(name).params if p.name != "stage_channels"}
        assert sorted(config) == sorted(params), name
        for key, default in params.items():
            if kind == "local" and key in WINDOW_KEYS:
                assert config[key] is None, (name, key)
            else:
                expected = list(default) if isinstance(default, tuple) else default
                assert config[key] == expected, (name, key, config[key], default)


def test_every_pool_parameter_is_set_without_plus():
    for overrides in (
        ["pool=max", "pool.ceil_mode=true", "pool.return_indices=true"],
        ["pool=strided_conv", "pool.bias=false"],
        ["pool=fractional", "pool.ratio=0.6"],
    ):
        run = plan(overrides).runs[0]
        for o in overrides[1:]:
            key, value = o.removeprefix("pool.").split("=")
            assert str(run.pool.params[key]).lower() == value


def _primary() -> dict:
    return yaml.safe_load((CONFIGS / "config.yaml").read_text())


def test_the_recipe_defaults_in_config_yaml_are_train_configs():
    from dataclasses import fields

    from poolbench.core.config import TrainConfig

    node = _primary()["train"]
    python = {f.name: f.default for f in fields(TrainConfig)}
    python["milestones"] = list(python["milestones"])
    assert node == python


def test_the_eval_and_top_level_defaults_in_config_yaml_are_the_run_configs():
    from dataclasses import MISSING, fields

    from poolbench.core.config import EvalConfig, RunConfig

    primary = _primary()
    python = {f.name: f.default for f in fields(EvalConfig)}
    python = {k: list(v) if isinstance(v, tuple) else v for k, v in python.items()}
    assert primary["eval"] == python
    groups = {"pool", "head", "model", "data", "train", "eval", "logger", "tags", "overrides"}
    for f in fields(RunConfig):
        if f.name in groups or f.name == "identity":
            continue
        assert f.default is not MISSING, f.name
        assert primary[f.name] == f.default, f.name


@pytest.mark.parametrize("recipe", options("train"))
def test_a_recipe_lists_only_what_differs_from_the_defaults(recipe: str):
    text = (CONFIGS / "train" / f"{recipe}.yaml").read_text()
    config = yaml.safe_load(text) or {}
    node = config.get("train", {}) if "@package _global_" in text else config
    defaults = _primary()["train"]
    same = [k for k, v in node.items() if k != "defaults" and defaults.get(k) == v]
    assert not same, f"train/{recipe}.yaml repeats the defaults of {same}"
