"""Invariance metrics on constructed models whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from poolbench.core.errors import ConfigError
from poolbench.data.memory import InMemoryDataset
from poolbench.measure.device import Precision
from poolbench.measure.invariance import (
    EvalConfig,
    invariance_metrics,
    rotate,
    translate,
)
from poolbench.pooling import create_pool

FP32 = Precision("fp32", None)
CPU = torch.device("cpu")


def dataset(test_x: Tensor, test_y: Tensor) -> InMemoryDataset:
    return InMemoryDataset("t", test_x[:2], test_y[:2], test_x, test_y, 10, (0.0,), (1.0,))


class PerPixelThenGlobalMean(nn.Module):
    """A per-pixel function, then a global average: exactly invariant to circular shifts
    (and to 90-degree rotations), since the average does not care where a pixel is."""

    def __init__(self) -> None:
        super().__init__()
        self.pixel = nn.Conv2d(1, 10, 1)
        self.head = create_pool("global_avg", 10)
        torch.nn.init.normal_(self.pixel.weight, std=0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.pixel(x) * (1 + torch.arange(10.0).view(1, 10, 1, 1))))


class ReadsOnePixel(nn.Module):
    """Predicts class = bucket of the pixel at (8, 8): as shift-sensitive as a model can be."""

    def forward(self, x: Tensor) -> Tensor:
        value = x[:, 0, 8, 8]  # raw 0..255 (mean 0, std 1)
        bucket = (value / 25.6).long().clamp(0, 9)
        return nn.functional.one_hot(bucket, 10).float()


def random_images(n: int = 300, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 16, 16), generator=g, dtype=torch.uint8)


def test_exactly_invariant_model_scores_one_under_circular_shifts() -> None:
    x = random_images()
    model = PerPixelThenGlobalMean()
    with torch.no_grad():
        y = model(x.float()).argmax(1)  # labels = the model's own clean predictions
    cfg = EvalConfig(max_shift=3, shifts=(1, 4), shift_mode="roll", max_rot=90, sizes=())
    out = invariance_metrics(model, dataset(x, y), cfg, CPU, FP32)
    assert out["shift_consistency"] == 1.0
    assert out["acc_shift_1"] == 1.0 and out["acc_shift_4"] == 1.0
    assert out["acc_rot"] == pytest.approx(1.0)  # 90 degrees permutes the pixels exactly


def test_one_pixel_model_scores_low() -> None:
    x = random_images()
    y = (x[:, 0, 8, 8].float() / 25.6).long().clamp(0, 9)
    cfg = EvalConfig(max_shift=2, shifts=(1,), max_rot=15, sizes=(12,))
    out = invariance_metrics(ReadsOnePixel(), dataset(x, y), cfg, CPU, FP32)
    # Two different random pixels land in the same of 10 buckets ~10% of the time, and both
    # offsets coincide 1/25 of the time: about 0.14 in all.
    assert out["shift_consistency"] < 0.3
    assert out["acc_shift_1"] < 0.3
    assert out["acc_res_12"] is None  # no global head: other sizes are not measurable
    assert set(out) == set(cfg.metric_names())


def test_resolution_accuracy_for_a_global_head_and_too_small_sizes() -> None:
    x = torch.full((50, 1, 16, 16), 100, dtype=torch.uint8)
    x[25:] = 200  # constant images stay constant under resizing
    model = PerPixelThenGlobalMean()
    with torch.no_grad():
        y = model(x.float()).argmax(1)
    model_pooled = nn.Sequential(create_pool("max", 1, F=4, S=4), model)
    cfg = EvalConfig(shifts=(), max_rot=0, sizes=(8, 3))
    out = invariance_metrics(model_pooled, dataset(x, y), cfg, CPU, FP32)
    assert out["acc_res_8"] == 1.0
    assert out["acc_res_3"] is None  # a 4x4 window cannot take a 3x3 image


def test_translate_pad_and_roll_against_loops() -> None:
    x = torch.arange(2 * 2 * 5 * 6, dtype=torch.float64).view(2, 2, 5, 6)
    dy, dx = torch.tensor([1, -2]), torch.tensor([-3, 2])
    rolled = translate(x, dy, dx, "roll")
    padded = translate(x, dy, dx, "pad")
    for i in range(2):
        assert torch.equal(rolled[i], torch.roll(x[i], (int(dy[i]), int(dx[i])), (1, 2)))
        for r in range(5):
            for c in range(6):
                sr, sc = r - int(dy[i]), c - int(dx[i])
                expect = x[i, :, sr, sc] if 0 <= sr < 5 and 0 <= sc < 6 else torch.zeros(2)
                assert torch.equal(padded[i, :, r, c], expect.to(x.dtype))


def test_rotate_90_is_an_exact_permutation() -> None:
    x = torch.rand(2, 3, 7, 7)
    assert torch.allclose(rotate(x, 90), torch.rot90(x, -1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(rotate(x, 0), x, atol=1e-6)


def test_disabled_and_bad_config() -> None:
    assert invariance_metrics(ReadsOnePixel(), None, EvalConfig(enabled=False), CPU, FP32) == {}
    with pytest.raises(ConfigError, match="eval.shift_mode"):
        EvalConfig(shift_mode="wrap")
    with pytest.raises(ConfigError, match="unknown eval key"):
        EvalConfig.from_dict({"max_shfit": 2})
    with pytest.raises(ConfigError, match="eval.shifts"):
        EvalConfig.from_dict({"shifts": [0]})
