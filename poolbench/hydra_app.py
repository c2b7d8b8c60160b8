"""The one place Hydra touches poolbench.

- ``plan``: compose the config of every run a command line asks for (the same expansion as
  Hydra's basic sweeper), turn each into a :class:`RunConfig` and validate it, so bad input
  fails in one line before anything runs.
- ``launch``: hand the same command line to Hydra's real run/multirun machinery, so sweepers
  and launcher plugins (``hydra/launcher=joblib``, ``submitit_slurm``) work unchanged.
- ``task``: Hydra's task function; converts the ``DictConfig`` and calls the library.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from poolbench.config import NON_IDENTITY_KEYS, RunConfig, run_name
from poolbench.device import available_cpus, claim_gpu, default_parallel_jobs, threads_per_job
from poolbench.errors import ConfigError
from poolbench.paths import config_dir
from poolbench.runner import execute, validate

CONFIG_NAME = "config"


def _run_dir(cwd: str, results_dir: str, *, _root_: DictConfig) -> str:
    """``hydra.run.dir`` / ``hydra.sweep.subdir``: <results_dir>/runs/<run_name>, absolute."""
    keys = [k for k in _root_ if k not in NON_IDENTITY_KEYS]
    config = OmegaConf.to_container(OmegaConf.masked_copy(_root_, keys), resolve=True)
    base = Path(results_dir) if os.path.isabs(results_dir) else Path(cwd) / results_dir
    return str(base / "runs" / run_name(config))


OmegaConf.register_new_resolver("pb_run_dir", _run_dir, replace=True)


@dataclass(frozen=True)
class Plan:
    """What a command line will run."""

    runs: list[RunConfig]
    multirun: bool
    results_dir: Path
    launcher_overrides: tuple[str, ...] = ()

    def run_dir(self, cfg: RunConfig) -> Path:
        return self.results_dir / "runs" / cfg.run_name


def one_line(err: Exception) -> str:
    """Hydra's multi-line messages as one line, the user-relevant part first."""
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
        group, _, value = err.missing_cfg_file.rpartition("/")
        if group:
            return f"unknown {group} '{value}'; available: {', '.join(sorted(err.options))}"
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    keep = []
    for ln in lines:
        if ln.startswith(("full_key:", "object_type=", "Set the environment variable")):
            break
        keep.append(ln)
    text = " ".join(keep) or type(err).__name__
    return re.sub(r"\s+", " ", text)


def _compose(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    from hydra import compose

    return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)


