"""Running what a command line planned: skip finished runs, follow progress, gather records.

``run_plan`` hands the command line to Hydra (``hydra_app.launch``, so any launcher or sweeper
plugin works), shows the sweep's progress, and returns the record of every run its jobs
reported (``poolbench.callbacks``). Each run decides for itself whether it is already done
(``runner.execute`` reads its ``result.json``); where the plan lists the jobs beforehand this
module counts those runs up front, so the display can say "skipped" from the start.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolbench.callbacks import read_reports
from poolbench.hydra_app import Plan, launch
from poolbench.progress import SweepProgress
from poolbench.record import RECORD_NAME, read_ok_record, read_record


@dataclass
class SweepOutcome:
    """Every planned run's record, which of them were skipped, where the sweep wrote, and the
    interleaved timing session (or why there was none)."""

    records: list[dict[str, Any]]
    skipped: set[str]
    seconds: float
    sweep_dir: Path | None
    timing: str = ""

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


def collect(plan: Plan, runs: list[Any] | None = None) -> list[dict[str, Any]]:
    """The record of every planned run, or of ``runs`` (a run that left none is reported as
    ``missing``)."""
    records = []
    for run in plan.runs if runs is None else runs:
        path = plan.run_dir(run) / RECORD_NAME
        if path.is_file():
            records.append(read_record(path))
        else:
            records.append(
                {
                    "run_name": run.run_name,
                    "pool": run.pool.name,
                    "head": run.head.name,
                    "model": run.model.name,
                    "seed": run.seed,
                    "status": "missing",
                    "error": f"no {RECORD_NAME} in {path.parent}",
                }
            )
    return records


def run_plan(plan: Plan, overrides: list[str], live: bool | None = None) -> SweepOutcome:
    """Launch ``overrides`` (already planned as ``plan``) and gather the records.

    KeyboardInterrupt propagates: finished records and the current run's checkpoint stay, and
    running the same command again resumes.
    """
    skipped = already_ok(plan)
    start = time.time()
    sweep_dir = None
    extra: list[str] = []
    display: contextlib.AbstractContextManager = contextlib.nullcontext()
    if plan.multirun:
        sweep_dir = plan.results_dir / "sweeps" / time.strftime("%Y%m%d-%H%M%S")
        extra = [f"hydra.sweep.dir={sweep_dir}"]
        display = SweepProgress(sweep_dir, plan.size, skipped, live=live)
    with display:
        launch(
            [*overrides, *plan.hydra_overrides, *extra],
            plan.multirun,
            sweep_size=plan.size or len(plan.runs),
        )
    if sweep_dir is None:
        return SweepOutcome(collect(plan), skipped, time.time() - start, None)
    timing = interleaved_latency(plan, [r["run_name"] for r in read_reports(sweep_dir)])
    records, skipped = reported(plan, sweep_dir)  # read after the timing wrote into them
    return SweepOutcome(records, skipped, time.time() - start, sweep_dir, timing)


def reported(plan: Plan, sweep_dir: Path) -> tuple[list[dict[str, Any]], set[str]]:
    """The record of every run the sweep's jobs reported, once per run (a sweeper may pick
    a config twice), then, where the plan lists them, the planned runs that reported nothing
    (``missing``); and the names of the runs that were already ok before the sweep."""
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
            records.append(read_record(path))
        else:  # the job failed before its run started (a config the sweeper composed)
            records.append(
                {"run_name": name, "status": "failed", "error": report["error"], "seed": None}
            )
    if plan.expanded:
        records += collect(plan, [r for r in plan.runs if r.run_name not in seen])
    return records, skipped


def interleaved_latency(plan: Plan, names: list[str]) -> str:
    """Time every ok run of a sweep (the runs ``names``) interleaved (see
    :mod:`poolbench.timing`) and write the figures into their records; returns what happened,
    in one line."""
    first = plan.runs[0]
    if not plan.multirun or not first.latency_interleaved:
        return ""
    if plan.on_cluster:
        return (
            "latency: not timed here (the runs ran on cluster nodes); on one of them run "
            "`poolbench time <results>/runs` for comparable figures"
        )
    from poolbench.errors import DataError
    from poolbench.timing import time_records

    paths = [plan.results_dir / "runs" / name / RECORD_NAME for name in dict.fromkeys(names)]
    paths = [p for p in paths if p.is_file()]
    print(f"sweep: timing {len(paths)} runs' models interleaved ...", flush=True)
    try:
        outcome = time_records(paths, first.latency_batch, max(first.latency_repeats, 10), warmup=3)
    except DataError as err:
        return f"latency: not timed ({err})"
    unstable = sum(t.unstable for t in outcome.timings)
    flag = f", {unstable} unstable (IQR > 15% of the median)" if unstable else ""
    return (
        f"latency: {len(outcome.timings)} configs timed interleaved in one process "
        f"(session {outcome.session}){flag}"
    )
