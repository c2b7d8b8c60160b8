"""Worker processes that stop when the command that started them is gone.

joblib's workers (loky) are children of the ``poolbench run`` process. When that process is
killed on its own (``kill -9 <pid>``, an out-of-memory kill), they are adopted by init and
would train their current runs to the end, with nobody left to collect them, racing a re-run
of the command. :func:`stop_with_parent` starts a daemon thread that notices the change of
parent (within ``interval_s``), logs it into the run's log and ends the process at once, as
SIGKILL would: the run keeps its last checkpoint (written atomically), writes no record, and
the kernel releases its lock, so running the command again resumes it. (Ctrl-C's way,
``KeyboardInterrupt``, is not available: loky workers ignore SIGINT, leaving it to the
parent.) The run's lock (:mod:`poolbench.run.locks`) already makes a re-run wait for such a
worker instead of training the same run beside it; this makes the wait short.

Cluster jobs (submitit) are meant to outlive the command that submitted them, and get no
watchdog.
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger("poolbench")

_started: set[int] = set()  # parents watched by this process (workers serve many jobs)


def stop_with_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    """End this process once its parent is no longer ``parent_pid``.

    Does nothing when this process's parent is not ``parent_pid`` to begin with, or when a
    watchdog for it is already running.
    """
    if os.getppid() != parent_pid or parent_pid in _started:
        return
    _started.add(parent_pid)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        log.warning(
            "the poolbench command (pid %d) is gone: ending this worker (pid %d); its run "
            "keeps its last checkpoint and resumes when the command runs again",
            parent_pid,
            os.getpid(),
        )
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        os._exit(1)

    threading.Thread(target=watch, name="poolbench-watchdog", daemon=True).start()


__all__ = ["stop_with_parent"]
