"""Contract tests, parametrised from the registry: a layer is tested the moment it exists."""

from __future__ import annotations

import pytest
import torch

from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError, ShapeError
from poolbench.models.inspect import check_model
from poolbench.models.registry import create_model
from poolbench.pooling import POOLS, create_pool, list_pools, pool_entry, pooled_size
from poolbench.pooling.base import GlobalPool, LocalPool

LOCAL = list_pools("local")
GLOBAL = list_pools("global")


def make(name: str, channels: int = 4, **params) -> torch.nn.Module:
    entry = pool_entry(name)
    if entry.meta["takes_stages"]:
        params.setdefault("stage_channels", [channels, channels])
    return create_pool(name, channels, **params)


def run(module: torch.nn.Module, x: torch.Tensor):
    if getattr(module, "takes_stages", False):
        return module([x, x])
    return module(x)


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="registered twice"):
        POOLS.register("max", kind="local")(lambda channels: None)


def test_unknown_name_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown pool 'sofpool'; available: .*avg.*max"):
        create_pool("sofpool", 4)


@pytest.mark.parametrize("name", LOCAL)
@pytest.mark.parametrize(("size", "F", "S"), [(8, 2, 2), (9, 3, 2), (7, 2, 1), (11, 3, 3)])
def test_local_output_follows_the_size_rule(name: str, size: int, F: int, S: int):
    entry = pool_entry(name)
    names = {p.name for p in entry.params}
    if not {"F", "S"} <= names:
        pytest.skip(f"{name} has no F/S")
    module = make(name, F=F, S=S)
    assert isinstance(module, LocalPool)
    out = run(module, torch.randn(2, 4, size, size + 1))
    expected = (pooled_size(size, F, S), pooled_size(size + 1, F, S))
    assert tuple(out.shape) == (2, 4, *expected) == (2, 4, *module.output_size(size, size + 1))


WINDOWLESS = [n for n in LOCAL if not {"F", "S"} <= {p.name for p in pool_entry(n).params}]


@pytest.mark.parametrize("name", WINDOWLESS)
@pytest.mark.parametrize("size", [4, 7, 9, 16])
def test_windowless_local_pool_states_its_output_size(name: str, size: int):
    """Pools without F/S (identity, wavelet, fractional) follow their own rule: it must be the
    one their ``output_size`` states, since models and shape checks rely on it."""
    module = make(name).train()
    for mode in (module.train(), module.eval()):
        out = run(mode, torch.randn(2, 4, size, size + 1))
        assert tuple(out.shape) == (2, 4, *module.output_size(size, size + 1))


@pytest.mark.parametrize("name", LOCAL)
def test_local_bad_hyperparameters_raise_at_construction(name: str):
    names = {p.name for p in pool_entry(name).params}
    for key, value in (("F", 0), ("S", 0), ("p", 0), ("p", -1.0)):
        if key in names:
            with pytest.raises(ConfigError, match=key):
                make(name, **{key: value})


@pytest.mark.parametrize("name", LOCAL)
def test_local_too_small_input_names_layer_and_formula(name: str):
    names = {p.name for p in pool_entry(name).params}
    if "F" not in names:
        pytest.skip(f"{name} has no window")
    module = make(name, F=5, S=2)
    with pytest.raises(ShapeError, match=r"needs input >= 5, feature map is 4x4"):
        module.check_input(4, 4, where="pool 3")


@pytest.mark.parametrize("name", GLOBAL)
@pytest.mark.parametrize("size", [1, 5, 8])
def test_global_output_is_n_by_d(name: str, size: int):
    module = make(name, channels=6)
    assert isinstance(module, GlobalPool)
    out = run(module, torch.randn(3, 6, size, size))
    assert tuple(out.shape) == (3, module.out_features)


@pytest.mark.parametrize("name", LOCAL + GLOBAL)
def test_gradient_reaches_input_and_every_parameter(name: str):
    torch.manual_seed(0)
    module = make(name, channels=4)
    module.train()
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = run(module, x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "no gradient reaches the input"
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no gradient for {pname}"


@pytest.mark.parametrize("name", LOCAL + GLOBAL)
def test_eval_mode_is_deterministic(name: str):
    module = make(name, channels=4).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.manual_seed(1)
        a = run(module, x)
        torch.manual_seed(2)
        b = run(module, x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", LOCAL + GLOBAL)
def test_bf16_autocast_on_cpu_is_finite(name: str):
    module = make(name, channels=4)
    x = torch.randn(2, 4, 8, 8) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(module, x)
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", list_pools())
@pytest.mark.parametrize("training", [False, True])
def test_every_pool_and_head_returns_the_input_dtype_in_bf16(name, training):
    torch.manual_seed(0)
    module = make(name, 4).to(torch.bfloat16).train(training)
    x = (torch.randn(2, 4, 8, 8) * 3).bfloat16()
    out = module([x, x]) if getattr(module, "takes_stages", False) else module(x)
    assert out.dtype == torch.bfloat16, f"{name} returned {out.dtype}"
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", LOCAL)
@pytest.mark.parametrize("size", [32, 224])
def test_local_pool_in_a_model(name: str, size: int):
    model = create_model("vgg", 10, 3, PoolSpec(name), PoolSpec("global_avg"), widths=[4, 8, 8])
    stages = check_model(model, (3, size, size))
    assert [s.index for s in stages if s.index] == [1, 2, 3]
    assert model(torch.randn(2, 3, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", GLOBAL)
@pytest.mark.parametrize("size", [32, 224])
def test_head_in_a_model(name: str, size: int):
    model = create_model("vgg", 10, 3, PoolSpec("max"), PoolSpec(name), widths=[4, 8, 8])
    assert model(torch.randn(2, 3, size, size)).shape == (2, 10)
