"""The one place Hydra touches poolbench.

- ``plan``: compose the config of every run a command line asks for (the same expansion as
  Hydra's basic sweeper), turn each into a :class:`RunConfig` and validate it, so bad input
  fails in one line before anything runs.
  Where the sweep cannot be expanded (a sweeper such as Optuna picks the values of
  ``interval(...)`` or ``choice(...)`` as it goes), the base config is checked up front and
  each job when it starts.
- ``launch``: hand the same command line to Hydra's real run/multirun machinery, so sweepers
  (``hydra/sweeper=optuna``) and launcher plugins (``hydra/launcher=joblib``,
  ``submitit_slurm``) work unchanged.
- ``task``: Hydra's task function; converts the ``DictConfig``, calls the library and returns
  the run's objective as a float for the sweeper (:class:`poolbench.sweep.callbacks.JobResult`).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from poolbench.core import metrics
from poolbench.core.config import NON_IDENTITY_KEYS, RunConfig, run_name
from poolbench.core.errors import ConfigError, PoolbenchError, StopCommand, StorageError
from poolbench.core.paths import config_dir
from poolbench.core.record import RECORD_NAME, read_ok_record, read_record
from poolbench.core.storage import check_writable_dir
from poolbench.measure.device import (
    available_cpus,
    claim_gpu,
    default_parallel_jobs,
    threads_per_job,
)
from poolbench.run.runner import execute, validate
from poolbench.run.watchdog import stop_with_parent
from poolbench.sweep.callbacks import JobResult

CONFIG_NAME = "config"
log = logging.getLogger("poolbench")


# The command's working directory, set for every job in its config (hydra.job.env_set) by
# ``poolbench.sweep.outcome.run_plan``: a joblib worker kept from an earlier command in this process
# (a notebook, the tests) may sit in another directory, and Hydra's runtime.cwd is the worker's.
LAUNCH_CWD_ENV = "POOLBENCH_CWD"


def _run_dir(cwd: str, results_dir: str, *, _root_: DictConfig) -> str:
    """``hydra.run.dir`` / ``hydra.sweep.subdir``: <results_dir>/runs/<run_name>, absolute."""
    env_set = OmegaConf.select(_root_, "hydra.job.env_set", default=None)
    cwd = (env_set or {}).get(LAUNCH_CWD_ENV) or cwd
    keys = [k for k in _root_ if k not in NON_IDENTITY_KEYS]
    config = OmegaConf.to_container(OmegaConf.masked_copy(_root_, keys), resolve=True)
    base = Path(results_dir) if os.path.isabs(results_dir) else Path(cwd) / results_dir
    return str(base / "runs" / run_name(config))


OmegaConf.register_new_resolver("pb_run_dir", _run_dir, replace=True)


@dataclass(frozen=True)
class PlannedRun:
    """One job of a command line: its overrides, its config (None when it did not compose),
    why it cannot run (None when it can), and its pool as built (``max(F=3, S=2, ...)``)."""

    overrides: tuple[str, ...]
    run: RunConfig | None
    error: str | None = None
    pool: str = ""
    exception: PoolbenchError | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Plan:
    """What a command line will run.

    ``expanded`` is False when the sweeper picks its jobs as it goes (Optuna's ``interval``,
    ``tag`` ...): then ``runs`` holds the base config alone and each job is validated when
    it starts.
    """

    runs: list[RunConfig]
    multirun: bool
    results_dir: Path
    launcher_overrides: tuple[str, ...] = ()
    jobs: tuple[PlannedRun, ...] = ()
    expanded: bool = True
    launcher: str = ""  # the launcher plugin's _target_
    # Hydra's output directories when the command line sets them (hydra.run.dir for a single
    # run, hydra.sweep.dir for a sweep), resolved once, absolute
    run_dir_override: Path | None = None
    sweep_dir: Path | None = None
    size: int | None = None  # jobs the sweep launches (None: the sweeper does not say)
    sweeper_overrides: tuple[str, ...] = ()

    @property
    def hydra_overrides(self) -> tuple[str, ...]:
        """What poolbench adds to the command line for the launcher and the sweeper."""
        return (*self.launcher_overrides, *self.sweeper_overrides)

    @property
    def on_cluster(self) -> bool:
        """Runs go to cluster nodes, so this process's machine is not theirs."""
        return self.launcher == SUBMITIT_SLURM

    def run_dir(self, cfg: RunConfig) -> Path:
        if self.run_dir_override is not None and not self.multirun:
            return self.run_dir_override
        return self.results_dir / "runs" / cfg.run_name

    @property
    def output_overrides(self) -> tuple[str, ...]:
        """The output directories as resolved here, for ``launch`` (``${now:...}`` in them
        must not resolve to another second there)."""
        if self.multirun:
            return () if self.sweep_dir is None else (f"hydra.sweep.dir={quoted(self.sweep_dir)}",)
        if self.run_dir_override is None:
            return ()
        return (f"hydra.run.dir={quoted(self.run_dir_override)}",)

    @property
    def failures(self) -> list[PlannedRun]:
        return [j for j in self.jobs if j.error is not None]


