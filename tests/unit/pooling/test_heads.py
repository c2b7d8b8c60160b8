"""The global pooling heads (global_.py, pyramid.py, attention.py) against float64 loop
references, gradcheck, numerics and known traps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F_
from torch.autograd import gradcheck
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError, ShapeError
from poolbench.models.inspect import check_model
from poolbench.models.registry import create_model
from poolbench.pooling import create_pool
from poolbench.pooling.attention import resample_positions
from poolbench.pooling.global_ import global_gem, global_lp
from poolbench.pooling.pyramid import spatial_pyramid_pool
from tests.helpers import FAST
from tests.helpers.references import (
    bins,
    gem_reference,
    global_reference,
    grid_reference,
    lp_reference,
    sample,
)

SIZES = [(1, 1), (2, 3), (5, 5), (7, 4), (9, 13)]


CLOSED_FORM = {
    "global_avg": ({}, lambda x: global_reference(x, lambda v: sum(v) / len(v))),
    "global_max": ({}, lambda x: global_reference(x, max)),
    "global_gem": (
        {"p": 3.0, "learnable_p": False},
        lambda x: global_reference(x, gem_reference(3.0, 1e-6)),
    ),
    "global_lp": ({"p": 2.5}, lambda x: global_reference(x, lp_reference(2.5))),
    "avgmax": ({}, lambda x: global_reference(x, lambda v: 0.5 * (sum(v) / len(v) + max(v)))),
    "catavgmax": (
        {},
        lambda x: torch.cat(
            [global_reference(x, lambda v: sum(v) / len(v)), global_reference(x, max)], dim=1
        ),
    ),
    "adaptive_avg": ({"output_size": [2, 3]}, lambda x: grid_reference(x, 2, 3, "avg")),
    "adaptive_max": ({"output_size": 2}, lambda x: grid_reference(x, 2, 2, "max")),
    "spp": (
        {"levels": [1, 2, 4]},
        lambda x: torch.cat([grid_reference(x, n, n, "max") for n in (1, 2, 4)], dim=1),
    ),
    "spp_avg": (
        {"levels": [3, 1], "mode": "avg"},
        lambda x: torch.cat([grid_reference(x, n, n, "avg") for n in (3, 1)], dim=1),
    ),
}


@pytest.mark.parametrize("key", sorted(CLOSED_FORM))
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_closed_form_head_matches_float64_reference(key: str, h: int, w: int):
    params, reference = CLOSED_FORM[key]
    name = "spp" if key.startswith("spp") else key
    module = create_pool(name, 3, **params).double()
    x = sample(2, 3, h, w, seed=h * 31 + w, scale=1.0, outliers="masked")
    out = module(x)
    expected = reference(x)
    assert out.shape == expected.shape == (2, module.out_features)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- D stated at construction


@pytest.mark.parametrize(
    ("name", "params", "d"),
    [
        ("global_max", {}, 6),
        ("global_gem", {}, 6),
        ("avgmax", {}, 6),
        ("catavgmax", {}, 12),
        ("adaptive_avg", {}, 6 * 4),
        ("adaptive_max", {"output_size": [3, 1]}, 6 * 3),
        ("spp", {}, 6 * 21),
        ("spp", {"levels": [1, 3, 6]}, 6 * 46),
        ("hopfield", {}, 6),
        ("hopfield", {"num_patterns": 3, "dim": 5}, 15),
        ("attention", {"out_dim": 7, "heads": 2, "grid": 3}, 7),
        ("adaptive_feature", {"stage_channels": [2, 4, 6]}, 6),
        ("adaptive_feature", {"stage_channels": [2, 6], "output_size": 2, "width": 9}, 36),
    ],
)
@pytest.mark.parametrize(("h", "w"), [(1, 1), (3, 3), (6, 11), (13, 13)])
def test_out_features_is_known_before_running(name: str, params: dict, d: int, h: int, w: int):
    module = create_pool(name, 6, **params).eval()
    assert module.out_features == d
    if name == "adaptive_feature":
        widths = params["stage_channels"]
        maps = [torch.randn(2, c, h * 2**k, w * 2**k) for k, c in enumerate(reversed(widths))]
        out = module(list(reversed(maps)))
    else:
        out = module(torch.randn(2, 6, h, w))
    assert out.shape == (2, d)


# ---------------------------------------------------------------- gradcheck (float64)


def positive(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) + 0.1).requires_grad_()


def test_gem_gradcheck_input_and_p():
    x = positive(2, 3, 3, 4)
    module = create_pool("global_gem", 3, p=2.5).double()
    assert gradcheck(module, (x,))
    # the gradient with respect to the learnable p
    p = module.p.detach().clone().requires_grad_()
    from poolbench.pooling.global_ import global_gem

    assert gradcheck(lambda p_: global_gem(x.detach(), p_), (p,))


def test_gem_gradient_is_finite_on_zeros_and_negatives():
    x = torch.tensor([[[[-2.0, 0.0], [0.0, 3.0]]]], requires_grad=True)
    module = create_pool("global_gem", 1)
    module(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(module.p.grad).all()
    assert x.grad[0, 0, 0, 0] == 0  # clamped away: no gradient into a negative input


@pytest.mark.parametrize("p", [1.0, 2.0, 3.5])
def test_lp_gradcheck_with_negative_inputs(p: float):
    x = positive(2, 2, 3, 3) * torch.tensor([1.0, -1.0], dtype=torch.float64).view(1, 2, 1, 1)
    module = create_pool("global_lp", 2, p=p).double()
    assert gradcheck(module, (x.detach().requires_grad_(),))


def test_lp_of_all_zero_channel_is_zero_with_finite_gradient():
    x = torch.zeros(1, 2, 3, 3)
    x[0, 1, 1, 1] = 1e-30  # the sum of squares underflows to 0 in float32
    x.requires_grad_()
    out = create_pool("global_lp", 2, p=2.0)(x)
    assert out.tolist() == [[0.0, 0.0]]
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(("h", "w"), [(3, 5), (4, 4)])
def test_spp_gradcheck(mode: str, h: int, w: int):
    x = torch.randn(1, 2, h, w, dtype=torch.float64, requires_grad=True)
    module = create_pool("spp", 2, levels=[1, 2, 4], mode=mode)
    assert gradcheck(module, (x,))


@pytest.mark.parametrize("name", ["hopfield", "attention"])
def test_attention_heads_gradcheck(name: str):
    torch.manual_seed(0)
    params = {"heads": 2, "grid": 2} if name == "attention" else {"num_patterns": 2, "dim": 3}
    module = create_pool(name, 4, **params).double()
    x = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(module, (x,))
    # and with respect to every parameter
    names, params_ = zip(*module.named_parameters(), strict=True)
    leaves = tuple(p.detach().clone().requires_grad_() for p in params_)

    def as_function(*ps: torch.Tensor) -> torch.Tensor:
        state = dict(zip(names, ps, strict=True))
        return torch.func.functional_call(module, state, (x.detach(),))

    assert gradcheck(as_function, leaves)


def test_adaptive_feature_gradcheck():
    torch.manual_seed(0)
    module = create_pool("adaptive_feature", 3, stage_channels=[2, 3], output_size=2).double()
    maps = (
        torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True),
        torch.randn(1, 3, 3, 2, dtype=torch.float64, requires_grad=True),
    )
    assert gradcheck(lambda a, b: module([a, b]), maps)


# ---------------------------------------------------------------- reduced precision


def test_gem_in_bf16_is_finite_and_close_to_fp32():
    torch.manual_seed(0)
    module = create_pool("global_gem", 8)
    x = torch.relu(torch.randn(4, 8, 7, 7)) * 30
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = module(x.bfloat16())
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), module(x), rtol=2e-2, atol=1e-3)


def test_gem_in_fp16_does_not_overflow_at_large_activations():
    # 100^3 = 1e6 is past fp16's 65504: a pow in fp16 would give inf
    x = torch.full((1, 2, 4, 4), 100.0, dtype=torch.float16)
    assert torch.isinf(x.pow(3)).all()
    out = create_pool("global_gem", 2, learnable_p=False)(x)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), torch.full((1, 2), 100.0))


@pytest.mark.parametrize("name", ["hopfield", "attention", "global_lp"])
def test_bf16_autocast_close_to_fp32_at_large_activations(name: str):
    torch.manual_seed(0)
    module = create_pool(name, 8).eval()
    x = torch.randn(2, 8, 6, 6) * 50
    with torch.no_grad():
        ref = module(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = module(x)
    assert torch.isfinite(low.float()).all()
    scale = ref.abs().max()
    assert (low.float() - ref).abs().max() <= 5e-2 * scale


# ---------------------------------------------------------------- global lp and gem at large p


@pytest.mark.parametrize("level", [300.0, 1e-3])
def test_global_lp_at_large_p_neither_overflows_nor_underflows(level):
    x = torch.full((2, 3, 2, 2), level).requires_grad_()
    out = global_lp(x, 16.0)
    torch.testing.assert_close(out, torch.full((2, 3), 4 ** (1 / 16) * level))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    g = torch.Generator().manual_seed(2)
    y = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64).requires_grad_()
    assert gradcheck(lambda t: global_lp(t, 16.0), (y,))
    ref = y.detach().abs().pow(16).sum((2, 3)).pow(1 / 16)
    torch.testing.assert_close(
        global_lp(y.detach().float() * level, 16.0).double(), ref * level, rtol=1e-5, atol=0
    )


def test_global_gem_at_large_p_matches_float64_reference_with_dp():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 5, 4, generator=g, dtype=torch.float64) * 1e-3
    results = []
    for dtype in (torch.float32, torch.float64):
        leaf = x.to(dtype).requires_grad_()
        q = torch.tensor(9.0, dtype=dtype, requires_grad=True)
        if dtype == torch.float32:
            out = global_gem(leaf, q)
        else:
            out = leaf.clamp_min(1e-6).pow(q).mean((2, 3)).pow(1 / q)
        results.append((out, *torch.autograd.grad(out.sum(), (leaf, q))))
    for ours, ref in zip(*results, strict=True):
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours.double(), ref, rtol=2e-4, atol=1e-12)
    y = (torch.rand(1, 2, 3, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    assert gradcheck(
        lambda t, e: global_gem(t, e),
        (y, torch.tensor(12.0, dtype=torch.float64, requires_grad=True)),
    )


# ---------------------------------------------------------------- Lp and negative inputs


def test_lp_counts_negative_inputs_by_magnitude():
    x = sample(2, 3, 4, 5, scale=1.0, outliers="masked")
    module = create_pool("global_lp", 3, p=3.0).double()
    torch.testing.assert_close(module(-x), module(x))
    torch.testing.assert_close(module(x), module(x.abs()))


def test_lp_agrees_with_torch_lppool_on_nonnegative_input_where_lppool_fails_on_negative():
    x = sample(1, 2, 4, 4, scale=1.0, outliers="masked").abs()
    torch_lp = torch.nn.LPPool2d(2.5, kernel_size=(4, 4))
    ours = create_pool("global_lp", 2, p=2.5).double()
    torch.testing.assert_close(ours(x), torch_lp(x).flatten(1))
    # the trap: raising a negative number to a fractional power
    assert torch.isnan(torch_lp(-x - 1)).any()
    assert torch.isfinite(ours(-x - 1)).all()


def test_lp_rejects_p_below_one():
    with pytest.raises(ConfigError, match=r"GlobalLpPool: expected p to be a number >= 1, got 0.5"):
        create_pool("global_lp", 2, p=0.5)
    with pytest.raises(ConfigError, match=r"p"):
        create_pool("global_lp", 2, p=-1.0)


def test_gem_fixed_p_is_a_buffer_and_learnable_p_a_parameter():
    assert [n for n, _ in create_pool("global_gem", 2).named_parameters()] == ["p"]
    fixed = create_pool("global_gem", 2, p=4.0, learnable_p=False)
    assert list(fixed.parameters()) == [] and float(fixed.p) == 4.0
    with pytest.raises(ConfigError, match="p"):
        create_pool("global_gem", 2, p=0)


def test_gem_p_one_is_mean_and_large_p_tends_to_max():
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64) + 0.5
    mean = create_pool("global_gem", 3, p=1.0, learnable_p=False).double()(x)
    torch.testing.assert_close(mean, x.mean(dim=(2, 3)))
    near_max = create_pool("global_gem", 3, p=500.0, learnable_p=False).double()(x)
    torch.testing.assert_close(near_max, x.amax(dim=(2, 3)), rtol=1e-2, atol=0)


# ---------------------------------------------------------------- SPP and the paper's formula


def paper_bin_count(a: int, n: int) -> int | None:
    """Bins that SPP-net's window rule gives on an a x a map: win ceil(a/n), stride floor(a/n).

    None where the rule is undefined (stride 0 when a < n).
    """
    win, stride = math.ceil(a / n), math.floor(a / n)
    if stride == 0:
        return None
    return (a - win) // stride + 1


def test_paper_window_formula_gives_the_wrong_bin_count():
    # a = 7, n = 4: window 2, stride 1 -> 6 bins per side instead of 4
    assert paper_bin_count(7, 4) == 6
    assert F_.max_pool2d(torch.randn(1, 1, 7, 7), kernel_size=2, stride=1).shape[-1] == 6
    wrong = [(a, n) for n in (1, 2, 3, 4, 6) for a in range(n, 65) if paper_bin_count(a, n) != n]
    assert (7, 4) in wrong and (5, 3) in wrong  # 5x5 at level 3: window 2, stride 1 -> 4 bins
    assert paper_bin_count(3, 4) is None  # a map smaller than the level: stride 0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_adaptive_bins_are_always_n_and_cover_the_map(n: int):
    for a in range(1, 40):
        rows = bins(a, n)
        assert len(rows) == n and all(len(r) >= 1 for r in rows)
        assert set().union(*map(set, rows)) == set(range(a))
        x = torch.randn(1, 1, a, a + 1)
        assert F_.adaptive_max_pool2d(x, n).shape[-2:] == (n, n)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13, 32])
def test_spp_length_is_independent_of_input_size(size: int):
    module = create_pool("spp", 5)
    out = module(torch.randn(2, 5, size, size + 2))
    assert out.shape == (2, 5 * (1 + 4 + 16)) == (2, module.out_features)


def test_spp_on_a_map_smaller_than_its_finest_level_repeats_pixels():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    out = spatial_pyramid_pool(x, [4])
    assert out.view(4, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"levels": []}, "non-empty"),
        ({"levels": [1, 0]}, "levels"),
        ({"levels": [1, 2.5]}, "levels"),
        ({"levels": [True]}, "levels"),
        ({"levels": 4}, "non-empty list"),
        ({"mode": "min"}, r"mode to be one of max, avg, got 'min'"),
    ],
)
def test_spp_bad_hyperparameters(params: dict, match: str):
    with pytest.raises(ConfigError, match=match):
        create_pool("spp", 4, **params)


@pytest.mark.parametrize("value", [0, [2], [2, 0], "2", 1.5, [1, 2, 3]])
def test_adaptive_grid_bad_output_size(value: object):
    for name in ("adaptive_avg", "adaptive_max"):
        with pytest.raises(ConfigError, match="output_size"):
            create_pool(name, 4, output_size=value)


# ---------------------------------------------------------------- adaptive_feature (PANet)


def test_adaptive_feature_fuses_projected_stages_by_max():
    torch.manual_seed(0)
    widths, sizes = [3, 5, 7], [(16, 15), (8, 7), (3, 5)]
    module = create_pool("adaptive_feature", 7, stage_channels=widths, output_size=2).double()
    maps = [
        torch.randn(2, c, h, w, dtype=torch.float64)
        for c, (h, w) in zip(widths, sizes, strict=True)
    ]
    out = module(maps)
    assert out.shape == (2, 7 * 4) == (2, module.out_features)
    # reference: per stage, bin maxima by loop, then the 1x1 projection as a matrix product
    projected = []
    for x, conv in zip(maps, module.project, strict=True):
        pooled = grid_reference(x, 2, 2, "max").view(2, x.shape[1], 4)  # (N, C_i, cells)
        weight = conv.weight.detach().view(7, x.shape[1])
        projected.append(torch.einsum("oc,ncg->nog", weight, pooled) + conv.bias.view(1, 7, 1))
    expected = torch.stack(projected).amax(dim=0).flatten(1)
    torch.testing.assert_close(out, expected)


def test_adaptive_feature_each_stage_can_win():
    module = create_pool("adaptive_feature", 2, stage_channels=[2, 2])
    with torch.no_grad():
        for conv in module.project:
            conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            conv.bias.zero_()
    a = torch.tensor([5.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    b = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    assert module([a, b]).tolist() == [[5.0, 3.0]]


def test_adaptive_feature_input_and_config_errors():
    module = create_pool("adaptive_feature", 4, stage_channels=[2, 4])
    with pytest.raises(ShapeError, match="all 2 stage maps, got 1 maps"):
        module([torch.randn(1, 4, 2, 2)])
    with pytest.raises(ShapeError, match="got one tensor"):
        module(torch.randn(1, 4, 2, 2))
    with pytest.raises(ConfigError, match="stage_channels"):
        create_pool("adaptive_feature", 4, stage_channels=[])
    with pytest.raises(ConfigError, match="stage_channels"):
        create_pool("adaptive_feature", 4, stage_channels=[2, 0])
    with pytest.raises(ConfigError, match="width"):
        create_pool("adaptive_feature", 4, stage_channels=[4], width=0)


def test_adaptive_feature_in_a_model_sees_every_stage():
    model = create_model(
        "vgg",
        10,
        1,
        PoolSpec("max"),
        PoolSpec("adaptive_feature", {"output_size": 2}),
        widths=[4, 6, 8],
    )
    assert [conv.in_channels for conv in model.head.project] == [4, 6, 8]
    assert model.classifier.in_features == 8 * 4
    stages = check_model(model, (1, 16, 16))
    assert stages[-1].output_shape == (32,)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_adaptive_feature_real_run(workdir: Path):
    result = CliRunner().invoke(
        app, ["run", "head=adaptive_feature", "head.output_size=2", *FAST], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    (path,) = (workdir / "results").rglob("result.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok" and record["head"] == "adaptive_feature"
    assert 0.0 <= record["test_acc"] <= 1.0
    # FAST widths [8, 16, 16]: three 1x1 projections to 16, classifier on 16·2·2
    convs = 8 * 9 + 2 * 8 + 16 * 8 * 9 + 2 * 16 + 16 * 16 * 9 + 2 * 16
    head = (8 + 16 + 16) * 16 + 3 * 16
    assert record["params"] == convs + head + 64 * 10 + 10


# ---------------------------------------------------------------- hopfield


def test_hopfield_matches_float64_reference():
    torch.manual_seed(0)
    module = create_pool("hopfield", 5, num_patterns=2, dim=3).double()
    x = sample(2, 5, 3, 4, scale=1.0, outliers="masked")
    out = module(x)
    y = torch.nn.functional.layer_norm(
        x.flatten(2).transpose(1, 2), (5,), module.norm.weight, module.norm.bias
    )
    wk, bk = module.w_key.weight, module.w_key.bias
    wv, bv = module.w_value.weight, module.w_value.bias
    expected = torch.empty(2, 2, 3, dtype=torch.float64)
    beta = 1 / math.sqrt(3)
    for b in range(2):
        keys = [wk @ y[b, t] + bk for t in range(12)]
        values = [wv @ k + bv for k in keys]
        for q in range(2):
            scores = [beta * float(module.state[q].detach() @ k.detach()) for k in keys]
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            total = sum(weights)
            expected[b, q] = sum(w / total * v for w, v in zip(weights, values, strict=True))
    torch.testing.assert_close(out, expected.flatten(1))
    assert module.beta == beta


def test_hopfield_is_invariant_to_permuting_positions():
    torch.manual_seed(0)
    module = create_pool("hopfield", 4, num_patterns=3).eval()
    x = torch.randn(2, 4, 5, 3)
    perm = torch.randperm(15)
    shuffled = x.flatten(2)[:, :, perm].view(2, 4, 3, 5)
    torch.testing.assert_close(module(x), module(shuffled))


def test_hopfield_bad_hyperparameters():
    for params, key in (({"num_patterns": 0}, "num_patterns"), ({"dim": 0}, "dim")):
        with pytest.raises(ConfigError, match=key):
            create_pool("hopfield", 4, **params)
    with pytest.raises(ConfigError, match="beta"):
        create_pool("hopfield", 4, beta=-1.0)


# ---------------------------------------------------------------- CLIP attention pooling


def test_attention_matches_torch_multihead_attention_at_grid_size():
    torch.manual_seed(0)
    module = create_pool("attention", 8, heads=2, grid=3).double()
    x = sample(2, 8, 3, 3, scale=1.0, outliers="masked")
    mha = torch.nn.MultiheadAttention(8, 2, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(
            torch.cat([module.q_proj.weight, module.k_proj.weight, module.v_proj.weight])
        )
        mha.in_proj_bias.copy_(
            torch.cat([module.q_proj.bias, module.k_proj.bias, module.v_proj.bias])
        )
        mha.out_proj.weight.copy_(module.c_proj.weight)
        mha.out_proj.bias.copy_(module.c_proj.bias)
    tokens = x.flatten(2).permute(2, 0, 1)  # (HW, N, C)
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens])
    pos = torch.cat([module.pos_mean[None], module.pos_grid.flatten(1).T])
    tokens = tokens + pos[:, None]
    expected, _ = mha(tokens[:1], tokens, tokens, need_weights=False)
    torch.testing.assert_close(module(x), expected[0])


@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 2), (3, 3), (7, 7), (10, 13), (16, 4)])
def test_attention_at_sizes_other_than_its_grid(h: int, w: int):
    module = create_pool("attention", 6, heads=3, grid=7, out_dim=5).eval()
    out = module(torch.randn(2, 6, h, w))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_positional_embedding_resampling():
    pos = torch.randn(4, 7, 7)
    # at the grid size: unchanged
    torch.testing.assert_close(resample_positions(pos, 7, 7), pos.flatten(1).T)
    # to 1x1: the centre cell (align_corners=False samples the grid's centre)
    torch.testing.assert_close(resample_positions(pos, 1, 1), pos[:, 3, 3][None])
    # a constant map stays constant at any size
    const = torch.full((4, 7, 7), 2.5)
    torch.testing.assert_close(resample_positions(const, 5, 11), torch.full((55, 4), 2.5))
    # bilinear: upsampling keeps values within the grid's range, per channel
    up = resample_positions(pos, 20, 9)
    lo, hi = pos.flatten(1).min(1).values, pos.flatten(1).max(1).values
    assert (up >= lo - 1e-6).all() and (up <= hi + 1e-6).all()


def test_attention_bad_hyperparameters():
    with pytest.raises(ConfigError, match=r"heads to divide channels=6 \(one of 1, 2, 3, 6\)"):
        create_pool("attention", 6, heads=4)
    for params, key in (({"grid": 0}, "grid"), ({"heads": 0}, "heads"), ({"out_dim": 0}, "out")):
        with pytest.raises(ConfigError, match=key):
            create_pool("attention", 6, **params)


def test_every_head_has_an_informative_repr():
    assert "levels=[1, 2, 4], mode=max" in repr(create_pool("spp", 2))
    assert "p=3, learnable_p=True" in repr(create_pool("global_gem", 2))
    assert "output_size=[2, 2]" in repr(create_pool("adaptive_avg", 2))
    assert "num_patterns=1, dim=2" in repr(create_pool("hopfield", 2))
    assert "heads=1, grid=7, out_dim=2" in repr(create_pool("attention", 2))
    assert "out_features=4" in repr(create_pool("catavgmax", 2))


def test_adaptive_feature_stage_channels_come_from_the_model_not_the_config():
    spec = PoolSpec("adaptive_feature", {"stage_channels": [1]})
    with pytest.raises(ConfigError, match=r"stage_channels from the model \(\[4, 8\]\)"):
        create_model("vgg", 10, 1, PoolSpec("max"), spec, widths=[4, 8])


def test_attention_scores_and_softmax_run_in_float32_under_autocast():
    from poolbench.pooling.attention import attend

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 1, 5, 8).bfloat16() * 20 for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend(q, k, v, 0.125)
    assert out.dtype == torch.float32
    expected = torch.softmax(0.125 * q.float() @ k.float().transpose(-2, -1), -1) @ v.float()
    torch.testing.assert_close(out, expected)
