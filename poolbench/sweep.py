"""Running what a command line planned: skip finished runs, follow progress, gather records.

``run_plan`` hands the command line to Hydra (``hydra_app.launch``, so any launcher plugin
works), shows the sweep's progress, and returns every planned run's record. Each run decides for
itself whether it is already done (``runner.execute`` reads its ``result.json``); this module
only counts those runs beforehand, so the display and the final table can say "skipped".
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """Names of the planned runs that will be skipped: record says ok and ``rerun`` is off."""
    return {
        run.run_name
        for run in plan.runs
        if not run.rerun and read_ok_record(plan.run_dir(run) / RECORD_NAME) is not None
    }


def collect(plan: Plan) -> list[dict[str, Any]]:
    """The record of every planned run (a run that left none is reported as ``missing``)."""
    records = []
    for run in plan.runs:
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
        display = SweepProgress([plan.run_dir(r) for r in plan.runs], len(skipped), live=live)
    with display:
        launch(
            [*overrides, *plan.launcher_overrides, *extra],
            plan.multirun,
            sweep_size=len(plan.runs),
        )
    timing = interleaved_latency(plan)
    return SweepOutcome(collect(plan), skipped, time.time() - start, sweep_dir, timing)


def interleaved_latency(plan: Plan) -> str:
    """Time every ok run of a sweep interleaved (see :mod:`poolbench.timing`) and write the
    figures into their records; returns what happened, in one line."""
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

    paths = [plan.run_dir(r) / RECORD_NAME for r in plan.runs]
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
