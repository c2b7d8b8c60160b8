"""Device and numeric precision selection."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from poolbench.core.errors import ConfigError
from poolbench.core.host import cpu_flags


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; valid here: auto, cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"expected device to be one of auto, cpu, cuda, got {device!r}")
    return torch.device(device)


# The CPU flags of native bf16 arithmetic (x86: AVX-512-BF16's dot products, AMX's tiles; Arm:
# the BFloat16 instructions).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) below its bf16 kernels: bf16 would be emulated.
NO_BF16_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
)


def cpu_supports_bf16() -> bool:
    """True on CPUs that compute bf16 natively: the CPU has AVX-512-BF16, AMX-BF16 or Arm's
    BFloat16 instructions (``/proc/cpuinfo``; elsewhere, where it does not say: False),
    oneDNN has bf16 kernels, and ``ONEDNN_MAX_CPU_ISA`` does not cap them away. oneDNN's own
    check says yes on every AVX-512 CPU, where it emulates bf16 with fp32 arithmetic
    (Skylake-SP, Cascade Lake): no faster, and not what ``auto`` should offer."""
    if not any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS):
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in NO_BF16_ISAS:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    """How a run computes: ``dtype`` is the autocast dtype, or None for plain fp32."""

    name: str
    dtype: torch.dtype | None
    use_scaler: bool = False

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``auto``: bf16 autocast where the CPU or GPU has bf16, fp16 + scaler on older GPUs."""
    if precision == "fp32":
        return Precision("fp32", None)
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision=bf16 but this GPU has no bf16; valid: auto, fp32, fp16")
        return Precision("bf16", torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("precision=fp16 needs a CUDA device; valid on CPU: auto, fp32, bf16")
        return Precision("fp16", torch.float16, use_scaler=True)
    if precision == "auto":
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                return Precision("bf16", torch.bfloat16)
            return Precision("fp16", torch.float16, use_scaler=True)
        return Precision("bf16", torch.bfloat16) if cpu_supports_bf16() else Precision("fp32", None)
    raise ConfigError(f"expected precision to be one of auto, fp32, bf16, fp16, got {precision!r}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


ALLOCATORS = ("keep", "system")


def check_allocator(mode: str) -> str:
    if mode not in ALLOCATORS:
        raise ConfigError(f"expected allocator to be one of {', '.join(ALLOCATORS)}, got {mode!r}")
    return mode


def set_cpu_allocator(mode: str) -> str:
    """Set how this process's C allocator treats large blocks; returns the mode in effect.

    ``keep``: on Linux with glibc, serve every block below 1 GiB from the heap and keep freed
    memory there (``mallopt`` M_MMAP_THRESHOLD and M_TRIM_THRESHOLD). By default glibc maps
    each block over 32 MiB afresh and unmaps it on free, so every large tensor pays the
    kernel's page faults again (milliseconds for a 32 MiB gradient); on a busy machine that
    cost swings widely and buries the kernels being timed. This is the effect PyTorch's CPU
    tuning guide treats by preloading jemalloc or tcmalloc. The process keeps its peak
    memory until it exits. ``system``: leave the allocator as it is (a mode already set in
    this process stays). Elsewhere (macOS, Windows, musl) ``keep`` does nothing and
    ``system`` is returned.
    """
    if check_allocator(mode) == "system":
        return "system"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system"
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "system"
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    limit = 1 << 30
    if libc.mallopt(m_mmap_threshold, limit) != 1 or libc.mallopt(m_trim_threshold, limit) != 1:
        return "system"
    return "keep"


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask under Slurm/taskset, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_parallel_jobs() -> int:
    """How many runs to train at once on this machine: one per GPU when there are GPUs, else
    one per two CPUs (small CNNs scale poorly past a few threads, so several runs at two or
    more threads each use a CPU better than one run on all of them)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return gpus if gpus > 0 else max(1, available_cpus() // 2)


def threads_per_job(parallel_jobs: int) -> int:
    """Split this machine's CPUs evenly between ``parallel_jobs`` concurrent runs."""
    return max(1, available_cpus() // max(1, parallel_jobs))


@contextlib.contextmanager
def claim_gpu(lock_dir: Path) -> Iterator[int | None]:
    """Hold one of this machine's GPUs for the duration of a run (one job per GPU).

    Parallel jobs on one machine each take an exclusive ``flock`` on ``<lock_dir>/gpu<i>.lock``
    and make that GPU current; the kernel drops the lock when the process ends, even on
    SIGKILL, so a crashed job never keeps a GPU. Yields None (nothing to claim) with fewer
    than two GPUs.
    """
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        yield None
        return
    import fcntl

    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(count):
            fh = open(lock_dir / f"gpu{index}.lock", "w")  # noqa: SIM115 (held while running)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            try:
                torch.cuda.set_device(index)
                yield index
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
            return
        time.sleep(1.0)
