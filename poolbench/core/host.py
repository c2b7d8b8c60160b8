"""The machine a figure was measured on: the CPU's model name and the instruction-set flags
that decide its speed (AVX2, AVX-512, bf16, AMX), written beside every measured figure. The
development machines change between sessions and run the same code up to 5x apart, so a
timing means nothing without them.

Pure Python (``/proc/cpuinfo`` on Linux).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# The flags that change what a CPU computes fast, as /proc/cpuinfo names them (x86's "flags",
# and Arm's "Features": bf16 there is Armv8.6's BFloat16 instructions).
SPEED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_tile",
    "asimd",
    "sve",
    "bf16",
)


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> tuple[str, ...]:
    """Those of :data:`SPEED_FLAGS` the CPU has (empty where the system does not say)."""
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return tuple(f for f in SPEED_FLAGS if f in have)
    return ()


def cpu_text() -> str:
    """``AMD EPYC (avx2 fma; no avx512f, amx)``: the model and which speed flags it has."""
    flags = cpu_flags()
    if not _cpuinfo():
        return cpu_name()
    missing = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f not in flags]
    text = " ".join(flags) or "no avx2"
    if missing:
        text += f"; no {', '.join(missing)}"
    return f"{cpu_name()} ({text})"


__all__ = ["SPEED_FLAGS", "cpu_flags", "cpu_name", "cpu_text"]
