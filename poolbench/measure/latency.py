"""Timing that can be trusted: warm-up, device synchronisation, median of repeats; several
models timed interleaved, round by round, so that a change of load hits all of them alike
(:func:`time_interleaved`); and the peak memory of a training run."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from poolbench.core.defaults import UNSTABLE_IQR
from poolbench.measure.device import Precision, synchronize
from poolbench.models.inspect import eval_mode


def time_repeats(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int = 3,
    repeats: int = 10,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        synchronize(device)
        times.append(clock() - start)
    return times


def median_iqr(values: list[float]) -> tuple[float, float]:
    """Median and interquartile range (Q3 - Q1); IQR is 0 for fewer than 2 values."""
    if len(values) < 2:
        return values[0], 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q3 - q1


def inference_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch: int,
    device: torch.device,
    precision: Precision,
    warmup: int = 3,
    repeats: int = 10,
    clock: Callable[[], float] = time.perf_counter,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Median and IQR, in milliseconds, of one eval-mode forward pass of ``batch`` images."""
    x = torch.randn(batch, *input_shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.no_grad(), precision.autocast(device):
            model(x)

    with eval_mode(model):
        times = time_repeats(forward, device, warmup, repeats, clock)
    median, iqr = median_iqr(times)
    return median * 1e3, iqr * 1e3


@dataclass
class Target:
    """One configuration to time: its model and the conditions its runs used."""

    key: str  # the identity of its group: config less the seed
    label: str
    model: nn.Module
    input_shape: tuple[int, int, int]
    device: torch.device
    precision: Precision
    channels_last: bool
    records: list[Path]


@dataclass(frozen=True)
class Timing:
    key: str
    label: str
    median_ms: float
    iqr_ms: float
    records: tuple[Path, ...]

    @property
    def unstable(self) -> bool:
        return self.iqr_ms > UNSTABLE_IQR * self.median_ms


def time_interleaved(
    targets: Sequence[Target],
    batch: int = 64,
    repeats: int = 15,
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    order: list[str] | None = None,
) -> list[Timing]:
    """Median and IQR (ms) of one eval-mode forward pass of ``batch`` random images for every
    target, timed round by round: each round calls every target once, in the same order.
    ``order`` (if given) collects the labels in the order they were timed (for tests)."""
    calls = []
    for t in targets:
        x = torch.randn(batch, *t.input_shape, device=t.device)
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            t.model.to(memory_format=torch.channels_last)

        def forward(model: nn.Module = t.model, x: torch.Tensor = x, t: Target = t) -> None:
            with torch.no_grad(), t.precision.autocast(t.device):
                model(x)

        calls.append(forward)
    times: list[list[float]] = [[] for _ in targets]
    with _all_eval([t.model for t in targets]):
        for call, t in zip(calls, targets, strict=True):
            time_repeats(call, t.device, warmup=warmup, repeats=0, clock=clock)
        for _ in range(repeats):
            for i, (call, t) in enumerate(zip(calls, targets, strict=True)):
                times[i] += time_repeats(call, t.device, warmup=0, repeats=1, clock=clock)
                if order is not None:
                    order.append(t.label)
    out = []
    for t, values in zip(targets, times, strict=True):
        median, iqr = median_iqr(values)
        out.append(Timing(t.key, t.label, median * 1e3, iqr * 1e3, tuple(t.records)))
    return out


class _all_eval:
    def __init__(self, models: list[nn.Module]) -> None:
        self.contexts = [eval_mode(m) for m in models]

    def __enter__(self) -> None:
        for c in self.contexts:
            c.__enter__()

    def __exit__(self, *exc: object) -> None:
        for c in self.contexts:
            c.__exit__(*exc)


class PeakMemory:
    """Peak memory of the code inside ``with PeakMemory(device) as peak:``, in MiB.

    ``kind`` says what was measured: ``cuda_max_allocated`` (tensors on the GPU, reset at
    entry); on CPU ``rss_peak`` (the process's resident set high-water mark, reset at entry
    through ``/proc/self/clear_refs``, so it is this block's peak), or ``rss_peak_process``
    where the reset is not allowed (then it is the peak since the process started).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = ""
        self.mb: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_allocated"
        else:
            self.kind = "rss_peak" if _reset_rss_peak() else "rss_peak_process"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = _rss_peak_kib() / 1024


def _rss_peak_kib() -> int:
    """VmHWM (follows the clear_refs reset; ru_maxrss does not) or ru_maxrss (KiB on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
