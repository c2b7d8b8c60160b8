"""Recipes that train: every registered model on digits with its defaults, and the CIFAR
recipes on real CIFAR-10 photographs (``../shared/data/cifar10_dev.npz``, its 4,068 training
images, scored on its 1,017 validation images). Slow: ``pytest -m slow``.

The thresholds sit a few points under what the development CPU measured
(benchmarks/README.md), so that they fail when a recipe or a model stops training, not on a
new torch's rounding."""

from __future__ import annotations

import pytest

from poolbench.models.registry import list_models
from poolbench.run.runner import _train_and_measure
from poolbench.sweep.plan import plan
from tests.helpers import REPO

DEV = REPO.parent / "shared" / "data" / "cifar10_dev.npz"
needs_dev = pytest.mark.skipif(not DEV.is_file(), reason=f"no development data at {DEV}")
QUIET = ["eval.enabled=false", "latency_repeats=1", "latency_batch=8"]
# Models a user must point somewhere (their own factory): nothing to train by default.
NEEDS_INPUT = {"custom"}


def train_once(*overrides: str) -> dict:
    metrics, _ = _train_and_measure(plan([*overrides, *QUIET]).runs[0], None)
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in list_models() if m not in NEEDS_INPUT])
def test_every_model_trains_on_digits_with_its_defaults(model: str):
    metrics = train_once(f"model={model}")
    assert metrics["test_acc"] >= 0.95, (model, metrics["test_acc"])


@pytest.mark.slow
@needs_dev
def test_cifar10_recipe_on_real_photographs():
    metrics = train_once(
        "model=vgg",
        "model.widths=[64,128,256]",
        "model.convs_per_stage=[2,2,1]",
        "train=cifar10",
        "train.epochs=10",
        "data=tensors",
        f"data.path={DEV}",
        "data.test=val",
    )
    assert metrics["test_acc"] >= 0.62, metrics["test_acc"]


@pytest.mark.slow
@needs_dev
def test_airbench_recipe_on_real_photographs():
    metrics = train_once(
        "model=airbench", "train=airbench", "data=tensors", f"data.path={DEV}", "data.test=val"
    )
    assert metrics["test_acc"] >= 0.77, metrics["test_acc"]
