"""The model x pool matrix, from the registries: every registered model builds with every
registered local pool and a few heads, passes the dry forward pass that checks every pooling
stage, and takes one training step with a finite loss. The few pairs a model's structure
cannot take are refused before training, and each is declared in the model's ``limits``
(shown by ``poolbench list models``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from poolbench.core.config import PoolSpec, TrainConfig
from poolbench.core.errors import ConfigError
from poolbench.engine.recipe import make_optimizer
from poolbench.models.inspect import check_model, pool_settings
from poolbench.models.registry import MODELS, create_model, list_models
from poolbench.pooling import list_pools

# Small widths: the whole matrix in well under a minute on 2 cores.
SMALL: dict[str, dict] = {
    "vgg": {"widths": [8, 16, 16]},
    "airbench": {"widths": [8, 16, 16]},
    "lenet5": {"widths": [4, 8, 16], "hidden": 16},
    "alexnet_small": {"widths": [8, 8, 8, 8, 8]},
    "allcnn": {"width1": 8, "width2": 16},
    "nin": {"widths": [8, 8, 8]},
    "inception": {"width": 8},
    "resnet18": {"widths": [8, 8, 16, 16]},
    "spp_net": {"widths": [8, 16]},
    "torchvision": {"arch": "squeezenet1_1"},  # ceil-mode pools: the padding stand-in
    "timm": {"arch": "resnet18", "kwargs": {"channels": [8, 8, 16, 16]}},
    "custom": {"factory": "tests.helpers.custom_nets:tiny"},
}
SIZE = {"torchvision": 64}  # SqueezeNet downsamples 16x before its last pool
GENERIC = ("torchvision", "timm", "custom")  # networks without stages
HEADS = ["global_max", "catavgmax", "hopfield", "adaptive_feature", "spp"]
# (model, pool or None, head or None): the combinations a model refuses by design.
REFUSED = {
    ("resnet18", "fractional", None),
    *((m, None, "adaptive_feature") for m in GENERIC),
    *(("spp_net", None, h) for h in ["global_avg", *HEADS] if h != "spp"),
}


def refused(model: str, pool: str, head: str) -> bool:
    return any(m == model and p in (None, pool) and h in (None, head) for m, p, h in REFUSED)


def default_head(model: str) -> str:
    return "spp" if model == "spp_net" else "global_avg"


def train_step(model: str, pool: str, head: str) -> None:
    torch.manual_seed(0)
    net = create_model(model, 10, 3, PoolSpec(pool), PoolSpec(head), **SMALL[model])
    size = SIZE.get(model, 32)
    check_model(net, (3, size, size))
    x, y = torch.randn(4, 3, size, size), torch.randint(0, 10, (4,))
    optimizer = make_optimizer(net, TrainConfig(lr=0.01))
    net.train()
    loss = F.cross_entropy(net(x), y)
    assert math.isfinite(loss.item()), (model, pool, head)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is None or torch.isfinite(g).all() for g in grads), (model, pool, head)


def test_every_model_is_in_the_matrix():
    assert sorted(SMALL) == list_models()


@pytest.mark.parametrize("model", list_models())
@pytest.mark.parametrize("pool", list_pools("local"))
def test_every_model_takes_every_pool(model: str, pool: str):
    head = default_head(model)
    if refused(model, pool, head):
        with pytest.raises(ConfigError, match=pool):
            create_model(model, 10, 3, PoolSpec(pool), PoolSpec(head), **SMALL[model])
        return
    train_step(model, pool, head)


@pytest.mark.parametrize("model", list_models())
@pytest.mark.parametrize("head", HEADS)
def test_every_model_takes_the_heads(model: str, head: str):
    if refused(model, "max", head):
        with pytest.raises(ConfigError, match=head if model != "spp_net" else "spp"):
            create_model(model, 10, 3, PoolSpec("max"), PoolSpec(head), **SMALL[model])
        return
    train_step(model, "max", head)


def test_refusals_are_declared_in_the_models_limits():
    for model, pool, head in REFUSED:
        limits = MODELS.get(model).meta.get("limits", {})
        assert limits, model
        text = " ".join(limits)
        assert (pool or head) in text or (head and "other than" in text), (model, limits)


def test_default_window_applies_only_to_pools_with_a_window():
    spec = {"widths": [8, 8, 8, 8, 8]}
    for pool, expected in (("max", {"F": 3, "S": 2}), ("avg", {"F": 3, "S": 2})):
        net = create_model("alexnet_small", 10, 3, PoolSpec(pool), PoolSpec("global_avg"), **spec)
        settings = pool_settings(net, pool)
        assert {k: settings[k] for k in expected} == expected
    for pool in ("none", "wavelet", "fractional"):
        net = create_model("alexnet_small", 10, 3, PoolSpec(pool), PoolSpec("global_avg"), **spec)
        assert "F" not in pool_settings(net, pool)
    net = create_model(
        "alexnet_small", 10, 3, PoolSpec("max", {"F": 2, "S": 2}), PoolSpec("global_avg"), **spec
    )
    assert pool_settings(net, "max")["F"] == 2  # the spec wins over the model's window
