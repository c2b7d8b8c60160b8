"""``channels_last=auto`` and ``precision=auto``, decided by measurement on the machine at hand.

Which memory layout (NCHW or NHWC) and which precision train a model fastest depends on the CPU
or GPU, the model, the pool, the batch and the image size: on a 2-core AVX2 EPYC in fp32 NHWC
made airbench's network about 30% faster, on an AVX-512 EPYC under bf16 it made eight of the
pools slower. Fixed rules measured on one machine pick the wrong one on another, so before a
run trains, :func:`choose` times a few training steps of the actual model, batch and input
shape in each candidate (as ``torch.backends.cudnn.benchmark`` does for kernels) and takes the
fastest, where it beats NCHW fp32 by more than 10% (:data:`PREFER_MARGIN`: near-equal timings
would otherwise flip the choice, and with it a run's last digits, between fresh caches):

- layouts: NCHW and NHWC, unless ``channels_last`` is set;
- precisions, unless ``precision`` is set: fp32, and bf16 autocast where the hardware runs it
  natively (AVX-512-BF16 or AMX on the CPU, never emulated; a GPU with bf16), fp16 autocast with
  a gradient scaler on a GPU. Autocast keeps the weights in fp32 and the pools compute their
  exp and pow in fp32, so a candidate precision trains to the same accuracy (the recipes'
  slow tests check it).

The candidates are timed round by round, each once a round (as ``poolbench bench`` does), on
a copy of the model with random images, after one untimed warm-up step each; the global random
state is put back afterwards, so the run that follows computes what it would have without the
probe. The decision is kept in the cache (:func:`poolbench.core.paths.cache_dir`, folder
``compute``) under a key of the CPU's model and flags, the GPU, torch's version, the threads,
the model's configuration, the batch and the input shape: the other seeds of a sweep, and the
next command, pay nothing. Explicit settings are never overridden.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.core.host import cpu_flags, cpu_name
from poolbench.core.paths import cache_dir
from poolbench.core.storage import atomic_write_text
from poolbench.measure.device import (
    Precision,
    cpu_supports_bf16,
    resolve_precision,
    synchronize,
)

log = logging.getLogger("poolbench")

CACHE_FOLDER = "compute"
CACHE_VERSION = 1  # bump when what a probe measures changes
TIMED_ROUNDS = 3
# Timed rounds stop once they have taken this long (after the first): a model whose step takes
# a second (airbench at batch 256 on 2 cores: 0.6-1.4 s a candidate) is probed in seconds,
# not a quarter of a minute; a small one gets every round.
ROUNDS_BUDGET_S = 3.0


@dataclass(frozen=True)
class Candidate:
    """One way to compute: the memory layout and the precision."""

    channels_last: bool
    precision: str  # fp32 | bf16 | fp16

    @property
    def label(self) -> str:
        return f"{'NHWC' if self.channels_last else 'NCHW'} {self.precision}"


@dataclass(frozen=True)
class Choice:
    """What a run computes with, and why: ``source`` is ``set`` (the config chose), ``only``
    (one candidate), ``measured`` (timed now, ``seconds`` the probe took) or ``cache`` (timed
    before on this machine); ``times_ms`` the median training step of each candidate."""

    channels_last: bool
    precision: Precision
    source: str
    times_ms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return Candidate(self.channels_last, self.precision.name).label

    def as_record(self) -> dict[str, Any]:
        return {
            "compute_choice": self.source,
            "compute_times_ms": dict(self.times_ms) or None,
            "compute_probe_s": self.seconds,
        }

    def describe(self) -> str:
        """``NHWC fp32 (measured: NCHW fp32 12.1 ms, NHWC fp32 9.3 ms a step)``."""
        if not self.times_ms:
            return f"{self.label} ({self.source})"
        times = ", ".join(f"{k} {v:.1f} ms" for k, v in self.times_ms.items())
        return f"{self.label} ({self.source}: {times} a step)"


def native_precisions(device: torch.device) -> list[str]:
    """The precisions the hardware computes natively, fp32 first."""
    if device.type == "cuda":
        return ["fp32", *(["bf16"] if torch.cuda.is_bf16_supported() else []), "fp16"]
    return ["fp32", *(["bf16"] if cpu_supports_bf16() else [])]


def candidates(channels_last: str | bool, precision: str, device: torch.device) -> list[Candidate]:
    """Every combination the settings leave open (``auto``), explicit ones as they are."""
    layouts = [False, True] if channels_last == "auto" else [bool(channels_last)]
    if precision == "auto":
        precisions = native_precisions(device)
    else:
        precisions = [resolve_precision(precision, device).name]  # refuses what cannot run
    return [Candidate(cl, p) for p in precisions for cl in layouts]


def cache_key(config: dict[str, Any], candidates: Sequence[Candidate], device: torch.device) -> str:
    """What the decision depends on: the machine, torch, the threads and the run's model,
    batch and input."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    blob = json.dumps(
        {
            "version": CACHE_VERSION,
            "cpu": cpu_name(),
            "flags": cpu_flags(),
            "gpu": gpu,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "config": config,
            "candidates": [c.label for c in candidates],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _read_cache(key: str) -> dict[str, Any] | None:
    path = cache_dir() / CACHE_FOLDER / f"{key}.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and "choice" in found else None


def _write_cache(key: str, entry: dict[str, Any]) -> None:
    try:
        atomic_write_text(cache_dir() / CACHE_FOLDER / f"{key}.json", json.dumps(entry) + "\n")
    except OSError:  # a cache that cannot be written only costs the next run the probe
        pass


def time_steps(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    batch: int,
    device: torch.device,
    options: Sequence[Candidate],
    clock: Callable[[], float] = time.perf_counter,
    rounds: int = TIMED_ROUNDS,
    budget_s: float = ROUNDS_BUDGET_S,
) -> dict[str, float]:
    """Median seconds of one training step (forward, loss, backward, SGD step) of a copy of
    ``model`` on random images, for each candidate, timed round by round after one untimed
    step each: ``rounds`` rounds, fewer (one at least) once they have taken ``budget_s``.
    The global random state is restored afterwards."""
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        generator = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(batch, *input_shape, generator=generator).to(device)
        y = torch.randint(0, max(1, num_classes), (batch,), generator=generator).to(device)
        steps = [_step(model, x, y, device, c) for c in options]
        for step in steps:  # warm-up: allocations, kernel selection
            step()
        synchronize(device)
        times: list[list[float]] = [[] for _ in options]
        spent = 0.0
        for _ in range(rounds):
            if spent >= budget_s:
                break
            for i, step in enumerate(steps):
                start = clock()
                step()
                synchronize(device)
                times[i].append(clock() - start)
                spent += times[i][-1]
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
    return {c.label: statistics.median(t) for c, t in zip(options, times, strict=True)}


def _step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, option: Candidate
) -> Callable[[], None]:
    """One training step of a copy of ``model`` computing as ``option`` says."""
    copy_ = copy.deepcopy(model).to(device).train()
    precision = resolve_precision(option.precision, device)
    if option.channels_last:
        copy_ = copy_.to(memory_format=torch.channels_last)
    params = [p for p in copy_.parameters() if p.requires_grad]
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)

    def step() -> None:
        for p in params:
            p.grad = None
        batch = x.contiguous(memory_format=torch.channels_last) if option.channels_last else x
        with precision.autocast(device):
            logits = copy_(batch)
        loss = F.cross_entropy(logits.float(), y)
        scaler.scale(loss).backward()
        with torch.no_grad():  # a plain SGD step: the optimiser's cost is the same either way
            for p in params:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-1e-3)

    return step


