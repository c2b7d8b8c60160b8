"""Run records: one ``result.json`` per run, written atomically.

The record's keys are the CSV columns of ``poolbench report`` (same names). ``RECORD_FIELDS``
lists the ones every record has; later features add keys, and reports keep unknown ones.
The invariance fields named by the ``eval`` config (``acc_shift_<k>``, ``acc_res_<size>``,
see :func:`poolbench.measure.invariance.metric_names`) follow the fixed ones.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from poolbench.core.storage import is_no_space, storage_error

RECORD_NAME = "result.json"
# A sweep's table (results/sweeps/<time>/summary.csv): one row per run, ``run_name`` among them;
# the runs' records live in results/runs/<run_name>/result.json.
SWEEP_SUMMARY_NAME = "summary.csv"

RECORD_FIELDS = (
    "run_id",
    "run_name",
    "status",
    "error",
    "pool",
    "F",
    "S",
    "p",
    "learned_p",
    "head",
    "model",
    "data",
    "seed",
    "epochs",
    "failed_epoch",
    "test_acc",
    "test_top5",
    "train_loss",
    "params",
    "flops",
    "macs",
    "pool_flops",
    "activations",
    "pool_params",
    "latency_ms",
    "latency_iqr_ms",
    "latency_batch",
    "latency_ms_b1",
    "latency_b1_iqr_ms",
    "latency_interleaved_ms",
    "latency_interleaved_iqr_ms",
    "latency_interleaved_batch",
    "latency_session",
    "latency_session_cpu",
    "latency_session_threads",
    "throughput_img_s",
    "train_time_s",
    "wall_s",
    "overhead_s",
    "started_at",
    "peak_mem_mb",
    "peak_mem_kind",
    "shift_consistency",
    "acc_rot",
    "device",
    "cpu",
    "dtype",
    "threads",
    "channels_last",
    "compile",
    "torch_version",
    "poolbench_version",
    "git_sha",
    "command_id",
    "overrides",
    "tta",
    "history",
)


def _temporary_beside(path: Path) -> tuple[int, Path]:
    """A new file ``.<name>.<random>.tmp`` beside ``path``, created with mode 0666 less the
    umask (as ``open`` would: a group-readable results directory stays readable; mkstemp's
    0600 would not)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A temporary file beside ``path`` that replaces it when the block ends without an error
    (flushed and fsynced first), and disappears otherwise: readers, and a run resumed after
    SIGKILL, see the old file or the new one, never half of one. A full disk raises
    :class:`~poolbench.core.errors.StorageError` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temporary_beside(path)
    except OSError as err:
        if is_no_space(err):
            raise storage_error(err, path) from None
        raise
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # Ctrl-C too: no temporary file left behind
        tmp.unlink(missing_ok=True)
        if is_no_space(err):
            raise storage_error(err, path) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(text)


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    path = Path(run_dir) / RECORD_NAME
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    return path


def read_record(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_ok_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path`` if it exists and says ``ok``, else None (the skip decision)."""
    try:
        record = read_record(path)
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("status") == "ok" else None


def git_sha() -> str | None:
    """The commit of the poolbench checkout, when it is one (None for an installed wheel)."""
    here = Path(__file__).resolve().parents[2]
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
