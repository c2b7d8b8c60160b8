"""The parts every model is built from: one conv-norm-activation block, the pooling slots
(``make_pool`` for a downsampling stage, ``fixed_window_pool`` for a slot whose window the
architecture fixes), the global head, the staged network, and the checks of model settings.

How a slot meets ``pool=``:

- a **downsampling stage** (``make_pool``) takes the pool as configured; keys left unset
  (``null`` in ``configs/pool/*.yaml``: ``F`` and ``S``) take the model's default window where
  it has one (AlexNet's overlapping F=3, S=2) and otherwise the layer's own default. The
  model's window applies only to the keys the pool takes: a pool without a window (``none``,
  ``wavelet``, ``fractional``) ignores it.
- a **fixed-window slot** (``fixed_window_pool``: GoogLeNet's size-keeping pooling branch, the
  geometry of a torchvision layer) forces F, S, padding and ceil mode. A pool that has F and S
  but no padding or ceil mode of its own gets them from :class:`PaddedPool` (replicate
  padding around it); ``none`` is the identity; a pool without a window returns None and the
  caller keeps its own layer (stated in the run log and in ``poolbench list models``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F_
from torch import Tensor, nn

from poolbench.core.checks import check_int_list, check_number
from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError
from poolbench.pooling import create_for_slot, pool_entry, takes_stages
from poolbench.pooling.base import LocalPool, pooled_size

# Where a slot pool came from, for the run record's F/S and the dry-run listing.
STAGE, FIXED = "stage", "fixed"


def conv_norm_act(
    c_in: int,
    c_out: int,
    kernel: int = 3,
    *,
    stride: int = 1,
    padding: int | None = None,
    norm: bool = True,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (``padding`` defaults to ``kernel // 2``, bias only without a norm), then
    BatchNorm (``norm``), then the activation (``act``, None for none)."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            c_in,
            c_out,
            kernel,
            stride=stride,
            padding=kernel // 2 if padding is None else padding,
            bias=not norm,
        )
    ]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    if act is not None:
        layers.append(act(inplace=True) if act is nn.ReLU else act())
    return nn.Sequential(*layers)


def pool_parameters(name: str) -> set[str]:
    """The keyword parameters the pool ``name``'s factory takes (``F``, ``S``, ``p``, ...)."""
    return {p.name for p in pool_entry(name).params}


def has_window(name: str) -> bool:
    """Whether the pool has a window F and a stride S (``none``, ``wavelet`` and
    ``fractional`` do not)."""
    return {"F", "S"} <= pool_parameters(name)


def _set_params(pool: PoolSpec) -> dict[str, Any]:
    """The spec's parameters less those left unset (None) that the factory takes: an unset key
    means the slot's default, else the factory's."""
    takes = pool_parameters(pool.name)
    return {k: v for k, v in pool.params.items() if not (v is None and k in takes)}


def make_pool(pool: PoolSpec, channels: int, **window: int) -> nn.Module:
    """The pool of a downsampling stage, from ``pool=``; ``window`` is the model's default
    (``F=3, S=2``), applied to the keys the pool takes and leaves unset."""
    given = _set_params(pool)
    takes = pool_parameters(pool.name)
    defaults = {k: v for k, v in window.items() if k in takes and k not in given}
    module = create_for_slot(pool.name, "local", channels, **defaults, **given)
    module.slot = STAGE
    return module


def fixed_window_pool(
    pool: PoolSpec,
    channels: int,
    F: int,
    S: int,
    padding: int = 0,
    ceil_mode: bool = False,
) -> nn.Module | None:
    """``pool=`` at a window the architecture fixes; None for a pool without a window (the
    caller keeps its own layer). ``none`` is the identity."""
    if pool.name == "none":
        module = create_for_slot("none", "local", channels)
    elif not has_window(pool.name):
        return None
    else:
        takes = pool_parameters(pool.name)
        params = {k: v for k, v in _set_params(pool).items() if k not in ("F", "S")}
        geometry = {"F": F, "S": S}
        wrap = {}
        for key, value in (("padding", padding), ("ceil_mode", ceil_mode)):
            if key in takes:
                geometry[key] = value
                params.pop(key, None)
            elif value:
                wrap[key] = value
        module = create_for_slot(pool.name, "local", channels, **params, **geometry)
        if wrap:
            module = PaddedPool(module, **wrap)
    module.slot = FIXED
    return module


