"""Timing that can be trusted: warm-up, device synchronisation, median of repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from poolbench.device import Precision, synchronize


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
) -> tuple[float, float]:
    """Median and IQR, in milliseconds, of one eval-mode forward pass of ``batch`` images."""
    x = torch.randn(batch, *input_shape, device=device)
    was_training = model.training
    model.eval()

    def forward() -> None:
        with torch.no_grad(), precision.autocast(device):
            model(x)

    try:
        times = time_repeats(forward, device, warmup, repeats, clock)
    finally:
        model.train(was_training)
    median, iqr = median_iqr(times)
    return median * 1e3, iqr * 1e3