def _expand(overrides: list[str], sweeper_params: dict[str, str]) -> list[list[str]]:
    """Every job's override list, as Hydra's basic sweeper builds it (command line wins)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    arguments = [f"{k}={v}" for k, v in sweeper_params.items()] + list(overrides)
    parsed = parser.parse_overrides(arguments)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [job for batch in batches for job in batch]


def plan(overrides: list[str], multirun: bool = False) -> Plan:
    """Compose and validate every run of ``overrides``; raise ConfigError in one line."""
    from hydra import initialize_config_dir

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            config_dir=str(config_dir()), version_base="1.3", job_name="poolbench"
        ):
            base_overrides = [
                o.input_line
                for o in OverridesParser.create().parse_overrides(overrides)
                if not o.is_sweep_override()
            ]
            head = _compose(base_overrides, with_hydra=True)
            launcher_overrides = _launcher_defaults(head.hydra.launcher, overrides)
            params = head.hydra.sweeper.get("params")
            sweeper_params = {} if params is None else dict(OmegaConf.to_container(params))
            sweep_args = len(base_overrides) != len(overrides)
            if sweeper_params or sweep_args:
                multirun = True
            jobs = _expand(overrides, sweeper_params) if multirun else [list(overrides)]
            runs = []
            for job in jobs:
                config = OmegaConf.to_container(_compose(job), resolve=True)
                runs.append(RunConfig.from_dict(config, overrides=job))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None
    finally:
        GlobalHydra.instance().clear()

    checked: set[str] = set()
    for run in runs:
        key = repr((run.pool, run.head, run.model, run.data, run.precision, run.device))
        if key not in checked:
            validate(run)
            checked.add(key)
    results_dir = Path(runs[0].results_dir).expanduser().resolve()
    return Plan(runs, multirun, results_dir, launcher_overrides)


def _launcher_defaults(launcher: DictConfig, overrides: list[str]) -> tuple[str, ...]:
    """poolbench's defaults for a launcher plugin's settings the command line leaves alone.

    joblib's own ``n_jobs=-1`` (one job per CPU) would put every job on every GPU; poolbench
    runs one job per GPU, or one per two CPUs without GPUs (see ``default_parallel_jobs``).
    Given as an override rather than a ``configs/hydra/launcher/joblib.yaml``, which Hydra would
    merge with the plugin's schema of the same name through a deprecated path.
    """
    if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return ()
    if any(o.startswith(("hydra.launcher.n_jobs=", "++hydra.launcher.n_jobs=")) for o in overrides):
        return ()
    return (f"hydra.launcher.n_jobs={default_parallel_jobs()}",)


# Set by ``launch`` for the jobs it starts (inherited by joblib and submitit worker processes).
MAIN_PID_ENV = "POOLBENCH_MAIN_PID"
SWEEP_SIZE_ENV = "POOLBENCH_SWEEP_SIZE"


def _concurrent_jobs(launcher: DictConfig) -> int | None:
    """How many runs the launcher trains at once on this machine (None: leave threads alone)."""
    target = str(launcher.get("_target_", ""))
    sweep_size = int(os.environ.get(SWEEP_SIZE_ENV, "1"))
    if target.endswith("JoblibLauncher"):
        n_jobs = int(launcher.n_jobs)
        return min(available_cpus() if n_jobs < 0 else n_jobs, sweep_size)
    if target.endswith("submitit_launcher.LocalLauncher"):  # every job starts at once
        return sweep_size
    if target.endswith("submitit_launcher.SlurmLauncher"):  # alone on its allocation
        return 1
    return None  # in-process runs keep torch's default


def task(cfg: DictConfig) -> dict[str, Any]:
    """Hydra task function: one run, recorded in Hydra's output directory for it.

    Under a parallel launcher the job learns from the launcher's config how many runs share
    this machine, gives itself its share of the CPU threads, and holds one GPU of its own when
    there are several.
    """
    hc = HydraConfig.get()
    config = OmegaConf.to_container(cfg, resolve=True)
    run = RunConfig.from_dict(config, overrides=list(hc.overrides.task))
    concurrent = _concurrent_jobs(hc.launcher)
    if concurrent is not None:
        cpus = hc.launcher.get("cpus_per_task")
        torch.set_num_threads(int(cpus) if cpus else threads_per_job(concurrent))
    in_main_process = os.environ.get(MAIN_PID_ENV) == str(os.getpid())
    live = run.progress and in_main_process and sys.stdout.isatty()
    output_dir = Path(hc.runtime.output_dir)
    with claim_gpu(output_dir.parent.parent / ".gpu-locks"):
        return execute(run, output_dir, live=live)


def launch(
    overrides: list[str],
    multirun: bool,
    extra_args: list[str] | None = None,
    sweep_size: int = 1,
) -> None:
    """Run the command line through Hydra's own entry point (``@hydra.main``)."""
    hydra.version.setbase("1.3")  # else Hydra would chdir into each run's directory
    argv = ["poolbench", *overrides, *(["--multirun"] if multirun else []), *(extra_args or [])]
    saved = sys.argv
    sys.argv = argv
    os.environ[MAIN_PID_ENV] = str(os.getpid())
    os.environ[SWEEP_SIZE_ENV] = str(sweep_size)
    try:
        main = hydra.main(
            config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3"
        )(task)
        main()
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
