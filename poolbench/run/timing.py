"""Latency that can be compared: every configuration timed in one process, interleaved.

A run's own ``latency_ms`` is measured inside the run, at whatever moment it ends: on a machine
that is busy (another job, a parallel launcher, a laptop's turbo) two runs of one config have
been seen 16x apart. Figures that a report ranks must come from one session that times every
compared configuration round by round (each configuration once per round, as ``poolbench
bench`` does), so that a change of load hits all of them alike.

The models are rebuilt from the records' configs with fresh (untrained) weights, except the
learned pooling exponents, which the records keep (``learned_p``) and which are set: torch's
power has fast paths for p = 2 and 3, and a trained GeM (p = 2.99) was 1.43x slower than a
fresh one (p = 3). Apart from that, inference cost does not depend on the trained values
(``benchmarks/latency_trained.py`` checks the pools with data-dependent paths: median,
stochastic, softpool, fractional, gem, lp), and seeds only change initial values, so one
timing serves every seed of a configuration (the first record's exponents are used).

:func:`time_records` does this for records on disk (``poolbench time`` and the end of a sweep)
and writes into each record ``latency_interleaved_ms``, ``latency_interleaved_iqr_ms`` and
``latency_session`` (one id per timing session; figures are comparable only within one).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from poolbench.core import defaults
from poolbench.core.config import RunConfig, config_hash
from poolbench.core.errors import DataError, PoolbenchError
from poolbench.core.host import cpu_name
from poolbench.core.record import RECORD_NAME, read_record, write_record
from poolbench.measure.device import resolve_device, resolve_precision
from poolbench.measure.latency import Target, Timing, time_interleaved
from poolbench.run.locks import RunLock


def group_key(record: dict[str, Any]) -> str:
    """The identity of a record's group: its config less the seed."""
    config = {k: v for k, v in (record.get("config") or {}).items() if k != "seed"}
    return config_hash(config)


def recorded_factory(record: dict[str, Any]) -> str | None:
    """The ``model.factory`` a record's config names (``model=custom``): code that rebuilding
    its model would import and call."""
    model = (record.get("config") or {}).get("model")
    factory = model.get("factory") if isinstance(model, dict) else None
    return None if factory is None else str(factory)


def targets_from_records(paths: Sequence[Path], factories: Collection[str] = ()) -> list[Target]:
    """One :class:`Target` per group of ok records (config less the seed), in first-seen
    order, with a freshly built model. A record is data and nothing read from it runs: a
    custom model's ``model.factory`` is imported only when it is among ``factories``, those
    the user named (``poolbench time --factory``, or the sweep's own command line)."""
    from poolbench.data import describe_dataset
    from poolbench.models.custom import EXAMPLE_FACTORY
    from poolbench.models.inspect import set_learned_exponents
    from poolbench.models.registry import build_model

    groups: dict[str, Target] = {}
    flat: dict[str, dict[str, str]] = {}
    for path in paths:
        record = read_record(path)
        if record.get("status") != "ok" or not isinstance(record.get("config"), dict):
            continue
        key = group_key(record)
        if key in groups:
            groups[key].records.append(path)
            continue
        factory = recorded_factory(record)
        if factory is not None and factory not in (*factories, EXAMPLE_FACTORY):
            raise DataError(
                f"{path} names model.factory {factory!r}, code that rebuilding its model would "
                f"import and run; nothing read from a record runs unless named: --factory {factory}"
            )
        cfg = RunConfig.from_dict(record["config"])
        info = describe_dataset(cfg.data.name, cfg.data.params)
        torch.manual_seed(0)
        model = build_model(cfg, info["num_classes"] or 10, info["input_shape"][0])
        set_learned_exponents(model, record.get("learned_p"))
        device = resolve_device(cfg.device)
        model.to(device)
        dtype = record.get("dtype") or "fp32"
        label = f"{record.get('pool')}/{record.get('model')}/{record.get('head')}"
        flat[key] = _flatten(record["config"])
        groups[key] = Target(
            key,
            label,
            model,
            tuple(info["input_shape"]),
            device,
            resolve_precision(dtype if dtype in ("fp32", "bf16", "fp16") else "auto", device),
            bool(record.get("channels_last")),
            [path],
        )
    _tell_apart(list(groups.values()), flat)
    return list(groups.values())


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        elif f"{prefix}{key}" != "seed":
            out[f"{prefix}{key}"] = json.dumps(value)
    return out


def _tell_apart(targets: list[Target], flat: dict[str, dict[str, str]]) -> None:
    """Targets whose pool/model/head label repeats get the config keys that differ between
    them (``max/vgg/global_avg train.lr=0.05``), so that no two rows of a table look alike."""
    by_label: dict[str, list[Target]] = {}
    for t in targets:
        by_label.setdefault(t.label, []).append(t)
    for same in by_label.values():
        if len(same) < 2:
            continue
        keys = sorted({k for t in same for k in flat[t.key]})
        differ = [k for k in keys if len({flat[t.key].get(k) for t in same}) > 1]
        for t in same:
            t.label += "".join(f" {k}={flat[t.key].get(k, 'null').strip(chr(34))}" for k in differ)


@dataclass(frozen=True)
class TimeOutcome:
    timings: list[Timing]
    session: str
    skipped: int  # records not ok (or without a config): nothing to time


def time_records(
    paths: Sequence[Path],
    batch: int = defaults.TIME_BATCH,
    repeats: int = defaults.TIME_REPEATS,
    warmup: int = defaults.TIME_WARMUP,
    clock: Callable[[], float] = time.perf_counter,
    factories: Collection[str] = (),
) -> TimeOutcome:
    """Time every group of ``paths``' ok records interleaved and write the figures into each
    record (atomically). Raises :class:`DataError` when no record can be timed, or when one
    names a custom model factory not in ``factories`` (:func:`targets_from_records`)."""
    if not paths:
        raise DataError(f"no run records ({RECORD_NAME}) to time")
    try:
        targets = targets_from_records(paths, factories)
    except DataError:
        raise
    except PoolbenchError as err:
        raise DataError(f"cannot rebuild a recorded model: {err}") from None
    if not targets:
        raise DataError(f"none of the {len(paths)} records is ok: nothing to time")
    timings = time_interleaved(targets, batch, repeats, warmup, clock)
    session = f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{len(timings)}"
    for timing in timings:
        for path in timing.records:
            # under the run's lock: a process training the run again (rerun=true) must not
            # have its new record overwritten with this copy of the old one
            with RunLock(path.parent):
                _write_timing(path, timing, batch, session)
    timed = sum(len(t.records) for t in timings)
    return TimeOutcome(timings, session, len(paths) - timed)


def _write_timing(path: Path, timing: Timing, batch: int, session: str) -> None:
    record = read_record(path)
    record.update(
        latency_interleaved_ms=timing.median_ms,
        latency_interleaved_iqr_ms=timing.iqr_ms,
        latency_interleaved_batch=batch,
        latency_session=session,
        latency_session_cpu=cpu_name(),
        latency_session_threads=torch.get_num_threads(),
    )
    write_record(path.parent, record)


__all__ = ["Target", "Timing", "time_interleaved", "time_records", "targets_from_records"]
