"""Run records: one ``result.json`` per run, written atomically, its fields defined once
(:class:`RunRecord`).

The record's keys are the CSV columns of ``poolbench report`` (same names).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from poolbench.core import metrics
from poolbench.core.storage import atomic_write_text

RECORD_NAME = "result.json"
# A sweep's table (results/sweeps/<time>/summary.csv): one row per run, ``run_name`` among them;
# the runs' records live in results/runs/<run_name>/result.json.
SWEEP_SUMMARY_NAME = "summary.csv"


def _field(meaning: str, unit: str = "", key: str | None = None, label: bool = False) -> Any:
    """A record field: what it means, its unit, the config key whose value it repeats (the run
    fills it from the config) and whether reports show it as a label standing for that key."""
    return field(
        default=None, metadata={"meaning": meaning, "unit": unit, "key": key, "label": label}
    )


def _metric(name: str) -> Any:
    """A record field that is a metric: its meaning and unit are the metric registry's."""
    metric = metrics.get(name)
    unit = "0-1" if metric.unit == metrics.FRACTION else metric.unit
    return field(
        default=None,
        metadata={"meaning": metric.description, "unit": unit, "key": None, "label": False},
    )


@dataclass
class RunRecord:
    """One run's record, ``result.json``: every field a run writes, with its type, unit and
    meaning (the field list, the report's labels, a new run's empty record and the field table
    of ``docs/results.md`` all come from here). Reports keep fields they do not know; the
    invariance fields the ``eval`` config names (``acc_shift_<k>``, ``acc_res_<size>``, see
    :meth:`poolbench.core.config.EvalConfig.metric_names`) follow these."""

    run_id: str | None = _field("hash of the run's config identity: the same config, the same id")
    run_name: str | None = _field(
        "the run's directory: <data>-<model>-<pool>-<head>-s<seed>-<hash>"
    )
    status: str | None = _field("running, ok or failed")
    error: str | None = _field("why a failed run failed, one line")
    data: str | None = _field("the dataset", key="data.name", label=True)
    model: str | None = _field("the network", key="model.name", label=True)
    pool: str | None = _field("the downsampling pool", key="pool.name", label=True)
    F: int | str | None = _field(
        "the pool's window as built (stages that differ: 3/2)", "px", "pool.F", True
    )
    S: int | str | None = _field("the pool's stride as built", "px", "pool.S", True)
    p: float | str | None = _field(
        "the pool's exponent as configured (Lp, GeM)", "", "pool.p", True
    )
    learned_p: dict[str, Any] | None = _field(
        "every learned pooling exponent after training, by module path (a list per channel)"
    )
    head: str | None = _field("the global pooling head", key="head.name", label=True)
    seed: int | None = _field("seeds the model, the batches and the augmentation", key="seed")
    epochs: int | None = _field("training epochs", key="train.epochs", label=True)
    failed_epoch: int | None = _field("the epoch a failed run was in (0: before training)")
    test_acc: float | None = _metric("test_acc")
    test_top5: float | None = _metric("test_top5")
    test_images: int | None = _field(
        "images in the test split: test_acc is a multiple of 1 / test_images", "images"
    )
    val_acc: float | None = _metric("val_acc")
    best_epoch: int | None = _field("the epoch whose weights were scored (train.select)")
    train_loss: float | None = _metric("train_loss")
    params: int | None = _metric("params")
    flops: int | None = _metric("flops")
    macs: int | None = _metric("macs")
    pool_flops: int | None = _metric("pool_flops")
    activations: int | None = _metric("activations")
    pool_params: int | None = _metric("pool_params")
    latency_ms: float | None = _metric("latency_ms")
    latency_iqr_ms: float | None = _metric("latency_iqr_ms")
    latency_batch: int | None = _field("images per timed batch", "images", "latency_batch")
    latency_ms_b1: float | None = _metric("latency_ms_b1")
    latency_b1_iqr_ms: float | None = _metric("latency_b1_iqr_ms")
    latency_interleaved_ms: float | None = _metric("latency_interleaved_ms")
    latency_interleaved_iqr_ms: float | None = _metric("latency_interleaved_iqr_ms")
    latency_interleaved_batch: int | None = _field("images per interleaved timed batch", "images")
    latency_session: str | None = _field(
        "the interleaved timing session: figures compare only within one"
    )
    latency_session_cpu: str | None = _field("the CPU of the interleaved timing session")
    latency_session_threads: int | None = _field("torch threads of the interleaved timing")
    throughput_img_s: float | None = _metric("throughput_img_s")
    train_time_s: float | None = _metric("train_time_s")
    wall_s: float | None = _metric("wall_s")
    overhead_s: float | None = _metric("overhead_s")
    started_at: str | None = _field("when the run started (UTC, ISO 8601)")
    peak_mem_mb: float | None = _metric("peak_mem_mb")
    peak_mem_kind: str | None = _field(
        "what peak_mem_mb measured: cuda_max_allocated, rss_peak or rss_peak_process"
    )
    shift_consistency: float | None = _metric("shift_consistency")
    acc_rot: float | None = _metric("acc_rot")
    device: str | None = _field("the device trained on (a GPU by its name)")
    cpu: str | None = _field("the CPU's model name")
    dtype: str | None = _field("the precision trained in: fp32, bf16 or fp16")
    threads: int | None = _field("torch CPU threads")
    channels_last: bool | None = _field("whether the run used NHWC memory order")
    compute_choice: str | None = _field(
        "how layout and precision were chosen: set, only, measured, cache or fallback"
    )
    compute_times_ms: dict[str, float] | None = _field(
        "the probe's median training step of each candidate layout and precision", "ms"
    )
    compute_probe_s: float | None = _field("what the probe cost this run (0 from the cache)", "s")
    compile: bool | None = _field("whether the model was torch.compiled", key="compile")
    tta: str | None = _field("test-time augmentation of test_acc", key="eval.tta")
    torch_version: str | None = _field("torch's version")
    poolbench_version: str | None = _field("poolbench's version")
    git_sha: str | None = _field("the poolbench checkout's commit (none for a wheel)")
    command_id: str | None = _field("the poolbench run command that trained the run")
    overrides: str | None = _field("the command line's overrides for this run")
    tags: list[str] | None = _field("the run's +tags=[...]: metadata, not identity")
    history: list[dict[str, Any]] | None = _field(
        "one row per epoch: epoch, train_loss, val_acc, lr, img_s"
    )
    config: dict[str, Any] | None = _field("the run's config identity, every key resolved")


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
# The record fields that stand for the config keys they repeat, in the order tables show them.
LABEL_KEYS: dict[str, str] = {
    f.name: f.metadata["key"] for f in fields(RunRecord) if f.metadata["label"]
}
# Every field the run fills from its config, by the config key it repeats.
CONFIG_FIELDS: dict[str, str] = {
    f.name: f.metadata["key"] for f in fields(RunRecord) if f.metadata["key"]
}


