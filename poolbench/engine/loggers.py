"""Where a run's metrics go as it trains (config group ``logger``): ``csv``, ``tensorboard``,
``mlflow``.

A logger hears two things from :func:`poolbench.run.runner.execute`: ``log_epoch(history)`` after
every epoch (the per-epoch rows so far: epoch, train_loss, val_acc, lr, img_s; a logger is one
of the training loop's callbacks; a run resumed from its checkpoint starts with the restored
epochs, and each logger writes only the epochs its store does not have yet) and
``log_record(record)`` once, with the run's final record, ok or failed. The record
(``result.json``) is written either way; a logger only adds a view.

- ``csv`` (default): ``metrics.csv`` beside the record, rewritten after every epoch (as
  Lightning's CSVLogger), so that a running job can be followed with ``tail``.
- ``tensorboard``: TensorBoard event files in the run directory (``tensorboard --logdir
  results/runs`` lists every run by its name): the epoch rows as scalars at step = epoch, the
  final metrics under ``final/`` and the config as text (``rerun=true`` clears the old event
  files). Needs ``poolbench[tensorboard]``.
- ``mlflow``: one MLflow run per poolbench run (found again by its ``run_id`` tag, so a
  resumed run continues its MLflow run; ``rerun=true`` replaces it), params = the flattened
  config, metrics per epoch and final, status FINISHED or FAILED. Needs ``poolbench[mlflow]``.

The optional packages are imported when a logger is created, never at module import.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolbench.core import metrics
from poolbench.core.errors import ConfigError
from poolbench.core.registry import Registry
from poolbench.core.storage import atomic_write_text
from poolbench.engine.callbacks import Callback, Loop

if TYPE_CHECKING:
    from poolbench.core.config import ComponentSpec, RunConfig

LOGGERS = Registry("logger", internal=("run_dir", "run"))
register_logger = LOGGERS.register

HISTORY_NAME = "metrics.csv"
HISTORY_FIELDS = ("epoch", "train_loss", "val_acc", "lr", "img_s")
# The package each logger needs, and the extra that installs it.
NEEDS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


class RunLogger(Callback):
    """Receives a run's epochs (as the training loop's callback) and its final record; the base
    class ignores both."""

    def on_epoch_end(self, loop: Loop) -> None:
        self.log_epoch(loop.state.history)

    def log_epoch(self, history: Sequence[dict[str, Any]]) -> None:
        pass

    def log_record(self, record: dict[str, Any]) -> None:
        pass


def write_history(run_dir: Path, history: Sequence[dict[str, Any]]) -> None:
    """``metrics.csv`` in ``run_dir``, one row per epoch of ``history``, written atomically."""
    lines = [",".join(HISTORY_FIELDS)]
    for row in history:
        lines.append(
            ",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in HISTORY_FIELDS)
        )
    atomic_write_text(Path(run_dir) / HISTORY_NAME, "\n".join(lines) + "\n")


class CsvLogger(RunLogger):
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def log_epoch(self, history: Sequence[dict[str, Any]]) -> None:
        write_history(self.run_dir, history)


@register_logger("csv", description="metrics.csv in the run directory, one row per epoch")
def csv_logger(run_dir: Path, run: RunConfig) -> RunLogger:
    return CsvLogger(run_dir)


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The record's metrics (those :mod:`poolbench.core.metrics` knows) that have a finite value."""
    out = {}
    for name in metrics.present(record):
        value = record[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                out[name] = float(value)
    return out


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.05}}`` -> ``{"train.lr": 0.05}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _import(name: str) -> Any:
    """The optional package logger ``name`` needs, or a one-line error naming the extra."""
    try:
        return importlib.import_module(NEEDS[name])
    except ImportError:
        raise ConfigError(
            f"logger={name} needs the {NEEDS[name]} package: pip install 'poolbench[{name}]'"
        ) from None


def _new_rows(history: Sequence[dict[str, Any]], last: int) -> list[dict[str, Any]]:
    """The epochs after ``last`` (a resumed run's history starts with the restored ones)."""
    return [row for row in history if int(row["epoch"]) > last]


