"""What poolbench decides for Hydra's launcher and sweeper plugins, by their configs' ``_target_``:
its defaults for settings the command line leaves alone, the settings it refuses, and how many
runs a launcher trains at once on one machine.
"""

from __future__ import annotations

import math
import os
import stat
from enum import Enum
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from poolbench.core import metrics
from poolbench.core.errors import ConfigError
from poolbench.measure.device import available_cpus, default_parallel_jobs, threads_per_job

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
RACE_SWEEPER = "hydra_plugins.poolbench_race.race_sweeper.RaceSweeper"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
# poolbench's Slurm presets: submitit's launcher, waiting for every job (poolbench.sweep.slurm)
SLURM = "hydra_plugins.poolbench_slurm.slurm_launcher.SlurmLauncher"
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
# Launchers whose jobs run on other machines: the command cannot time them interleaved (Ray
# too where it joins a cluster: ray.init.address set).
CLUSTER_LAUNCHERS = frozenset({SUBMITIT_SLURM, SLURM})
SUBMITIT_LAUNCHERS = frozenset({SUBMITIT_LOCAL, SUBMITIT_SLURM, SLURM})
JOB_FILES_RESOLVER = "pb_job_files"
# hydra-submitit-launcher's own: a preset that sets another folder keeps it
SUBMITIT_DEFAULT_FOLDER = "${hydra.sweep.dir}/.submitit/%j"


def _unresolved(node: DictConfig, key: str) -> Any:
    """``node[key]`` as written, interpolations unresolved (None when absent)."""
    if key not in node:
        return None
    return OmegaConf.to_container(node, resolve=False).get(key)


def job_files_dir(sweep_dir: str) -> str:
    """submitit's folder for the sweep in ``sweep_dir`` (``${pb_job_files:...}``):
    ``<cache>/jobs/<sweep name>-<hash of its path>``, created private to the user (0700).
    submitit keeps there the pickles of each job's function and result, which it loads, and
    the jobs' stdout and stderr. The results directory, often a shared scratch disk, is never
    that folder: nothing read from it runs. The cache is under the home directory, which the
    nodes of most clusters share; elsewhere set ``hydra.launcher.submitit_folder``."""
    import hashlib

    from poolbench.core.paths import cache_dir

    absolute = os.path.abspath(sweep_dir)
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:8]
    path = cache_dir() / "jobs" / f"{os.path.basename(absolute)}-{digest}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = os.lstat(path)
    if stat.S_ISLNK(found.st_mode) or found.st_uid != os.getuid():
        raise ConfigError(
            f"{path} is not a folder of yours (a link, or another user's): submitit's files "
            "must be private; set POOLBENCH_CACHE or hydra.launcher.submitit_folder"
        )
    os.chmod(path, 0o700)
    return str(path)


# Set for every job of a command (hydra.job.env_set): the command's process id and how many
# jobs its sweep launches.
MAIN_PID_ENV = "POOLBENCH_MAIN_PID"
SWEEP_SIZE_ENV = "POOLBENCH_SWEEP_SIZE"


def _keys(overrides: list[str]) -> set[str]:
    return {o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)}


def launcher_defaults(launcher: DictConfig, overrides: list[str]) -> tuple[str, ...]:
    """poolbench's defaults for a launcher plugin's settings the command line leaves alone.

    joblib's own ``n_jobs=-1`` (one job per CPU) would put every job on every GPU; poolbench
    runs one job per GPU, or one per two CPUs without GPUs (see ``default_parallel_jobs``).
    Given as an override rather than a ``configs/hydra/launcher/joblib.yaml``, which Hydra would
    merge with the plugin's schema of the same name through a deprecated path. Ray gives each
    run one GPU where this machine has GPUs (``ray.remote.num_gpus``; a cluster whose GPUs
    this machine lacks takes ``hydra.launcher.ray.remote.num_gpus=1`` on the command line).
    """
    target, keys = launcher.get("_target_"), _keys(overrides)
    if (
        target in SUBMITIT_LAUNCHERS
        and "hydra.launcher.submitit_folder" not in keys
        and _unresolved(launcher, "submitit_folder") == SUBMITIT_DEFAULT_FOLDER
    ):
        # submitit hands jobs and results over as pickles in this folder: not in the results
        # directory, from which nothing is ever loaded as code (see job_files_dir)
        folder = f"${{{JOB_FILES_RESOLVER}:${{hydra.sweep.dir}}}}/%j"
        return (f"hydra.launcher.submitit_folder='{folder}'",)
    if target == JOBLIB and "hydra.launcher.n_jobs" not in keys:
        return (f"hydra.launcher.n_jobs={default_parallel_jobs()}",)
    if target == RAY and "hydra.launcher.ray.remote.num_gpus" not in keys:
        import torch

        if torch.cuda.is_available():
            return ("++hydra.launcher.ray.remote.num_gpus=1",)
    return ()


def runs_elsewhere(launcher: DictConfig) -> bool:
    """Whether the launcher's jobs run on other machines than the command's."""
    target = launcher.get("_target_")
    if target == RAY:
        ray = launcher.get("ray") or {}
        return (ray.get("init") or {}).get("address") is not None
    return target in CLUSTER_LAUNCHERS


def _ray_remote(launcher: DictConfig) -> dict[str, Any]:
    ray = launcher.get("ray") or {}
    return dict(ray.get("remote") or {})


