"""Running what a command line planned: skip finished runs, follow progress, gather records.

``run_plan`` hands the command line to Hydra (:func:`poolbench.sweep.launch.launch`, so any
launcher or sweeper plugin works), shows the sweep's progress, and returns the record of every
run its jobs reported (:mod:`poolbench.run.jobs`). Each run decides for itself whether it is
already done (``execute`` reads its ``result.json`` under the run's lock); where the plan lists
the jobs beforehand this module counts those runs up front, so the display and the final table
can say "skipped", and afterwards tells the runs this command trained (their records carry its
``command_id``) from those another process trained meanwhile (an overlapping sweep).

Every sweep gets a directory of its own, ``<results_dir>/sweeps/<time>`` (``<time>-2``, ... when
another sweep took that name in the same second: directories are created exclusively).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from poolbench.core import defaults
from poolbench.core.defaults import UNSTABLE_TEXT
from poolbench.core.errors import ConfigError, StopCommand, one_line
from poolbench.core.record import RECORD_NAME, SWEEP_SUMMARY_NAME, read_ok_record, read_record
from poolbench.core.storage import atomic_write_text, is_no_space, storage_error
from poolbench.engine.checkpoint import CHECKPOINT_NAME
from poolbench.run.homecoming import bring_home
from poolbench.run.jobs import JOBS_DIR, read_reports, write_job_report
from poolbench.run.runner import COMMAND_ENV
from poolbench.sweep.callbacks import JobResult, job_report
from poolbench.sweep.launch import launch
from poolbench.sweep.plan import Plan, quoted
from poolbench.sweep.plugins import MAIN_PID_ENV, RAY, SWEEP_SIZE_ENV
from poolbench.sweep.race import (
    RaceSettings,
    race_legend,
    race_sentences,
    read_decisions,
    tag_records,
)
from poolbench.sweep.task import LAUNCH_CWD_ENV, OK_AT_HOME_ENV
from poolbench.ui.progress import SweepProgress

if TYPE_CHECKING:
    from poolbench.report.conclusions import SweepSummary

# A sweep's closing timing takes at least this many rounds, whatever latency_repeats (a run's
# own timing) says: these are the figures its table compares.
SWEEP_TIMING_ROUNDS = 10


@dataclass
class SweepOutcome:
    """Every planned run's record; which of them were skipped (ok before the command began),
    which this command trained (``ran``) and which another process trained meanwhile
    (``elsewhere``: this command waited for it, or found it done); where the sweep wrote; and
    the interleaved timing session (or why there was none)."""

    records: list[dict[str, Any]]
    skipped: set[str]
    seconds: float
    sweep_dir: Path | None
    timing: str = ""
    ran: set[str] = field(default_factory=set)
    elsewhere: set[str] = field(default_factory=set)
    table: Path | None = None  # <sweep dir>/summary.csv: one row per run
    race: RaceSettings | None = None  # the race's settings, where the sweep raced
    page: Path | None = None  # <sweep dir>/report.html: the comparison on one page
    notes: list[str] = field(default_factory=list)  # warnings: records refused on the way home
    _closing: list[SweepSummary | None] = field(default_factory=list, repr=False)

    def closing(self) -> SweepSummary | None:
        """The closing table's contents (:func:`poolbench.report.conclusions.sweep_summary`),
        with the race's decisions where the sweep raced; None when no run finished. Computed
        once (the table and the HTML page share it)."""
        from poolbench.report.conclusions import sweep_summary

        if self._closing:
            return self._closing[0]
        decisions = read_decisions(self.sweep_dir) if self.sweep_dir is not None else None
        if self.race is None or decisions is None:
            found = sweep_summary(self.records, self.race.delta if self.race else None)
        else:
            found = sweep_summary(
                tag_records(self.records, decisions),
                self.race.delta,
                race_legend(self.race),
                race_sentences(decisions, self.race),
            )
        self._closing.append(found)
        return found

    def write_page(self, results_dir: Path) -> Path | None:
        """``<sweep dir>/report.html`` (:mod:`poolbench.report.html`) from the closing summary:
        the race's verdicts where it raced, each run linked to its record under
        ``results_dir``; None for a single run or a sweep where no run finished."""
        found = self.closing()
        if self.sweep_dir is None or found is None:
            return None
        from poolbench.report.records import records_frame
        from poolbench.report.write import Written, write_html_page

        records = [
            {**r, "record_path": str(Path(results_dir) / "runs" / r["run_name"] / RECORD_NAME)}
            for r in self.records
            if r.get("status") != "missing"
        ]
        df = records_frame(records)
        summary = found.summary.assign(verdict=found.verdicts)
        self.page = write_html_page(
            df,
            summary,
            found.significance,
            Path(self.sweep_dir) / "report.html",
            Written(),
            None,
            found.sentences,
            found.legend,
            title=f"poolbench sweep {Path(self.sweep_dir).name}",
        )
        return self.page

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def already_ok(plan: Plan) -> set[str]:
    """Names of the planned runs that will be skipped: record says ok and ``rerun`` is off
    (none known beforehand when the sweeper picks its jobs as it goes)."""
    if not plan.expanded:
        return set()
    return {
        run.run_name
        for run in plan.runs
        if not run.rerun and read_ok_record(plan.run_dir(run) / RECORD_NAME) is not None
    }


def _record_at(path: Path, missing: dict[str, Any]) -> dict[str, Any]:
    """The record at ``path``, or ``missing`` with the reason (no file, or an unreadable
    one)."""
    error = f"no {RECORD_NAME} in {path.parent}"
    if path.is_file():
        try:
            record = read_record(path)
        except (OSError, json.JSONDecodeError) as err:
            error = f"unreadable {path}: {err}"
        else:
            if isinstance(record, dict):
                return record
            error = f"unreadable {path}: not a JSON object"
    return {**missing, "status": "missing", "error": error}


def collect(plan: Plan, runs: list[Any] | None = None) -> list[dict[str, Any]]:
    """The record of every planned run, or of ``runs`` (a run that left none, or an
    unreadable one, is reported as ``missing``)."""
    return [
        _record_at(plan.run_dir(run) / RECORD_NAME, _keys_of(run))
        for run in (plan.runs if runs is None else runs)
    ]


def _keys_of(run: Any) -> dict[str, Any]:
    """What the closing table shows of a run that left no record."""
    return {
        "run_name": run.run_name,
        "pool": run.pool.name,
        "head": run.head.name,
        "model": run.model.name,
        "seed": run.seed,
        "config": run.identity or run.as_identity_dict(),
        "tags": list(run.tags),
    }


def reported(
    plan: Plan, sweep_dir: Path, command_id: str | None = None
) -> tuple[list[dict[str, Any]], set[str]]:
    """The record of every run the sweep's jobs reported, once per run (a sweeper may pick
    a config twice), then, where the plan lists them, the planned runs that reported nothing
    (``missing``); and the names of the runs their jobs found already ok. A job that failed
    without a record (a config a sweeper composed, a cluster job cancelled) stands as a failed
    record of this command (``command_id``), with its run's keys where the plan has them."""
    planned = {run.run_name: run for run in plan.runs} if plan.expanded else {}
    records, seen, skipped = [], set(), set()
    for report in read_reports(sweep_dir):
        name = report["run_name"]
        if name in seen:
            continue
        seen.add(name)
        if report["skipped"]:
            skipped.add(name)
        path = Path(report["run_dir"]) / RECORD_NAME
        if path.is_file():
            records.append(_record_at(path, {"run_name": name}))
        else:  # the job failed before its run wrote a record
            keys: dict[str, Any] = {"seed": None}
            if name in planned:
                keys = _keys_of(planned[name])
            records.append(
                {
                    **keys,
                    "run_name": name,
                    "status": "failed",
                    "error": report["error"],
                    "command_id": command_id,
                }
            )
    if plan.expanded:
        records += collect(plan, [r for r in plan.runs if r.run_name not in seen])
    return records, skipped


