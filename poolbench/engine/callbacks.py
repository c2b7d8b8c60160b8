"""How the rest of poolbench follows a training run: the loop calls the hooks of each
:class:`Callback` it is given (checkpoints, loggers, a display), in their order, and knows
nothing of what they do.

- ``on_train_start``: before the first epoch (a checkpoint restores the state here);
- ``on_epoch_start``, ``on_epoch_end``: around each epoch (``loop.state.history[-1]`` is the
  epoch just ended);
- ``on_progress``: at most every ``progress_interval_s`` seconds while an epoch trains, only
  for callbacks that set it (a live display). Reading the loss costs a device sync, so the loop
  reads it only for these calls, never per batch;
- ``on_train_end``: after the last epoch, or when training stops on an error or Ctrl-C;
- ``phase(what)``: a context around a measurement after training (``timing latency``,
  ``evaluating: invariance``), for the caller to show.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class LoopState:
    """What a checkpoint resumes: the last completed ``epoch`` and the loop's running totals,
    so that a resumed run (validation history and best weights included) ends as an
    uninterrupted one would. ``best`` is (validation accuracy, epoch, weights) of the best
    epoch under ``train.select=best_val``."""

    epoch: int = 0
    images: int = 0
    train_seconds: float = 0.0
    epoch_loss: float = math.nan
    history: list[dict[str, Any]] = field(default_factory=list)
    best: tuple[float, int, dict[str, Tensor]] | None = None

    @property
    def img_s(self) -> float:
        """Training images per second so far."""
        return self.images / max(self.train_seconds, 1e-9)


@dataclass
class Loop:
    """A training run in progress, as its callbacks see it: its ``state``, its size, what a
    checkpoint saves (``stateful``: model, optimiser, schedule, grad scaler, Lookahead; the
    data ``generator``) and the epoch being trained (``running``, 0 before the first)."""

    state: LoopState
    epochs: int
    steps_per_epoch: int
    stateful: dict[str, Stateful]
    generator: torch.Generator
    running: int = 0

    @property
    def steps_done(self) -> int:
        return self.state.epoch * self.steps_per_epoch


class Callback:
    """Every hook does nothing: a callback overrides those it needs."""

    # seconds between on_progress calls; None: this callback wants none
    progress_interval_s: float | None = None

    def on_train_start(self, loop: Loop) -> None:
        pass

    def on_epoch_start(self, loop: Loop) -> None:
        pass

    def on_progress(self, loop: Loop, batch: int, loss: float, img_s: float) -> None:
        pass

    def on_epoch_end(self, loop: Loop) -> None:
        pass

    def on_train_end(self, loop: Loop) -> None:
        pass

    @contextlib.contextmanager
    def phase(self, what: str) -> Iterator[None]:
        yield


__all__ = ["Callback", "Loop", "LoopState", "Stateful"]
