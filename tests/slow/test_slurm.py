"""Sweeps on a real Slurm (a one-node cluster this module starts: tests/helpers/slurm.py):
runs go through sbatch and their records land in the command's results directory; a job
preempted (scancel --signal=USR2, submitit's signal) or stopped at its time limit is requeued and
resumes from its checkpoint, each epoch trained once; a job cancelled for good is named in the
closing table; `poolbench report` reads the records as it reads a local sweep's."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import FAST
from tests.helpers import slurm as cluster

pytestmark = pytest.mark.slow
EXE = str(Path(sys.executable).with_name("poolbench"))
# What one run asks of the test cluster: one of its CPUs, a little memory, the debug partition.
ON_TEST_CLUSTER = [
    "hydra/launcher=slurm_cpu",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]
SMALL = [o for o in FAST if not o.startswith("threads=")]


@pytest.fixture(scope="module")
def slurm() -> Iterator[dict[str, str]]:
    why = cluster.missing()
    if why:
        pytest.skip(why)
    # under /tmp, not pytest's deeper folder: munge's socket path must stay short
    root = Path(tempfile.mkdtemp(prefix="pb-slurm-", dir="/tmp"))
    with cluster.cluster(root) as env:
        yield env


def poolbench(env: dict[str, str], cwd: Path, *args: str, timeout: float = 280):
    return subprocess.Popen(
        [EXE, *args],
        cwd=cwd,
        # PATH: the cluster's sacct; the cache (submitit's folder) under the test's directory
        env={**os.environ, **env, "COLUMNS": "160", "POOLBENCH_CACHE": str(cwd / ".cache")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(
    proc: subprocess.Popen, timeout: float = 280, env: dict[str, str] | None = None, cwd=None
) -> str:
    """The command's output once it ends. With ``env`` and ``cwd``, meanwhile, its requeued
    jobs start again at once: Slurm holds a requeued job about two minutes (its BeginTime),
    which is the cluster's business, not what these tests check."""
    stop = threading.Event()
    if env is not None:
        threading.Thread(target=release_requeued, args=(env, cwd, stop), daemon=True).start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        if proc.poll() is None:  # timed out: no command left behind
            proc.kill()
            proc.communicate()
    return out


def release_requeued(env: dict[str, str], cwd: Path, stop: threading.Event) -> None:
    while not stop.wait(1):
        for job in ours(env, cwd):
            if job.get("JobState") == "PENDING" and job.get("Reason") == "BeginTime":
                subprocess.run(
                    ["scontrol", "update", f"JobId={job_id(job)}", "StartTime=now"],
                    env={**os.environ, **env},
                    capture_output=True,
                    timeout=30,
                )


def records(cwd: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cwd.glob("results/runs/*/result.json"))]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def job_id(job: dict[str, str]) -> str:
    """A job as scancel and submitit name it: an array's task as <array>_<task>."""
    if job.get("ArrayJobId") and job.get("ArrayTaskId"):
        return f"{job['ArrayJobId']}_{job['ArrayTaskId']}"
    return job["JobId"]


def running_job(env: dict[str, str]) -> str:
    found: list[str] = []

    def one_running() -> bool:
        found[:] = [job_id(j) for j in cluster.jobs(env) if j.get("JobState") == "RUNNING"]
        return bool(found)

    wait_for(one_running, 120, "a running Slurm job")
    return found[0]


def ours(env: dict[str, str], cwd: Path) -> list[dict[str, str]]:
    """The Slurm jobs a command in ``cwd`` submitted (their output goes under its sweep)."""
    return [j for j in cluster.jobs(env) if j.get("StdOut", "").startswith(str(cwd))]


def epochs_of(record: dict) -> list[int]:
    return [row["epoch"] for row in record["history"]]


def trained_once(log: str, epochs: int) -> bool:
    """Whether a run's log shows no epoch trained twice, up to the last (the record's history
    is restored from the checkpoint, so it cannot show a repeat). An epoch's line is written
    after its checkpoint: a signal between the two leaves that line out, never a repeat."""
    logged = [int(n) for n in re.findall(r" epoch (\d+)/\d+ loss ", log)]
    return logged == sorted(set(logged)) and logged[-1] == epochs