# How much faster than the first candidate (NCHW, fp32: what a plain loop computes) another must
# be to be chosen. Layouts compute the same sums in other orders, so a choice that flips between
# two near-equal timings would change a run's last digits from one machine (or one fresh cache)
# to the next; where it matters less than this, the plain way stays.
PREFER_MARGIN = 0.10


def pick(options: Sequence[Candidate], times_s: dict[str, float]) -> Candidate:
    """The fastest of ``options`` if it beats the first by more than :data:`PREFER_MARGIN`,
    else the first."""
    first = options[0]
    fastest = min(options, key=lambda c: times_s[c.label])
    if times_s[fastest.label] < (1 - PREFER_MARGIN) * times_s[first.label]:
        return fastest
    return first


def choose(
    channels_last: str | bool,
    precision: str,
    device: torch.device,
    model: nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    batch: int,
    config: dict[str, Any],
    clock: Callable[[], float] = time.perf_counter,
    use_cache: bool = True,
) -> Choice:
    """The layout and precision to train ``model`` with (see the module docstring); ``config``
    identifies the run's model for the cache (its identity less the seed)."""
    options = candidates(channels_last, precision, device)
    if len(options) == 1:
        only = options[0]
        source = "set" if channels_last != "auto" and precision != "auto" else "only"
        return Choice(only.channels_last, resolve_precision(only.precision, device), source)
    key = cache_key({"model": config, "batch": batch, "input": input_shape}, options, device)
    if use_cache and (found := _read_cache(key)) is not None:
        best = Candidate(bool(found["choice"]["channels_last"]), str(found["choice"]["precision"]))
        if best in options:
            times = {str(k): float(v) for k, v in found.get("times_ms", {}).items()}
            return Choice(
                best.channels_last, resolve_precision(best.precision, device), "cache", times
            )
    start = time.perf_counter()
    try:
        times_s = time_steps(model, input_shape, num_classes, batch, device, options, clock)
    except (TypeError, RuntimeError) as err:  # a model that cannot be copied, or OOM
        first = options[0]
        log.warning("compute: probe failed (%s); using %s", err, first.label)
        return Choice(first.channels_last, resolve_precision(first.precision, device), "fallback")
    seconds = time.perf_counter() - start
    best = pick(options, times_s)
    times_ms = {k: v * 1e3 for k, v in times_s.items()}
    if use_cache:
        _write_cache(
            key,
            {
                "choice": {"channels_last": best.channels_last, "precision": best.precision},
                "times_ms": times_ms,
                "measured_on": cpu_name(),
            },
        )
    choice = Choice(
        best.channels_last, resolve_precision(best.precision, device), "measured", times_ms, seconds
    )
    log.info(
        "compute: %s; the probe took %.1f s (cached for the next run)", choice.describe(), seconds
    )
    return choice


__all__ = ["Candidate", "Choice", "candidates", "choose", "native_precisions", "time_steps"]
