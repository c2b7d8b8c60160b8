"""Thresholds and defaults that more than one layer uses, each defined once.

Pure Python: the command line reads them for its options' defaults before anything loads.
"""

from __future__ import annotations

# A latency whose interquartile range exceeds this share of its median is flagged unstable.
UNSTABLE_IQR = 0.15
UNSTABLE_TEXT = f"IQR > {UNSTABLE_IQR:.0%} of the median"

# What a report tests unless told otherwise: the metric, the level, the key compared.
METRIC = "test_acc"
ALPHA = 0.05
COMPARE_BY = "pool"
# The equivalence margin for metrics in [0, 1] (accuracies): within half a point of the best.
DELTA = 0.005

# The racing sweeper's seeds (a Hydra sweep string) and the seeds of its first round.
RACE_SEEDS = "range(0,10)"
RACE_MIN_SEEDS = 3

# `poolbench time` and a sweep's closing timing: images per batch, timed rounds, untimed calls.
TIME_BATCH = 64
TIME_REPEATS = 15
TIME_WARMUP = 3
