"""Progress displays for a sweep, for one training run and for a run's evaluation phases.

On a terminal: one live display with a row for the sweep (done of total; ok, failed,
skipped; elapsed; ETA), one for the run in progress (epoch, batch, loss, img/s, ETA) and one
for an evaluation phase after training (``timing latency``, ``evaluating: invariance``).
Every row is laid out for the terminal's width, down to 80 columns and below: the bar
shrinks, then labels get shorter, then the run title (``<data>-<model>-<pool>-<head>-s<seed>-
<hash>`` loses its data, hash and model first); counts and times are never cut.

The sweep's ETA is the mean wall time of the runs that finished (not skipped) times the runs
still to run, less the time since the last one finished, so it counts down between runs and
is ``-:--:--`` until one has finished; a run's ETA is its own time per step.

Elsewhere (cluster jobs, CI, pipes): plain lines, one per epoch, one per phase and one per
finished run.

The sweep counts what its jobs report (``poolbench.sweep.callbacks``: one file per finished job in
the sweep directory), so it works for every launcher and sweeper: jobs in other processes
(joblib, submitit) report through files, and a sweeper that picks its jobs as it goes (Optuna)
needs no list of them beforehand.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from poolbench.engine.callbacks import Callback, Loop

log = logging.getLogger("poolbench")

NO_TIME = "-:--:--"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MIN_BAR = 8
MAX_BAR = 30


def clock(seconds: float | None) -> str:
    """``0:02:13``; ``-:--:--`` for unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return NO_TIME
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def short_title(title: str, width: int) -> str:
    """``title`` in at most ``width`` cells. A run name (``digits-vgg-max-global_avg-s0-
    d7ef6402``) first drops its data, then its hash, then its model, then its head; anything
    else (or what is still too long) ends in ``…``."""
    if cell_len(title) <= width:
        return title
    parts = title.split("-")
    if len(parts) == 6 and parts[4][:1] == "s" and parts[4][1:].isdigit():
        data, model, pool, head, seed, _ = parts
        for candidate in (
            [model, pool, head, seed, parts[5]],
            [model, pool, head, seed],
            [pool, head, seed],
            [pool, seed],
        ):
            text = "-".join(candidate)
            if cell_len(text) <= width:
                return text
        title = f"{pool}-{seed}"
    if width <= 1:
        return "…"[:width]
    out = ""
    for ch in title:
        if cell_len(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def bar(fraction: float, width: int) -> Text:
    """A bar of ``width`` cells, ``fraction`` of it done."""
    done = max(0, min(width, int(round(fraction * width))))
    return Text.assemble(("━" * done, "bar.complete"), ("━" * (width - done), "bar.back"))


def _layout(
    title: str, fraction: float | None, variants: Sequence[Sequence[str]], width: int
) -> Text:
    """``title``, a bar (when ``fraction`` is not None) and the first of ``variants`` (each
    a list of whole fields, from the fullest to the most compact) that fits ``width`` with the
    title at its length (or at least 12 cells) and a bar of at least ``MIN_BAR`` cells;
    failing that the most compact, without the bar and with the title as short as it must."""
    title_min = min(cell_len(title), 12)
    for fields in variants:
        rest = " ".join(fields)
        room = width - cell_len(rest) - 1  # for the title, the bar and the space between
        if fraction is None:
            if room >= title_min:
                return Text(f"{short_title(title, room)} {rest}")
            continue
        title_width = min(cell_len(title), room - 1 - MIN_BAR)
        if title_width >= title_min:
            bar_width = min(MAX_BAR, room - 1 - title_width)
            name = short_title(title, title_width)
            return Text.assemble(f"{name} ", bar(fraction, bar_width), f" {rest}")
    rest = " ".join(variants[-1])
    room = width - cell_len(rest) - 1
    if room >= 1:
        return Text(f"{short_title(title, room)} {rest}")
    line = Text(rest)
    line.truncate(width, overflow="ellipsis")
    return line


class _Board:
    """The live display's rows, each rendered for the width it gets, in the order added."""

    def __init__(self) -> None:
        self.rows: list[Callable[[int], Text]] = []
        self.lock = threading.Lock()

    def add(self, row: Callable[[int], Text]) -> None:
        with self.lock:
            self.rows.append(row)

    def remove(self, row: Callable[[int], Text]) -> None:
        with self.lock:
            if row in self.rows:
                self.rows.remove(row)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        with self.lock:
            rows = list(self.rows)
        for row in rows:
            line = row(options.max_width)
            line.no_wrap = True
            line.overflow = "ellipsis"
            yield line


class _Display:
    """One live display per terminal (rich allows one): the first user starts it, the others
    add rows to it; it stops when its owner leaves."""

    current: _Display | None = None

    def __init__(self, console: Console | None) -> None:
        self.console = console or Console(file=sys.stdout)
        self.board = _Board()
        self.live = Live(self.board, console=self.console, transient=True, refresh_per_second=4)

    @classmethod
    @contextmanager
    def row(cls, row: Callable[[int], Text], console: Console | None) -> Iterator[_Display]:
        """``row`` on the live display for the block (a display of its own when none runs)."""
        own = cls.current is None
        display = cls(console) if own else cls.current
        assert display is not None
        display.board.add(row)
        if own:
            cls.current = display
            display.live.start()
        try:
            yield display
        finally:
            display.board.remove(row)
            if own:
                display.live.stop()
                cls.current = None
            else:
                display.live.refresh()


class SweepProgress:
    """Follows a sweep through the job reports in ``sweep_dir`` (see
    :mod:`poolbench.sweep.callbacks`), read from a background thread.

    ``total`` is the number of jobs (None: unknown); ``skipping`` names the runs known
    beforehand to be skipped (already ok), counted as skipped from the start.
    """

    def __init__(
        self,
        sweep_dir: Path,
        total: int | None,
        skipping: set[str] | frozenset[str] = frozenset(),
        live: bool | None = None,
        interval_s: float = 0.5,
        console: Console | None = None,
        clock_s: Callable[[], float] = time.monotonic,
    ):
        self.sweep_dir = Path(sweep_dir)
        self.total = total
        self.skipping = set(skipping)
        self.ok = self.failed = 0
        self.skipped_seen: set[str] = set()
        self.walls: list[float] = []  # wall time of each run that ran
        self.live = sys.stdout.isatty() if live is None else live
        self.interval_s = interval_s
        self.console = console
        self.now = clock_s
        self._read: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._display: AbstractContextManager[_Display] | None = None
        self._start = self._last = 0.0

    @property
    def skipped(self) -> int:
        return len(self.skipping | self.skipped_seen)

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.skipped

    def to_run(self) -> int | None:
        """Jobs still to run (not counting those that will be skipped), None when unknown."""
        if self.total is None:
            return None
        return max(0, self.total - self.done)

    def eta(self) -> float | None:
        """Seconds left: mean wall time of the finished runs x runs still to run, less the
        time the current one has run (None before any run finished)."""
        left = self.to_run()
        if left is None or not self.walls:
            return None
        if left == 0:
            return 0.0
        mean = sum(self.walls) / len(self.walls)
        return max(0.0, mean * left - (self.now() - self._last))

    def record(self, event: dict[str, Any]) -> None:
        """Count one job report (``run_name``, ``status``, ``skipped``, ``wall_s``)."""
        name = str(event.get("run_name"))
        if event.get("skipped"):
            self.skipped_seen.add(name)
            return
        self.skipping.discard(name)  # it ran after all
        if event.get("status") == "ok":
            self.ok += 1
        else:
            self.failed += 1
        if event.get("wall_s") is not None:
            self.walls.append(float(event["wall_s"]))
        self._last = self.now()

    def poll(self) -> bool:
        """Count the job reports written since the last poll; True when a count changed."""
        from poolbench.run.jobs import new_events

        with self._lock:
            events = new_events(self.sweep_dir, self._read)
            for event in events:
                self.record(event)
        return bool(events)

    def _heard(self, path: Path, report: dict[str, Any]) -> None:
        """A report written in this process (the basic launcher), counted at once."""
        if path.parent.parent != self.sweep_dir:
            return
        with self._lock:
            if path.name in self._read:
                return
            self._read.add(path.name)
            self.record(report)
        self._report()

    def counts(self, compact: bool = False) -> str:
        if compact:
            return f"{self.ok} ok {self.failed} fail {self.skipped} skip"
        return f"{self.ok} ok, {self.failed} failed, {self.skipped} skipped"

    def render(self, width: int) -> Text:
        if self.total is None:
            done = f"{self.done} done"
        else:
            done = f"{self.done:>{len(str(self.total))}}/{self.total}"
        elapsed = clock(self.now() - self._start)
        eta = f"ETA {clock(self.eta())}"
        fraction = self.done / self.total if self.total else None
        variants = [
            [done, self.counts(), elapsed, eta],
            [done, self.counts(compact=True), elapsed, eta],
            [done, self.counts(compact=True), eta],
        ]
        return _layout("sweep", fraction, variants, width)

    def line(self) -> str:
        total = "?" if self.total is None else self.total
        return f"sweep: {self.done}/{total} done ({self.counts()}), ETA {clock(self.eta())}"

    def _report(self) -> None:
        if not self.live:
            print(self.line(), flush=True)
        elif _Display.current is not None:
            _Display.current.live.refresh()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.poll():
                self._report()

    def __enter__(self) -> SweepProgress:
        from poolbench.run.jobs import LISTENERS

        self._start = self._last = self.now()
        if self.live:
            self._display = _Display.row(self.render, self.console)
            self._display.__enter__()
        LISTENERS.append(self._heard)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from poolbench.run.jobs import LISTENERS

        LISTENERS.remove(self._heard)
        self._stop.set()
        self._thread.join()
        if self.poll():
            self._report()
        if self._display is not None:
            self._display.__exit__(None, None, None)
            self._display = None


class RunProgress(Callback):
    """A training run as the loop's callback (:mod:`poolbench.engine.callbacks`): a row on the
    live display (updated at most every ``progress_interval_s``), or a log line per epoch; and
    its measurement phases after training (:meth:`phase`)."""

    def __init__(
        self,
        title: str,
        live: bool | None = None,
        console: Console | None = None,
        clock_s: Callable[[], float] = time.monotonic,
        interval_s: float = 0.25,
    ):
        self.title = title
        self.live = sys.stdout.isatty() if live is None else live
        self.progress_interval_s = interval_s if self.live else None
        self.console = console
        self.now = clock_s
        self.epochs = self.steps = self.done = 0
        self.epoch = self.batch = 0
        self.completed = 0  # steps done, restored ones included
        self.loss: float | None = None
        self.img_s: float | None = None
        self._first: tuple[float, int] | None = None  # (time, steps done) at the first report
        self._display: AbstractContextManager[_Display] | None = None
        self._shown: _Display | None = None

    def eta(self) -> float | None:
        """Seconds left at the rate of the steps taken since the first report in this process
        (a resumed run's restored steps do not count)."""
        if self._first is None or self.completed <= self._first[1]:
            return None
        start, steps = self._first
        rate = (self.now() - start) / (self.completed - steps)
        return rate * (self.epochs * self.steps - self.completed)

    def render(self, width: int) -> Text:
        total = self.epochs * self.steps
        epoch = self.epoch if self._first is not None else min(self.done + 1, self.epochs)
        # Counts padded to their totals' width, so that the title does not shift as they grow
        epochs = f"{epoch:>{len(str(self.epochs))}}/{self.epochs}"
        batches = f"{self.batch:>{len(str(self.steps))}}/{self.steps}"
        loss = "loss -" if self.loss is None else f"loss {self.loss:.3f}"
        speed = "- img/s" if self.img_s is None else f"{self.img_s:,.0f} img/s"
        eta = f"ETA {clock(self.eta())}"
        variants = [
            [f"epoch {epochs}", f"batch {batches}", loss, speed, eta],
            [f"ep {epochs}", f"b {batches}", loss, speed, eta],
            [f"ep {epochs}", f"b {batches}", loss, eta],
            [f"ep {epochs}", eta],
        ]
        return _layout(self.title, self.completed / total if total else 0.0, variants, width)

    def on_train_start(self, loop: Loop) -> None:
        self.epochs, self.steps = loop.epochs, loop.steps_per_epoch
        self.done = self.epoch = loop.state.epoch  # epochs restored from a checkpoint
        self.completed = loop.steps_done
        if self.live:
            self._display = _Display.row(self.render, self.console)
            self._shown = self._display.__enter__()
        if self.done:
            log.info("%s resumed after epoch %d/%d", self.title, self.done, self.epochs)

    def on_progress(self, loop: Loop, batch: int, loss: float, img_s: float) -> None:
        self.completed = (loop.running - 1) * self.steps + batch
        if self._first is None:
            self._first = (self.now(), self.completed)
        self.epoch, self.batch, self.loss, self.img_s = loop.running, batch, loss, img_s

    def on_epoch_end(self, loop: Loop) -> None:
        row = loop.state.history[-1]
        self.completed = loop.steps_done
        self.epoch, self.batch = row["epoch"], self.steps
        self.loss, self.img_s = row["train_loss"], loop.state.img_s
        acc = row.get("val_acc")
        acc_text = f" val_acc {acc:.4f}" if acc is not None else ""
        rest = (
            f"epoch {row['epoch']}/{self.epochs} loss {row['train_loss']:.4f}{acc_text} "
            f"{loop.state.img_s:,.0f} img/s"
        )
        if self._shown is not None:
            # Above the live rows, in the terminal's width; the log file gets the full line.
            console = self._shown.console
            title = short_title(self.title, max(1, console.width - cell_len(rest) - 1))
            console.print(Text(f"{title} {rest}", no_wrap=True, overflow="ellipsis"))
            log.info(f"{self.title} {rest}", extra={"console": False})
        else:
            log.info(f"{self.title} {rest}")

    def on_train_end(self, loop: Loop) -> None:
        if self._display is not None:
            self._display.__exit__(None, None, None)
            self._display = self._shown = None

    @contextmanager
    def phase(self, what: str) -> Iterator[None]:
        with phase(self.title, what, self.live, self.console, self.now):
            yield


@contextmanager
def phase(
    title: str,
    what: str,
    live: bool | None = None,
    console: Console | None = None,
    clock_s: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Show that run ``title`` is in phase ``what`` (``timing latency``, ``evaluating:
    invariance``) while the block runs: a row with a spinner and the time spent on a
    terminal, a log line elsewhere."""
    live = sys.stdout.isatty() if live is None else live
    if not live:
        log.info("%s: %s", title, what)
        yield
        return
    start = clock_s()

    def render(width: int) -> Text:
        spent = clock_s() - start
        spin = SPINNER[int(spent * 8) % len(SPINNER)]
        return _layout(title, None, [[spin, what, clock(spent)], [spin, what]], width)

    log.info("%s: %s", title, what, extra={"console": False})
    with _Display.row(render, console):
        yield
