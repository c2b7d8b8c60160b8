"""A real one-node Slurm cluster on this machine for the tests: Debian's ``slurm-wlm`` and
``munge`` (``.ci/run`` installs them), a private munge key and socket, a ``slurm.conf`` for
this machine's CPUs on free ports, ``slurmctld`` and ``slurmd`` started as daemons and stopped
afterwards. Commands reach it through the environment :func:`cluster` yields (``SLURM_CONF``).

It has no accounting database (slurmdbd and a MariaDB server), so ``sacct``, which submitit asks
for the state of jobs that ended without a result, is answered from the controller's memory
(``scontrol show job``, which keeps ended jobs for ``MinJobAge``) by a script on the yielded
``PATH``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def missing() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    absent = [d for d in DAEMONS if _which(d) is None]
    if absent:
        return (
            f"Slurm or munge is not installed ({', '.join(absent)} not found); Debian's "
            "slurm-wlm and munge packages have them (.ci/run installs them)"
        )
    if os.geteuid() != 0:
        return "slurmd runs jobs as their user and needs root to start here"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _conf(root: Path, host: str, cpus: int, memory_mb: int) -> str:
    ctld, d = _free_ports(2)
    node = (
        f"NodeName=pbnode NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} "
        f"RealMemory={memory_mb} State=UNKNOWN"
    )
    return f"""\
ClusterName=poolbench-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.sock
SlurmctldPort={ctld}
SlurmdPort={d}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
{node}
PartitionName=debug Nodes=pbnode Default=YES MaxTime=INFINITE State=UP
"""


# sacct -o JobID,State,NodeList --parsable2 -j IDS, as submitit calls it, from scontrol
SACCT = """#!{python}
import subprocess, sys
ids = set(sys.argv[sys.argv.index("-j") + 1].split(",")) if "-j" in sys.argv else None
out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
print("JobID|State|NodeList")
for line in out.splitlines():
    job = dict(p.split("=", 1) for p in line.split() if "=" in p)
    if not job.get("JobId"):
        continue
    name = job["JobId"]
    if job.get("ArrayJobId") and job.get("ArrayTaskId"):
        name = job["ArrayJobId"] + "_" + job["ArrayTaskId"]
    if ids is None or name in ids or name.split("_")[0] in ids:
        print(name + "|" + job.get("JobState", "UNKNOWN") + "|" + job.get("NodeList", ""))
"""


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop(pid_file: Path) -> None:
    pid = _pid(pid_file)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@contextmanager
def cluster(root: Path) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd under ``root``; yield the environment commands need
    (``SLURM_CONF``, and ``PATH`` with ``sacct``); stop them all afterwards, whatever happened."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    conf = root / "slurm.conf"
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    conf.write_text(_conf(root, host, cpus, memory_mb=4096))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    key, munge = root / "munge" / "munge.key", root / "munge"
    try:
        subprocess.run([_which("mungekey"), "-c", "-f", "-k", str(key)], check=True, timeout=30)
        key.chmod(0o600)
        subprocess.run(
            [
                _which("munged"),
                "--force",
                f"--socket={munge}/munge.sock",
                f"--key-file={key}",
                f"--log-file={munge}/munged.log",
                f"--pid-file={munge}/munged.pid",
                f"--seed-file={munge}/munged.seed",
            ],
            check=True,
            timeout=30,
        )
        subprocess.run([_which("slurmctld"), "-f", str(conf)], env=env, check=True, timeout=30)
        subprocess.run(
            [_which("slurmd"), "-f", str(conf), "-N", "pbnode"], env=env, check=True, timeout=30
        )
        _wait_idle(env, root)
        bin_dir = root / "bin"
        bin_dir.mkdir(exist_ok=True)
        sacct = bin_dir / "sacct"
        sacct.write_text(SACCT.format(python=sys.executable))
        sacct.chmod(0o755)
        yield {"SLURM_CONF": str(conf), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    finally:
        for pid_file in (root / "slurmd.pid", root / "slurmctld.pid", munge / "munged.pid"):
            _stop(pid_file)


def _wait_idle(env: dict[str, str], root: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30
        )
        if done.stdout.strip() == "idle":
            return
        time.sleep(0.5)
    logs = "".join(
        (root / name).read_text(errors="replace")[-1500:]
        for name in ("slurmctld.log", "slurmd.log")
        if (root / name).is_file()
    )
    raise RuntimeError(f"the test cluster's node did not become idle in {timeout:.0f} s:\n{logs}")


def jobs(env: dict[str, str]) -> list[dict[str, str]]:
    """Every job the controller knows (running, pending and recently ended), as
    ``scontrol show job`` fields."""
    done = subprocess.run(
        ["scontrol", "show", "job", "-o"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = []
    for line in done.stdout.splitlines():
        fields = dict(
            part.split("=", 1) for part in line.split() if "=" in part and not part.startswith("=")
        )
        if fields.get("JobId"):
            out.append(fields)
    return out
