"""Progress display for one training run.

On a terminal: a live rich progress bar (epoch, batch, loss, accuracy, img/s, ETA). Elsewhere
(cluster jobs, CI, pipes): one plain log line per epoch.
"""

from __future__ import annotations

import logging
import sys
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

log = logging.getLogger("poolbench")


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
        self._task = None

    def __enter__(self) -> RunProgress:
        if self.live:
            self._progress = Progress(
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
        acc_text = f" test_acc {acc:.4f}" if acc is not None else ""
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
            self._progress.stop()