def quoted(value: object) -> str:
    """``value`` as a quoted Hydra override value (a path may hold commas, spaces, ``=``)."""
    return "'" + str(value).replace("'", "\\'") + "'"


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


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _expand(overrides: list[str], sweeper_params: dict[str, str]) -> list[list[str]] | None:
    """Every job's override list, the cartesian product the basic sweeper launches (the
    command line wins over the sweep file's ``hydra.sweeper.params``); None when a sweep is
    not a list of values (``interval(...)``: a sweeper such as Optuna picks those values)."""
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    arguments = [f"{k}={v}" for k, v in sweeper_params.items()] + list(overrides)
    choices: dict[str, list[str]] = {}
    for override in parser.parse_overrides(arguments):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            return None
    return [list(job) for job in itertools.product(*choices.values())]


def plan(overrides: list[str], multirun: bool = False, collect: bool = False) -> Plan:
    """Compose and validate every run of ``overrides``.

    Every job is checked; with ``collect`` each problem is kept in ``Plan.jobs``
    (``--dry-run``), otherwise the first raises :class:`ConfigError` in one line (naming the
    run when there are several).
    """
    from hydra import initialize_config_dir

    GlobalHydra.instance().clear()
    jobs: list[PlannedRun] = []
    expanded = True
    try:
        with initialize_config_dir(
            config_dir=str(config_dir()), version_base="1.3", job_name="poolbench"
        ):
            base_overrides = [
                o.input_line
                for o in OverridesParser.create().parse_overrides(overrides)
                if not o.is_sweep_override()
            ]
            try:
                head = _compose(base_overrides, with_hydra=True)
            except (HydraException, OmegaConfBaseException) as err:
                unknown = re.match(r"Could not override '([^']+)'", str(err))
                if unknown is None:
                    raise
                raise ConfigError(_unknown_key(base_overrides, unknown.group(1))) from None
            launcher_overrides = _launcher_defaults(head.hydra.launcher, overrides)
            objective = str(head.get("objective", "test_acc"))
            sweeper_overrides = _sweeper_defaults(head.hydra.sweeper, objective, overrides)
            params = head.hydra.sweeper.get("params")
            sweeper_params = {} if params is None else dict(OmegaConf.to_container(params))
            if sweeper_params or len(base_overrides) != len(overrides):
                multirun = True
            run_dir, sweep_dir = _output_dirs(head, overrides, multirun)
            expansion = [list(overrides)]
            if multirun:
                found = _expand(overrides, sweeper_params)
                is_basic = head.hydra.sweeper.get("_target_") == BASIC_SWEEPER
                if found is None or not is_basic:
                    expanded, expansion = False, [base_overrides]
                else:
                    expansion = found
            jobs = [_compose_job(job) for job in expansion]
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None
    finally:
        GlobalHydra.instance().clear()

    composed = [j.run for j in jobs if j.run is not None]
    if composed:  # before validation, which may read (decode) a whole dataset
        check_output_dirs(
            Path(composed[0].results_dir).expanduser().resolve(),
            run_dir,
            sweep_dir,
            composed[0] if len(composed) == 1 else None,
        )
    jobs = _validate_jobs(jobs)
    failures = [(i, j) for i, j in enumerate(jobs, 1) if j.error is not None]
    if failures and (not collect or len(jobs) == 1):
        i, job = failures[0]
        kind = type(job.exception) if job.exception is not None else ConfigError
        if len(jobs) == 1:
            raise kind(job.error)
        more = f" (and {len(failures) - 1} more)" * (len(failures) > 1)
        raise kind(
            f"run {i} of {len(jobs)} ({' '.join(job.overrides)}): {job.error}{more}; "
            f"--dry-run lists every run"
        )
    runs = [j.run for j in jobs if j.run is not None]
    results_dir = Path(runs[0].results_dir).expanduser().resolve()
    target = str(head.hydra.launcher.get("_target_", ""))
    trials = head.hydra.sweeper.get("n_trials")
    size = len(jobs) if expanded else (int(trials) if isinstance(trials, int) else None)
    return Plan(
        runs,
        multirun,
        results_dir,
        launcher_overrides,
        tuple(jobs),
        expanded,
        target,
        size=size,
        sweeper_overrides=sweeper_overrides,
        run_dir_override=run_dir,
        sweep_dir=sweep_dir,
    )


