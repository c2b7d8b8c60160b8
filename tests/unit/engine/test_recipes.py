"""The recipe's parts (airbench's among them) and the tensors dataset, each against a hand
computation; plus the per-epoch history a run writes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core.config import PoolSpec, TrainConfig
from poolbench.core.errors import ConfigError, DataError
from poolbench.data import create_dataset
from poolbench.data.memory import Augmentation, augment, resolve_augmentation
from poolbench.engine.loop import tta_logits
from poolbench.engine.recipe import (
    Lookahead,
    learning_rates,
    make_optimizer,
    make_schedule,
    param_groups,
)
from poolbench.models.registry import create_model
from tests.helpers import FAST
from tests.helpers.datafiles import write_tensors

runner = CliRunner()


# -- tensors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout,suffix", [("nchw", ".npz"), ("nhwc", ".npz"), ("nhwc", ".pt")])
def test_tensors_reads_npz_and_pt_in_either_layout(tmp_path: Path, layout: str, suffix: str):
    path = write_tensors(tmp_path / f"d{suffix}", layout=layout, n_val=6)
    data = create_dataset("tensors", path=str(path))
    raw = np.load(write_tensors(tmp_path / "ref.npz", layout=layout, n_val=6))
    expected = torch.from_numpy(raw["x_train"])
    if layout == "nhwc":
        expected = expected.permute(0, 3, 1, 2)
    assert torch.equal(data.train_x, expected) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (12, 3, 16, 16) and data.val_x.shape == (6, 3, 16, 16)
    assert data.has_val and data.num_classes == int(raw["y_train"].max()) + 1
    channel = expected.float().transpose(0, 1).flatten(1)
    assert data.mean == pytest.approx(tuple(channel.mean(1).tolist()))


def test_tensors_reads_an_airbench_directory(tmp_path: Path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 8)):
        torch.save(
            {
                "images": torch.from_numpy(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)),
                "labels": torch.from_numpy(rng.integers(0, 10, n)),
                "classes": [f"c{i}" for i in range(10)],
            },
            tmp_path / f"{split}.pt",
        )
    data = create_dataset("tensors", path=str(tmp_path))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (8, 3, 32, 32)
    assert not data.has_val


def test_tensors_bad_files_are_one_line_errors(tmp_path: Path):
    with pytest.raises(DataError, match="no file or directory"):
        create_dataset("tensors", path=str(tmp_path / "nope.npz"))
    dev = write_tensors(tmp_path / "dev.npz", n_test=0, n_val=5)
    with pytest.raises(DataError, match=r"has no test split \(splits found: train, val\).*test"):
        create_dataset("tensors", path=str(dev))
    as_test = create_dataset("tensors", path=str(dev), test="val")
    assert len(as_test.test_y) == 5 and not as_test.has_val
    floats = tmp_path / "floats.npz"
    np.savez(
        floats,
        x_train=np.zeros((4, 3, 8, 8)),
        y_train=np.zeros(4),
        x_test=np.zeros((2, 3, 8, 8)),
        y_test=np.zeros(2),
    )
    with pytest.raises(DataError, match="expected uint8 images"):
        create_dataset("tensors", path=str(floats))
    with pytest.raises(ConfigError, match="set data.path"):
        create_dataset("tensors", path="???")


def test_tensors_refuse_an_ambiguous_layout_and_labels_training_never_saw(tmp_path: Path):
    def save(name: str, shape: tuple, y_test: list[int]) -> str:
        path = tmp_path / name
        x = np.zeros(shape, np.uint8)
        np.savez(path, x_train=x, y_train=np.arange(len(x)) % 2, x_test=x[:2], y_test=y_test)
        return str(path)

    tiny = save("tiny.npz", (6, 3, 3, 3), [0, 1])  # 3x3 RGB images read either way
    with pytest.raises(DataError, match="read as NCHW or as NHWC; set data.layout"):
        create_dataset("tensors", path=tiny)
    assert create_dataset("tensors", path=tiny, layout="nhwc").train_x.shape == (6, 3, 3, 3)
    unseen = save("unseen.npz", (6, 3, 8, 8), [0, 5])
    with pytest.raises(DataError, match=r"\(test\) has label 5, which the training labels"):
        create_dataset("tensors", path=unseen)


def test_a_file_with_its_own_val_split_refuses_a_second_one(tmp_path: Path, workdir: Path):
    path = write_tensors(tmp_path / "d.npz", n_val=6)
    result = runner.invoke(app, ["run", "data=tensors", f"data.path={path}", *FAST])
    assert result.exit_code == 2  # the digits recipe holds out 10% of train
    assert "own val split: set train.val_fraction=0" in result.output
    ok = runner.invoke(
        app,
        [
            "run",
            "data=tensors",
            f"data.path={path}",
            "train.val_fraction=0",
            "train.eval_every=1",
            *FAST,
        ],
    )
    assert ok.exit_code == 0, ok.output
    (record,) = (workdir / "results" / "runs").rglob("result.json")
    assert json.loads(record.read_text())["val_acc"] is not None  # scored on the file's val


# -- augmentation ------------------------------------------------------------------------------


def test_alternating_flips_show_each_image_both_ways_in_two_epochs(tmp_path: Path):
    data = create_dataset("tensors", path=str(write_tensors(tmp_path / "alt.npz")))
    data.configure_augmentation("alternating", translate=0, seed=3)
    base = Augmentation("alternating", 0, "zeros", 3).flips(len(data.train_y))
    generator = torch.Generator().manual_seed(0)
    idx = torch.arange(len(data.train_y))
    first = data.augment(data.train_x, generator, idx, epoch=1)
    second = data.augment(data.train_x, generator, idx, epoch=2)
    flipped = data.train_x.flip(3)
    for i in range(len(idx)):
        # epoch 1: the image's own random flip; epoch 2: the other way round
        assert torch.equal(first[i], flipped[i] if base[i] else data.train_x[i])
        assert torch.equal(second[i], data.train_x[i] if base[i] else flipped[i])
    assert 0 < int(base.sum()) < len(base)


def test_translation_with_reflect_padding_and_data_that_must_not_flip():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(50, 1, 1, 1)
    out = augment(x, torch.Generator().manual_seed(0), False, 1, "reflect")
    padded = torch.nn.functional.pad(x.float(), (1, 1, 1, 1), mode="reflect").to(torch.uint8)
    windows = {
        tuple(padded[0, 0, dy : dy + 4, dx : dx + 4].flatten().tolist())
        for dy in range(3)
        for dx in range(3)
    }
    assert {tuple(o.flatten().tolist()) for o in out[:, 0]} <= windows
    assert len({tuple(o.flatten().tolist()) for o in out[:, 0]}) > 3  # random offsets
    # digits do not flip: no recipe makes them
    assert resolve_augmentation(False, 1, "alternating").flip == "none"
    assert resolve_augmentation(True, 4, "auto", translate=2).translate == 2


# -- optimiser, schedule, lookahead ------------------------------------------------------------


def test_decoupled_learning_rate_and_decay_are_airbenchs():
    cfg = TrainConfig(decoupled=True, lr=11.5, weight_decay=0.0153, momentum=0.85, batch_size=1024)
    lr, wd = learning_rates(cfg)
    kilostep = 1024 * (1 + 1 / (1 - 0.85))
    assert lr == pytest.approx(11.5 / kilostep * 1024)  # airbench sums the loss over the batch
    assert lr * wd == pytest.approx(0.0153 * 1024 / kilostep)  # decay per step
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(2, 3, 8, 8))
    opt = make_optimizer(net, TrainConfig(decoupled=True, bn_bias_lr=64, decay_all=True))
    bias_group = next(g for g in opt.param_groups if any(p is net[1].bias for p in g["params"]))
    lr, wd = learning_rates(TrainConfig(decoupled=True))
    assert bias_group["lr"] == pytest.approx(64 * lr)
    assert bias_group["lr"] * bias_group["weight_decay"] == pytest.approx(lr * wd)
    with pytest.raises(ConfigError, match="decoupled=true is SGD"):
        TrainConfig(decoupled=True, optimizer="adamw")


def test_learned_pool_exponents_never_decay_even_with_decay_all():
    from poolbench.pooling import create_pool

    net = nn.Sequential(nn.Conv2d(3, 4, 3), create_pool("gem", 4), create_pool("lip", 4))
    groups = param_groups(net, TrainConfig(decoupled=True, bn_bias_lr=64, decay_all=True))
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(net[1].p) not in decayed  # GeM's exponent
    assert id(net[0].bias) in decayed  # decay_all: every other parameter decays
    assert any(id(p) in decayed for p in net[2].parameters() if p.ndim > 1)  # lip's conv weights
    # airbench's recipe with no gradient from the loss: p stays where it is
    opt = make_optimizer(net, TrainConfig(decoupled=True, bn_bias_lr=64, decay_all=True))
    for _ in range(50):
        opt.zero_grad()
        (net[1].p * 0).sum().backward()
        opt.step()
    assert float(net[1].p) == pytest.approx(3.0)


def test_triangular_onecycle_runs_from_start_to_peak_to_end():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_schedule(opt, TrainConfig(warmup_frac=0.25, lr_start=0.2, lr_end=0.07), 100)
    rates = []
    for _ in range(100):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == pytest.approx(0.2) and rates[25] == pytest.approx(1.0)
    assert rates[99] == pytest.approx(1 + (0.07 - 1) * 74 / 75)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.07)


def test_lookahead_pulls_weights_into_their_average():
    net = nn.Linear(2, 1, bias=False)
    look = Lookahead(net, every=5, base=0.95, total_steps=10)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    look.step(net, 4)  # not a multiple of 5: nothing happens
    assert torch.equal(net.weight, start + 1)
    look.step(net, 5)
    decay = 0.95**5 * (5 / 10) ** 3
    expected = start + (1 - decay) * 1.0
    assert torch.allclose(net.weight, expected) and torch.allclose(look.average["weight"], expected)


# -- test-time augmentation ---------------------------------------------------------------------


def test_tta_averages_mirrors_and_translations():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        plain = net(x)
        mirrored = 0.5 * (net(x) + net(x.flip(-1)))
        assert torch.allclose(tta_logits(net, x, "none", True), plain)
        assert torch.allclose(tta_logits(net, x, "flip", True), mirrored)
        assert torch.allclose(tta_logits(net, x, "flip", False), plain)  # data that never flips
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        up_left, down_right = padded[..., :6, :6], padded[..., 2:, 2:]

        def mirror(t):
            return 0.5 * (net(t) + net(t.flip(-1)))

        expected = 0.5 * mirrored + 0.25 * (mirror(up_left) + mirror(down_right))
        assert torch.allclose(tta_logits(net, x, "flip_translate", True), expected, atol=1e-6)


# -- airbench ----------------------------------------------------------------------------------


def test_airbench_whitening_filters_whiten_the_patches():
    net = create_model("airbench", 10, 3, PoolSpec("max"), PoolSpec("global_max"), widths=[8, 8, 8])
    images = torch.randn(64, 3, 8, 8) * torch.tensor([1.0, 3.0, 0.3]).view(1, 3, 1, 1)
    net.init_from_data(images)
    w = net.whiten.weight  # (24, 3, 2, 2): 12 whitening filters and their negatives
    assert torch.allclose(w[:12], -w[12:]) and not w.requires_grad
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    projected = patches @ w[:12].reshape(12, 12).T
    cov = projected.T @ projected / len(projected)
    # whitened: unit variance along each direction (up to the eps that keeps it finite)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    net.start_epoch(3)
    assert net.whiten.bias.requires_grad
    net.start_epoch(4)
    assert not net.whiten.bias.requires_grad


def test_airbench_narrower_whitening_keeps_the_leading_directions():
    def net(width: int | None) -> nn.Module:
        return create_model(
            "airbench",
            10,
            3,
            PoolSpec("max"),
            PoolSpec("global_max"),
            widths=[8, 8, 8],
            whiten_width=width,
        )

    images = torch.randn(64, 3, 8, 8) * torch.tensor([1.0, 3.0, 0.3]).view(1, 3, 1, 1)
    full, narrow = net(None), net(8)
    full.init_from_data(images)
    narrow.init_from_data(images)
    w = narrow.whiten.weight  # 4 leading directions and their negatives
    assert w.shape == (8, 3, 2, 2) and torch.allclose(w[:4], full.whiten.weight[:4])
    assert torch.allclose(w[:4], -w[4:])
    assert narrow(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    for bad, message in ((7, "even"), (26, "whiten_width")):
        with pytest.raises(ConfigError, match=message):
            net(bad)


def test_airbench_layers_follow_the_published_design():
    net = create_model("airbench", 10, 3, PoolSpec("max"), PoolSpec("global_max"))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)][1:]
    assert [c.out_channels for c in convs] == [64, 64, 256, 256, 256, 256]
    first = convs[0].weight  # dirac: the first 24 filters pass their input channel through
    assert torch.equal(first[:24, :, 1, 1], torch.eye(24)) and first[:24].abs().sum() == 24
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(
        not n.weight.requires_grad and n.eps == 1e-12 and n.momentum == pytest.approx(0.4)
        for n in norms
    )
    linear = net.classifier[0]
    assert linear.bias is None and net.classifier[1].factor == pytest.approx(1 / 9)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# -- history -----------------------------------------------------------------------------------


def test_every_run_writes_its_per_epoch_history(workdir: Path):
    result = runner.invoke(app, ["run", *FAST, "train.epochs=2", "train.eval_every=1"])
    assert result.exit_code == 0, result.output
    (record_path,) = (workdir / "results" / "runs").rglob("result.json")
    record = json.loads(record_path.read_text())
    with open(record_path.parent / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2] == [h["epoch"] for h in record["history"]]
    for row, h in zip(rows, record["history"], strict=True):
        assert float(row["train_loss"]) == pytest.approx(h["train_loss"], rel=1e-5)
        assert float(row["val_acc"]) == pytest.approx(h["val_acc"], rel=1e-5)
        assert float(row["img_s"]) > 0 and math.isfinite(float(row["lr"]))
    assert record["history"][-1]["train_loss"] == pytest.approx(record["train_loss"])


def test_cifar10_airbench_experiment_is_the_published_recipe(tmp_path: Path):
    from poolbench.sweep.plan import plan

    data = write_tensors(tmp_path / "c.npz", size=32, classes=10)
    common = ["data=tensors", f"data.path={data}", "hydra.sweeper.params.pool=max"]
    runs = plan(["experiment=cifar10_airbench", *common]).runs
    assert [r.seed for r in runs] == [0, 1, 2]
    first = runs[0]
    assert (first.model.name, first.train.batch_size, first.train.lr) == ("airbench", 1024, 11.5)
    assert first.train.decoupled and first.eval.tta == "flip_translate"
    # the CPU-sized recipe on its own keeps batch 256 at lr 45
    alone = plan(["model=airbench", "train=airbench", *common[:2]]).runs
    assert (alone[0].train.batch_size, alone[0].train.lr) == (256, 45.0)