def new_sweep_dir(results_dir: Path) -> Path:
    """``<results_dir>/sweeps/<time>``, created here and now; ``<time>-2``, ``-3``, ... when a
    sweep started in the same second took the name (mkdir is atomic, so two never share)."""
    parent = Path(results_dir) / "sweeps"
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while True:
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            n += 1
            continue
        return path


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables while the block runs."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_plan(plan: Plan, overrides: list[str], live: bool | None = None) -> SweepOutcome:
    """Launch ``overrides`` (already planned as ``plan``) and gather the records.

    KeyboardInterrupt propagates: finished records and the current run's checkpoint stay, and
    running the same command again resumes (:func:`interrupted` says what was kept). A full
    disk raises :class:`~poolbench.core.errors.StorageError`.
    """
    skipped = already_ok(plan)
    start = time.time()
    command_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    sweep_dir = None
    extra = list(plan.output_overrides)  # hydra.run.dir as planned
    display: contextlib.AbstractContextManager = contextlib.nullcontext()
    if plan.multirun:
        sweep_dir = plan.sweep_dir or new_sweep_dir(plan.results_dir)
        extra = [f"hydra.sweep.dir={quoted(sweep_dir)}"]
        display = SweepProgress(sweep_dir, plan.size, skipped, live=live)
    # The command's id, process, size and working directory travel in each job's config (Hydra
    # sets them in the job's environment): joblib workers reused from an earlier command in
    # this process started with that one's environment, and may sit in another directory.
    job_env = {
        COMMAND_ENV: command_id,
        MAIN_PID_ENV: str(os.getpid()),
        SWEEP_SIZE_ENV: str(plan.size or len(plan.runs)),
        LAUNCH_CWD_ENV: quoted(os.getcwd()),
    }
    if plan.launcher == RAY and skipped:  # nodes may lack them: see OK_AT_HOME_ENV
        job_env[OK_AT_HOME_ENV] = quoted(",".join(sorted(skipped)))
    extra += [f"++hydra.job.env_set.{key}={value}" for key, value in job_env.items()]
    notes: list[str] = []

    def home(returns: list[JobReturn]) -> None:  # each batch, as the launcher hands it back
        if sweep_dir is not None:
            notes.extend(come_home(returns, plan.results_dir, sweep_dir))

    # HYDRA_FULL_ERROR: an exception a job raises (a config error of a job a sweeper picked)
    # reaches the command as itself, to be said in one line, not as Hydra's traceback.
    with display, _environment({"HYDRA_FULL_ERROR": "1"}):
        try:
            launch([*overrides, *plan.hydra_overrides, *extra], plan.multirun, None, home)
        except StopCommand as stop:  # a job's full disk
            raise stop.error from None
        except ConnectionError as err:
            if plan.launcher != RAY:
                raise
            raise ConfigError(
                f"the launcher could not reach its cluster ({one_line(err)}); is it running, "
                "and is hydra.launcher.ray.init.address its address?"
            ) from None
        except OSError as err:  # Hydra's own files (.hydra/, multirun.yaml) on a full disk
            if not is_no_space(err):
                raise
            raise storage_error(err, Path(err.filename or plan.results_dir)) from None
    if sweep_dir is None:
        timing, records = "", collect(plan)
    else:
        run_dirs = [Path(r["run_dir"]) for r in read_reports(sweep_dir)]
        timing = interleaved_latency(plan, run_dirs)  # first: it writes into the records
        records, found_done = reported(plan, sweep_dir, command_id)
        skipped |= found_done - {
            r["run_name"] for r in records if r.get("command_id") == command_id
        }
    ran = {r["run_name"] for r in records if r.get("command_id") == command_id}
    elsewhere = {
        r["run_name"]
        for r in records
        if r.get("status") != "missing" and r["run_name"] not in ran | skipped
    }
    table = None if sweep_dir is None else write_sweep_table(sweep_dir, records)
    outcome = SweepOutcome(
        records,
        skipped,
        time.time() - start,
        sweep_dir,
        timing,
        ran=ran,
        elsewhere=elsewhere,
        table=table,
        race=plan.race,
        notes=notes,
    )
    outcome.write_page(plan.results_dir)
    return outcome


