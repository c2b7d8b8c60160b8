"""Progress displays for a sweep and for one training run.

On a terminal: live rich progress bars, one for the sweep (run i of n; finished, failed,
skipped) and one for the run in progress (epoch, batch, loss, img/s, ETA), sharing one display.
Elsewhere (cluster jobs, CI, pipes): plain lines, one per epoch and one per finished run.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from poolbench.record import RECORD_NAME

log = logging.getLogger("poolbench")

# The live display of the sweep running in this process, which run bars join (rich allows one
# live display per terminal).
_shared: Progress | None = None


def _make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(file=sys.stdout),
        transient=True,
    )


class SweepProgress:
    """Follows a sweep by watching its runs' record files from a background thread.

    Works for every launcher, because jobs in other processes (joblib, submitit) report through
    the files they write anyway. A record written after the sweep started counts as finished or
    failed; runs known to be skipped (already ok) are counted from the start.
    """

    def __init__(
        self,
        run_dirs: list[Path],
        skipped: int,
        live: bool | None = None,
        record_name: str = RECORD_NAME,
        interval_s: float = 0.5,
    ):
        self.records = [Path(d) / record_name for d in run_dirs]
        self.total = len(self.records)
        self.skipped = skipped
        self.ok = self.failed = 0
        self.live = sys.stdout.isatty() if live is None else live
        self.interval_s = interval_s
        self._seen: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._progress: Progress | None = None
        self._task = None
        self._start = 0.0

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.skipped

    def status(self) -> str:
        running = f"run {min(self.done + 1, self.total)} of {self.total}: " * (
            self.done < self.total
        )
        return f"{running}{self.ok} finished, {self.failed} failed, {self.skipped} skipped"

    def poll(self) -> bool:
        """Count records written since the start; True when a count changed."""
        changed = False
        for path in self.records:
            if path in self._seen:
                continue
            try:
                if path.stat().st_mtime < self._start:
                    continue
                status = json.loads(path.read_text(encoding="utf-8")).get("status")
            except (OSError, ValueError):  # not written yet (writes are atomic renames)
                continue
            self._seen.add(path)
            if status == "ok":
                self.ok += 1
            else:
                self.failed += 1
            changed = True
        return changed

    def _report(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, status=self.status())
        else:
            print(f"sweep: {self.done}/{self.total} done ({self.status()})", flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.poll():
                self._report()

    def __enter__(self) -> SweepProgress:
        global _shared
        self._start = time.time() - 1.0  # file systems with coarse mtimes
        if self.live:
            self._progress = _make_progress()
            self._progress.start()
            self._task = self._progress.add_task(
                "sweep", total=self.total, completed=self.done, status=self.status()
            )
            _shared = self._progress
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        global _shared
        self._stop.set()
        self._thread.join()
        if self.poll():
            self._report()
        if self._progress is not None:  # the sweep always owns its live display
            self._progress.stop()
            _shared = None


class RunProgress:
    """Context manager fed by the training loop."""

    def __init__(
        self,
        title: str,
        epochs: int,
        steps_per_epoch: int,
        live: bool | None = None,
        done: int = 0,
    ):
        self.title = title
        self.done = done  # epochs restored from a checkpoint
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.live = sys.stdout.isatty() if live is None else live
        self._progress: Progress | None = None
        self._own = False
        self._task = None

    def __enter__(self) -> RunProgress:
        if self.live:
            self._own = _shared is None
            self._progress = _make_progress() if self._own else _shared
            if self._own:
                self._progress.start()
            self._task = self._progress.add_task(
                self.title,
                total=self.epochs * self.steps,
                completed=self.done * self.steps,
                status="",
            )
        if self.done:
            log.info("%s resumed after epoch %d/%d", self.title, self.done, self.epochs)
        return self

    def step(self, epoch: int, batch: int, loss: float, img_s: float) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                advance=1,
                status=f"epoch {epoch}/{self.epochs} batch {batch}/{self.steps} "
                f"loss {loss:.3f} {img_s:,.0f} img/s",
            )

    def epoch_end(self, epoch: int, loss: float, acc: float | None, img_s: float) -> None:
        acc_text = f" val_acc {acc:.4f}" if acc is not None else ""
        line = (
            f"{self.title} epoch {epoch}/{self.epochs} loss {loss:.4f}{acc_text} {img_s:,.0f} img/s"
        )
        if self._progress is not None:
            # Above the live bar; the log file still gets the line (see poolbench.logs).
            self._progress.console.print(line, highlight=False)
            log.info(line, extra={"console": False})
        else:
            log.info(line)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            if self._own:
                self._progress.stop()
            else:
                self._progress.remove_task(self._task)