def empty_record(extra: Sequence[str] = ()) -> dict[str, Any]:
    """Every field of :class:`RunRecord`, then ``extra`` (invariance fields), all None: a new
    run's record has every column from the start, so a failed run's has the same."""
    return dict.fromkeys((*RECORD_FIELDS, *extra))


def config_value(config: dict[str, Any], key: str) -> Any:
    """The value of a dotted config ``key`` (``pool.F``) in a config dict (None if absent)."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def field_table() -> str:
    """The record's fields as a Markdown table (``docs/results.md`` holds it; a test keeps the
    two equal)."""
    rows = ["| field | type | unit | meaning |", "|---|---|---|---|"]
    for f in fields(RunRecord):
        kind = str(f.type).replace(" | None", "").replace(" | ", " or ")
        meaning = f.metadata["meaning"]
        if f.metadata["key"]:
            meaning += f" (config `{f.metadata['key']}`)"
        rows.append(f"| `{f.name}` | {kind} | {f.metadata['unit']} | {meaning} |")
    return "\n".join(rows) + "\n"


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    path = Path(run_dir) / RECORD_NAME
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    return path


def read_record(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_ok_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path`` if it exists and says ``ok``, else None (the skip decision)."""
    try:
        record = read_record(path)
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("status") == "ok" else None


def git_sha() -> str | None:
    """The commit of the poolbench checkout, when it is one (None for an installed wheel)."""
    here = Path(__file__).resolve().parents[2]
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
