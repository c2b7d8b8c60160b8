"""One process trains a run at a time: an exclusive lock per run directory.

:class:`RunLock` takes ``flock`` on ``<run_dir>/.run.lock`` for the whole life of a run
(:func:`poolbench.run.runner.execute` holds it from the skip decision to the record). The kernel
drops the lock when the process ends, even on SIGKILL, so a crashed run never blocks the next
attempt. A second process that meets a held lock (another sweep over the same runs, an
orphaned worker, a re-run started too early) says who holds it and waits; then it finds the
run's record written by the holder and skips the run, or resumes from the holder's checkpoint
if the holder stopped before the end. No run is ever trained by two processes at once.

The holder writes ``pid <pid> on <host> since <time>`` into the file, for the others' messages.
The file is removed on release; a process that gets the lock first checks that the file it
locked is still the one at the path (the holder may have removed it between that process's
open and its lock) and tries again if not, so two processes never both hold a run.

POSIX only (``fcntl``), like the GPU locks of :func:`poolbench.measure.device.claim_gpu`.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from poolbench.core.storage import is_no_space, storage_error

LOCK_NAME = ".run.lock"


class RunLock:
    """The lock of the run in ``run_dir``; ``try_acquire`` (never waits) or ``acquire``
    (waits), then ``release``. Also a context manager that waits."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; False (at once) if one does."""
        return self._lock(blocking=False)

    def acquire(self) -> None:
        """Take the lock, waiting for its holder to finish (Ctrl-C stops the wait)."""
        self._lock(blocking=True)

    def _lock(self, blocking: bool) -> bool:
        assert self._fd is None, "RunLock is not re-entrant"
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            if self._is_current(fd):
                break
            os.close(fd)  # the holder removed this file as we locked it: lock the new one
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {_now()}".encode())
        except OSError as err:
            self.release()
            if is_no_space(err):
                raise storage_error(err, self.path) from None
            raise
        return True

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            if is_no_space(err):
                raise storage_error(err, self.path) from None
            raise

    def _is_current(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)

    def release(self) -> None:
        """Remove the lock file and drop the lock (nothing when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: see the module docstring
        finally:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (``pid 123 on host since ...``)."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        return text or "another process"

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


__all__ = ["LOCK_NAME", "RunLock"]
