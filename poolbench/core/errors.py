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


class StorageError(PoolbenchError, RuntimeError):
    """Results cannot be written where they should go: no space left, no permission, or a
    file where a directory should be. Not a property of one run: the command stops."""


class StopCommand(BaseException):
    """Ends the whole command from inside one of its jobs, carrying the error to say (a full
    disk). A BaseException, as KeyboardInterrupt is, so that Hydra's launchers do not record
    it as that job's failure and go on to the next job; ``poolbench.sweep.outcome.run_plan`` raises
    ``error`` in its place."""

    def __init__(self, error: PoolbenchError) -> None:
        super().__init__(error)
        self.error = error


def one_line(err: BaseException) -> str:
    """An exception's message as the one line a record and a table keep: a message that
    carries a traceback (a DataLoader worker's: "Caught X in DataLoader worker process 0. /
    Original Traceback ...") ends with the original exception's line, which is the one kept."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return ""
    if len(lines) > 1 and any(
        ln.startswith("Traceback") or "Traceback (most recent" in ln for ln in lines
    ):
        return lines[-1]
    return lines[0] if len(lines) == 1 else " ".join(lines)
