"""The model registry: ``create_model(name, num_classes, in_channels, pool, head, **params)``
builds a network whose downsampling stages come from ``pool`` and whose global pooling is
``head`` (both :class:`~poolbench.core.config.PoolSpec`); :func:`build_model` does so from a
run's config.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from poolbench.core.config import PoolSpec, RunConfig
from poolbench.core.registry import Registry

MODELS = Registry("model", internal=("num_classes", "in_channels", "pool", "head"))
register_model = MODELS.register


def list_models() -> list[str]:
    return MODELS.names()


def create_model(
    name: str, num_classes: int, in_channels: int, pool: PoolSpec, head: PoolSpec, **params: Any
) -> nn.Module:
    """Build model ``name``; unknown names and params list the valid ones."""
    entry = MODELS.get(name)
    MODELS.check_params(name, params)
    return entry.factory(
        num_classes=num_classes, in_channels=in_channels, pool=pool, head=head, **params
    )


def build_model(cfg: RunConfig, num_classes: int, in_channels: int) -> nn.Module:
    """The network of run ``cfg`` for data with ``num_classes`` and ``in_channels``."""
    return create_model(
        cfg.model.name,
        num_classes=num_classes,
        in_channels=in_channels,
        pool=cfg.pool,
        head=cfg.head,
        **cfg.model.params,
    )
