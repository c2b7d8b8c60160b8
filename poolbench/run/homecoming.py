"""Records that come home: on a cluster without a shared disk, a job writes its run on the node
that ran it, and the record (with ``metrics.csv``) travels back with the job's return value
(:class:`poolbench.sweep.callbacks.JobResult`); the command then writes into its own results
directory whatever is missing there (:func:`bring_home`).

Rules: files are written atomically, the record last (a reader that sees the record sees its
history); a record already at home is never replaced by an older one (``started_at``, then an
ok one over a failed one of the same start); a returned record is refused, with a warning and
nothing written, when it does not parse as a run's record, names another run than the job's
(``run_name``) or a directory outside ``runs/``, has no ``config``, or when its ``run_id`` is
not the hash of its config or its ``run_name`` not the config's. Records are JSON and files
text: bringing them home runs nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from poolbench.core.config import config_hash
from poolbench.core.config import run_name as config_run_name
from poolbench.core.record import RECORD_NAME, read_record, write_record
from poolbench.core.storage import atomic_write_text, set_aside
from poolbench.run.locks import RunLock

# The files a job hands back beside its record, by name in the run directory.
RETURNED_FILES = ("metrics.csv",)
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,254}")
STATUSES = ("ok", "failed")


@dataclass
class Homecoming:
    """What :func:`bring_home` did with one returned record: the home run directory (None
    when refused), whether it wrote there, and a warning line (empty when none)."""

    run_dir: Path | None
    written: bool
    warning: str = ""


def problem(record: Any, run_name: str | None = None) -> str | None:
    """Why ``record`` cannot be a run's record, or the record of ``run_name`` where given
    (None: it can)."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    name = record.get("run_name")
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or ".." in name:
        return f"run_name {name!r} is not a run directory's name"
    if run_name is not None and name != run_name:
        return f"run_name {name!r} is not the job's run {run_name!r}"
    if not isinstance(record.get("run_id"), str):
        return f"run_id {record.get('run_id')!r} is not text"
    config = record.get("config")
    if not isinstance(config, dict):
        return "it has no config"
    if config_hash(config) != record["run_id"]:
        return f"run_id {record['run_id']!r} is not the hash of its config"
    own = config_run_name(config)
    if name != own:
        return f"run_name {name!r} is not its config's run {own!r}"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    if started(record) is None:
        return f"started_at {record.get('started_at')!r} is not a time with its zone (ISO 8601)"
    return None


def started(record: dict[str, Any]) -> datetime | None:
    """When the run started, as its record says (None: not an ISO 8601 time with a zone)."""
    text = record.get("started_at")
    try:
        when = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return when if when is not None and when.tzinfo is not None else None


def newer(returned: dict[str, Any], home: dict[str, Any] | None) -> bool:
    """Whether ``returned`` (a record :func:`problem` accepts) should replace ``home`` (None:
    nothing readable at home): a later start, or the same start finished ok where home's did
    not. A home record without a readable start is replaced."""
    if home is None:
        return True
    there, here = started(home), started(returned)
    if there is None:
        return True
    if here != there:
        return here > there
    return returned["status"] == "ok" and home.get("status") != "ok"


def bring_home(
    record: Any,
    files: dict[str, str] | None,
    results_dir: Path,
    origin: str = "a job",
    run_name: str | None = None,
) -> Homecoming:
    """Write ``record`` (and ``files``, among :data:`RETURNED_FILES`) into
    ``<results_dir>/runs/<run_name>/`` unless the record there is as new or newer; with
    ``run_name``, only a record of that run."""
    why = problem(record, run_name)
    if why is not None:
        return Homecoming(
            None, False, f"warning: {origin} returned an unusable record ({why}): not written"
        )
    run_dir = Path(results_dir) / "runs" / record["run_name"]
    lock = RunLock(run_dir)  # as every writer of a run holds it (see poolbench.run.locks)
    if not lock.try_acquire():
        return Homecoming(
            run_dir,
            False,
            f"note: {origin}'s run {record['run_name']} is being trained by another process "
            f"({lock.holder()}): the record it writes stands, the returned one is not written",
        )
    try:
        return _write_if_newer(record, files, run_dir)
    finally:
        lock.release()


def _write_if_newer(
    record: dict[str, Any], files: dict[str, str] | None, run_dir: Path
) -> Homecoming:
    path = run_dir / RECORD_NAME
    home: Any = None
    if path.is_file():
        try:
            home = read_record(path)
        except (OSError, ValueError):
            home = None
        if not isinstance(home, dict):  # not a record: kept for a look, never read again
            set_aside(path)
            home = None
    if not newer(record, home):
        return Homecoming(run_dir, False)
    for name, text in (files or {}).items():
        if name in RETURNED_FILES and isinstance(text, str):
            atomic_write_text(run_dir / name, text)
    write_record(run_dir, record)
    return Homecoming(run_dir, True)
