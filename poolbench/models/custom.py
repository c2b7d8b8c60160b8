"""``custom``: your own network, ``model=custom model.factory=package.module:function``.

poolbench imports ``package.module`` (it must be importable: an installed package, or run
with ``PYTHONPATH`` pointing at it) and calls ``function`` with keyword arguments:

- ``num_classes`` and ``in_channels``, from the data (required);
- ``pool``, if the function takes it: ``pool(channels, **window) -> nn.Module``, the
  ``pool=`` layer for a ``channels``-channel feature map (``window``, e.g. ``F=3, S=2``, is
  your network's default, used where ``pool.F``/``pool.S`` are unset);
- ``head``, if the function takes it: ``head(channels) -> nn.Module``, the ``head=`` global
  pool, mapping ``(N, C, H, W)`` to ``(N, D)``; its ``out_features`` is D, for the layer after;
- the keys of ``model.kwargs`` (``+model.kwargs.width=32``).

Each of ``pool``/``head`` that the function does not take, poolbench puts in afterwards with
:func:`poolbench.replace_pools`, as for ``model=torchvision``: a function that returns a plain
network with ``nn.MaxPool2d``/``nn.AvgPool2d`` and a final ``nn.AdaptiveAvgPool2d(1)`` gets them
replaced (listed in the run log). :func:`example_net` (the default ``model.factory``) shows the
contract.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError
from poolbench.models.blocks import build_head, conv_norm_act, make_pool
from poolbench.models.registry import register_model
from poolbench.models.replace import replace_pools
from poolbench.pooling import takes_stages


def load_factory(factory: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names; one-line ConfigError otherwise."""
    if not isinstance(factory, str) or factory.count(":") != 1:
        raise ConfigError(f"expected model.factory to be package.module:function, got {factory!r}")
    module_name, _, attr = factory.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"expected model.factory to be package.module:function, got {factory!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"model.factory {factory!r}: cannot import {module_name!r} ({err}); install its "
            f"package, or run with PYTHONPATH set to the directory that holds it"
        ) from None
    if not hasattr(module, attr):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ConfigError(
            f"model.factory {factory!r}: module {module_name!r} has no {attr!r}; "
            f"callables there: {', '.join(public) or 'none'}"
        )
    function = getattr(module, attr)
    if not callable(function):
        raise ConfigError(f"model.factory {factory!r} is a {type(function).__name__}, not callable")
    return function


class PoolFactory:
    """``pool(channels, **window)``: the ``pool=`` layer of a downsampling stage."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec

    def __call__(self, channels: int, **window: int) -> nn.Module:
        return make_pool(self.spec, channels, **window)

    def __repr__(self) -> str:
        return f"PoolFactory({self.spec.name})"


class HeadFactory:
    """``head(channels)``: the ``head=`` global pool, ``(N, C, H, W) -> (N, D)``."""

    def __init__(self, spec: PoolSpec) -> None:
        if takes_stages(spec.name):
            raise ConfigError(
                f"model=custom: head={spec.name} needs the model's stages, which a custom "
                f"network does not expose; use model=vgg or resnet18"
            )
        self.spec = spec

    def __call__(self, channels: int) -> nn.Module:
        return build_head(self.spec, channels, [channels])

    def __repr__(self) -> str:
        return f"HeadFactory({self.spec.name})"


# model=custom's default (configs/model/custom.yaml): poolbench's own example network
EXAMPLE_FACTORY = "poolbench.models.custom:example_net"


@register_model(
    "custom",
    description="your own network: model.factory=package.module:function",
    limits={
        "head=adaptive_feature": "needs stages, which a custom network does not expose",
        "head= other than global_avg": "a plain network (no head argument) needs its global "
        "pool as an nn.AdaptiveAvgPool2d/AdaptiveMaxPool2d module",
    },
)
def custom_model(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    factory: str = EXAMPLE_FACTORY,
    keep_geometry: bool = True,
    probe_size: int = 64,
    kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Your ``factory`` called with the data's sizes and the ``pool=``/``head=`` factories
    it takes; what it leaves to poolbench, :func:`replace_pools` puts in (``keep_geometry``
    and ``probe_size`` as for ``model=torchvision``)."""
    function = load_factory(factory)
    params = inspect.signature(function).parameters
    missing = [k for k in ("num_classes", "in_channels") if k not in params]
    if missing:
        raise ConfigError(
            f"model.factory {factory!r} must take num_classes and in_channels (and, if it "
            f"places them, pool and head); its parameters: {', '.join(params) or 'none'}"
        )
    takes_pool, takes_head = "pool" in params, "head" in params
    args: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels}
    if takes_pool:
        args["pool"] = PoolFactory(pool)
    if takes_head:
        args["head"] = HeadFactory(head)
    net = function(**args, **(kwargs or {}))
    if not isinstance(net, nn.Module):
        raise ConfigError(
            f"model.factory {factory!r} returned a {type(net).__name__}, expected a torch.nn.Module"
        )
    if takes_pool and takes_head:
        net.replacements = []  # type: ignore[assignment]
        return net
    return replace_pools(
        net,
        None if takes_pool else pool,
        None if takes_head else head,
        keep_geometry=keep_geometry,
        in_channels=in_channels,
        probe_size=probe_size,
        what=f"model.factory {factory}",
    )


class ExampleNet(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.classifier = nn.Linear(head.out_features, num_classes)

    def forward(self, x: Any) -> Any:
        return self.classifier(self.head(self.body(x)))  # (N, num_classes)


def example_net(
    num_classes: int,
    in_channels: int,
    pool: Callable[..., nn.Module],
    head: Callable[[int], nn.Module],
    width: int = 16,
) -> nn.Module:
    """The ``model=custom`` contract as an example: two conv stages, each ending in
    ``pool(channels)``, then ``head(channels)`` and a linear classifier on its D features."""
    body = nn.Sequential(
        conv_norm_act(in_channels, width),
        pool(width),
        conv_norm_act(width, 2 * width),
        pool(2 * width),
    )
    return ExampleNet(body, head(2 * width), num_classes)