class PaddedPool(LocalPool):
    """A pool with the padding and ceil mode it cannot do itself: the input is padded by
    repeating its edge (``replicate``) by ``padding`` on every side, plus, in ceil mode, as
    many rows and columns at the bottom and right as the last window needs; then ``pool``
    runs unpadded. For max-like pools repeating the edge changes nothing (the repeated values
    are in the window already); for averaging pools the edge counts twice."""

    def __init__(self, pool: LocalPool, padding: int = 0, ceil_mode: bool = False) -> None:
        super().__init__(pool.F, pool.S, padding, ceil_mode)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        p = self.padding
        out_h, out_w = self.output_size(h, w)
        extra_h = max(0, (out_h - 1) * self.S + self.F - h - 2 * p)
        extra_w = max(0, (out_w - 1) * self.S + self.F - w - 2 * p)
        if p or extra_h or extra_w:
            x = F_.pad(x, (p, p + extra_w, p, p + extra_h), mode="replicate")
        out = self.pool(x)
        return out[..., :out_h, :out_w]  # (N, C, H', W')

    def extra_repr(self) -> str:
        return super().extra_repr() + ", replicate padding"


def pad_to_output(pool: nn.Module, x: Tensor, target: tuple[int, int]) -> Tensor:
    """Pad ``x`` at the bottom and right (replicate) by the fewest rows and columns, fewer than
    the pool's stride, that make ``pool`` give ``target``; ``x`` as it is when none do (the
    caller reports the mismatch)."""
    if not isinstance(pool, LocalPool):
        return x
    h, w = x.shape[-2:]
    extra = []
    for size, want in ((h, target[0]), (w, target[1])):
        found = next(
            (e for e in range(max(1, pool.S)) if _output_side(pool, size + e) == want), None
        )
        if found is None:
            return x
        extra.append(found)
    if any(extra):
        x = F_.pad(x, (0, extra[1], 0, extra[0]), mode="replicate")
    return x


def _output_side(pool: LocalPool, size: int) -> int:
    if hasattr(pool, "output_size"):
        return pool.output_size(size, size)[0]
    return pooled_size(size, pool.F, pool.S, pool.padding, pool.ceil_mode)


def build_head(head: PoolSpec, channels: int, stage_channels: Sequence[int]) -> nn.Module:
    """The global pool before the classifier; a multi-stage head also gets every stage's width
    (``stage_channels``, which the config cannot set)."""
    params = _set_params(head)
    if takes_stages(head.name):
        if "stage_channels" in params:
            raise ConfigError(
                f"head '{head.name}' gets stage_channels from the model "
                f"({list(stage_channels)}); remove head.stage_channels from the config"
            )
        return create_for_slot(
            head.name, "global", channels, stage_channels=list(stage_channels), **params
        )
    return create_for_slot(head.name, "global", channels, **params)


class StagedNet(nn.Module):
    """Stages (each ending in a pool), a global head, dropout and a linear classifier.

    ``forward_stages`` returns every stage's output, which multi-stage heads consume.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        stage_channels: Sequence[int],
        head: PoolSpec,
        num_classes: int,
        dropout: float = 0.0,
        classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.stage_channels = list(stage_channels)
        self.head = build_head(head, stage_channels[-1], stage_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # A model may bring its own classifier (LeNet's F6 layer, NIN's identity when the
        # last mlpconv already gives one map per class); by default one linear layer.
        self.classifier = (
            classifier if classifier is not None else nn.Linear(self.head.out_features, num_classes)
        )

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        outs = self.forward_stages(x)
        z = self.head.pool_stages(outs)
        return self.classifier(self.dropout(z))  # (N, num_classes)


def check_widths(model: str, widths: Sequence[int], count: int | None = None) -> list[int]:
    """A list of channel widths (integers >= 1; exactly ``count`` of them when given)."""
    return check_int_list("widths", widths, 1, length=count, where=model)


def check_dropout(model: str, dropout: float) -> float:
    return check_number("dropout", dropout, 0, 1, high_open=True, where=model)


__all__ = [
    "FIXED",
    "STAGE",
    "PaddedPool",
    "StagedNet",
    "build_head",
    "check_dropout",
    "check_widths",
    "conv_norm_act",
    "fixed_window_pool",
    "has_window",
    "make_pool",
    "pad_to_output",
    "pool_parameters",
]
