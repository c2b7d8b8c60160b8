"""Real sweeps at tiny size, the slow ones: the submitit launcher, a sweep killed and re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from poolbench.measure.device import available_cpus
from tests.helpers import FAST
from tests.helpers.cli import invoke, records


@pytest.mark.slow
def test_submitit_local_sweep(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POOLBENCH_CACHE", str(workdir / "cache"))
    result = invoke("run", "-m", "hydra/launcher=submitit_local", "pool=max,avg", *FAST)
    assert result.exit_code == 0, result.output
    runs = records()
    assert sorted(r["pool"] for r in runs) == ["avg", "max"]
    assert all(r["status"] == "ok" for r in runs)
    assert {r["threads"] for r in runs} == {max(1, available_cpus() // 2)}
    for r in runs:
        assert (workdir / "results" / "runs" / r["run_name"] / "poolbench.log").is_file()
    # it went through submitit, whose pickles are kept out of the results directory
    assert list(workdir.glob("cache/jobs/*/*/*_result.pkl"))
    assert not list(workdir.rglob("results/**/*.pkl"))


@pytest.mark.slow
def test_killed_sweep_rerun_finishes_every_run_exactly_once(workdir: Path):
    args = ["run", "-m", "pool=max,avg", "seed=0,1", *FAST]
    exe = str(Path(sys.executable).with_name("poolbench"))
    proc = subprocess.Popen(
        [exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(workdir.glob("results/runs/*/result.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    def trained(path: Path) -> tuple:  # which command trained it, when
        record = json.loads(path.read_text())
        return record["command_id"], record["started_at"]

    before = {p: trained(p) for p in workdir.glob("results/runs/*/result.json")}
    assert 1 <= len(before) < 4, "the sweep must be killed part-way"
    assert not list(workdir.glob("results/runs/*/.*.tmp"))  # no half-written file

    rerun = subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"4 ok, 0 failed ({4 - len(before)} ran, {len(before)} skipped" in rerun.stdout
    # finished runs were not run again (the interleaved timing at the end rewrites every
    # record with its figures, so the files' mtimes do change)
    for path, first in before.items():
        assert trained(path) == first
    assert invoke("report", "results", "-o", "rep.csv", "--no-plots").exit_code == 0
    table = pd.read_csv("rep.csv")
    assert len(table) == 4 and table["run_id"].is_unique
    assert set(table["status"]) == {"ok"}
    assert sorted(zip(table["pool"], table["seed"], strict=True)) == [
        ("avg", 0),
        ("avg", 1),
        ("max", 0),
        ("max", 1),
    ]
