"""``torchvision``: any torchvision classification model (``model.arch=resnet50``,
``efficientnet_b0``, ``googlenet`` ...) with its pooling taken from ``pool=`` and ``head=``.

The network is built by ``torchvision.models.get_model(arch, weights=None)`` (random init,
nothing downloaded), then:

- every ``nn.MaxPool2d`` / ``nn.AvgPool2d`` *module* becomes ``pool=``, built with
  ``create_for_slot`` so that ``check_model`` checks it. With ``keep_geometry=true`` (default)
  each replaced layer keeps its own window, stride, padding and ceil_mode (ResNet's stem pool
  stays F=3, S=2, P=1; GoogLeNet's inception branches stay stride 1) and only the pool's
  other parameters (``p`` ...) come from ``pool.params``: a torchvision architecture is defined
  by its geometry, and one F/S for every pool would break branches that must keep their size.
  With ``keep_geometry=false`` every replaced layer takes ``pool.F``/``pool.S``/``pool.padding``.
- the global pool (an ``AdaptiveAvgPool2d``/``AdaptiveMaxPool2d`` module with output 1x1)
  becomes ``head=``; when the head's D differs from the channels C (e.g. spp), the first
  linear layer that read those C features is rebuilt with D inputs.
- an adaptive pool to a larger grid (VGG's and AlexNet's 7x7/6x6) is not a global pool and is
  kept. Pools computed functionally inside ``forward`` (DenseNet's and MobileNetV2's global
  pool, ShuffleNet's mean, Inception-v3's branch ``avg_pool2d``) cannot be swapped: a model
  whose global pool is functional is refused for ``head=`` other than ``global_avg``.

Every replacement is listed in the run log. Multi-stage heads need stages, which a generic
torchvision model does not expose, so they are refused.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor, nn

from poolbench.config import PoolSpec
from poolbench.errors import ConfigError
from poolbench.models import dry_run, register_model
from poolbench.models.vgg import build_head
from poolbench.pooling import create_for_slot, pool_entry

log = logging.getLogger("poolbench")

# Inception-style models build auxiliary classifiers for training unless told not to.
NO_AUX = {"googlenet": {"aux_logits": False}, "inception_v3": {"aux_logits": False}}


class HeadAsMap(nn.Module):
    """``head=`` in the place of a ``(N, C, 1, 1)`` global pool: (N, C, H, W) -> (N, D, 1, 1)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x)[:, :, None, None]


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def _pair(value: Any) -> int:
    """torchvision layers store F/S/P as int or (h, w); LocalPool windows are square."""
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ConfigError(f"torchvision: non-square pooling {value} cannot be replaced")
        return int(value[0])
    return int(value)


def _is_global(module: nn.Module) -> bool:
    if not isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return False
    size = module.output_size
    return size in (1, (1, 1), [1, 1])