def _count(n: Any, what: str) -> str:
    return f"{n} {what}{'s' * (str(n) != '1')}"


def resources(launcher: DictConfig, defaults: tuple[str, ...] = ()) -> str:
    """What each run asks for, and where, under ``launcher`` (with poolbench's ``defaults``
    applied), in one line for ``--dry-run``."""
    target = launcher.get("_target_")
    values = dict(o.lstrip("+").split("=", 1) for o in defaults)
    if target == JOBLIB:
        n_jobs = int(values.get("hydra.launcher.n_jobs", launcher.get("n_jobs", 1)))
        at_once = available_cpus() if n_jobs < 0 else n_jobs
        return (
            f"joblib: {at_once} run{'s' * (at_once != 1)} at once on this machine, "
            f"{threads_per_job(at_once)} CPU threads each"
        )
    if target == SUBMITIT_LOCAL:
        return "submitit (local): every run at once on this machine, as its own process"
    if target in (SUBMITIT_SLURM, SLURM):
        timeouts = int(launcher.get("max_num_timeout") or 0)
        asks = [
            _count(launcher.get(key), what)
            for key, what in (
                ("nodes", "node"),
                ("cpus_per_task", "CPU"),
                ("gpus_per_node", "GPU"),
            )
            if launcher.get(key) is not None
        ]
        asks += [f"{launcher.get('mem_gb')} GB"] * (launcher.get("mem_gb") is not None)
        asks += [f"{launcher.get('timeout_min')} min"] * (launcher.get("timeout_min") is not None)
        return (
            f"Slurm (sbatch, a job array of {launcher.get('array_parallelism')} at once): each "
            f"run asks partition {launcher.get('partition') or 'the default'} for "
            f"{', '.join(asks) or 'the defaults'}; requeued after preemption, and after a "
            f"timeout {_count(timeouts, 'time')}"
        )
    if target == RAY:
        remote = _ray_remote(launcher)
        gpus = values.get("hydra.launcher.ray.remote.num_gpus", remote.get("num_gpus") or 0)
        address = ((launcher.get("ray") or {}).get("init") or {}).get("address")
        where = "a Ray cluster this command starts on this machine"
        if address:
            where = "the running Ray cluster" + (f" at {address}" if address != "auto" else "")
        cpus = _count(remote.get("num_cpus") or 1, "CPU")
        return f"Ray: each run a task on {where}, asking {cpus} and {_count(gpus, 'GPU')}"
    return "in this process, one run after another"


def _name(value: Any) -> str:
    """An enum member's name (Optuna's config holds ``Direction.minimize``), else the text."""
    return value.name if isinstance(value, Enum) else str(value)


def sweeper_defaults(sweeper: DictConfig, objective: str, overrides: list[str]) -> tuple[str, ...]:
    """Optuna's direction from the objective's metric (``maximize`` for test_acc): the
    plugin's own default (``minimize``) would look for the worst accuracy. A direction set to
    the opposite of the metric's is refused, and so is a list of them (poolbench hands the
    sweeper one objective)."""
    if sweeper.get("_target_") != OPTUNA:
        return ()
    metric = metrics.get(objective, option="objective")
    want = "maximize" if metric.higher_is_better else "minimize"
    given = sweeper.get("direction")
    keys = _keys(overrides)
    if isinstance(given, ListConfig):
        raise ConfigError(
            f"expected hydra.sweeper.direction to be one direction (poolbench hands the sweeper "
            f"one objective, objective={objective}), got {[_name(d) for d in given]}"
        )
    given = _name(given)
    if given == want:
        return ()
    if "hydra.sweeper.direction" in keys or given != "minimize":
        raise ConfigError(
            f"hydra.sweeper.direction={given} contradicts objective={objective} "
            f"({metric.direction}); leave it unset: poolbench sets {want}"
        )
    return (f"hydra.sweeper.direction={want}",)


def concurrent_jobs(launcher: DictConfig) -> int | None:
    """How many runs the launcher trains at once on this machine (None: leave threads alone)."""
    target = launcher.get("_target_")
    sweep_size = int(os.environ.get(SWEEP_SIZE_ENV, "1"))
    if target == JOBLIB:
        n_jobs = int(launcher.n_jobs)
        return min(available_cpus() if n_jobs < 0 else n_jobs, sweep_size)
    if target == SUBMITIT_LOCAL:  # every job starts at once
        return sweep_size
    if target in (SUBMITIT_SLURM, SLURM):  # alone on its allocation
        return 1
    return None  # in-process runs keep torch's default


def threads_per_run(launcher: DictConfig) -> int | None:
    """The CPU threads a run gets under ``launcher`` (None: leave torch's default): what a
    cluster allocated to it (Slurm's ``cpus_per_task``, Ray's ``ray.remote.num_cpus``), else this
    machine's CPUs shared between the runs trained at once."""
    target = launcher.get("_target_")
    if target in (SUBMITIT_SLURM, SLURM) and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    if target == RAY:  # Ray allows fractions of a CPU: a thread at least
        return max(1, math.ceil(float(_ray_remote(launcher).get("num_cpus") or 1)))
    concurrent = concurrent_jobs(launcher)
    return None if concurrent is None else threads_per_job(concurrent)
