"""Bring your own model: model=timm (any timm classifier) and model=custom (your function),
their pools from pool=/head=, and poolbench.replace_pools on a network built anywhere."""

from __future__ import annotations

import json
import math
import re
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core.config import PoolSpec, TrainConfig
from poolbench.core.errors import ConfigError
from poolbench.engine.recipe import make_optimizer
from poolbench.models.inspect import check_model
from poolbench.models.registry import create_model
from poolbench.pooling import GlobalPool, LocalPool
from tests.helpers import FAST

timm = pytest.importorskip("timm")
runner = CliRunner()
TORCH_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
NO_WIDTHS = [o for o in FAST if not o.startswith("model.widths")] + ["eval.enabled=false"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails the test: nothing may be downloaded."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def one_step(net: nn.Module, in_channels: int, size: int) -> float:
    x, y = torch.randn(4, in_channels, size, size), torch.randint(0, 10, (4,))
    optimizer = make_optimizer(net, TrainConfig(lr=0.01))
    net.train()
    before = [p.detach().clone() for p in net.parameters()]
    loss = F.cross_entropy(net(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True))
    return loss.item()


@pytest.mark.parametrize(
    ("arch", "size", "local"),
    [
        ("resnet10t", 32, 4),  # stem max pool + three ResNet-D avg_down shortcut pools
        ("resnet18", 32, 1),
        ("mobilenetv3_small_050", 32, 0),
        ("efficientnet_b0", 32, 0),
    ],
)
def test_timm_archs_take_pool_and_head_and_train(arch, size, local, offline):
    torch.manual_seed(0)
    net = create_model("timm", 10, 1, PoolSpec("avg"), PoolSpec("global_gem"), arch=arch)
    assert not [n for n, m in net.named_modules() if isinstance(m, TORCH_POOLS)]
    assert sum(isinstance(m, LocalPool) for m in net.modules()) == local
    heads = [line for line in net.replacements if "-> head" in line]
    assert heads == [f"AdaptiveAvgPool2d global_pool.pool -> head global_gem(D={net.num_features})"]
    assert type(net.global_pool).__name__ == "SelectAdaptivePool2d"  # the wrapper stays
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1  # in_chans and num_classes set at creation
    check_model(net, (1, size, size))
    assert net.eval()(torch.randn(2, 1, size, size)).shape == (2, 10)
    assert math.isfinite(one_step(net, 1, size))


def test_timm_head_wider_than_the_pool_widens_the_classifier_or_projects():
    resnet = create_model("timm", 10, 3, PoolSpec("max"), PoolSpec("catavgmax"), arch="resnet18")
    assert resnet.fc.in_features == 2 * 512  # the classifier reads the head's D features
    mobile = create_model(
        "timm", 10, 3, PoolSpec("max"), PoolSpec("catavgmax"), arch="mobilenetv3_small_050"
    )
    # MobileNetV3 pools to a map for its 1x1 conv_head: the head's 2C go back to C
    assert mobile.conv_head.in_channels == 288
    assert "then linear 576 -> 288" in " ".join(mobile.replacements)
    for net in (resnet, mobile):
        assert net.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_timm_refuses_what_poolbench_sets_and_names_close_archs():
    with pytest.raises(ConfigError, match="model.kwargs.pretrained is poolbench's to set"):
        create_model(
            "timm", 10, 3, PoolSpec("max"), PoolSpec("global_avg"), kwargs={"pretrained": True}
        )
    # a file timm would load (torch.load): a config, kept in a record, never names one
    for key in ("checkpoint_path", "pretrained_cfg_overlay"):
        with pytest.raises(ConfigError, match=rf"model.kwargs.{key} is poolbench's to set"):
            create_model(
                "timm", 10, 3, PoolSpec("max"), PoolSpec("global_avg"), kwargs={key: "/x.pth"}
            )
    with pytest.raises(ConfigError, match=r"unknown arch 'resnet19'; close matches: .*resnet18"):
        create_model("timm", 10, 3, PoolSpec("max"), PoolSpec("global_avg"), arch="resnet19")


def test_timm_run_logs_its_replacements(workdir: Path, offline):
    result = runner.invoke(
        app,
        ["run", "model=timm", "model.arch=resnet10t", "pool=gem", "data.image_size=32", *NO_WIDTHS],
    )
    assert result.exit_code == 0, result.output
    (record_path,) = workdir.glob("results/runs/*/result.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "ok" and record["model"] == "timm"
    assert record["config"]["model"]["arch"] == "resnet10t"
    log = (record_path.parent / "poolbench.log").read_text()
    assert "replaced MaxPool2d maxpool -> GeMPool(F=3, S=2, padding=1" in log
    assert "replaced AdaptiveAvgPool2d global_pool.pool -> head global_avg" in log


def test_replace_pools_on_a_timm_network_from_a_notebook():
    from poolbench import replace_pools

    net = replace_pools(timm.create_model("resnet10t", pretrained=False), "softpool", "global_gem")
    assert {type(m).__name__ for m in net.modules() if isinstance(m, LocalPool)} >= {"SoftPool"}
    assert any(isinstance(m, GlobalPool) for m in net.modules())
    assert net.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


# --- model=custom ---------------------------------------------------------------------------


def test_custom_factory_places_the_pools_it_is_given():
    net = create_model(
        "custom",
        10,
        3,
        PoolSpec("gem"),
        PoolSpec("global_lp"),
        factory="tests.helpers.custom_nets:tiny",
    )
    pools = [m for m in net.modules() if isinstance(m, LocalPool)]
    assert [type(m).__name__ for m in pools] == ["GeMPool", "GeMPool"]
    assert type(net.head).__name__ == "GlobalLpPool" and net.replacements == []
    check_model(net, (3, 16, 16))
    assert math.isfinite(one_step(net, 3, 16))


def test_custom_plain_network_gets_its_pools_replaced():
    net = create_model(
        "custom",
        10,
        1,
        PoolSpec("avg"),
        PoolSpec("catavgmax"),
        factory="tests.helpers.custom_nets:plain",
    )
    assert not [m for m in net.modules() if isinstance(m, TORCH_POOLS)]
    assert len(net.replacements) == 3
    assert net[-1].in_features == 16  # the classifier widened for catavgmax's 2C
    assert math.isfinite(one_step(net, 1, 16))


def test_custom_kwargs_reach_the_function():
    net = create_model(
        "custom", 10, 3, PoolSpec("max"), PoolSpec("global_avg"), kwargs={"width": 4}
    )
    assert net.classifier.in_features == 8  # example_net: 2 * width channels into the head


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            "tests.helpers.custom_nets.tiny",
            "expected model.factory to be package.module:function, got",
        ),
        ("nowhere_pkg.nets:tiny", r"cannot import 'nowhere_pkg.nets' \(No module named"),
        ("tests.helpers.custom_nets:tiyn", "has no 'tiyn'; callables there: .*tiny"),
        ("tests.helpers.custom_nets:NOT_CALLABLE", "is a int, not callable"),
        ("tests.helpers.custom_nets:not_a_module", "returned a int, expected a torch.nn.Module"),
        ("tests.helpers.custom_nets:no_sizes", "must take num_classes and in_channels"),
    ],
)
def test_bad_factories_are_one_line_config_errors(factory: str, message: str, workdir: Path):
    with pytest.raises(ConfigError, match=message):
        create_model("custom", 10, 3, PoolSpec("max"), PoolSpec("global_avg"), factory=factory)
    result = runner.invoke(app, ["run", "model=custom", f"model.factory={factory}"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0])
    assert not (workdir / "results").exists()


