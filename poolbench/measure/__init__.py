"""Measurement: device and precision, latency and peak memory, FLOPs, invariance tests and
the pooling-layer micro-benchmark.

May import ``core``, ``pooling``, ``models`` and ``data``; never the training loop or anything
above it.
"""
