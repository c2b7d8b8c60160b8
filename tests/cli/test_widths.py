"""Terminal output that fits and stays readable: the sweep's closing table and `poolbench
report` on a real pseudo-terminal at 80, 100 and 160 columns print every number whole (columns
are left out, and named, rather than cells cut), prose wraps at words; piped output honours
COLUMNS and is otherwise not cut at all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.cells import cell_len

from tests.cli.test_progress import ANSI, run_in_pty
from tests.helpers import FAST
from tests.helpers.fake_records import record, write_runs
from tests.helpers.report_cases import CASES, one_setting

EXE = str(Path(sys.executable).with_name("poolbench"))
WIDTHS = [80, 100, 160]
TABLE = "┏┃┡│└"
PATH_LINE = re.compile(r"(table|page): /\S+$")


def screen_lines(raw: str) -> list[str]:
    return [ln for ln in re.split(r"\r\n|\r|\n", ANSI.sub("", raw)) if ln.strip()]


def assert_fits(lines: list[str], cols: int) -> None:
    # a path is printed whole on a line of its own (the terminal wraps what is wider)
    too_wide = [ln for ln in lines if cell_len(ln) > cols and not PATH_LINE.match(ln)]
    assert not too_wide, too_wide
    cut = [ln for ln in lines if "…" in ln]
    assert not cut, cut


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cols", WIDTHS)
def test_report_fits_every_width_with_every_number_whole(tmp_path: Path, case: str, cols: int):
    write_runs(tmp_path / "recs", CASES[case]())
    cmd = [EXE, "report", "recs", "-o", "out/r.csv", "--no-plots"]
    lines = screen_lines(run_in_pty(cmd, cols, tmp_path))
    assert_fits(lines, cols)
    summary = pd.read_csv(tmp_path / "out" / "r_summary.csv")
    text = "\n".join(lines)
    for p in summary["p_vs_best"].dropna():
        assert f" {p:.3g} " in text, (p, text)
    for mean in summary["test_acc_mean"].dropna():
        assert f"{mean:.4f}" in text
    # the legend wraps at words: its words, in order, are the library's
    legend = [ln for ln in lines if ln[:1] not in TABLE]
    prose = " ".join(" ".join(legend).split())
    assert "verdict against the best" in prose or "no verdict" in prose, prose


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sweep's records: a rerun of the same command prints its closing table again,
    each run skipped as already ok."""
    where = tmp_path_factory.mktemp("sweep")
    args = [EXE, "run", "-m", "pool=max,avg,strided_conv", "seed=0,1", *FAST]
    done = subprocess.run(args, cwd=where, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return where


@pytest.mark.parametrize("cols", WIDTHS)
def test_the_closing_table_fits_every_width(swept: Path, cols: int):
    args = [EXE, "run", "-m", "pool=max,avg,strided_conv", "seed=0,1", *FAST]
    lines = screen_lines(run_in_pty(args, cols, swept))
    start = next(i for i, ln in enumerate(lines) if "poolbench sweep:" in ln)
    closing = lines[start:]
    assert_fits(closing, cols)
    rows = [ln for ln in closing if ln.startswith("│")]
    assert len(rows) == 3 and all(re.search(r"\d\.\d{4} ± \d\.\d{4}", r) for r in rows), rows
    left_out = [ln for ln in closing if ln.startswith("left out at")]
    if cols >= 100:
        assert not left_out, closing
    else:  # the narrow terminal names what it left out and where it is
        assert left_out and "summary.csv" in " ".join(closing), closing


def piped(cmd: list[str], cwd: Path, columns: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_piped_output_honours_columns_and_is_otherwise_not_cut(tmp_path: Path):
    write_runs(tmp_path / "recs", one_setting())
    cmd = [EXE, "report", "recs", "-o", "out/r.csv", "--no-plots"]
    narrow = piped(cmd, tmp_path, "80").splitlines()
    assert max(cell_len(ln) for ln in narrow) <= 80
    whole = piped(cmd, tmp_path, None).splitlines()
    legend = next(ln for ln in whole if ln.startswith("test_acc, n = 5 seeds"))
    assert cell_len(legend) > 200  # one line: a program reading it gets the whole sentence
    assert not any("…" in ln for ln in whole)


def test_bench_time_and_compare_fit_80_columns_with_every_number_whole(swept: Path, tmp_path: Path):
    """The other tables poolbench prints: ``bench`` (a long layer name, mean ± IQR), ``time``
    (the sweep's models) and ``report --compare`` leave columns out, and name them, rather
    than cut a cell or wrap a number."""
    bench = [EXE, "bench", "--pools", "max,cascade_corner", "--shape", "2,4,16,16"]
    bench += ["--repeats", "2", "--warmup", "1", "-o", str(tmp_path / "b.csv")]
    lines = piped(bench, tmp_path, "80").splitlines()
    assert_fits(lines, 80)
    rows = [ln for ln in lines if ln.startswith("│")]
    assert len(rows) == 3 and any("max_pool2d (native)" in r for r in rows), lines
    assert all(re.search(r"\d\.\d\d ± \d+\.\d\d", r) for r in rows), rows
    assert any(ln.startswith("left out at 80 columns: ") for ln in lines), lines
    wide = piped(bench, tmp_path, "200").splitlines()
    assert not any(ln.startswith("left out") for ln in wide) and "fwd+bwd GB/s" in "".join(wide)

    timed = piped([EXE, "time", "results", "--repeats", "2"], swept, "80").splitlines()
    assert_fits(timed, 80)
    assert len([ln for ln in timed if ln.startswith("│")]) == 3, timed

    write_runs(tmp_path / "a", one_setting())
    write_runs(tmp_path / "b", [{**r, "tags": ["b"]} for r in one_setting()])
    cmd = [EXE, "report", "--compare", "a", "b", "-o", "c.csv"]
    compared = piped(cmd, tmp_path, "80").splitlines()
    assert_fits(compared, 80)
    assert len([ln for ln in compared if ln.startswith("│")]) == 5, compared


def six_keys() -> list[dict]:
    """Pools over datasets, models, learning rates, weight decays and widths: no table of them
    fits 80 columns, whatever it leaves out."""
    out = []
    for d, m, lr, wd in (("digits", "vgg", 0.05, 0.0005), ("shapes", "resnet18", 0.005, 0.001)):
        for widths in ([16, 32, 64], [32, 64, 128]):
            for i, p in enumerate(("max", "avg")):
                config = {
                    "data": {"name": d},
                    "model": {"name": m, "widths": widths},
                    "train": {"lr": lr, "weight_decay": wd},
                }
                out += [record(p, s, 0.9 - 0.01 * i + s / 500, config) for s in range(3)]
    return out


def test_a_table_too_wide_even_when_narrowed_prints_each_row_as_a_paragraph(tmp_path: Path):
    write_runs(tmp_path / "recs", six_keys())
    lines = screen_lines(
        run_in_pty([EXE, "report", "recs", "-o", "out/r.csv", "--no-plots"], 80, tmp_path)
    )
    assert_fits(lines, 80)
    summary = pd.read_csv(tmp_path / "out" / "r_summary.csv")
    text = " ".join(" ".join(lines).split())
    for mean in summary["test_acc_mean"]:
        assert f"{mean:.4f}" in text
    verdicts = re.findall(r"; verdict (best|equiv\.|undecided|worse|no claim); latency", text)
    assert text.count("pool=max ") == 4 and len(verdicts) == 8
    assert "latency_ms " in text and "params " in text  # every column, none left out


def test_the_report_table_shows_the_latency_the_figures_compare(tmp_path: Path):
    write_runs(tmp_path / "recs", one_setting())  # every pool timed in one session
    out = piped([EXE, "report", "recs", "-o", "out/r.csv", "--no-plots"], tmp_path, None)
    header = next(ln for ln in out.splitlines() if "p vs best" in ln)
    assert "latency_interleaved_ms" in header and "latency_ms " not in header


@pytest.mark.parametrize("seed", range(40))
def test_a_fitted_table_is_never_wider_than_the_console_nor_cuts_a_cell(seed: int):
    """Headers of several words that wrap, beside cells of every width: rich's own shrinking
    once left such a table one column too wide, cropped at the right edge (the sweep's closing
    table at 80 columns, piped)."""
    import io
    import random

    from rich.console import Console

    from cli.tables import Column, add_row, fitted_table

    rng = random.Random(seed)
    words = ["ms", "(interleaved)", "shift", "cons.", "test_acc", "± ci95", "p", "vs", "best"]
    columns = [Column("pool", justify="left")]
    for i in range(rng.randint(3, 9)):
        header = " ".join(rng.sample(words, rng.randint(1, 3)))
        columns.append(Column(header, drop=i + 1 if rng.random() < 0.7 else None))
    rows = [
        [rng.choice(["max", "strided_conv", "softpool"])]
        + [f"{rng.random():.{rng.randint(1, 6)}f}" for _ in columns[1:]]
        for _ in range(3)
    ]
    for cells in rows:
        add_row(columns, cells)
    for width in (60, 70, 80, 90, 100, 120, 160):
        out = io.StringIO()
        console = Console(file=out, width=width)
        table, _ = fitted_table(console, "title", columns, [None] * len(rows))
        console.print(table)
        lines = out.getvalue().splitlines()
        assert max(cell_len(ln) for ln in lines) <= width, (width, out.getvalue())
        assert "…" not in out.getvalue()
        if lines[1].startswith("┏"):  # a table (not paragraphs): closed on the right
            assert all(ln.rstrip()[-1] in "┓┃┩│┘" for ln in lines[1:]), out.getvalue()
            body = [ln for ln in lines if ln.startswith("│")]
            for ln, cells in zip(body, rows, strict=True):
                printed = [c.strip() for c in ln.strip("│").split("│")]
                assert all(c in cells for c in printed), (printed, cells)
