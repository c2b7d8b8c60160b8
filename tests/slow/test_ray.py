"""Sweeps on a real Ray cluster (``ray start --head``, started and stopped by this module; needs
``pip install "poolbench[ray]"``): four runs as Ray tasks whose workers keep their runs in
another directory than the command's (``POOLBENCH_WORKER_RESULTS``) and run in a working
directory of Ray's, so every record comes home with its task's return value; and a race whose
rounds go through the same launcher."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import FAST

pytestmark = pytest.mark.slow
EXE = str(Path(sys.executable).with_name("poolbench"))
RAY = str(Path(sys.executable).with_name("ray"))
SMALL = [o for o in FAST if not o.startswith("threads=")]
# A one-node cluster on loopback, for the head, its workers and the command alike: Ray would
# otherwise turn 127.0.0.1 into this machine's outward address (only its own clusters of one
# machine use loopback), and the cluster is this test's alone (no token to share).
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head() -> Iterator[str]:
    """A one-node Ray cluster of 2 CPUs; its address."""
    pytest.importorskip(
        "hydra_plugins.hydra_ray_launcher", reason='the Ray launcher: pip install "poolbench[ray]"'
    )
    if not Path(RAY).is_file():
        pytest.skip("the ray command is not installed beside this Python")
    root = Path(tempfile.mkdtemp(prefix="pb-ray-", dir="/tmp"))  # short: Ray's socket paths
    port = free_port()
    env = {**os.environ, **RAY_ENV}
    start = [
        RAY,
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--node-ip-address=127.0.0.1",  # loopback only
        "--include-dashboard=false",
        f"--temp-dir={root}",
        "--disable-usage-stats",
    ]
    done = subprocess.run(start, cwd=root, env=env, capture_output=True, text=True, timeout=180)
    try:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def poolbench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **RAY_ENV, "COLUMNS": "160"}
    return subprocess.run(
        [EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=280
    )


def on_cluster(address: str, worker_results: Path, working_dir: Path) -> list[str]:
    working_dir.mkdir(parents=True, exist_ok=True)
    (working_dir / "README").write_text("the Ray workers' working directory\n")
    return [
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={address}",
        "hydra.launcher.ray.remote.num_cpus=1",
        f"+hydra.launcher.ray.init.runtime_env.env_vars.POOLBENCH_WORKER_RESULTS={worker_results}",
        f"+hydra.launcher.ray.init.runtime_env.working_dir={working_dir}",
    ]


def test_four_runs_as_ray_tasks_come_home_without_a_shared_results_path(head: str, tmp_path: Path):
    driver, workers = tmp_path / "driver", tmp_path / "node-disk"
    driver.mkdir()
    cluster = on_cluster(head, workers, tmp_path / "wd")
    done = poolbench(driver, "run", "-m", *cluster, "pool=max,avg", "seed=0,1", *SMALL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 ok, 0 failed (4 ran" in done.stdout
    home = sorted(driver.glob("results/runs/*/result.json"))
    away = sorted(workers.glob("runs/*/result.json"))
    assert len(home) == len(away) == 4
    for at_home, on_node in zip(home, away, strict=True):
        record = json.loads(at_home.read_text())
        assert record["status"] == "ok" and record["threads"] == 1  # num_cpus=1
        assert record["run_id"] == json.loads(on_node.read_text())["run_id"]
        assert (at_home.parent / "metrics.csv").read_text() == (
            on_node.parent / "metrics.csv"
        ).read_text()
    # the sweep's job reports name the runs at home, where its table and page found them
    (sweep,) = (driver / "results" / "sweeps").iterdir()
    reports = [json.loads(p.read_text()) for p in sorted((sweep / "jobs").glob("*.json"))]
    assert len(reports) == 4 and all(r["run_dir"].startswith(str(driver)) for r in reports)
    assert (sweep / "report.html").read_text().count('href="../../runs/') == 4
    # nothing was written in the workers' working directory or the command's own beside it
    assert sorted(p.name for p in (tmp_path / "wd").iterdir()) == ["README"]

    # the nodes lose their copies (a node replaced): the same command trains nothing again,
    # it takes the records at home
    shutil.rmtree(workers)
    again = poolbench(driver, "run", "-m", *cluster, "pool=max,avg", "seed=0,1", *SMALL)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "4 ok, 0 failed (0 ran, 4 skipped: already ok)" in again.stdout, again.stdout[-3000:]
    assert not list(workers.glob("runs/*/result.json"))
    assert sorted(driver.glob("results/runs/*/result.json")) == home


def test_a_race_goes_through_the_ray_launcher(head: str, tmp_path: Path):
    driver = tmp_path / "driver"
    driver.mkdir()
    cluster = on_cluster(head, tmp_path / "node-disk", tmp_path / "wd")
    race = ["hydra/sweeper=race", "pool=max,none", "hydra.sweeper.seeds=[0,1,2,3]"]
    done = poolbench(driver, "run", "-m", *race, *cluster, *SMALL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sweep,) = (driver / "results" / "sweeps").iterdir()
    with open(sweep / "race.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    last = {r["configuration"]: r["status"] for r in rows if r["look"] == rows[-1]["look"]}
    assert set(last) == {"pool=max", "pool=none"} and "best" in last.values()
    ran = sorted(driver.glob("results/runs/*/result.json"))
    assert 4 <= len(ran) <= 8  # the first round at least, each record at home
    assert "Race: best pool=" in done.stdout