def _output_dirs(
    head: DictConfig, overrides: list[str], multirun: bool
) -> tuple[Path | None, Path | None]:
    """``hydra.run.dir`` (single run) and ``hydra.sweep.dir`` (sweep) as the command line sets
    them, resolved (None where it does not). ``hydra.sweep.subdir`` is refused: poolbench keeps
    each run of a sweep in ``<results_dir>/runs/<run_name>/``, where skip, resume and reports
    find it."""
    keys = {o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)}
    if "hydra.sweep.subdir" in keys:
        raise ConfigError(
            "hydra.sweep.subdir cannot be set: each run of a sweep lives in "
            "<results_dir>/runs/<run_name>/ (where skip, resume and reports find it); set "
            "results_dir to choose where, hydra.sweep.dir for the sweep's own files"
        )
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if key not in keys:
        return None, None
    HydraConfig.instance().set_config(head)  # for ${hydra:...} in the value
    value = OmegaConf.select(head, key)
    path = Path(str(value)).expanduser()
    if not path.is_absolute():
        path = Path(str(head.hydra.runtime.cwd)) / path
    path = path.resolve()
    return (None, path) if multirun else (path, None)


def check_output_dirs(
    results_dir: Path, run_dir: Path | None, sweep_dir: Path | None, run: RunConfig | None
) -> None:
    """Every directory the command will write in must be one it can write in, and a run
    directory the user named must not hold another run's record (it would be skipped as
    done, or overwritten). Raises :class:`~poolbench.core.errors.PoolbenchError`."""
    check_writable_dir(results_dir, "results_dir")
    if sweep_dir is not None:
        check_writable_dir(sweep_dir, "hydra.sweep.dir")
    if run_dir is None:
        return
    check_writable_dir(run_dir, "hydra.run.dir")
    record = run_dir / RECORD_NAME
    if run is not None and record.is_file():
        try:
            other = read_record(record).get("run_id")
        except (OSError, ValueError, AttributeError):
            other = None
        if other != run.run_id:
            raise ConfigError(
                f"hydra.run.dir {run_dir} holds the record of another run (run_id {other}, "
                f"this one is {run.run_id}); choose another directory, or leave hydra.run.dir "
                f"alone (runs then go to <results_dir>/runs/<run_name>/)"
            )


def _compose_job(job: list[str]) -> PlannedRun:
    try:
        config = OmegaConf.to_container(_compose(job), resolve=True)
        return PlannedRun(tuple(job), RunConfig.from_dict(config, overrides=job))
    except (HydraException, OmegaConfBaseException) as err:
        unknown = re.match(r"Could not override '([^']+)'", str(err))
        message = _unknown_key(job, unknown.group(1)) if unknown else one_line(err)
        return PlannedRun(tuple(job), None, message)
    except PoolbenchError as err:
        return PlannedRun(tuple(job), None, str(err), exception=err)


def _unknown_key(job: list[str], key: str) -> str:
    """``pool.foo=1``: name the key and the valid keys where it was meant to go."""
    parser = OverridesParser.create()
    rest = [o for o in job if parser.parse_override(o).key_or_group != key]
    parent, _, leaf = key.rpartition(".")
    try:
        node = OmegaConf.select(_compose(rest), parent) if parent else _compose(rest)
    except (HydraException, OmegaConfBaseException):
        node = None
    if not isinstance(node, DictConfig):
        return f"unknown key '{key}'"
    valid = sorted(k for k in node if k not in ("hydra", "name"))
    where = f"{parent} '{node['name']}'" if parent and "name" in node else (parent or "the config")
    return f"unknown key '{key}': {where} has no '{leaf}'; valid keys: {', '.join(valid)}"


