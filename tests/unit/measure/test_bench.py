"""``poolbench bench``: the arithmetic with a mocked clock, real tiny runs, the CLI, bad input.

Real timings on a shared CPU are noise at these tiny shapes, so the real-clock tests assert
only what must hold whatever the load: positive medians, non-negative IQRs, native max
pooling's ratio exactly 1 (it is its own baseline), and finite positive ratios and GB/s.
The exact arithmetic (medians, ratios, GB/s) is checked with a clock that ticks uniformly.
"""

from __future__ import annotations

import math
import platform
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core.errors import ConfigError, ShapeError, UnknownNameError
from poolbench.measure.bench import (
    NATIVE,
    BenchRow,
    make_spec,
    minimal_bytes,
    run_bench,
    write_csv,
)
from poolbench.pooling import list_pools, pooled_size

runner = CliRunner()


class TickClock:
    """Every reading is ``tick`` seconds after the previous one: each timed call lasts one tick."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_mocked_clock_gives_exact_medians_ratios_and_bandwidth():
    threads = torch.get_num_threads()
    # allocator="system" here and below: "keep" would change this pytest process for good
    # (tests of RSS peaks need fresh pages); its effect is tested in a subprocess.
    spec = make_spec(
        "max,softpool,none", shape="2,3,8,6", threads=1, warmup=1, repeats=5, allocator="system"
    )
    rows = run_bench(spec, clock=TickClock(0.002))
    assert torch.get_num_threads() == threads  # restored
    assert [(r.pool, r.mode) for r in rows] == [
        (p, m) for p in (NATIVE, "max", "softpool", "none") for m in ("fwd", "fwd+bwd")
    ]
    x_elems = 2 * 3 * 8 * 6
    for r in rows:
        assert r.median_ms == pytest.approx(2.0) and r.iqr_ms == pytest.approx(0.0)
        assert r.ratio == pytest.approx(1.0)
        y_elems = x_elems if r.pool == "none" else 2 * 3 * 4 * 3
        moved = (x_elems + y_elems) * 4 * (1 if r.mode == "fwd" else 2)
        assert r.gb_s == pytest.approx(moved / 0.002 / 1e9)
        assert (r.shape, r.dtype, r.device, r.threads, r.repeats) == (
            "2x3x8x6",
            "fp32",
            "cpu",
            1,
            5,
        )
    assert rows[2].out_shape == f"2x3x{pooled_size(8, 2, 2)}x{pooled_size(6, 2, 2)}"


def test_minimal_bytes_formula():
    x, y = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4)
    assert minimal_bytes(x, y, "fwd") == (384 + 96) * 4
    assert minimal_bytes(x, y, "fwd+bwd") == 2 * (384 + 96) * 4
    assert minimal_bytes(x.bfloat16(), y.bfloat16(), "fwd") == (384 + 96) * 2


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_real_timing_is_sane(dtype: str):
    spec = make_spec(
        "max,avg,softpool,gem",
        shape="2,4,8,8",
        dtype=dtype,
        warmup=1,
        repeats=3,
        allocator="system",
    )
    rows = run_bench(spec)
    assert len(rows) == 2 * 5
    for r in rows:
        assert r.median_ms > 0 and r.iqr_ms >= 0
        assert 0 < r.ratio < math.inf and 0 < r.gb_s < math.inf
        assert r.dtype == dtype
    assert all(r.ratio == 1.0 for r in rows if r.pool == NATIVE)


def test_default_is_every_local_pool():
    assert make_spec().pools == tuple(list_pools("local"))
    assert make_spec().shape == (64, 128, 32, 32)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pools": "max,sofpool"}, UnknownNameError, "unknown pool 'sofpool'; available: "),
        ({"pools": "global_avg"}, ConfigError, "'global_avg' is a global pool"),
        ({"shape": "1,2,3"}, ConfigError, "expected shape as N,C,H,W"),
        ({"shape": "1,2,0,4"}, ConfigError, "expected shape as N,C,H,W"),
        ({"dtype": "fp8"}, ConfigError, "expected dtype to be one of fp32, bf16"),
        ({"repeats": 0}, ConfigError, "repeats >= 1"),
        ({"allocator": "jemalloc"}, ConfigError, "allocator to be one of keep, system"),
        ({"pools": "overlap", "shape": "1,1,2,2"}, ShapeError, "needs input >= 3"),
    ],
)
def test_bad_input_raises_before_timing(kwargs, error, message):
    with pytest.raises(error, match=message):
        run_bench(make_spec(**kwargs), clock=lambda: pytest.fail("timed despite bad input"))


def test_csv_round_trip(tmp_path: Path):
    rows = run_bench(make_spec("avg", shape="1,2,4,4", warmup=0, repeats=2, allocator="system"))
    path = write_csv(rows, tmp_path / "sub" / "bench.csv")
    frame = pd.read_csv(path)
    assert list(frame.columns) == list(BenchRow.__dataclass_fields__)
    assert list(frame["pool"]) == [NATIVE, NATIVE, "avg", "avg"]
    assert frame["median_ms"].tolist() == pytest.approx([r.median_ms for r in rows])
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_cli_prints_table_and_writes_csv_in_results(workdir: Path):
    result = runner.invoke(
        app,
        [
            "bench",
            "--pools",
            "max,lp",
            "--shape",
            "2,3,6,6",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--allocator",
            "system",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    for name in ("max_pool2d (native)", "lp", "fwd+bwd × max", "2x3x6x6"):
        assert name in result.output
    (csv,) = (workdir / "results" / "bench").glob("bench-2x3x6x6-fp32-cpu-*.csv")
    frame = pd.read_csv(csv)
    assert set(frame["pool"]) == {NATIVE, "max", "lp"} and set(frame["threads"]) == {1}
    assert set(frame["allocator"]) == {"system"} and "allocator system" in result.output
    assert str(csv.relative_to(workdir)) in result.output.replace("\n", "")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--pools", "sofpool"], "error: unknown pool 'sofpool'; available: "),
        (["--shape", "64x128"], "error: expected shape as N,C,H,W positive integers"),
        (["--dtype", "fp16"], "error: expected dtype to be one of fp32, bf16"),
        (["--allocator", "tcmalloc"], "error: expected allocator to be one of keep, system"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(workdir: Path, args: list[str], expected: str):
    result = runner.invoke(app, ["bench", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (workdir / "results").exists()


ALLOCATION_FAULTS = """
import ctypes, resource, sys
from poolbench.measure.device import set_cpu_allocator
print(set_cpu_allocator(sys.argv[1]))
libc = ctypes.CDLL("libc.so.6")  # the allocator torch's CPU tensors come from
libc.malloc.restype = ctypes.c_void_p
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
for _ in range(2):  # a 64 MiB block, written, freed, then asked for again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 << 20)
    libc.memset(block, 1, 64 << 20)
    libc.free(block)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_keep_allocator_reuses_freed_memory_without_page_faults():
    def run(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", ALLOCATION_FAULTS, mode],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return out[0], int(out[2])  # the mode in effect, faults of the second allocation

    pages = (64 << 20) // resource.getpagesize()
    mode, faults = run("system")
    assert mode == "system" and faults > pages // 2  # mapped afresh: every page faults again
    mode, faults = run("keep")
    assert mode == "keep" and faults < pages // 20  # the freed block is reused as it is