class TensorBoardLogger(RunLogger):
    def __init__(self, run_dir: Path, run: RunConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter

        old = sorted(Path(run_dir).glob("events.out.tfevents.*"))
        self.last = 0  # the last epoch in the run directory's event files
        if run.rerun:  # the run starts afresh, and so do its curves
            for path in old:
                path.unlink()
        elif old:  # resumed: go on after what the last attempt wrote
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            events = EventAccumulator(str(run_dir))
            events.Reload()
            if "train_loss" in events.Tags()["scalars"]:
                self.last = max(e.step for e in events.Scalars("train_loss"))
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.writer.add_text("config", _config_text(run), 0)
        if run.tags:
            self.writer.add_text("tags", ", ".join(run.tags), 0)

    def log_epoch(self, history: Sequence[dict[str, Any]]) -> None:
        for row in _new_rows(history, self.last):
            for key in HISTORY_FIELDS[1:]:
                if row.get(key) is not None:
                    self.writer.add_scalar(key, row[key], row["epoch"])
            self.last = int(row["epoch"])
        self.writer.flush()

    def log_record(self, record: dict[str, Any]) -> None:
        step = record.get("epochs") or 0
        for name, value in final_metrics(record).items():
            self.writer.add_scalar(f"final/{name}", value, step)
        self.writer.add_text("status", f"{record['status']}: {record.get('error') or ''}", step)
        self.writer.close()


def _config_text(run: RunConfig) -> str:
    rows = [f"    {key} = {value}" for key, value in flatten(run.identity).items()]
    return "\n".join(rows)  # indented: Markdown shows it as a code block


@register_logger(
    "tensorboard",
    description="TensorBoard event files in the run directory (extra: tensorboard)",
)
def tensorboard_logger(run_dir: Path, run: RunConfig) -> RunLogger:
    _import("tensorboard")
    return TensorBoardLogger(run_dir, run)


RUN_ID_TAG = "poolbench.run_id"


class MlflowLogger(RunLogger):
    def __init__(self, client: Any, mlflow_run_id: str, last: int = 0) -> None:
        self.client = client
        self.id = mlflow_run_id
        self.last = last  # the last epoch the MLflow run has

    def log_epoch(self, history: Sequence[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        new = _new_rows(history, self.last)
        rows = [
            Metric(key, float(row[key]), now, int(row["epoch"]))
            for row in new
            for key in HISTORY_FIELDS[1:]
            if row.get(key) is not None
        ]
        if rows:
            self.client.log_batch(self.id, metrics=rows)
        if new:
            self.last = int(new[-1]["epoch"])

    def log_record(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(record.get("epochs") or 0)
        # train_loss and val_acc are per-epoch series already; MLflow shows their last value
        final = {k: v for k, v in final_metrics(record).items() if k not in HISTORY_FIELDS}
        rows = [Metric(k, v, now, step) for k, v in final.items()]
        if rows:
            self.client.log_batch(self.id, metrics=rows)
        self.client.set_tag(self.id, "poolbench.status", str(record["status"]))
        if record.get("error"):
            self.client.set_tag(self.id, "poolbench.error", str(record["error"])[:5000])
        status = "FINISHED" if record["status"] == "ok" else "FAILED"
        self.client.set_terminated(self.id, status)


@register_logger("mlflow", description="one MLflow run per run, params and metrics (extra: mlflow)")
def mlflow_logger(
    run_dir: Path,
    run: RunConfig,
    tracking_uri: str | None = None,
    experiment: str = "poolbench",
) -> RunLogger:
    """``tracking_uri`` None: a file store in ``<results_dir>/mlruns`` (one directory per
    run, so parallel jobs and cluster nodes on a shared disk never contend; MLflow 3 asks
    for ``MLFLOW_ALLOW_FILE_STORE=true`` to use one, which poolbench sets for that store).
    Any other URI (``sqlite:///results/mlflow.db``, a server) is MLflow's to interpret."""
    _import("mlflow")
    from mlflow import MlflowClient
    from mlflow.entities import Param

    if tracking_uri is None:
        tracking_uri = (Path(run.results_dir).expanduser().resolve() / "mlruns").as_uri()
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    existing = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run.run_id}'"
    )
    if existing and not run.rerun:  # a resumed run goes on in its MLflow run
        mlflow_run_id = existing[0].info.run_id
        client.update_run(mlflow_run_id, status="RUNNING")
        steps = [m.step for m in client.get_metric_history(mlflow_run_id, "train_loss")]
        return MlflowLogger(client, mlflow_run_id, last=max(steps, default=0))
    for old in existing:  # rerun=true: the run starts afresh, so does its MLflow run
        client.delete_run(old.info.run_id)
    tags = {RUN_ID_TAG: run.run_id, "poolbench.run_name": run.run_name}
    if run.tags:
        tags["poolbench.tags"] = ",".join(run.tags)
    created = client.create_run(experiment_id, run_name=run.run_name, tags=tags)
    params = [Param(k, str(v)[:6000]) for k, v in flatten(run.identity).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(created.info.run_id, params=params[i : i + 100])
    return MlflowLogger(client, created.info.run_id)


def check_logger(spec: ComponentSpec) -> None:
    """Name, parameters and, for an optional package, that it is installed (before any run)."""
    LOGGERS.check_params(spec.name, spec.params)
    package = NEEDS.get(spec.name)
    if package is not None and importlib.util.find_spec(package) is None:
        _import(spec.name)


def create_logger(spec: ComponentSpec, run_dir: Path, run: RunConfig) -> RunLogger:
    """The logger ``spec`` names, for the run ``run`` in ``run_dir``."""
    LOGGERS.check_params(spec.name, spec.params)
    return LOGGERS.get(spec.name).factory(run_dir=Path(run_dir), run=run, **spec.params)


def list_loggers() -> list[str]:
    return LOGGERS.names()


__all__ = [
    "HISTORY_FIELDS",
    "HISTORY_NAME",
    "LOGGERS",
    "RunLogger",
    "check_logger",
    "create_logger",
    "list_loggers",
    "write_history",
]
