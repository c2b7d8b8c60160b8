"""What each job of a sweep hands back, and how the sweep hears of it.

- :class:`JobResult` is what the task function returns: a ``float``, the run's objective
  (config key ``objective``, default ``test_acc``; what Optuna and other sweepers optimise, in
  the direction :mod:`poolbench.core.metrics` gives it), carrying the run's record. A run that
  failed returns the objective's worst value (``-inf`` for a metric where higher is better,
  ``+inf`` otherwise), so that a sweep goes on and the sampler learns to avoid the region;
  the record says ``failed`` and the closing table counts it.
- :class:`JobReports` is a Hydra callback (``hydra.callbacks.poolbench`` in
  ``configs/config.yaml``): after every job of a multirun, the process that ran it (this one,
  a joblib worker, a submitit node) writes a small report (:mod:`poolbench.run.jobs`), which
  the live display and the sweep's closing table read.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from poolbench.core import metrics
from poolbench.run.jobs import write_job_report

log = logging.getLogger("poolbench")


def worst(objective: str) -> float:
    """The value a failed run hands the sweeper: the worst there is for ``objective``."""
    return -math.inf if metrics.get(objective, option="objective").higher_is_better else math.inf


def objective_value(record: dict[str, Any], objective: str) -> float:
    """``record[objective]`` for an ok run that has it, else the worst value."""
    value = record.get(objective)
    ok = record.get("status") == "ok"
    if not ok or isinstance(value, bool) or not isinstance(value, (int, float)):
        return worst(objective)
    return float(value) if math.isfinite(value) else worst(objective)


class JobResult(float):
    """A job's objective value, with the run's ``record`` (None when the job could not be
    configured: ``error`` says why; or, ``skipped``, when the run is ok at the command's home
    but not on the node that ran the job), whether it was ``skipped`` (already ok), the name of the
    ``objective`` and the run's ``files`` that travel with it (``metrics.csv``: on a cluster
    without a shared disk they come home with the record, see
    :mod:`poolbench.run.homecoming`)."""

    record: dict[str, Any] | None
    objective: str
    skipped: bool
    error: str | None
    files: dict[str, str]

    def __new__(
        cls,
        value: float,
        record: dict[str, Any] | None,
        objective: str,
        skipped: bool = False,
        error: str | None = None,
        files: dict[str, str] | None = None,
    ) -> JobResult:
        self = super().__new__(cls, value)
        self.record, self.objective, self.skipped, self.error = record, objective, skipped, error
        self.files = dict(files or {})
        return self

    @classmethod
    def of(
        cls,
        record: dict[str, Any],
        objective: str,
        skipped: bool = False,
        files: dict[str, str] | None = None,
    ) -> JobResult:
        return cls(objective_value(record, objective), record, objective, skipped, files=files)

    @classmethod
    def failed(cls, objective: str, error: str) -> JobResult:
        return cls(worst(objective), None, objective, error=error)

    def __reduce__(self) -> tuple[Any, ...]:  # across processes (joblib, submitit, Ray)
        args = (float(self), self.record, self.objective, self.skipped, self.error, self.files)
        return (JobResult, args)


def job_report(job_return: JobReturn, job: int) -> dict[str, Any]:
    """The few facts of a finished job the sweep's display and closing table need."""
    output_dir = str(job_return.hydra_cfg.hydra.runtime.output_dir)
    report: dict[str, Any] = {
        "job": job,
        "run_dir": output_dir,
        "run_name": Path(output_dir).name,
        "status": "failed",
        "skipped": False,
        "wall_s": None,
        "objective": None,
        "error": None,
        "overrides": list(job_return.overrides or []),
    }
    if job_return.status != JobStatus.COMPLETED:
        # Hydra keeps what the task raised here (reading .return_value would raise it again)
        error = getattr(job_return, "_return_value", None)
        report["error"] = f"{type(error).__name__}: {error}"
        return report
    result = job_return.return_value
    if isinstance(result, JobResult) and result.record is None and result.skipped:
        report.update(status="ok", skipped=True)  # ok at the command's home (come_home)
    elif isinstance(result, JobResult):
        record = result.record or {}
        report.update(
            run_name=record.get("run_name", report["run_name"]),
            status=record.get("status", "failed"),
            skipped=result.skipped,
            wall_s=None if result.skipped else record.get("wall_s"),
            objective=float(result),
            error=record.get("error", result.error),
        )
    return report


class JobReports(Callback):
    """Writes every multirun job's report to ``<sweep dir>/jobs/<job>.json``."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        job = int(config.hydra.job.num)
        try:
            write_job_report(Path(str(config.hydra.sweep.dir)), job, job_report(job_return, job))
        except OSError as err:
            # A node without the command's disk (Ray, Slurm without a shared file system): an
            # error raised here would fail the job and lose its record. The command writes this
            # report itself from what the job hands back (poolbench.sweep.outcome.come_home).
            log.info("job %d: its report stays with the command (%s)", job, err)