@register_model(
    "torchvision",
    description="any torchvision classification model (model.arch=...), pools from pool=/head=",
)
def torchvision_model(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    arch: str = "resnet18",
    keep_geometry: bool = True,
    probe_size: int = 64,
) -> nn.Module:
    """``torchvision.models.get_model(arch)`` with its pools replaced; random initialisation.

    ``probe_size`` is the side of the one image used to measure channel counts at build time
    (small is cheap; an arch that needs more, such as ViT's fixed 224, needs it raised).
    """
    from torchvision import models

    available = models.list_models(module=models)
    if arch not in available:
        raise ConfigError(f"torchvision: unknown arch {arch!r}; available: {', '.join(available)}")
    if pool_entry(head.name).meta.get("takes_stages"):
        raise ConfigError(
            f"torchvision: head={head.name} needs the model's stages, which a generic "
            f"torchvision model does not expose; use model=vgg or resnet18"
        )
    model = models.get_model(arch, weights=None, num_classes=num_classes, **NO_AUX.get(arch, {}))
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    replacements: list[str] = []

    for name, module in list(model.named_modules()):
        if not isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            continue
        if keep_geometry:
            geometry = {
                "F": _pair(module.kernel_size),
                "S": _pair(module.stride),
                "padding": _pair(module.padding),
            }
            if module.ceil_mode:
                geometry["ceil_mode"] = True
            params = {**pool.params, **geometry}
        else:
            params = dict(pool.params)
        # channels are not known without a forward pass; no local pool in poolbench needs
        # them for its shape, only learned ones for their parameters, so probe below.
        parent, attr = _parent(model, name)
        setattr(parent, attr, _Deferred(pool.name, params, f"{type(module).__name__} {name}"))

    candidates = [n for n, m in model.named_modules() if _is_global(m)]
    channels, order = _probe_channels(model, probe_size, in_channels, candidates)
    # Squeeze-and-excitation blocks (MobileNetV3, EfficientNet, RegNetY) also pool to 1x1; the
    # classifier's global pool is the one that runs last.
    ran = [n for n in order if n in candidates]
    globals_ = [(ran[-1], model.get_submodule(ran[-1]))] if ran else []
    for name, deferred in list(model.named_modules()):
        if isinstance(deferred, _Deferred):
            parent, attr = _parent(model, name)
            layer = create_for_slot(deferred.pool, "local", channels[name], **deferred.params)
            setattr(parent, attr, layer)
            replacements.append(f"{deferred.what} -> {pool.name}({layer.extra_repr()})")

    if not globals_:
        if head.name != "global_avg":
            raise ConfigError(
                f"torchvision: {arch} computes its global pool inside forward() (or has none), "
                f"so head={head.name} cannot replace it; only head=global_avg fits this arch"
            )
    for name, old in globals_:
        c = channels[name]
        new_head = build_head(head, c, [c])
        parent, attr = _parent(model, name)
        setattr(parent, attr, HeadAsMap(new_head))
        replacements.append(
            f"{type(old).__name__} {name} -> head {head.name}(D={new_head.out_features})"
        )
        if new_head.out_features != c:
            _widen_first_linear(model, c, new_head.out_features, arch, head.name)
    model.replacements = replacements  # type: ignore[assignment]
    for line in replacements:
        log.debug("torchvision %s: %s", arch, line)
    return model


class _Deferred(nn.Identity):
    """Placeholder for a pool whose channel count the probe pass measures."""

    def __init__(self, pool: str, params: dict[str, Any], what: str) -> None:
        super().__init__()
        self.pool, self.params, self.what = pool, params, what


def _probe_channels(
    model: nn.Module, size: int, in_channels: int, global_names: list[str]
) -> tuple[dict[str, int], list[str]]:
    """Channels entering every placeholder and global pool, from one eval-mode forward pass.

    The placeholders are identities, so the probe's shapes are those of the unpooled net; only
    channel counts (and the order the layers ran in) are read from it.
    """
    channels: dict[str, int] = {}
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _Deferred) or name in global_names:

            def hook(mod: nn.Module, args: tuple, _name: str = name) -> None:
                channels[_name] = int(args[0].shape[1])
                order.append(_name)

            handles.append(module.register_forward_pre_hook(hook))
    try:
        dry_run(model, (in_channels, size, size), handles)
    except RuntimeError as err:
        raise ConfigError(
            f"torchvision: probing channel counts at {size}x{size} failed "
            f"({str(err).splitlines()[0]}); set model.probe_size to an input size the arch takes"
        ) from None
    return channels, order


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Rebuild the first 3-channel conv for ``in_channels`` (grey-scale data)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            parent, attr = _parent(model, name)
            setattr(
                parent,
                attr,
                nn.Conv2d(
                    in_channels,
                    module.out_channels,
                    module.kernel_size,
                    module.stride,
                    module.padding,
                    module.dilation,
                    1,  # a stem conv: never grouped
                    module.bias is not None,
                ),
            )
            return


def _widen_first_linear(model: nn.Module, c: int, d: int, arch: str, head: str) -> None:
    """The classifier's first linear layer read C pooled features; make it read D."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.in_features == c:
            parent, attr = _parent(model, name)
            setattr(parent, attr, nn.Linear(d, module.out_features, module.bias is not None))
            return
    raise ConfigError(
        f"torchvision: {arch}'s classifier does not start with a linear layer on the {c} "
        f"pooled features, so head={head} (D={d}) cannot feed it"
    )
