"""Exceptions poolbench raises for bad input.

Every error a user can cause is a :class:`PoolbenchError`; the CLI turns it into one line and a
non-zero exit. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PoolbenchError(Exception):
    """Base class of the errors a user can cause."""


class ConfigError(PoolbenchError, ValueError):
    """A configuration value is invalid: names the key, the value and the valid choices."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup failed (unknown pool, model or dataset)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ShapeError(PoolbenchError, ValueError):
    """A layer cannot take the feature map it would receive."""


class DataError(PoolbenchError, FileNotFoundError):
    """A dataset is missing or malformed on disk."""


class TrainingDiverged(PoolbenchError, RuntimeError):
    """The training loss became NaN or infinite."""
