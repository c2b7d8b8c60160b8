"""One run, end to end: config -> data -> model -> checks -> train -> measure -> record.

``execute`` never raises for a failing run: the failure is the record (``status=failed`` with
its ``error``), so that a sweep goes on. ``validate`` does every check that needs no training,
for the CLI to run before anything starts.
"""

from __future__ import annotations

import logging
import os
import textwrap
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import poolbench
from poolbench.core.config import RunConfig, add_tags, config_hash
from poolbench.core.errors import PoolbenchError, StorageError, one_line
from poolbench.core.host import cpu_name
from poolbench.core.record import (
    CONFIG_FIELDS,
    RECORD_NAME,
    empty_record,
    git_sha,
    read_ok_record,
    write_record,
)
from poolbench.data import DATASETS, check_dataset, create_dataset, describe_dataset
from poolbench.engine.callbacks import Callback
from poolbench.engine.checkpoint import Checkpoint, CheckpointCallback
from poolbench.engine.loggers import RunLogger, check_logger, create_logger
from poolbench.engine.loop import Compute, check_validation, seed_everything, train
from poolbench.measure.cost import model_cost
from poolbench.measure.device import resolve_device, resolve_precision
from poolbench.measure.invariance import invariance_metrics
from poolbench.measure.latency import PeakMemory, inference_latency
from poolbench.measure.probe import Choice, choose
from poolbench.models.inspect import (
    check_model,
    count_params,
    describe_pool,
    learned_exponents,
    pool_settings,
    summarize_model,
)
from poolbench.models.registry import build_model
from poolbench.pooling import pool_entry
from poolbench.run.locks import RunLock

log = logging.getLogger("poolbench")


SUMMARY_WIDTH = 80  # the narrowest terminal the log fits: long pooling lists wrap inside it


