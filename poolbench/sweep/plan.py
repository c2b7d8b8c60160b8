"""Plan a command line: compose the config of every run it asks for (the jobs Hydra's basic
sweeper would launch), turn each into a :class:`~poolbench.core.config.RunConfig` and validate
it, so that bad input fails in one line before anything runs.

Where the sweep cannot be expanded here (a sweeper such as Optuna picks the values of
``interval(...)`` or ``choice(...)`` as it goes), the base config is checked up front and each
job when it starts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from poolbench.core import defaults
from poolbench.core.config import RunConfig
from poolbench.core.errors import ConfigError, PoolbenchError, one_line
from poolbench.core.paths import CONFIG_NAME, config_dir
from poolbench.core.record import RECORD_NAME, read_record
from poolbench.core.storage import check_writable_dir
from poolbench.run.runner import describe_compute, validate
from poolbench.sweep.plugins import (
    BASIC_SWEEPER,
    RACE_SWEEPER,
    launcher_defaults,
    resources,
    runs_elsewhere,
    sweeper_defaults,
)
from poolbench.sweep.race import RaceSettings, configurations
from poolbench.sweep.task import register_resolvers


@dataclass(frozen=True)
class PlannedRun:
    """One job of a command line: its overrides, its config (None when it did not compose),
    why it cannot run (None when it can), and its pool as built (``max(F=3, S=2, ...)``)."""

    overrides: tuple[str, ...]
    run: RunConfig | None
    error: str | None = None
    pool: str = ""
    exception: PoolbenchError | None = field(default=None, compare=False, repr=False)
    compute: str = ""  # --dry-run: how it will compute (layout, precision, measured or set)


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
    race: RaceSettings | None = None  # hydra/sweeper=race: its settings
    configurations: int = 0  # the race's configurations (each raced over race.seeds)
    resources: str = ""  # where the launcher runs each run and what it asks for
    on_cluster: bool = False  # the launcher's jobs run on other machines: not timed here

    @property
    def hydra_overrides(self) -> tuple[str, ...]:
        """What poolbench adds to the command line for the launcher and the sweeper."""
        return (*self.launcher_overrides, *self.sweeper_overrides)

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


def hydra_message(err: Exception) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line, the user-relevant part first
    (an unknown group option as ``unknown pool 'x'; available: ...``)."""
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
        group, _, value = err.missing_cfg_file.rpartition("/")
        if group:
            return f"unknown {group} '{value}'; available: {', '.join(sorted(err.options))}"
    lines = str(err).splitlines()
    detail = ("full_key:", "object_type=", "Set the environment variable")
    cut = next((i for i, ln in enumerate(lines) if ln.strip().startswith(detail)), len(lines))
    return re.sub(r"\s+", " ", one_line("\n".join(lines[:cut]))) or type(err).__name__


def _compose(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    from hydra import compose

    return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)


def _expand(overrides: list[str], sweeper_params: dict[str, str]) -> list[list[str]] | None:
    """Every job's override list, as Hydra's basic sweeper expands them (the command line wins
    over the sweep file's ``hydra.sweeper.params``); None when a sweep is not a list of values
    (``interval(...)``: a sweeper such as Optuna picks those values)."""
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    arguments = [f"{k}={v}" for k, v in sweeper_params.items()] + list(overrides)
    parsed = parser.parse_overrides(arguments)
    if any(o.is_sweep_override() and not o.is_discrete_sweep() for o in parsed):
        return None
    return BasicSweeper.split_arguments(parsed, None)[0]


