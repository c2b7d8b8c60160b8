"""The live displays on a terminal: the real classes on a recording rich console at 80 and 120
columns, and one real sweep of the installed command under a pseudo-terminal."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.cells import cell_len
from rich.console import Console

from poolbench.engine.callbacks import Loop, LoopState
from poolbench.run.jobs import JOBS_DIR
from poolbench.ui.progress import (
    NO_TIME,
    RunProgress,
    SweepProgress,
    _Display,
    clock,
    phase,
    short_title,
)
from tests.helpers import FAST

NAME = "imagenette-resnet18-cascade_corner-catavgmax-s12-d7ef6402"
TIME = r"\d+:\d\d:\d\d"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def frame(width: int) -> list[str]:
    """The live display's rows as a terminal of ``width`` columns shows them."""
    assert _Display.current is not None
    out = Console(width=width, file=io.StringIO(), force_terminal=True, color_system=None)
    out.print(_Display.current.board)
    return out.file.getvalue().splitlines()


def report(sweep_dir: Path, job: int, name: str, status: str, wall_s: float, **extra) -> None:
    folder = sweep_dir / JOBS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    body = {"run_name": name, "status": status, "skipped": False, "wall_s": wall_s} | extra
    (folder / f"{job:06d}.json").write_text(json.dumps(body))


def test_short_title_drops_data_hash_model_head_then_cuts():
    name = "digits-vgg-max-global_avg-s0-d7ef6402"
    assert short_title(name, 40) == name
    assert short_title(name, 30) == "vgg-max-global_avg-s0-d7ef6402"
    assert short_title(name, 22) == "vgg-max-global_avg-s0"
    assert short_title(name, 18) == "max-global_avg-s0"
    assert short_title(name, 8) == "max-s0"
    assert short_title(name, 4) == "max…"
    assert short_title("a plain title", 8) == "a plain…"
    assert clock(3725) == "1:02:05" and clock(None) == NO_TIME


@pytest.mark.parametrize("width", [80, 120])
def test_every_row_fits_with_whole_counts_bars_and_times(width: int, tmp_path: Path):
    t = Clock()
    console = Console(width=width, file=io.StringIO(), force_terminal=True, record=True)
    sweep = SweepProgress(
        tmp_path, total=24, skipping={"old"}, live=True, interval_s=3600, console=console, clock_s=t
    )
    with sweep:
        t.t += 7385  # two hours in: the elapsed time has room for every digit
        (row,) = frame(width)
        assert re.search(
            rf"sweep ━+ +1/24 0 ok,? 0 fail(ed)?,? 1 skip(ped)? {TIME} ETA -:--:--$", row
        )
        run = RunProgress(NAME, live=True, console=console, clock_s=t)
        loop = Loop(LoopState(), 10, 1200, {}, torch.Generator(), running=1)
        run.on_train_start(loop)
        run.on_progress(loop, 1, 2.30258, 12345.6)
        t.t += 1
        run.on_progress(loop, 2, 2.2, 12000.4)
        sweep_row, run_row = frame(width)
        assert re.search(r" ━+ (epoch|ep) +1/10 (batch|b) +2/1200 loss 2\.200", run_row), run_row
        assert re.search(rf"12,000 img/s ETA {TIME}$", run_row), run_row
        loop.state = LoopState(epoch=1, images=12000, train_seconds=1.0)
        loop.state.history.append({"epoch": 1, "train_loss": 2.1, "val_acc": 0.5})
        run.on_epoch_end(loop)
        run.on_train_end(loop)
        report(tmp_path, 0, "r0", "ok", wall_s=120.0)
        assert sweep.poll()
        with phase(NAME, "evaluating: invariance", live=True, console=console, clock_s=t):
            t.t += 3
            sweep_row, phase_row = frame(width)
        assert re.search(r" +2/24 1 ok,? 0 fail(ed)?,? 1 skip(ped)? ", sweep_row), sweep_row
        assert re.search(rf"ETA {TIME}$", sweep_row) and NO_TIME not in sweep_row
        assert re.search(r"\S+ [⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] evaluating: invariance 0:00:03$", phase_row)
        for line in (sweep_row, run_row, phase_row):
            assert cell_len(line) <= width, line
            assert "…" not in line.split(" ", 1)[1]  # only a title may be cut
    # what was printed above the live rows (the recording strips the rows' cursor moves, so
    # a line printed above them follows the last frame's text)
    printed = console.export_text()
    epoch_lines = re.findall(
        r"[a-z0-9_-]+ epoch 1/10 loss 2\.1000 val_acc 0\.5000 [\d,]+ img/s", printed
    )
    assert epoch_lines and all(cell_len(ln) <= width for ln in epoch_lines), epoch_lines
    assert all(ln.endswith(" 12,000 img/s") for ln in epoch_lines)
    assert _Display.current is None  # the sweep owned the display and stopped it


