"""The job reports of a sweep: after every job of a multirun, the process that ran it (the
command's, a joblib worker, a cluster node) writes ``<sweep dir>/jobs/<job>.json`` atomically
(:func:`write_job_report`; Hydra's callback :class:`poolbench.sweep.callbacks.JobReports` calls
it). The live display (:class:`poolbench.ui.progress.SweepProgress`) and the sweep's closing
table read those reports, so they need no list of jobs beforehand: a sweeper that picks its
jobs as it goes (Optuna, the race) is followed like the basic one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poolbench.core.storage import atomic_write_text

JOBS_DIR = "jobs"
# Who in this process wants each report as it is written (the sweep's display: at once, rather
# than at its next look at the directory); jobs in other processes are seen there.
LISTENERS: list[Callable[[Path, dict[str, Any]], None]] = []


def write_job_report(sweep_dir: Path, job: int, report: dict[str, Any]) -> Path:
    """``report`` as ``<sweep_dir>/jobs/<job>.json`` (atomically), told to the listeners."""
    path = Path(sweep_dir) / JOBS_DIR / f"{job:06d}.json"
    atomic_write_text(path, json.dumps(report, default=str) + "\n")
    for listener in list(LISTENERS):
        listener(path, report)
    return path


def read_reports(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job report of a sweep, in job order."""
    return new_events(sweep_dir, set())


def new_events(sweep_dir: Path, read: set[str]) -> list[dict[str, Any]]:
    """The reports in ``sweep_dir`` whose file names are not in ``read`` (which gains them),
    in job order. Reports are written by atomic rename, so a listed one is complete."""
    folder = Path(sweep_dir) / JOBS_DIR
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        if path.name in read:
            continue
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):  # vanished (a directory cleaned up meanwhile)
            continue
        read.add(path.name)
    return out
