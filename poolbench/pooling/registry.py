"""The pooling registry: ``create_pool(name, channels, **params)`` builds any registered layer
(the params are the same words as the config keys: ``F`` window, ``S`` stride, ``p`` ...),
``create_for_slot`` checks the layer fits its slot, ``list_pools(kind)`` names them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from poolbench.core.errors import ConfigError
from poolbench.core.registry import Entry, Registry

POOLS = Registry("pool", internal=("channels", "stage_channels"))

Kind = Literal["local", "global"]


def register_pool(
    name: str,
    *,
    kind: Kind,
    paper: str = "",
    learnable: bool = False,
    description: str | None = None,
    **meta: Any,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a pooling layer under ``name``; duplicates are refused.
    (Which memory layout suits a layer is measured per run, not declared here: see
    :mod:`poolbench.measure.probe`.)"""
    if kind not in ("local", "global"):
        raise ValueError(f"pool kind must be 'local' or 'global', got {kind!r}")
    if "takes_stages" in meta:
        raise ValueError("takes_stages is the class attribute of a GlobalPool, not an argument")

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        # A multi-stage head says so once, as its class attribute; the registry reads it.
        stages = bool(getattr(cls, "takes_stages", False))
        return POOLS.register(
            name,
            description=description,
            kind=kind,
            paper=paper,
            learnable=learnable,
            takes_stages=stages,
            **meta,
        )(cls)

    return decorator


def takes_stages(name: str) -> bool:
    """Whether head ``name`` pools every stage's map (its class says ``takes_stages = True``)."""
    return bool(POOLS.get(name).meta["takes_stages"])


def list_pools(kind: Kind | None = None) -> list[str]:
    """Registered pool names, optionally only the ``local`` or the ``global`` ones."""
    return [e.name for e in POOLS.entries() if kind is None or e.meta["kind"] == kind]


def pool_entry(name: str) -> Entry:
    return POOLS.get(name)


def create_pool(name: str, channels: int, **params: Any) -> nn.Module:
    """Build pooling layer ``name`` for a ``channels``-channel input.

    Unknown names list the valid ones; unknown params list the layer's parameters. A head
    whose class says ``takes_stages = True`` also takes ``stage_channels`` (every stage's width).
    """
    entry = POOLS.get(name)
    # stage_channels comes from the model, not the config, so it is not checked as a config key.
    internal: dict[str, Any] = {}
    if entry.meta["takes_stages"] and "stage_channels" in params:
        internal["stage_channels"] = params.pop("stage_channels")
    POOLS.check_params(name, params)
    return entry.factory(channels=channels, **internal, **params)


def create_for_slot(name: str, slot: Kind, channels: int, **params: Any) -> nn.Module:
    """Build a pool for a model slot (``local`` downsampling stage or ``global`` head).

    A global pool named for a downsampling stage (or the reverse) is a configuration error that
    names the valid choices for that slot.
    """
    entry = POOLS.get(name)
    if entry.meta["kind"] != slot:
        role = "pool (downsampling stage)" if slot == "local" else "head (global pooling)"
        raise ConfigError(
            f"'{name}' is a {entry.meta['kind']} pool and cannot be a {role}; "
            f"valid choices: {', '.join(list_pools(slot))}"
        )
    return create_pool(name, channels, **params)
