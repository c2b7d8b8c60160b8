"""Pooling-layer micro-benchmark (``poolbench bench``).

Every local pool (or a chosen list) runs on one random input of a given shape, dtype, device
and thread count, forward (eval mode, no autograd) and forward+backward (train mode, gradient
to the input and the parameters). Timings are interleaved: each repeat round times every
layer once, native ``F.max_pool2d(x, 2, 2)`` included, so a load change on a shared machine
hits all layers alike and the ratio to native max pooling stays meaningful.

Large tensors come from a C allocator told to keep freed memory (``allocator="keep"``, see
:func:`poolbench.measure.device.set_cpu_allocator`): with glibc's defaults every tensor over 32 MiB
is mapped afresh and page-faults again, a cost that on a shared 2-core machine varied from
run to run by more than the kernels being compared (interquartile ranges of 10-40% of the
median; with ``keep``, 1-10%). ``allocator="system"`` measures the defaults.

Achieved bandwidth uses the *minimal* traffic of a pooling layer:
forward reads the input and writes the output, ``(numel(x) + numel(y)) * itemsize`` bytes;
forward+backward also reads the output gradient and writes the input gradient, twice that.
Real layers move more (intermediates), so GB/s is a lower bound, comparable across layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from poolbench.core.errors import ConfigError
from poolbench.core.storage import atomic_write_text
from poolbench.measure.device import check_allocator, resolve_device, set_cpu_allocator
from poolbench.measure.latency import median_iqr, time_repeats
from poolbench.pooling import create_for_slot, list_pools
from poolbench.pooling.base import LocalPool

NATIVE = "max_pool2d (native)"
MODES = ("fwd", "fwd+bwd")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class BenchSpec:
    """What to measure and under which conditions."""

    pools: tuple[str, ...]
    shape: tuple[int, int, int, int]
    dtype: str = "fp32"
    device: str = "cpu"
    threads: int | None = None
    warmup: int = 2
    repeats: int = 10
    allocator: str = "keep"


@dataclass(frozen=True)
class BenchRow:
    """One layer in one mode: median and IQR in ms, ratio to native max pooling, GB/s."""

    pool: str
    mode: str
    median_ms: float
    iqr_ms: float
    ratio: float
    gb_s: float
    out_shape: str
    shape: str
    dtype: str
    device: str
    threads: int
    repeats: int
    allocator: str
    torch_version: str


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"64,128,32,32"`` -> ``(64, 128, 32, 32)``; anything else is a ConfigError."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"expected shape as N,C,H,W positive integers, got {text!r}")
    n, c, h, w = (int(p) for p in parts)
    return n, c, h, w


def parse_pools(text: str | None) -> tuple[str, ...]:
    """Comma-separated pool names; None or empty means every registered local pool."""
    if not text:
        return tuple(list_pools("local"))
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise ConfigError(f"expected --pools as comma-separated names, got {text!r}")
    return names


def make_spec(
    pools: str | None = None,
    shape: str = "64,128,32,32",
    dtype: str = "fp32",
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 2,
    repeats: int = 10,
    allocator: str = "keep",
) -> BenchSpec:
    """Validate command-line style values into a :class:`BenchSpec`."""
    if dtype not in DTYPES:
        raise ConfigError(f"expected dtype to be one of {', '.join(DTYPES)}, got {dtype!r}")
    if threads is not None and threads < 1:
        raise ConfigError(f"expected threads >= 1, got threads={threads}")
    if warmup < 0:
        raise ConfigError(f"expected warmup >= 0, got warmup={warmup}")
    if repeats < 1:
        raise ConfigError(f"expected repeats >= 1, got repeats={repeats}")
    return BenchSpec(
        parse_pools(pools),
        parse_shape(shape),
        dtype,
        device,
        threads,
        warmup,
        repeats,
        check_allocator(allocator),
    )


def minimal_bytes(x: Tensor, y: Tensor, mode: str) -> int:
    """Bytes a pooling layer must move at least (see the module docstring)."""
    once = (x.numel() + y.numel()) * x.element_size()
    return once if mode == "fwd" else 2 * once


def _callables(
    fn: Callable[[Tensor], Tensor], module: nn.Module | None, x: Tensor, grad: Tensor
) -> dict[str, Callable[[], None]]:
    """The timed bodies: eval-mode forward without autograd, and train-mode forward+backward."""
    x_grad = x.detach().requires_grad_(True)

    def forward() -> None:
        if module is not None:
            module.eval()
        with torch.no_grad():
            fn(x)

    def forward_backward() -> None:
        if module is not None:
            module.train()
            module.zero_grad(set_to_none=True)
        x_grad.grad = None
        fn(x_grad).backward(grad)

    return {"fwd": forward, "fwd+bwd": forward_backward}


def run_bench(spec: BenchSpec, clock: Callable[[], float] = time.perf_counter) -> list[BenchRow]:
    """Measure every pool of ``spec`` beside native max pooling; rows in ``spec.pools`` order,
    native first. Raises ConfigError/UnknownNameError/ShapeError before timing anything."""
    device = resolve_device(spec.device)
    dtype = DTYPES[spec.dtype]
    n, c, h, w = spec.shape
    modules: dict[str, nn.Module] = {}
    for name in spec.pools:
        module = create_for_slot(name, "local", c)
        if isinstance(module, LocalPool):
            module.check_input(h, w, where=f"pool {name}")
        modules[name] = module.to(device=device, dtype=dtype)

    allocator = set_cpu_allocator(spec.allocator)
    old_threads = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(spec.shape, generator=generator).to(device=device, dtype=dtype)
        fns: dict[str, Callable[[Tensor], Tensor]] = {NATIVE: lambda t: F_.max_pool2d(t, 2, 2)}
        fns.update(modules)
        bodies, outputs = {}, {}
        for name, fn in fns.items():
            with torch.no_grad():
                outputs[name] = fn(x)
            grad = torch.randn(outputs[name].shape, generator=generator).to(device, dtype)
            bodies[name] = _callables(fn, modules.get(name), x, grad)
        for body in bodies.values():
            for mode in MODES:
                time_repeats(body[mode], device, warmup=spec.warmup, repeats=0, clock=clock)
        times: dict[tuple[str, str], list[float]] = {(k, m): [] for k in fns for m in MODES}
        for _ in range(spec.repeats):  # interleaved: one call of every layer per round
            for name, body in bodies.items():
                for mode in MODES:
                    times[name, mode] += time_repeats(
                        body[mode], device, warmup=0, repeats=1, clock=clock
                    )
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)

    medians = {key: median_iqr(values) for key, values in times.items()}
    rows = []
    for name in fns:
        for mode in MODES:
            median, iqr = medians[name, mode]
            y = outputs[name]
            rows.append(
                BenchRow(
                    pool=name,
                    mode=mode,
                    median_ms=median * 1e3,
                    iqr_ms=iqr * 1e3,
                    ratio=median / medians[NATIVE, mode][0],
                    gb_s=minimal_bytes(x, y, mode) / median / 1e9,
                    out_shape="x".join(map(str, y.shape)),
                    shape="x".join(map(str, spec.shape)),
                    dtype=spec.dtype,
                    device=str(device),
                    threads=threads,
                    repeats=spec.repeats,
                    allocator=allocator,
                    torch_version=torch.__version__,
                )
            )
    return rows


def rows_frame(rows: Sequence[BenchRow]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows])


def write_csv(rows: Sequence[BenchRow], path: Path) -> Path:
    """Write the rows as CSV, atomically (readers never see a half-written file)."""
    atomic_write_text(path, rows_frame(rows).to_csv(index=False))
    return path


def default_csv_path(spec: BenchSpec, results_dir: Path = Path("results")) -> Path:
    shape = "x".join(map(str, spec.shape))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return results_dir / "bench" / f"bench-{shape}-{spec.dtype}-{spec.device}-{stamp}.csv"
