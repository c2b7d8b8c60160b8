"""What poolbench decides for Hydra's launcher and sweeper plugins, by their configs' ``_target_``:
its defaults for settings the command line leaves alone, the settings it refuses, and how many
runs a launcher trains at once on one machine.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig

from poolbench.core import metrics
from poolbench.core.errors import ConfigError
from poolbench.measure.device import available_cpus, default_parallel_jobs

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
RACE_SWEEPER = "hydra_plugins.poolbench_race.race_sweeper.RaceSweeper"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
# Launchers whose jobs run on other machines: the command cannot time them interleaved.
CLUSTER_LAUNCHERS = frozenset({SUBMITIT_SLURM})
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
    merge with the plugin's schema of the same name through a deprecated path.
    """
    if launcher.get("_target_") != JOBLIB:
        return ()
    if "hydra.launcher.n_jobs" in _keys(overrides):
        return ()
    return (f"hydra.launcher.n_jobs={default_parallel_jobs()}",)


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
    if target == SUBMITIT_SLURM:  # alone on its allocation
        return 1
    return None  # in-process runs keep torch's default
