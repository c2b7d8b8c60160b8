"""Per-epoch checkpoints, so that a killed run resumes where it stopped.

A checkpoint holds everything the next epoch depends on: model, optimiser, LR schedule, grad
scaler, the global RNG states (CPU and every CUDA device: dropout, stochastic pooling) and the
data generator's state (shuffling, augmentation), plus the loop's running totals. Restoring all
of it makes a resumed run compute exactly what an uninterrupted one would have (bit for bit on
CPU; on CUDA as far as its kernels are deterministic).

The file is written to a temporary name and renamed (``os.replace``), so a SIGKILL leaves either
the previous checkpoint or the new one, never half of one. After a successful run the
checkpoint is deleted unless ``keep_checkpoint=true`` (a ResNet-18 checkpoint with optimiser
state is ~90 MB; a sweep of hundreds of runs should not keep them all); after a failure or an
interruption it is kept, and running the same command again resumes from it.

A checkpoint holds tensors and plain values only and is read as data
(``torch.load(..., weights_only=True)``): one that cannot be read that way (truncated by a full
disk, damaged by a copy, or a pickle that would run code when loaded, placed in a shared results
directory) is set aside as ``checkpoint.pt.corrupt-<time>``, never deleted and never executed,
and the run starts afresh; the run's log says so. The state is serialised in memory and then
written, so that a full disk is reported as such (torch's zip writer, given the file, reports a
short write as "unexpected pos").
"""

from __future__ import annotations

import io
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from poolbench.core.storage import atomic_file, set_aside
from poolbench.engine.callbacks import Callback, Loop, LoopState, Stateful

log = logging.getLogger("poolbench")

CHECKPOINT_NAME = "checkpoint.pt"
STATE_KEYS = frozenset({"run_id", "epoch", "objects", "rng", "totals"})


def _rng_states(generator: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
    }


def _set_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():  # as many GPUs as are visible now
        for i, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, i)
    generator.set_state(states["generator"])


class Checkpoint:
    """The checkpoint file of one run (``<run_dir>/checkpoint.pt``).

    ``epoch`` is the last completed epoch (0 before the first); ``running`` is the epoch being
    trained, which a failure record reports.
    """

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.path = Path(run_dir) / CHECKPOINT_NAME
        self.run_id = run_id
        self.epoch = 0
        self.running = 0

    def exists(self) -> bool:
        return self.path.is_file()

    def save(
        self,
        epoch: int,
        objects: dict[str, Stateful],
        generator: torch.Generator,
        totals: dict[str, Any],
    ) -> None:
        """Write the state after ``epoch`` atomically (temporary file + rename)."""
        state = {
            "run_id": self.run_id,
            "epoch": epoch,
            "objects": {name: obj.state_dict() for name, obj in objects.items()},
            "rng": _rng_states(generator),
            "totals": dict(totals),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        with atomic_file(self.path, "wb") as fh:
            fh.write(buffer.getbuffer())
        self.epoch = epoch

    def restore(
        self, objects: dict[str, Stateful], generator: torch.Generator
    ) -> dict[str, Any] | None:
        """Load the saved state into ``objects`` and the RNGs; return the saved totals.

        None when there is no checkpoint, when it cannot be read (it is set aside), or when it
        belongs to another config (a stale file from an older poolbench with a different hash
        scheme): the run then starts afresh, and the log says why.
        """
        if not self.exists():
            return None
        state = self._read()
        if state is None:
            return None
        if state.get("run_id") != self.run_id:
            log.warning(
                "%s belongs to another config (run_id %s, this run is %s): starting afresh",
                self.path,
                state.get("run_id"),
                self.run_id,
            )
            return None
        try:
            for name, obj in objects.items():
                obj.load_state_dict(state["objects"][name])
            _set_rng_states(state["rng"], generator)
            self.epoch = int(state["epoch"])
        except torch.cuda.OutOfMemoryError:  # the machine's state, not the file's: it stays
            raise
        except Exception as err:  # read as data, but not this run's state (a damaged save)
            # The objects may hold part of it now: this attempt fails, and the next, with the
            # file set aside, starts afresh instead of failing on it every time.
            aside = set_aside(self.path)
            reason = " ".join(str(err).split())[:300]
            raise RuntimeError(
                f"{self.path} does not fit this run ({type(err).__name__}: {reason}): set aside "
                f"as {aside.name}; run the command again to start the run afresh"
            ) from None
        log.info("%s: resuming after epoch %d", self.path, self.epoch)
        return state["totals"]

    def _read(self) -> dict[str, Any] | None:
        """The saved state, or None (and the file set aside) when it cannot be read."""
        try:
            # data only: a file that holds anything but tensors and plain values (a pickle that
            # would run code, placed in a shared results directory) is refused, never executed
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not STATE_KEYS <= state.keys():
                raise ValueError(f"expected a dict with {', '.join(sorted(STATE_KEYS))}")
        # Unpickling damaged bytes can raise nearly any exception type (zip errors are
        # RuntimeError, a short file EOFError or OSError, garbage UnpicklingError, ...).
        except Exception as err:
            aside = set_aside(self.path)
            reason = str(err).splitlines()[0] if str(err) else ""
            log.warning(
                "%s cannot be read (%s: %s): set aside as %s; the run starts afresh",
                self.path,
                type(err).__name__,
                reason,
                aside.name,
            )
            return None
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class CheckpointCallback(Callback):
    """Resumes a training run from ``checkpoint`` (when it holds one of this run) before the
    first epoch, and saves after every epoch; the checkpoint's ``running`` follows the epoch
    being trained, for a failure record."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint

    def on_train_start(self, loop: Loop) -> None:
        totals = self.checkpoint.restore(loop.stateful, loop.generator)
        if totals is not None:
            loop.state = LoopState(epoch=self.checkpoint.epoch, **totals)

    def on_epoch_start(self, loop: Loop) -> None:
        self.checkpoint.running = loop.running

    def on_epoch_end(self, loop: Loop) -> None:
        state = loop.state
        totals = {f.name: getattr(state, f.name) for f in fields(state) if f.name != "epoch"}
        self.checkpoint.save(loop.state.epoch, loop.stateful, loop.generator, totals)


__all__ = ["CHECKPOINT_NAME", "Checkpoint", "CheckpointCallback"]
