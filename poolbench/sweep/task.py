"""The task function every job of a command runs (Hydra calls it, in this process or in a
launcher's worker), and the resolver that names each run's directory.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from poolbench.core import defaults
from poolbench.core.config import NON_IDENTITY_KEYS, RunConfig, run_name
from poolbench.core.errors import PoolbenchError, StopCommand, StorageError
from poolbench.core.record import RECORD_NAME, read_ok_record
from poolbench.measure.device import claim_gpu
from poolbench.run.homecoming import RETURNED_FILES
from poolbench.run.runner import execute
from poolbench.run.watchdog import stop_with_parent
from poolbench.sweep.callbacks import JobResult, worst
from poolbench.sweep.plugins import (
    JOB_FILES_RESOLVER,
    JOBLIB,
    MAIN_PID_ENV,
    job_files_dir,
    runs_elsewhere,
    threads_per_run,
)
from poolbench.ui.progress import RunProgress

log = logging.getLogger("poolbench")

# The command's working directory, set for every job in its config (hydra.job.env_set) by
# ``poolbench.sweep.outcome.run_plan``: a joblib worker kept from an earlier command in this process
# (a notebook, the tests) may sit in another directory, and Hydra's runtime.cwd is the worker's.
LAUNCH_CWD_ENV = "POOLBENCH_CWD"


# Where jobs on a cluster's nodes keep their runs when the command's results directory is not
# on a disk they share (set in the nodes' environment, e.g. Ray's runtime_env): each record
# then comes home with its job's return value (poolbench.run.homecoming).
WORKER_RESULTS_ENV = "POOLBENCH_WORKER_RESULTS"

# The planned runs whose record at the command's home says ok, set for every job of a Ray
# command (hydra.job.env_set): a job on a node whose disk lacks the run (its own results path,
# or a node that was replaced) hands it back as skipped, and the command takes the record at
# home (poolbench.sweep.outcome.come_home), instead of training it again.
OK_AT_HOME_ENV = "POOLBENCH_OK_AT_HOME"


def _run_dir(cwd: str, results_dir: str, *, _root_: DictConfig) -> str:
    """``hydra.run.dir`` / ``hydra.sweep.subdir``: <results_dir>/runs/<run_name>, absolute;
    under ``$POOLBENCH_WORKER_RESULTS`` where the process resolving it has that set."""
    env_set = OmegaConf.select(_root_, "hydra.job.env_set", default=None)
    cwd = (env_set or {}).get(LAUNCH_CWD_ENV) or cwd
    keys = [k for k in _root_ if k not in NON_IDENTITY_KEYS]
    config = OmegaConf.to_container(OmegaConf.masked_copy(_root_, keys), resolve=True)
    base = Path(results_dir) if os.path.isabs(results_dir) else Path(cwd) / results_dir
    if os.environ.get(WORKER_RESULTS_ENV):
        base = Path(os.environ[WORKER_RESULTS_ENV]).expanduser().resolve()
    return str(base / "runs" / run_name(config))


def register_resolvers() -> None:
    """``${pb_run_dir:...}`` for the configs (``hydra.run.dir``, ``hydra.sweep.subdir``) and
    ``${pb_job_files:...}`` (submitit's folder): wherever a job's config resolves, this process
    or a launcher's worker."""
    OmegaConf.register_new_resolver("pb_run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver(JOB_FILES_RESOLVER, job_files_dir, replace=True)


register_resolvers()  # on import: a worker imports this module to find the task function


def task(cfg: DictConfig) -> JobResult:
    """Hydra task function: one run, recorded in Hydra's output directory for it; returns
    the run's objective (a float, the worst value for a failed run; see
    :mod:`poolbench.sweep.callbacks`) carrying the record.

    Under a parallel launcher the job learns from the launcher's config how many runs share
    this machine, gives itself its share of the CPU threads, and holds one GPU of its own when
    there are several. A job a sweeper composed as it went is checked here: one that cannot
    be configured is logged and handed back as failed.
    """
    hc = HydraConfig.get()
    config = OmegaConf.to_container(cfg, resolve=True)
    objective = str(config.get("objective", defaults.METRIC))
    try:
        run = RunConfig.from_dict(config, overrides=list(hc.overrides.task))
    except PoolbenchError as err:  # only a job composed after plan() can get here
        log.error("job %s failed: %s", " ".join(hc.overrides.task), err)
        return JobResult.failed(objective, f"{type(err).__name__}: {err}")
    threads = threads_per_run(hc.launcher)
    if threads is not None:
        torch.set_num_threads(threads)
    in_main_process = os.environ.get(MAIN_PID_ENV) == str(os.getpid())
    if not in_main_process and hc.launcher.get("_target_") == JOBLIB:
        stop_with_parent(int(os.environ[MAIN_PID_ENV]))  # no orphans training on
    live = run.progress and in_main_process and sys.stdout.isatty()
    observer = RunProgress(run.run_name, live=live)
    output_dir = Path(hc.runtime.output_dir)
    skipped = not run.rerun and read_ok_record(output_dir / RECORD_NAME) is not None
    at_home = str((hc.job.get("env_set") or {}).get(OK_AT_HOME_ENV) or "").split(",")
    if not skipped and not run.rerun and run.run_name in at_home:
        log.info("%s: ok at the command's home, not on this node: skipped", run.run_name)
        return JobResult(worst(objective), None, run.objective, skipped=True)
    with claim_gpu(output_dir.parent.parent / ".gpu-locks"):
        try:
            record = execute(run, output_dir, observer, in_run_latency=_times_itself(run, hc))
        except StorageError as err:  # every later job would hit it too: stop the command
            raise StopCommand(err) from None
    files = {}
    for name in RETURNED_FILES:  # they travel home with the record (no shared disk needed)
        if (output_dir / name).is_file():
            files[name] = (output_dir / name).read_text(encoding="utf-8")
    return JobResult.of(record, run.objective, skipped=skipped, files=files)


def _times_itself(run: RunConfig, hc: DictConfig) -> bool:
    """Whether the run times its own latency: not in a sweep whose end times every
    configuration interleaved on this machine (``latency_interleaved``), where those figures
    are the ones compared; runs on cluster nodes do, as the sweep cannot time them."""
    if hc.mode != RunMode.MULTIRUN or not run.latency_interleaved:
        return True
    return runs_elsewhere(hc.launcher)
