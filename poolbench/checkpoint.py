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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from poolbench.record import atomic_file

CHECKPOINT_NAME = "checkpoint.pt"


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def _rng_states(generator: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
    }


def _set_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
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
        with atomic_file(self.path, "wb") as fh:
            torch.save(state, fh)
        self.epoch = epoch

    def restore(
        self, objects: dict[str, Stateful], generator: torch.Generator
    ) -> dict[str, Any] | None:
        """Load the saved state into ``objects`` and the RNGs; return the saved totals.

        None when there is no checkpoint, or when it belongs to another config (a stale file
        from an older poolbench with a different hash scheme): the run then starts afresh.
        """
        if not self.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("run_id") != self.run_id:
            return None
        for name, obj in objects.items():
            obj.load_state_dict(state["objects"][name])
        _set_rng_states(state["rng"], generator)
        self.epoch = int(state["epoch"])
        return state["totals"]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


__all__ = ["CHECKPOINT_NAME", "Checkpoint"]
