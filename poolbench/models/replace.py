"""Put poolbench's pools into any network: :func:`replace_pools`.

Used by ``model=torchvision``, ``model=timm`` and ``model=custom``, and callable on any
``nn.Module`` from a notebook::

    from poolbench import replace_pools
    net = replace_pools(torchvision.models.resnet50(), pool="softpool", head="global_gem")

What is replaced:

- every ``nn.MaxPool2d`` / ``nn.AvgPool2d`` *module* (their subclasses too, such as timm's
  ``MaxPool2dSame``) becomes ``pool=``. With ``keep_geometry=True`` (default) each keeps its own
  window, stride, padding and ceil mode (a ResNet stem pool stays F=3, S=2, P=1; GoogLeNet's
  branch pools stay stride 1), and only the pool's other parameters (``p`` ...) come from the
  spec: an architecture is defined by its geometry. A pool without a window (``wavelet``,
  ``fractional``) takes a downsampling layer's place as it is, but cannot keep a stride-1
  layer's size: there poolbench's ``max`` at the layer's geometry stands in (listed in
  ``replacements``). ``keep_geometry=False`` puts ``pool.F``/``pool.S``/``pool.padding`` (or
  the pool's defaults) everywhere.
- the global pool, the ``AdaptiveAvgPool2d``/``AdaptiveMaxPool2d`` module to 1x1 that runs
  last (squeeze-and-excitation blocks pool to 1x1 too, earlier; inside timm's
  ``SelectAdaptivePool2d`` it is the wrapper's ``pool``, and the wrapper's flatten stays),
  becomes ``head=``; when the head's D differs from the channels C (spp, catavgmax), the first
  linear layer that runs after it and read the C features is rebuilt with D inputs (where none
  does, e.g. a 1x1 conv comes first as in MobileNetV3, a linear layer D -> C follows the
  head). A pool to a larger grid (VGG's and AlexNet's 7x7) is
  not global and is kept.

Pools computed functionally inside ``forward`` (``F.max_pool2d``, ``x.mean((2, 3))``) cannot be
seen, so cannot be replaced: a network whose global pool is functional takes only
``head=global_avg``. Multi-stage heads need stages, which a generic network does not expose.
Channel counts come from one eval-mode forward pass of a ``probe_size`` image.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError
from poolbench.models.blocks import (
    FIXED,
    build_head,
    fixed_window_pool,
    make_pool,
)
from poolbench.pooling import create_for_slot, takes_stages


class HeadAsMap(nn.Module):
    """``head=`` in the place of a ``(N, C, 1, 1)`` global pool: (N, C, H, W) -> (N, D, 1, 1);
    with ``project``, a linear layer maps the head's D features back to the C the network
    reads next (where no linear layer reads them, as in SqueezeNet, whose pooled maps are
    the logits)."""

    def __init__(self, head: nn.Module, project: nn.Module | None = None) -> None:
        super().__init__()
        self.head = head
        self.project = project if project is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.head(x))[:, :, None, None]


def as_spec(pool: PoolSpec | str | None, default: str) -> PoolSpec:
    if pool is None:
        return PoolSpec(default)
    return PoolSpec(pool) if isinstance(pool, str) else pool


def replace_pools(
    model: nn.Module,
    pool: PoolSpec | str | None = "max",
    head: PoolSpec | str | None = "global_avg",
    *,
    keep_geometry: bool = True,
    in_channels: int = 3,
    probe_size: int = 64,
    what: str = "model",
) -> nn.Module:
    """Replace ``model``'s pooling modules by ``pool`` and its global pool by ``head``, in
    place; returns ``model`` with ``model.replacements``, one line per replaced layer.

    ``pool``/``head`` are registry names or :class:`PoolSpec`\\ s (None: leave that kind
    alone). ``what`` names the network in error messages.
    """
    pool_spec = None if pool is None else as_spec(pool, "max")
    head_spec = None if head is None else as_spec(head, "global_avg")
    if head_spec is not None and takes_stages(head_spec.name):
        raise ConfigError(
            f"{what}: head={head_spec.name} needs the model's stages, which a generic "
            f"network does not expose; use model=vgg or resnet18"
        )
    replacements: list[str] = []
    if pool_spec is not None:
        # every place a pool sits: one module registered twice (Sequential(conv, p, conv, p))
        # is replaced at each
        for name, module in list(model.named_modules(remove_duplicate=False)):
            if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
                _set(model, name, _Deferred(f"{type(module).__name__} {name}", module))

    candidates = [n for n, m in model.named_modules() if _is_global(m)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    channels, order = _probe_channels(model, probe_size, in_channels, candidates + linears, what)
    for name, deferred in list(model.named_modules(remove_duplicate=False)):
        if isinstance(deferred, _Deferred):
            assert pool_spec is not None
            seen = channels.get(name, set())
            layer = _pool_for(pool_spec, deferred.original, min(seen, default=1), keep_geometry)
            if len(seen) != 1 and not _channel_free(pool_spec, deferred.original, keep_geometry):
                where = (
                    f"is called with {' and '.join(map(str, sorted(seen)))} channels in forward()"
                    if seen
                    else f"did not run in a forward pass at {probe_size}x{probe_size}, so its "
                    f"channel count is unknown"
                )
                raise ConfigError(
                    f"{what}: pool module {name} {where}; pool={pool_spec.name} has "
                    f"parameters per channel and needs one module per place it is used "
                    f"(give each call its own nn.MaxPool2d), or use a pool without them "
                    f"(max, avg, lp, ...)"
                )
            _set(model, name, layer)
            replacements.append(f"{deferred.what} -> {_describe(layer)}")

    if head_spec is not None:
        # The classifier's global pool is the 1x1 adaptive pool that runs last.
        ran = [n for n in order if n in candidates]
        if not ran and head_spec.name != "global_avg":
            raise ConfigError(
                f"{what} computes its global pool inside forward() (or has none), so "
                f"head={head_spec.name} cannot replace it; only head=global_avg fits it"
            )
        if ran:
            name = ran[-1]
            old, c = model.get_submodule(name), max(channels[name])
            new_head = build_head(head_spec, c, [c])
            d = new_head.out_features
            project = None
            if d != c and not _widen_first_linear(model, c, d, order[order.index(name) + 1 :]):
                project = nn.Linear(d, c)
            _set(model, name, HeadAsMap(new_head, project))
            line = f"{type(old).__name__} {name} -> head {head_spec.name}(D={d})"
            if project is not None:
                line += f", then linear {d} -> {c} (no linear layer reads the pooled features)"
            replacements.append(line)
    model.replacements = replacements  # type: ignore[assignment]
    return model


def _pool_for(pool: PoolSpec, original: nn.Module, channels: int, keep: bool) -> nn.Module:
    if not keep:
        return make_pool(pool, channels)
    F, S, P = (_side(getattr(original, k)) for k in ("kernel_size", "stride", "padding"))
    layer = fixed_window_pool(pool, channels, F, S, P, bool(original.ceil_mode))
    if layer is not None:
        return layer
    if S > 1:  # a pool without a window downsamples in its own way
        return make_pool(pool, channels)
    # A stride-1 layer keeps the map size, which a windowless pool cannot: poolbench's max.
    params = {"F": F, "S": S, "padding": P, "ceil_mode": bool(original.ceil_mode)}
    layer = create_for_slot("max", "local", channels, **params)
    layer.slot = FIXED
    layer.stand_in = f"{pool.name} has no window and cannot keep a stride-1 layer's size"
    return layer


def _channel_free(pool: PoolSpec, original: nn.Module, keep: bool) -> bool:
    """Whether ``pool`` built for this place is the same layer at any channel count (no
    parameters or buffers per channel), so that one module may serve calls of several."""

    def shapes(c: int) -> list[tuple[str, tuple[int, ...]]]:
        layer = _pool_for(pool, original, c, keep)
        return [(k, tuple(v.shape)) for k, v in layer.state_dict().items()]

    return shapes(3) == shapes(5)


def _describe(layer: nn.Module) -> str:
    name = type(layer).__name__
    note = getattr(layer, "stand_in", None)
    return f"{name}({layer.extra_repr()})" + (f" [stand-in: {note}]" if note else "")


def _side(value: Any) -> int:
    """torch layers store F/S/P as int or (h, w); poolbench windows are square."""
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ConfigError(f"non-square pooling {value} cannot be replaced")
        return int(value[0])
    return int(value)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    path, _, attr = name.rpartition(".")
    setattr(model.get_submodule(path) if path else model, attr, module)


def _is_global(module: nn.Module) -> bool:
    if not isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return False
    return module.output_size in (1, (1, 1), [1, 1])


class _Deferred(nn.Module):
    """Placeholder for a pool whose channel count the probe pass measures; it runs the
    original layer, so that the probe has the network's own shapes (a ResNet-D shortcut pool
    must halve the map as its residual branch does)."""

    def __init__(self, what: str, original: nn.Module) -> None:
        super().__init__()
        self.what = what
        self.__dict__["original"] = original  # not a submodule: no parameters, no state

    def forward(self, x: Tensor) -> Tensor:
        return self.original(x)


def _probe_channels(
    model: nn.Module, size: int, in_channels: int, global_names: list[str], what: str
) -> tuple[dict[str, int], list[str]]:
    """The channel counts entering every placeholder and every module of ``global_names``
    (global pools, linear layers; a set: a module called twice in ``forward`` may see two),
    from one eval-mode forward pass, and the order they ran in."""
    from poolbench.models.inspect import dry_run

    seen: dict[str, set[int]] = {}
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _Deferred) or name in global_names:

            def hook(mod: nn.Module, args: tuple, _name: str = name) -> None:
                seen.setdefault(_name, set()).add(int(args[0].shape[1]))
                order.append(_name)

            handles.append(module.register_forward_pre_hook(hook))
    try:
        dry_run(model, (in_channels, size, size), handles)
    except RuntimeError as err:
        raise ConfigError(
            f"{what}: probing channel counts at {size}x{size} failed "
            f"({str(err).splitlines()[0]}); set model.probe_size to an input size it takes"
        ) from None
    return seen, order


def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Rebuild the first 3-channel conv for ``in_channels`` (grey-scale data)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            conv = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                1,  # a stem conv: never grouped
                module.bias is not None,
            )
            _set(model, name, conv)
            return


def _widen_first_linear(model: nn.Module, c: int, d: int, after: list[str]) -> bool:
    """The classifier's first linear layer read C pooled features: make it read D. ``after``
    are the modules that ran after the global pool, in order (a linear layer that runs
    before it, in an attention block, is not the classifier). False when no linear layer
    that runs after it reads C features."""
    for name in after:
        module = model.get_submodule(name)
        if isinstance(module, nn.Linear) and module.in_features == c:
            _set(model, name, nn.Linear(d, module.out_features, module.bias is not None))
            return True
    return False


__all__ = ["HeadAsMap", "adapt_first_conv", "replace_pools"]