def _validate_jobs(jobs: list[PlannedRun]) -> list[PlannedRun]:
    """Validate each distinct model build once (seeds share it); keep the built pool."""
    seen: dict[str, tuple[PoolbenchError | None, str]] = {}
    out = []
    for job in jobs:
        run = job.run
        if run is None:
            out.append(job)
            continue
        key = repr((run.pool, run.head, run.model, run.data, run.precision, run.device))
        if key not in seen:
            try:
                seen[key] = (None, validate(run))
            except PoolbenchError as err:
                seen[key] = (err, "")
        error, pool = seen[key]
        message = None if error is None else str(error)
        out.append(PlannedRun(job.overrides, run, message, pool, exception=error))
    return out


# The launcher plugins poolbench knows, by their configs' ``_target_``.
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def _launcher_defaults(launcher: DictConfig, overrides: list[str]) -> tuple[str, ...]:
    """poolbench's defaults for a launcher plugin's settings the command line leaves alone.

    joblib's own ``n_jobs=-1`` (one job per CPU) would put every job on every GPU; poolbench
    runs one job per GPU, or one per two CPUs without GPUs (see ``default_parallel_jobs``).
    Given as an override rather than a ``configs/hydra/launcher/joblib.yaml``, which Hydra would
    merge with the plugin's schema of the same name through a deprecated path.
    """
    if launcher.get("_target_") != JOBLIB:
        return ()
    keys = {o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)}
    if "hydra.launcher.n_jobs" in keys:
        return ()
    return (f"hydra.launcher.n_jobs={default_parallel_jobs()}",)


OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def _name(value: Any) -> str:
    """An enum member's name (Optuna's config holds ``Direction.minimize``), else the text."""
    return value.name if isinstance(value, Enum) else str(value)


def _sweeper_defaults(sweeper: DictConfig, objective: str, overrides: list[str]) -> tuple[str, ...]:
    """Optuna's direction from the objective's metric (``maximize`` for test_acc): the
    plugin's own default (``minimize``) would look for the worst accuracy. A direction set to
    the opposite of the metric's is refused, and so is a list of them (poolbench hands the
    sweeper one objective)."""
    if sweeper.get("_target_") != OPTUNA:
        return ()
    metric = metrics.get(objective, option="objective")
    want = "maximize" if metric.higher_is_better else "minimize"
    given = sweeper.get("direction")
    keys = {o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)}
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


# Set by ``launch`` for the jobs it starts (inherited by joblib and submitit worker processes).
MAIN_PID_ENV = "POOLBENCH_MAIN_PID"
SWEEP_SIZE_ENV = "POOLBENCH_SWEEP_SIZE"


def _concurrent_jobs(launcher: DictConfig) -> int | None:
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
    objective = str(config.get("objective", "test_acc"))
    try:
        run = RunConfig.from_dict(config, overrides=list(hc.overrides.task))
    except PoolbenchError as err:  # only a job composed after plan() can get here
        log.error("job %s failed: %s", " ".join(hc.overrides.task), err)
        return JobResult.failed(objective, f"{type(err).__name__}: {err}")
    concurrent = _concurrent_jobs(hc.launcher)
    if concurrent is not None:
        cpus = hc.launcher.get("cpus_per_task")
        torch.set_num_threads(int(cpus) if cpus else threads_per_job(concurrent))
    in_main_process = os.environ.get(MAIN_PID_ENV) == str(os.getpid())
    if not in_main_process and hc.launcher.get("_target_") == JOBLIB:
        stop_with_parent(int(os.environ[MAIN_PID_ENV]))  # no orphans training on
    live = run.progress and in_main_process and sys.stdout.isatty()
    output_dir = Path(hc.runtime.output_dir)
    skipped = not run.rerun and read_ok_record(output_dir / RECORD_NAME) is not None
    with claim_gpu(output_dir.parent.parent / ".gpu-locks"):
        try:
            record = execute(run, output_dir, live=live)
        except StorageError as err:  # every later job would hit it too: stop the command
            raise StopCommand(err) from None
    return JobResult.of(record, run.objective, skipped=skipped)


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