def test_sweep_eta_is_mean_finished_wall_time_times_runs_left(tmp_path: Path):
    t = Clock()
    with SweepProgress(tmp_path, 6, skipping={"old"}, live=False, interval_s=3600, clock_s=t) as s:
        assert s.eta() is None
        t.t += 125
        s.record({"run_name": "a", "status": "ok", "wall_s": 120.0})
        assert (s.done, s.to_run()) == (2, 4)
        assert s.eta() == 4 * 120.0  # counts down from here
        t.t += 60
        assert s.eta() == 4 * 120.0 - 60
        s.record({"run_name": "b", "status": "failed", "wall_s": 60.0})
        assert s.eta() == 3 * 90.0
        s.record({"run_name": "old", "status": "ok", "skipped": True})  # known already
        assert (s.ok, s.failed, s.skipped, s.to_run()) == (1, 1, 1, 3)
        s.record({"run_name": "c", "status": "ok", "skipped": True})  # skipped, unannounced
        assert s.eta() == 2 * 90.0 and s.skipped == 2
    assert "sweep: 4/6 done (1 ok, 1 failed, 2 skipped), ETA 0:03:00" == s.line()


def test_plain_lines_without_a_terminal(tmp_path: Path, capsys):
    t = Clock()
    with SweepProgress(tmp_path, 2, live=False, interval_s=3600, clock_s=t):
        report(tmp_path, 0, "a", "ok", wall_s=30.0)
    # the last reports are read when the sweep ends, and said in one plain line
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["sweep: 1/2 done (1 ok, 0 failed, 0 skipped), ETA 0:00:30"]


def test_phases_are_log_lines_without_a_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="poolbench"):
        with phase("run-1", "timing latency", live=False):
            pass
    assert "run-1: timing latency" in caplog.text


def test_model_summary_fits_80_columns():
    from poolbench.core.config import PoolSpec
    from poolbench.models.registry import create_model
    from poolbench.run.runner import summary_lines

    net = create_model(
        "torchvision", 10, 3, PoolSpec("gem"), PoolSpec("catavgmax"), arch="resnet18"
    )
    lines = summary_lines(net, (3, 64, 64))
    assert any("replaced MaxPool2d maxpool -> GeMPool(F=3" in ln for ln in lines)
    assert lines[0].split() == ["stage", "output", "params", "pool", "pooling"]
    assert max(len(ln) for ln in lines) <= 80, lines


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]")


def run_in_pty(cmd: list[str], cols: int, cwd: Path) -> str:
    """``cmd``'s terminal output, run on a pseudo-terminal ``cols`` columns wide."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {**os.environ, "COLUMNS": str(cols), "LINES": "50", "TERM": "xterm-256color"}
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode("utf-8", errors="replace")


@pytest.mark.parametrize("cols", [80])
def test_real_sweep_on_a_pseudo_terminal(workdir: Path, cols: int):
    exe = str(Path(sys.executable).with_name("poolbench"))
    raw = run_in_pty([exe, "run", "-m", "pool=max,avg", *FAST], cols, workdir)
    text = ANSI.sub("", raw)
    lines = [ln for ln in re.split(r"\r\n|\r|\n", text) if ln.strip()]
    table = next(i for i, ln in enumerate(lines) if "poolbench sweep:" in ln)
    # Everything up to the closing table (live rows, epoch lines, logs) fits; after it the
    # table does, and its prose lines are left to the terminal to wrap (one line to copy).
    shown = lines[:table] + [ln for ln in lines[table:] if ln[:1] in "┏┃┡│└"]
    too_wide = [ln for ln in shown if cell_len(ln) > cols]
    assert not too_wide, too_wide
    rows = [ln for ln in lines[:table] if ln.startswith("sweep ")]
    assert rows, lines[:table]
    for row in rows:  # whole counts, on every frame
        assert re.search(r"sweep ━+ [0-2]/2 [0-2] ok,? 0 fail(ed)?,? 0 skip(ped)? ", row), row
    after_first = [r for r in rows if " 1/2 " in r]
    assert after_first and all(re.search(rf"ETA {TIME}$", r) for r in after_first)
    assert NO_TIME in rows[0]  # no estimate before a run finished
    assert any(re.search(r"(epoch|ep) 1/1 (batch|b) +\d+/\d+ loss", ln) for ln in lines)
    assert "2 ok, 0 failed (2 ran, 0 skipped" in text