def come_home(returns: list[JobReturn], results_dir: Path, sweep_dir: Path) -> list[str]:
    """Write the records the jobs handed back (:mod:`poolbench.run.homecoming`) into
    ``results_dir`` where it lacks them or holds older ones, and each job's report as this
    command sees it (its run at home; a job that failed, from its return): on a cluster without
    a shared disk the reports the nodes wrote are on their disks. Returns the warnings, one
    line each."""
    warnings = []
    for ret in returns:
        job = OmegaConf.select(ret.hydra_cfg, "hydra.job.num") if ret.hydra_cfg else None
        if job is None:  # a job the launcher reported itself (poolbench_slurm)
            continue
        job = int(job)
        report = job_report(ret, job)
        result = ret.return_value if ret.status == JobStatus.COMPLETED else None
        ran_in = Path(str(report["run_dir"])).name  # the run the job's config names
        at_home_dir = Path(results_dir) / "runs" / ran_in
        if isinstance(result, JobResult) and result.record is not None:
            home = bring_home(result.record, result.files, results_dir, f"job {job}", ran_in)
            if home.warning:
                warnings.append(home.warning)
            if home.run_dir is None:  # refused: the job's run at home, failed unless it is there
                reason = home.warning.removeprefix("warning: ")
                report.update(status="failed", objective=None, wall_s=None, error=reason)
                report["run_dir"] = str(at_home_dir)
            else:
                report["run_dir"] = str(home.run_dir)
                if home.warning and not (home.run_dir / RECORD_NAME).is_file():
                    # another process holds the run and has not written its record yet
                    report.update(status="failed", error=home.warning.removeprefix("note: "))
        elif isinstance(result, JobResult) and result.record is None and result.skipped:
            # ok at home, not on the node: the sweeper and the table get the record at home
            at_home = read_ok_record(at_home_dir / RECORD_NAME)
            report["run_dir"] = str(at_home_dir)
            if at_home is None:
                report.update(
                    status="failed",
                    skipped=False,
                    error="ok at home when the command started, gone when its job ended: "
                    "run the command again",
                )
            else:
                ret._return_value = JobResult.of(at_home, result.objective, skipped=True)
                report.update(run_name=ran_in, objective=float(ret._return_value))
        elif (Path(sweep_dir) / JOBS_DIR / f"{job:06d}.json").is_file():
            continue  # the node's own report is here: a shared disk
        write_job_report(sweep_dir, job, report)
    return warnings


