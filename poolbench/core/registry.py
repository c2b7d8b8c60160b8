"""A small name -> factory registry shared by pools, models and datasets.

Lookups are by exact name; a failed lookup lists every valid name. Registering a name twice is
an error, so two modules can never silently shadow each other.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from poolbench.core.errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a factory, as shown by ``poolbench list``."""

    name: str
    default: Any

    def __str__(self) -> str:
        if self.default is inspect.Parameter.empty:
            return f"{self.name} (required)"
        return f"{self.name}={self.default!r}"


@dataclass(frozen=True)
class Entry:
    """A registered factory and what the user needs to know about it."""

    name: str
    factory: Callable[..., Any]
    description: str
    meta: dict[str, Any] = field(default_factory=dict)
    internal: frozenset[str] = frozenset()

    @property
    def params(self) -> list[Param]:
        """The factory's keyword parameters a config sets (not the registry's internal ones)."""
        return factory_params(self.factory, self.internal)


def factory_params(
    factory: Callable[..., Any], internal: frozenset[str] = frozenset()
) -> list[Param]:
    sig = inspect.signature(factory)
    return [
        Param(p.name, p.default)
        for p in sig.parameters.values()
        if p.name not in internal | {"self"}
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]


def _first_line(text: str | None) -> str:
    text = (text or "").strip().replace("``", "")
    return text.splitlines()[0] if text else ""


class Registry:
    """Maps names to factories for one kind of thing (``pool``, ``model``, ``dataset``).

    ``internal`` names the arguments poolbench itself passes to every factory of this kind
    (a pool's ``channels``, a model's ``num_classes``): they are not config keys.
    """

    def __init__(self, kind: str, internal: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.internal = frozenset(internal)
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, description: str | None = None, **meta: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            desc = description or _first_line(factory.__doc__)
            self._entries[name] = Entry(name, factory, desc, dict(meta), self.internal)
            return factory

        return decorator

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'; available: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check_params(self, name: str, params: dict[str, Any]) -> None:
        """Refuse keyword arguments the factory does not take, naming the valid ones."""
        entry = self.get(name)
        sig = inspect.signature(entry.factory)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
            return
        valid = [p.name for p in entry.params]
        # Internal arguments the factory declares (a multi-stage head's stage_channels) are
        # passed by the model, not by the user, and are not "unknown".
        internal = self.internal & set(sig.parameters)
        unknown = sorted(set(params) - set(valid) - internal)
        if unknown:
            raise ConfigError(
                f"{self.kind} '{name}' has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters: {', '.join(valid) or 'none'}"
            )


def import_submodules(package: str, path: list[str], skip: tuple[str, ...] = ()) -> None:
    """Import every module of ``package`` (each registers its entries on import)."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name not in skip and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
