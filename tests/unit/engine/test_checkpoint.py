"""A checkpoint is data: it holds tensors and plain values, is read with
``torch.load(weights_only=True)``, and one that would run code when loaded (a pickle placed in a
shared results directory) is set aside, never executed."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from poolbench.engine.checkpoint import CHECKPOINT_NAME, Checkpoint
from poolbench.run.runner import execute
from poolbench.sweep.plan import plan
from tests.helpers import FAST


class Payload:
    """Unpickling this runs code: it creates the file named."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_checkpoint_holding_code_is_set_aside_and_the_code_never_runs(workdir: Path):
    run_dir = workdir / "run"
    run_dir.mkdir()
    marker = workdir / "the payload ran"
    with open(run_dir / CHECKPOINT_NAME, "wb") as fh:
        pickle.dump({"run_id": "x", "epoch": 1, "objects": Payload(str(marker))}, fh)
    cfg = plan(["pool=max", *FAST]).runs[0]
    record = execute(cfg, run_dir)
    assert record["status"] == "ok"
    assert not marker.exists()
    assert [p.name.startswith(f"{CHECKPOINT_NAME}.corrupt-") for p in run_dir.iterdir()].count(True)


def test_a_real_checkpoint_is_plain_data(workdir: Path):
    cfg = plan(["pool=gem", *FAST, "train.epochs=2", "keep_checkpoint=true"]).runs[0]
    assert execute(cfg, workdir / "run")["status"] == "ok"
    state = torch.load(workdir / "run" / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 2 and set(state["objects"]) >= {"model", "optimizer", "schedule"}
    assert Checkpoint(workdir / "run", cfg.run_id).restore({}, torch.Generator()) is not None


def test_a_checkpoint_that_reads_but_does_not_fit_fails_once_then_the_run_starts_afresh(
    workdir: Path,
):
    cfg = plan(["pool=max", *FAST, "train.epochs=2"]).runs[0]
    run_dir = workdir / "run"
    run_dir.mkdir()
    torch.save(  # data, this run's id, but no optimizer state
        {"run_id": cfg.run_id, "epoch": 1, "objects": {}, "rng": {}, "totals": {}},
        run_dir / CHECKPOINT_NAME,
    )
    first = execute(cfg, run_dir)
    assert first["status"] == "failed" and "does not fit this run" in first["error"]
    assert not (run_dir / CHECKPOINT_NAME).exists()
    assert len(list(run_dir.glob(f"{CHECKPOINT_NAME}.corrupt-*"))) == 1
    again = execute(cfg, run_dir)
    assert again["status"] == "ok" and [r["epoch"] for r in again["history"]] == [1, 2]