def test_custom_run_from_the_command_line(workdir: Path):
    result = runner.invoke(
        app,
        [
            "run",
            "model=custom",
            "model.factory=tests.helpers.custom_nets:tiny",
            "pool=lp",
            *NO_WIDTHS,
        ],
    )
    assert result.exit_code == 0, result.output
    (record_path,) = workdir.glob("results/runs/*/result.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "ok" and record["pool"] == "lp" and record["F"] == 2
    assert record["config"]["model"]["factory"] == "tests.helpers.custom_nets:tiny"


class TutorialNet(nn.Module):
    """The PyTorch tutorial's CIFAR net: one ``self.pool`` called twice, at 6 and 16
    channels; and a pool module that forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.unused = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def test_replace_pools_at_every_place_a_shared_module_sits():
    from poolbench import replace_pools

    shared = nn.MaxPool2d(2)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), shared, nn.Conv2d(4, 8, 3, padding=1), shared
    )
    replace_pools(net, pool="lip", head=None)
    assert isinstance(net[1], LocalPool) and isinstance(net[3], LocalPool)
    assert net[1] is not net[3] and len(net.replacements) == 2
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 8, 4, 4)  # lip per-channel at 4 and 8


def test_replace_pools_on_a_module_reused_in_forward():
    from poolbench import replace_pools

    net = replace_pools(TutorialNet(), pool="lp", head=None, probe_size=32)
    assert isinstance(net.pool, LocalPool) and isinstance(net.unused, LocalPool)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # one lp serves 6 and 16 channels
    with pytest.raises(ConfigError, match=r"pool module pool is called with 6 and 16 channels"):
        replace_pools(TutorialNet(), pool="lip", head=None, probe_size=32)


def test_replace_pools_names_a_pool_module_the_forward_pass_never_ran():
    from poolbench import replace_pools

    class Once(TutorialNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(F.relu(self.conv1(x)))
            return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv2(x)), 5).flatten(1))

    with pytest.raises(ConfigError, match=r"pool module unused did not run in a forward pass"):
        replace_pools(Once(), pool="lip", head=None, probe_size=32)


def test_a_recorded_factory_is_imported_only_when_named(workdir: Path):
    """A record is data: ``poolbench time`` rebuilds a custom model only for a factory the
    user names (--factory), never from what a results directory says; a sweep times its own
    custom models, which its command line named."""
    tiny = "tests.helpers.custom_nets:tiny"
    args = ["run", "-m", "model=custom", f"model.factory={tiny}", "pool=max,lp", *NO_WIDTHS]
    swept = runner.invoke(app, args)
    assert swept.exit_code == 0, swept.output
    assert "latency: 2 configs timed interleaved" in swept.output
    refused = runner.invoke(app, ["time", "results", "--repeats", "2"])
    assert refused.exit_code == 2
    (line,) = refused.output.strip().splitlines()
    assert line.startswith("error: ") and f"names model.factory '{tiny}'" in line
    assert f"--factory {tiny}" in line
    named = runner.invoke(app, ["time", "results", "--repeats", "2", "--factory", tiny])
    assert named.exit_code == 0, named.output
    assert "wrote latency_interleaved_ms into 2 records" in named.output
