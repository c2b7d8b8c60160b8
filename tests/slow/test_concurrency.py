"""Workers do not outlive the command that started them, the slow case: a real joblib sweep
whose main process alone is killed."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import EXE, FAST


@pytest.mark.slow
def test_killing_only_the_main_process_of_a_joblib_sweep_stops_its_workers(workdir: Path):
    args = ["run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "pool=max,avg",
            "train.epochs=300", *FAST[1:]]  # fmt: skip
    main = subprocess.Popen(
        [EXE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list(workdir.glob("results/runs/*/checkpoint.pt"))) < 2:
        time.sleep(0.1)
    main.send_signal(signal.SIGKILL)
    main.wait()
    deadline = time.time() + 15
    group = []
    while time.time() < deadline:
        group = [p for p in Path("/proc").glob("[0-9]*") if _in_group(p, main.pid)]
        if not group:
            break
        time.sleep(0.2)
    assert not group, "workers outlived the command"
    for log in workdir.glob("results/runs/*/poolbench.log"):
        assert f"the poolbench command (pid {main.pid}) is gone" in log.read_text()
    assert not list(workdir.glob("results/runs/*/result.json"))  # no orphan finished a run


def _in_group(proc: Path, pgid: int) -> bool:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[2]) == pgid and fields[0] != "Z"