def summary_lines(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> list[str]:
    """Per-stage output shape, parameters and pooling parameters (counted separately), and the
    layers a replacement changed, as the run log shows them."""
    lead = "  {:<10} {:<12} {:>9} {:>7}  "
    lines = [lead.format("stage", "output", "params", "pool") + "pooling"]
    for row in summarize_model(model, input_shape):
        shape = "x".join(str(d) for d in row.output_shape)
        first = lead.format(row.name, shape, row.params, row.pool_params)
        room = max(20, SUMMARY_WIDTH - len(first))
        pools = textwrap.wrap(row.pools, room, break_on_hyphens=False) or [""]
        lines.append((first + pools[0]).rstrip())
        lines += [" " * len(first) + more for more in pools[1:]]
    for line in getattr(model, "replacements", []):
        lines += textwrap.wrap(
            f"replaced {line}",
            SUMMARY_WIDTH,
            initial_indent="  ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
    return lines


@dataclass(frozen=True)
class ModelFacts:
    """What a configuration's model is whatever its seed: the pool as built (before p is
    learned), the run log's per-stage summary, the forward cost and the parameter count."""

    settings: dict[str, Any]
    summary: tuple[str, ...]
    cost: dict[str, int]
    params: int


# Per process: the seeds of one configuration share their model's facts, so a sweep checks,
# summarises and counts each configuration's model once.
_FACTS: dict[str, ModelFacts] = {}


def model_facts(
    cfg: RunConfig, model: torch.nn.Module, input_shape: tuple[int, int, int]
) -> ModelFacts:
    """The :class:`ModelFacts` of ``cfg``'s configuration (measured on ``model`` the first time
    this process meets the configuration: one dry run each to check every pooling stage's
    shape, to summarise the stages and to count the cost)."""
    identity = {k: v for k, v in (cfg.identity or cfg.as_identity_dict()).items() if k != "seed"}
    key = config_hash(identity)
    if key not in _FACTS:
        settings = pool_settings(model, cfg.pool.name)
        check_model(model, input_shape)
        lines = tuple(summary_lines(model, input_shape))
        cost = model_cost(model, input_shape).as_record()
        _FACTS[key] = ModelFacts(settings, lines, cost, count_params(model))
    return _FACTS[key]


def validate(cfg: RunConfig) -> str:
    """Check names, parameters, the data on disk (image files are decoded, into the cache the
    run then uses in this process) and every pooling stage's shape; return the pool as built,
    with its parameters (``max(F=3, S=2, padding=0, ...)``).

    Raises :class:`PoolbenchError` with a one-line message.
    """
    pool_entry(cfg.pool.name)
    pool_entry(cfg.head.name)
    DATASETS.check_params(cfg.data.name, cfg.data.params)
    info = describe_dataset(cfg.data.name, cfg.data.params)
    check_dataset(cfg.data.name, cfg.data.params)  # the files: may decode them (kept for the run)
    check_validation(cfg.train, info["has_val"])
    input_shape = info["input_shape"]
    model = build_model(cfg, num_classes=info["num_classes"] or 10, in_channels=input_shape[0])
    check_model(model, input_shape)
    resolve_precision(cfg.precision, resolve_device(cfg.device))
    check_logger(cfg.logger)
    return describe_pool(cfg.pool.name, pool_settings(model, cfg.pool.name))


def describe_compute(cfg: RunConfig) -> str:
    """How ``cfg``'s run will compute, as ``--dry-run`` shows it: the layout and precision with
    why (``NHWC fp32 (measured: NCHW fp32 12.1 ms, NHWC fp32 9.3 ms a step)``); an ``auto``
    setting is measured now (and cached, so the run itself pays nothing)."""
    info = describe_dataset(cfg.data.name, cfg.data.params)
    input_shape = info["input_shape"]
    classes = info["num_classes"] or 10
    device = resolve_device(cfg.device)
    model = build_model(cfg, num_classes=classes, in_channels=input_shape[0]).to(device)
    return compute_choice(cfg, model, input_shape, classes, device).describe()


def base_record(cfg: RunConfig) -> dict[str, Any]:
    """A new run's record: every field from the start (so that a failed run's record has the
    same columns), those that repeat a config key filled from the config, and the conditions."""
    record = empty_record(cfg.eval.metric_names())
    record.update({name: cfg.value(key) for name, key in CONFIG_FIELDS.items()})
    return record | {
        "run_id": cfg.run_id,
        "run_name": cfg.run_name,
        "status": "running",
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "torch_version": torch.__version__,
        "poolbench_version": poolbench.__version__,
        "git_sha": git_sha(),
        "command_id": os.environ.get(COMMAND_ENV),
        "overrides": " ".join(cfg.overrides),
        "tags": list(cfg.tags),
        "config": cfg.identity,
    }


# Set by the command (``poolbench.sweep.outcome.run_plan``) for every job it launches; each record
# says which command trained it, so that the command can count what it ran itself.
COMMAND_ENV = "POOLBENCH_COMMAND"


def execute(
    cfg: RunConfig,
    run_dir: Path,
    observer: Callback | None = None,
    in_run_latency: bool = True,
) -> dict[str, Any]:
    """Run ``cfg`` in ``run_dir`` and return its record (also written as ``result.json``).

    One process at a time: the run's lock (:class:`~poolbench.run.locks.RunLock`) is held from
    the skip decision to the record; a process that finds it held waits for the holder, then
    goes on as below (usually to skip the run the holder finished).

    A run whose record in ``run_dir`` already says ``ok`` is skipped (its record is returned)
    unless ``cfg.rerun`` (a record written while this process waited counts as done even
    then). Otherwise training resumes from ``run_dir``'s checkpoint when there is one
    (``rerun`` starts afresh). A failure is recorded with the epoch it happened in; Ctrl-C
    (KeyboardInterrupt) propagates with the last checkpoint kept and no record written, and so
    does a full disk (:class:`~poolbench.core.errors.StorageError`): it is not the run's fault.
    """
    run_dir = Path(run_dir)
    lock = RunLock(run_dir)
    waited_since = None
    if not lock.try_acquire():
        waited_since = time.time()
        log.info(
            "%s is being trained by another process (%s): waiting for it to finish",
            cfg.run_name,
            lock.holder(),
        )
        lock.acquire()
    try:
        done = read_ok_record(run_dir / RECORD_NAME)
        if done is not None and waited_since is not None:
            if (run_dir / RECORD_NAME).stat().st_mtime >= waited_since - 1:
                log.info("%s skipped: the other process finished it", cfg.run_name)
                return done
        if done is not None and not cfg.rerun:
            log.info("%s skipped: already ok (rerun=true runs it again)", cfg.run_name)
            if add_tags(done, cfg.tags):  # tags are metadata: a finished run takes new ones
                write_record(run_dir, done)
            return done
        return _execute_locked(cfg, run_dir, observer, in_run_latency)
    finally:
        lock.release()


def _execute_locked(
    cfg: RunConfig, run_dir: Path, observer: Callback | None, in_run_latency: bool
) -> dict[str, Any]:
    start = time.perf_counter()
    record = base_record(cfg)
    record["started_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    checkpoint = Checkpoint(run_dir, cfg.run_id)
    if cfg.rerun:
        checkpoint.remove()
    work_s = None  # seconds of training, evaluation and measurement; the rest is overhead
    logger = RunLogger()
    try:
        logger = create_logger(cfg.logger, run_dir, cfg)
        metrics, work_s = _train_and_measure(cfg, observer, checkpoint, logger, in_run_latency)
        record.update(metrics)
        record["status"] = "ok"
    except StorageError as err:
        log.error("%s stopped: %s", cfg.run_name, err, extra={"console": False})
        raise  # the command says it, in one line
    except PoolbenchError as err:
        record.update(status="failed", error=f"{type(err).__name__}: {one_line(err)}")
        # the command prints the failure once, at the end; the run's log keeps it
        log.error("%s failed: %s", cfg.run_name, err, extra={"console": False})
    except Exception as err:  # a bug or a numerical failure: keep the traceback in the log
        record.update(status="failed", error=f"{type(err).__name__}: {one_line(err)}")
        log.error("%s failed:\n%s", cfg.run_name, traceback.format_exc(), extra={"console": False})
    except KeyboardInterrupt:
        if checkpoint.exists() and checkpoint.epoch:
            log.warning(
                "%s interrupted; checkpoint kept after epoch %d", cfg.run_name, checkpoint.epoch
            )
        elif checkpoint.exists():  # stopped before it was read
            log.warning("%s interrupted; its checkpoint is kept", cfg.run_name)
        else:
            log.warning(
                "%s interrupted before its first checkpoint: it starts afresh next time",
                cfg.run_name,
            )
        raise
    if record["status"] == "failed":
        record["failed_epoch"] = checkpoint.running
    record["wall_s"] = time.perf_counter() - start
    if work_s is not None:  # data, model, checks, FLOP count, record
        record["overhead_s"] = record["wall_s"] - work_s
    write_record(run_dir, record)
    try:
        logger.log_record(record)
    except Exception:  # the record is safe; a logger's failure does not undo the run
        log.error(
            "%s: logger=%s failed:\n%s", cfg.run_name, cfg.logger.name, traceback.format_exc()
        )
    if record["status"] == "ok" and not cfg.keep_checkpoint:
        checkpoint.remove()
    return record


def _train_and_measure(
    cfg: RunConfig,
    observer: Callback | None,
    checkpoint: Checkpoint | None = None,
    logger: RunLogger | None = None,
    in_run_latency: bool = True,
) -> tuple[dict[str, Any], float]:
    """The run's metrics, and the seconds spent training (with its evaluation) and measuring;
    ``observer`` follows the training and the measurement phases (a display). Without
    ``in_run_latency`` the run's own latency is not timed (a sweep that times every
    configuration interleaved at its end compares those figures, not these)."""
    device = resolve_device(cfg.device)
    if cfg.threads != "auto":
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)

    data = create_dataset(cfg.data.name, **cfg.data.params).to(device)
    model = build_model(cfg, data.num_classes, data.in_channels).to(device)
    facts = model_facts(cfg, model, data.input_shape)
    for line in facts.summary:
        log.info(line)
    choice = compute_choice(cfg, model, data.input_shape, data.num_classes, device)
    precision, channels_last = choice.precision, choice.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # The compiled wrapper shares the weights; invariance tests use the plain module, whose
    # many input sizes would each trigger a recompilation.
    fast = torch.compile(model) if cfg.compile else model

    callbacks = [c for c in (logger, observer) if c is not None]
    if checkpoint is not None:
        callbacks.insert(0, CheckpointCallback(checkpoint))  # first: it restores the state
    observer = observer or Callback()
    work = time.perf_counter()
    with PeakMemory(device) as peak:
        result = train(
            fast,
            data,
            cfg.train,
            Compute(device, precision, channels_last),
            cfg.seed,
            tta=cfg.eval.tta,
            callbacks=callbacks,
        )
    timing = {"device": device, "precision": precision, "channels_last": channels_last}
    latency: dict[str, float | None] = {}
    if in_run_latency:
        with observer.phase("timing latency"):
            median, iqr = inference_latency(
                fast, data.input_shape, cfg.latency_batch, repeats=cfg.latency_repeats, **timing
            )
            latency |= {"latency_ms": median, "latency_iqr_ms": iqr}
            median, iqr = inference_latency(
                fast, data.input_shape, 1, repeats=cfg.latency_repeats, **timing
            )
            latency |= {"latency_ms_b1": median, "latency_b1_iqr_ms": iqr}
    with observer.phase("evaluating: invariance") if cfg.eval.enabled else nullcontext():
        invariance = invariance_metrics(
            model, data, cfg.eval, device, precision, cfg.seed, channels_last=channels_last
        )
    metrics = {
        **{key: facts.settings.get(key, cfg.pool.params.get(key)) for key in ("F", "S", "p")},
        "learned_p": learned_exponents(model),
        "test_acc": result.test_acc,
        "test_top5": result.test_top5,
        "test_images": data.num_test,
        "train_loss": result.train_loss,
        "params": facts.params,
        **facts.cost,
        **latency,
        "throughput_img_s": result.throughput_img_s,
        "train_time_s": result.train_time_s,
        "val_acc": result.val_acc,
        "best_epoch": result.best_epoch,
        "tta": cfg.eval.tta,
        "history": result.history,
        "peak_mem_mb": peak.mb,
        "peak_mem_kind": peak.kind,
        **invariance,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "dtype": precision.name,
        "threads": torch.get_num_threads(),
        "channels_last": channels_last,
        **choice.as_record(),
    }
    return metrics, time.perf_counter() - work


def compute_choice(
    cfg: RunConfig,
    model: torch.nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    device: torch.device,
) -> Choice:
    """How ``cfg``'s run computes: its ``channels_last`` and ``precision``, ``auto`` measured
    on this machine (:mod:`poolbench.measure.probe`) for its model, batch and input."""
    identity = cfg.identity or cfg.as_identity_dict()
    config = {k: identity.get(k) for k in ("model", "pool", "head", "data")}
    return choose(
        cfg.channels_last,
        cfg.precision,
        device,
        model,
        input_shape,
        num_classes,
        cfg.train.batch_size,
        config,
    )