def test_a_sweep_through_sbatch_lands_home_and_a_job_cancelled_for_good_is_named(
    slurm: dict[str, str], tmp_path: Path
):
    """Three runs as a Slurm job array; one is cancelled outright while it trains: the other
    two land in results/runs, the closing table counts and names the cancelled one, the
    command exits 1, and `poolbench report` reads the two records."""
    args = ["run", "-m", *ON_TEST_CLUSTER, "pool=max,avg,lp", *SMALL, "latency_interleaved=false"]
    proc = poolbench(slurm, tmp_path, *args)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    recs = records(tmp_path)
    assert sorted(r["pool"] for r in recs) == ["avg", "lp", "max"]
    assert all(r["status"] == "ok" and r["threads"] == 1 for r in recs)
    jobs = ours(slurm, tmp_path)
    assert len(jobs) == 3 and all(j["JobState"] == "COMPLETED" for j in jobs)  # through sbatch
    # submitit's pickles and logs: in the private cache, never in the results directory
    folders = list(tmp_path.glob(".cache/jobs/*"))
    assert len(folders) == 1 and folders[0].stat().st_mode & 0o777 == 0o700
    assert list(folders[0].glob("*/*_result.pkl")) and not list(tmp_path.rglob("results/**/*.pkl"))
    assert "3 ok, 0 failed (3 ran" in out

    # one job of the next sweep cancelled outright: no requeue, reported, the others go on
    long = ["train.epochs=30", "model.widths=[16,32,64]"]
    args = ["run", "-m", *ON_TEST_CLUSTER, "pool=gem,softpool", *SMALL[1:], *long]
    proc = poolbench(slurm, tmp_path, *args)
    victim = running_job(slurm)
    subprocess.run(["scancel", victim], env={**os.environ, **slurm}, check=True, timeout=30)
    out = finish(proc)
    assert proc.returncode == 1, out[-3000:]
    text = " ".join(out.split())
    assert "1 ok, 1 failed (2 ran" in text, out[-4000:]  # the closing table, no traceback
    assert "Traceback" not in out and "Error executing job" not in out, out[-3000:]
    rows = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert any(re.match(r"│ gem .*│ +0 \(1 failed\) │$", r) for r in rows), rows  # its row
    assert f"Slurm job {victim} ended without a result" in text, text[-3000:]

    report = subprocess.run(
        [EXE, "report", "results", "-o", "rep/r.csv", "--no-plots"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    summary = (tmp_path / "rep" / "r_summary.csv").read_text()
    for pool in ("max", "avg", "lp"):
        assert f"\n{pool}," in summary or f",{pool}," in summary


def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(
    slurm: dict[str, str], tmp_path: Path
):
    args = [
        "run",
        "-m",
        *ON_TEST_CLUSTER,
        "pool=max",
        *SMALL[1:],
        "train.epochs=40",
        "model.widths=[16,32,64]",
    ]
    proc = poolbench(slurm, tmp_path, *args)
    job = running_job(slurm)
    wait_for(
        lambda: bool(list(tmp_path.glob("results/runs/*/checkpoint.pt"))),
        120,
        "the run's first checkpoint",
    )
    env = {**os.environ, **slurm}
    subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True, timeout=30)
    out = finish(proc, env=slurm, cwd=tmp_path)
    assert proc.returncode == 0, out[-3000:]
    (record,) = records(tmp_path)
    assert record["status"] == "ok"
    assert epochs_of(record) == list(range(1, 41))  # each epoch trained once
    (state,) = ours(slurm, tmp_path)
    assert job_id(state) == job and int(state["Restarts"]) >= 1  # requeued by submitit
    log = next(tmp_path.glob("results/runs/*/poolbench.log")).read_text()
    assert "resuming after epoch" in log
    assert trained_once(log, 40), log[-3000:]  # the log: no epoch trained twice


def test_a_job_at_its_time_limit_is_requeued_and_resumes(slurm: dict[str, str], tmp_path: Path):
    """A one-minute limit with submitit's warning 55 s before it (Slurm sends it within about
    30 s of the start): the run, sized to train for about 40 s on this machine, is stopped at
    least once, requeued as timed out and resumed, each epoch trained once."""
    probe = subprocess.run(
        [EXE, "run", "pool=max", *SMALL[1:], "train.epochs=2", "model.widths=[16,32,64]"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    (probed,) = records(tmp_path)
    per_epoch = probed["train_time_s"] / 2
    epochs = min(2000, max(10, math.ceil(40 / per_epoch)))
    limits = [
        "hydra.launcher.timeout_min=1",
        "hydra.launcher.signal_delay_s=55",
        "hydra.launcher.max_num_timeout=8",
    ]
    args = ["run", "-m", *ON_TEST_CLUSTER, *limits, "pool=avg", *SMALL[1:]]
    proc = poolbench(slurm, tmp_path, *args, f"train.epochs={epochs}", "model.widths=[16,32,64]")
    out = finish(proc, timeout=290, env=slurm, cwd=tmp_path)
    assert proc.returncode == 0, out[-3000:]
    (record,) = [r for r in records(tmp_path) if r["pool"] == "avg"]
    assert record["status"] == "ok" and epochs_of(record) == list(range(1, epochs + 1))
    log = next(tmp_path.glob("results/runs/*avg*/poolbench.log")).read_text()
    assert "resuming after epoch" in log and trained_once(log, epochs), log[-3000:]
    (state,) = ours(slurm, tmp_path)
    assert int(state["Restarts"]) >= 1
    submitit_logs = " ".join(
        p.read_text(errors="replace") for p in tmp_path.glob(".cache/jobs/*/*/*.err")
    )
    assert "this job is timed-out" in submitit_logs