def plan(overrides: list[str], multirun: bool = False, collect: bool = False) -> Plan:
    """Compose and validate every run of ``overrides``.

    Every job is checked; with ``collect`` each problem is kept in ``Plan.jobs``
    (``--dry-run``), otherwise the first raises :class:`ConfigError` in one line (naming the
    run when there are several).
    """
    from hydra import initialize_config_dir

    register_resolvers()  # ${pb_run_dir:...} in the composed hydra config
    GlobalHydra.instance().clear()
    jobs: list[PlannedRun] = []
    expanded = True
    try:
        with initialize_config_dir(
            config_dir=str(config_dir()), version_base="1.3", job_name="poolbench"
        ):
            parsed = OverridesParser.create().parse_overrides(overrides)
            for o in parsed:
                if o.is_sweep_override() and o.key_or_group.startswith("hydra."):
                    value = o.input_line.split("=", 1)[1]
                    raise ConfigError(
                        f"{o.key_or_group} is one of Hydra's own settings and takes one value, "
                        f"got the sweep {value}; quote it as text ({o.key_or_group}='{value}') "
                        f"or give a list ({o.key_or_group}=[0,1,2])"
                    )
            base_overrides = [o.input_line for o in parsed if not o.is_sweep_override()]
            try:
                head = _compose(base_overrides, with_hydra=True)
            except (HydraException, OmegaConfBaseException) as err:
                unknown = re.match(r"Could not override '([^']+)'", str(err))
                if unknown is None:
                    raise
                raise ConfigError(_unknown_key(base_overrides, unknown.group(1))) from None
            launcher_overrides = launcher_defaults(head.hydra.launcher, overrides)
            objective = str(head.get("objective", defaults.METRIC))
            sweeper_overrides = sweeper_defaults(head.hydra.sweeper, objective, overrides)
            params = head.hydra.sweeper.get("params")
            sweeper_params = {} if params is None else dict(OmegaConf.to_container(params))
            race = None
            if head.hydra.sweeper.get("_target_") == RACE_SWEEPER:  # a race is always a sweep
                node = OmegaConf.to_container(head.hydra.sweeper, resolve=True)
                race = RaceSettings.from_config(node, objective)
            if sweeper_params or len(base_overrides) != len(overrides) or race is not None:
                multirun = True
            run_dir, sweep_dir = _output_dirs(head, overrides, multirun)
            expansion = [list(overrides)]
            configs = 0
            if race is not None:  # every run the race may train: the configurations x seeds
                loader = GlobalHydra.instance().config_loader()
                parser = OverridesParser.create(config_loader=loader)
                found = configurations(parser, sweeper_params, overrides)
                configs, expanded = len(found), False
                expansion = [[*job, f"seed={seed}"] for job in found for seed in race.seeds]
            elif multirun:
                found = _expand(overrides, sweeper_params)
                is_basic = head.hydra.sweeper.get("_target_") == BASIC_SWEEPER
                if found is None or not is_basic:
                    expanded, expansion = False, [base_overrides]
                else:
                    expansion = found
            composer = _Composer()
            jobs = [composer.job(job) for job in expansion]
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(hydra_message(err)) from None
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
    jobs = _validate_jobs(jobs, probe=collect)
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
    if race is not None:
        size = None  # the race decides as it goes how many it runs
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
        race=race,
        configurations=configs,
        resources=resources(head.hydra.launcher, launcher_overrides) if multirun else "",
        on_cluster=runs_elsewhere(head.hydra.launcher),
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


class _Composer:
    """Composes the jobs of one command line. Jobs that differ only in plain values (``seed=3``,
    ``train.lr=0.1``: no config group, no ``+``/``~``) share one composition of their groups,
    and their values are set on a copy, as Hydra applies such overrides after composing the
    defaults: a sweep over ten seeds composes once instead of ten times (each composition reads
    and merges the whole defaults tree, about 0.2 s)."""

    def __init__(self) -> None:
        self.parser = OverridesParser.create()
        self.composed: dict[tuple[str, ...], DictConfig] = {}

    def job(self, job: list[str]) -> PlannedRun:
        return _compose_job(job, self.compose)

    def compose(self, job: list[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(job)
        groups, values = [], []
        for override, text in zip(parsed, job, strict=True):
            plain = override.is_force_add() is False and override.is_add() is False
            plain = plain and not override.is_delete() and not override.is_sweep_override()
            if plain and not _is_group(override.key_or_group):
                values.append(override)
            else:
                groups.append(text)
        key = tuple(groups)
        if key not in self.composed:
            self.composed[key] = _compose(groups)
        config = copy.deepcopy(self.composed[key])
        for override in values:
            if OmegaConf.select(config, override.key_or_group, default=_MISSING) is _MISSING:
                return _compose(job)  # Hydra's own message for a key the config lacks
            OmegaConf.update(config, override.key_or_group, override.value(), merge=False)
        return config


_MISSING = object()


def _is_group(key: str) -> bool:
    """Whether ``key`` selects a config group (``pool``, ``hydra/launcher``) rather than sets
    a value: a folder of configs/ (or Hydra's own ``hydra/...`` groups)."""
    return "/" in key or (config_dir() / key).is_dir()


def _compose_job(
    job: list[str], compose: Callable[[list[str]], DictConfig] | None = None
) -> PlannedRun:
    try:
        composed = compose(job) if compose is not None else _compose(job)
        config = OmegaConf.to_container(composed, resolve=True)
        return PlannedRun(tuple(job), RunConfig.from_dict(config, overrides=job))
    except (HydraException, OmegaConfBaseException) as err:
        unknown = re.match(r"Could not override '([^']+)'", str(err))
        message = _unknown_key(job, unknown.group(1)) if unknown else hydra_message(err)
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


def _validate_jobs(jobs: list[PlannedRun], probe: bool = False) -> list[PlannedRun]:
    """Validate each distinct model build once (seeds share it); keep the built pool; with
    ``probe`` (``--dry-run``) also how each will compute (measured once per configuration)."""
    seen: dict[str, tuple[PoolbenchError | None, str]] = {}
    computes: dict[str, str] = {}
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
        compute = ""
        if probe and error is None:
            how = repr((key, run.channels_last, run.train.batch_size, run.threads))
            if how not in computes:
                computes[how] = describe_compute(run)
            compute = computes[how]
        out.append(PlannedRun(job.overrides, run, message, pool, exception=error, compute=compute))
    return out
