"""Where results may be written, and what poolbench says when they cannot be.

- :func:`check_writable_dir`: before anything runs, ``results_dir`` (or a run directory the
  user chose) must be a directory poolbench can create files in; checked by creating and
  removing an empty directory, so that nothing is left behind when the check fails.
- :func:`storage_error`: a full disk (``ENOSPC``, or a quota: ``EDQUOT``) as one line that
  says so and names the file, instead of whatever the writer made of it.
- :func:`atomic_file`, :func:`atomic_write_text`: a file replaced whole or not at all
  (temporary file beside it, fsync, rename), so that readers and a run resumed after SIGKILL
  never see half of one;
- :func:`set_aside`: a file poolbench cannot read (a truncated checkpoint) is renamed, never
  deleted, so that nothing is lost and the next attempt starts clean.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from poolbench.core.errors import StorageError

NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def is_no_space(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in NO_SPACE


def _existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def storage_error(err: OSError, path: Path) -> StorageError:
    """``err`` (ENOSPC or EDQUOT) while writing ``path``, as one line naming the file and the
    space left on its file system."""
    where = _existing_ancestor(Path(path).parent)
    try:
        free = f"{shutil.disk_usage(where).free:,} bytes free in {where}"
    except OSError:
        free = f"free space in {where} unknown"
    return StorageError(
        f"{NO_SPACE[err.errno]}: cannot write {path} ({free}); free some space and run the "
        f"same command again (finished runs are kept, unfinished ones resume)"
    )


def check_writable_dir(path: Path, key: str = "results_dir") -> None:
    """Raise :class:`StorageError` unless ``path`` is, or can be made, a directory poolbench
    can write in. Leaves nothing behind: the probe is an empty directory, removed at once."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise StorageError(f"expected {key} to be a directory, got {path}: it is a file")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise StorageError(f"expected {key} to be a directory, got {path}: {base} is a file")
    try:
        probe = tempfile.mkdtemp(prefix=".poolbench-probe-", dir=base)
    except OSError as err:
        if is_no_space(err):
            raise storage_error(err, path / "runs") from None
        raise StorageError(
            f"{key} {path}: cannot create files in {base} ({err.strerror}); set {key} to a "
            f"directory you can write to"
        ) from None
    os.rmdir(probe)


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt-<time>`` (a free name) and return the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.rename(path, target)
    return target


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


__all__ = [
    "NO_SPACE",
    "atomic_file",
    "atomic_write_text",
    "check_writable_dir",
    "is_no_space",
    "set_aside",
    "storage_error",
]
