"""Checkpoints under real signals, the slow cases: a run killed mid-way (SIGKILL) resumes to the
metrics of an uninterrupted one; Ctrl-C keeps the checkpoint, exits 130, and a rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from poolbench.engine.checkpoint import CHECKPOINT_NAME
from tests.helpers import FAST, SAME


def _poolbench(*args: str, **kwargs) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("poolbench")
    return subprocess.Popen(
        [str(exe), "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the test can kill all of it
        **kwargs,
    )


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_identical_metrics(workdir: Path):
    args = ["pool=max", "model.widths=[16,32,32]", "train.epochs=6", "device=cpu", *FAST[2:]]
    assert _poolbench(*args, "results_dir=ref").wait(timeout=300) == 0
    proc = _poolbench(*args, "results_dir=killed")
    deadline = time.time() + 120
    checkpoints: list[Path] = []
    while time.time() < deadline and not checkpoints:
        checkpoints = list(Path("killed/runs").glob(f"*/{CHECKPOINT_NAME}"))
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoints, "no checkpoint appeared"
    run_dir = checkpoints[0].parent
    assert not (run_dir / "result.json").exists(), "run finished before it could be killed"
    epoch = torch.load(checkpoints[0], weights_only=True)["epoch"]
    assert 1 <= epoch < 6
    assert _poolbench(*args, "results_dir=killed").wait(timeout=300) == 0
    log = (run_dir / "poolbench.log").read_text()
    assert f"resumed after epoch {epoch}/6" in log
    killed = json.loads((run_dir / "result.json").read_text())
    (ref,) = (json.loads(p.read_text()) for p in Path("ref/runs").glob("*/result.json"))
    assert {k: killed[k] for k in SAME} == {k: ref[k] for k in SAME}


@pytest.mark.slow
def test_ctrl_c_keeps_checkpoint_exits_130_and_rerun_resumes(workdir: Path):
    args = ["-m", "pool=max,avg", "train.epochs=4", "device=cpu", *FAST[1:]]
    proc = _poolbench(*args)
    deadline = time.time() + 120
    while time.time() < deadline and not list(Path("results/runs").glob(f"*/{CHECKPOINT_NAME}")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    assert proc.wait(timeout=60) == 130
    (checkpoint,) = Path("results/runs").glob(f"*/{CHECKPOINT_NAME}")
    assert not (checkpoint.parent / "result.json").exists()
    assert not list(Path("results").rglob("*.tmp"))  # nothing half-written
    epoch = torch.load(checkpoint, weights_only=True)["epoch"]
    assert (
        f"interrupted; checkpoint kept after epoch {epoch}"
        in (checkpoint.parent / "poolbench.log").read_text()
    )
    assert _poolbench(*args).wait(timeout=600) == 0
    assert f"resumed after epoch {epoch}/4" in (checkpoint.parent / "poolbench.log").read_text()
    assert not checkpoint.exists()  # deleted after success
