"""Latency and memory measurement, with a mocked clock where the answer must be exact."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from poolbench.measure.device import Precision
from poolbench.measure.latency import PeakMemory, inference_latency, median_iqr, time_repeats

CPU = torch.device("cpu")


def scripted_clock(durations: list[float]) -> tuple[Callable[[], float], list[int]]:
    """A clock whose successive (start, stop) pairs are ``durations`` apart."""
    ticks: list[float] = []
    t = 100.0
    for d in durations:
        ticks += [t, t + d]
        t += d + 1.0
    it: Iterator[float] = iter(ticks)
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        return next(it)

    return clock, calls


def test_time_repeats_times_only_the_repeats() -> None:
    clock, clock_calls = scripted_clock([0.01, 0.02, 0.03])
    fn_calls = []
    times = time_repeats(lambda: fn_calls.append(1), CPU, warmup=4, repeats=3, clock=clock)
    assert times == pytest.approx([0.01, 0.02, 0.03])
    assert len(fn_calls) == 7 and clock_calls[0] == 6  # warm-up calls are not timed


def test_inference_latency_median_and_iqr_in_ms() -> None:
    clock, _ = scripted_clock([0.010, 0.040, 0.020, 0.100, 0.030])
    model = nn.Linear(4 * 2 * 2, 3)
    net = nn.Sequential(nn.Flatten(), model)
    median, iqr = inference_latency(
        net, (4, 2, 2), 8, CPU, Precision("fp32", None), warmup=1, repeats=5, clock=clock
    )
    assert median == pytest.approx(30.0)  # sorted 10, 20, 30, 40, 100 ms
    assert iqr == pytest.approx(20.0)  # Q3 40 - Q1 20 (inclusive quartiles)
    assert net.training  # mode restored


def test_median_iqr_single_value() -> None:
    assert median_iqr([0.5]) == (0.5, 0.0)


@pytest.fixture
def trimmed_heap() -> None:
    """The C heap's free memory given back to the system first (glibc's ``malloc_trim``): a
    large block that an earlier test in this process freed inside the heap stays resident, can
    serve the next large tensor without a new page, and then the peak does not move. Which
    tests ran before depends on the order pytest runs the folders in."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@pytest.mark.usefixtures("trimmed_heap")
def test_peak_memory_sees_a_large_allocation() -> None:
    with PeakMemory(CPU) as before:
        pass
    with PeakMemory(CPU) as peak:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        block += 1
    assert peak.kind in ("rss_peak", "rss_peak_process")
    if peak.kind == "rss_peak":  # per-block peak: must include the 64 MiB
        assert peak.mb >= before.mb + 60
    del block
