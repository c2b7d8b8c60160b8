"""Several processes on one results directory: each run is trained by one process at a time,
sweeps never share a directory, and workers do not outlive the command that started them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.run.locks import LOCK_NAME, RunLock
from poolbench.sweep.outcome import new_sweep_dir
from tests.helpers import EXE, FAST, REPO

runner = CliRunner()


def _python(code: str, *args: str) -> subprocess.Popen:
    """``code`` in a fresh interpreter that imports this checkout, stdout piped."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


HOLD = """
    import sys, time
    from poolbench.run.locks import RunLock
    lock = RunLock(sys.argv[1])
    assert lock.try_acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    if len(sys.argv) > 3:  # finish the run as its trainer would: the record, then the lock
        from pathlib import Path
        Path(sys.argv[1], "result.json").write_text(Path(sys.argv[3]).read_text())
    lock.release()
"""


def _hold(run_dir: Path, seconds: float, record: Path | None = None) -> subprocess.Popen:
    proc = _python(HOLD, str(run_dir), str(seconds), *([str(record)] if record else []))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_run_lock_is_refused_named_and_freed_when_its_holder_dies(tmp_path: Path):
    holder = _hold(tmp_path, 60)
    lock = RunLock(tmp_path)
    assert not lock.try_acquire()
    assert lock.holder().startswith(f"pid {holder.pid} on ")
    holder.send_signal(signal.SIGKILL)  # no clean-up at all: the kernel drops the lock
    holder.wait()
    assert lock.try_acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()  # a released lock leaves no file


def test_a_waiter_never_shares_the_lock_with_a_newcomer(tmp_path: Path):
    """The holder removes the lock file on release; a waiter that had opened it must not
    believe it holds the run while a newcomer locks the new file at the same path."""
    first = RunLock(tmp_path)
    assert first.try_acquire()
    waiter = RunLock(tmp_path)
    got = threading.Event()
    thread = threading.Thread(target=lambda: (waiter.acquire(), got.set()))
    thread.start()
    time.sleep(0.3)  # the waiter has opened the file and blocks in flock
    assert not got.is_set()
    first.release()
    thread.join(timeout=10)
    assert got.is_set() and waiter.held
    newcomer = RunLock(tmp_path)
    assert not newcomer.try_acquire(), "two holders of one run"
    waiter.release()
    assert newcomer.try_acquire()
    newcomer.release()


def test_a_run_held_by_another_process_is_waited_for_not_trained_twice(workdir: Path):
    args = ["run", "pool=avg", *FAST]
    assert runner.invoke(app, args).exit_code == 0
    (run_dir,) = Path("results/runs").iterdir()
    saved = workdir / "record.json"
    (run_dir / "result.json").rename(saved)  # as if the run had never finished
    holder = _hold(run_dir, 2.0, saved)  # another process is training it, and finishes it

    result = runner.invoke(app, args)
    holder.wait()
    assert result.exit_code == 0, result.output
    assert "(trained by another process while this one waited)" in result.output
    assert json.loads((run_dir / "result.json").read_text()) == json.loads(saved.read_text())
    log = (run_dir / "poolbench.log").read_text()
    assert f"is being trained by another process (pid {holder.pid} on " in log
    assert "skipped: the other process finished it" in log
    assert log.count("epoch 1/1") == 1  # trained once, by the first command


def test_two_overlapping_sweeps_train_each_run_once_and_count_it(workdir: Path):
    """Both start on avg (the shared runs) at the same moment: one waits for the other."""
    common = [*FAST, "progress=false", "latency_interleaved=false"]
    a = subprocess.Popen(
        [EXE, "run", "-m", "pool=avg,max", "seed=0,1", *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    b = subprocess.Popen(
        [EXE, "run", "-m", "pool=avg,min", "seed=0,1", *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    run_dirs = sorted(Path("results/runs").iterdir())
    assert len(run_dirs) == 6
    for run_dir in run_dirs:  # one training per run, one record, nothing left behind
        assert (run_dir / "poolbench.log").read_text().count("epoch 1/1") == 1, run_dir
        assert json.loads((run_dir / "result.json").read_text())["status"] == "ok"
        assert not (run_dir / LOCK_NAME).exists()
    counts = []
    for out in (out_a, out_b):
        line = next(ln for ln in out.splitlines() if ln.startswith("4 ok, 0 failed ("))
        parts = re.search(
            r"\((\d+) ran, (\d+) skipped: already ok(?:, (\d+) trained by another)?", line
        )
        assert parts, line
        ran, skipped, elsewhere = (int(g or 0) for g in parts.groups())
        # every run is counted once: trained here, found ok when this sweep planned (the other
        # started first, under load), or trained by the other sweep meanwhile
        assert ran + skipped + elsewhere == 4, line
        counts.append(ran)
    assert sum(counts) == 6  # together they trained each of the 6 runs once
    # each sweep has its own directory and table, even when both started in the same second
    tables = sorted(Path("results/sweeps").glob("*/summary.csv"))
    assert len(tables) == 2
    pools = sorted(tuple(sorted(set(pd.read_csv(t)["pool"]))) for t in tables)
    assert pools == [("avg", "max"), ("avg", "min")]


def test_sweep_directories_of_the_same_second_are_distinct(tmp_path: Path):
    made = [new_sweep_dir(tmp_path) for _ in range(3)]
    assert len({p.name for p in made}) == 3 and all(p.is_dir() for p in made)
    assert made[1].name == f"{made[0].name}-2"


WORKER = """
    import os, sys, time
    from poolbench.run.watchdog import stop_with_parent
    stop_with_parent(os.getppid(), interval_s=0.1)
    print(os.getpid(), flush=True)
    time.sleep(60)
    print("still running", flush=True)
"""

PARENT = """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_worker_ends_when_the_command_that_started_it_is_killed(tmp_path: Path):
    parent = _python(PARENT, textwrap.dedent(WORKER))
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)  # the main process alone, as kill -9 <pid> does
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and _alive(worker):
        time.sleep(0.1)
    assert not _alive(worker), "the orphaned worker kept running"


def test_timing_writes_into_a_record_only_under_its_lock(workdir: Path):
    """`poolbench time` must not overwrite the record of a run being trained again: it waits,
    then adds its figures to the new record."""
    assert runner.invoke(app, ["run", "pool=avg", *FAST]).exit_code == 0
    (run_dir,) = Path("results/runs").iterdir()
    new = json.loads((run_dir / "result.json").read_text()) | {"test_acc": 0.123}
    (workdir / "new.json").write_text(json.dumps(new))
    holder = _hold(run_dir, 3.0, workdir / "new.json")  # a rerun, finishing with a new record
    timed = runner.invoke(app, ["time", "results", "--repeats", "2", "--warmup", "0"])
    holder.wait()
    assert timed.exit_code == 0, timed.output
    final = json.loads((run_dir / "result.json").read_text())
    assert final["test_acc"] == 0.123 and final["latency_interleaved_ms"] > 0


def test_joblib_workers_reused_by_a_later_command_count_for_it(workdir: Path):
    """loky keeps its workers between sweeps of one process (a notebook, these tests): the
    command's id reaches them with each job, not through the environment they started with."""
    for pools in ("pool=max,avg", "pool=lp,min"):
        args = ["run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", pools, *FAST]
        result = runner.invoke(app, [*args, "latency_interleaved=false"])
        assert result.exit_code == 0, result.output
        assert "2 ok, 0 failed (2 ran, 0 skipped: already ok)" in result.output