def write_sweep_table(sweep_dir: Path, records: list[dict[str, Any]]) -> Path:
    """``<sweep_dir>/summary.csv``: one row per run of the sweep, every record field a column
    (``poolbench report <sweep_dir>`` reads the runs it lists)."""
    import pandas as pd

    path = Path(sweep_dir) / SWEEP_SUMMARY_NAME
    atomic_write_text(path, pd.json_normalize(records).to_csv(index=False))
    return path


def interrupted(plan: Plan) -> str:
    """What an interrupted command leaves, in one line: finished runs, and the checkpoints
    of the unfinished ones (or that none had saved one yet)."""
    unfinished = [r for r in plan.runs if read_ok_record(plan.run_dir(r) / RECORD_NAME) is None]
    kept = [r for r in unfinished if (plan.run_dir(r) / CHECKPOINT_NAME).is_file()]
    finished = len(plan.runs) - len(unfinished)
    text = f"interrupted: {finished} finished run{'s' * (finished != 1)} kept; "
    if kept:
        text += (
            f"{len(kept)} unfinished run{'s' * (len(kept) != 1)} kept a checkpoint and "
            "resume from it"
        )
    elif unfinished:
        text += "no unfinished run had saved a checkpoint yet (they start afresh)"
    else:
        text += "nothing was left unfinished"
    return text + "; run the same command again to go on"


def interleaved_latency(plan: Plan, run_dirs: list[Path]) -> str:
    """Time every ok run of a sweep (in ``run_dirs``) interleaved (see
    :mod:`poolbench.run.timing`) and write the figures into their records; returns what happened,
    in one line."""
    first = plan.runs[0]
    if not plan.multirun or not first.latency_interleaved:
        return ""
    if plan.on_cluster:
        return (
            "latency: not timed here (the runs ran on cluster nodes); on one of them run "
            "`poolbench time <results>/runs` for comparable figures"
        )
    from poolbench.core.errors import DataError
    from poolbench.run.timing import time_records

    paths = [d / RECORD_NAME for d in dict.fromkeys(run_dirs)]
    paths = [p for p in paths if p.is_file()]
    print(f"sweep: timing {len(paths)} runs' models interleaved ...", flush=True)
    try:
        repeats = max(first.latency_repeats, SWEEP_TIMING_ROUNDS)
        # the custom models this command line names, which its own runs imported already
        factories = {
            str(r.model.params["factory"]) for r in plan.runs if "factory" in r.model.params
        }
        outcome = time_records(
            paths, first.latency_batch, repeats, defaults.TIME_WARMUP, factories=factories
        )
    except DataError as err:
        return f"latency: not timed ({err})"
    unstable = sum(t.unstable for t in outcome.timings)
    flag = f", {unstable} unstable ({UNSTABLE_TEXT})" if unstable else ""
    return (
        f"latency: {len(outcome.timings)} configs timed interleaved in one process "
        f"(session {outcome.session}){flag}"
    )
