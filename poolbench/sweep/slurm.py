"""Slurm through submitit (``hydra/launcher=slurm_cpu`` or ``slurm_gpu``, whose launcher is
``hydra_plugins.poolbench_slurm``): the hydra-submitit-launcher plugin's own launcher, except
that the command waits for every job of its array and a job that ends for good without a
result (cancelled, out of time after its requeues, its node lost) is reported rather than
raised.

The plugin gathers results in job order and raises at the first job that ended without one,
while later jobs may still run: the command would stop with a traceback and lose the closing
table. Here each such job becomes a :class:`~hydra.core.utils.JobReturn` of a failed run and a job
report saying why (``<sweep dir>/jobs/``), so that the closing table counts and names it and
the others finish. A job that is preempted (``scancel --signal=USR2``, the signal submitit
listens for) or reaches its time limit is requeued by submitit (after a timeout up to
``max_num_timeout`` times) and resumes from its run's last epoch checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from poolbench.core import defaults
from poolbench.run.jobs import write_job_report
from poolbench.sweep.callbacks import JobResult, job_report

log = logging.getLogger("poolbench")


class _Waiting:
    """A submitit job whose ``results()`` waits for its end and never raises: a job that
    ended without a result gives the JobReturn of a failed run, saying why."""

    def __init__(self, job: Any, launcher: Any, overrides: list[str], number: int) -> None:
        self.job, self.launcher, self.overrides, self.number = job, launcher, overrides, number

    def results(self) -> list[JobReturn]:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            return self.job.results()
        except (FailedJobError, UncompletedJobError) as err:
            return [ended_without_result(self.launcher, self.job, self.overrides, self.number, err)]


@contextlib.contextmanager
def waiting_for_every_job(
    launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Iterator[None]:
    """While ``launcher`` submits its array, the jobs submitit hands it wait (see
    :class:`_Waiting`)."""
    import submitit

    map_array = submitit.AutoExecutor.map_array

    def waiting_map_array(executor: Any, fn: Any, *iterables: Any) -> list[_Waiting]:
        jobs = map_array(executor, fn, *iterables)
        return [
            _Waiting(job, launcher, list(overrides), initial_job_idx + i)
            for i, (job, overrides) in enumerate(zip(jobs, job_overrides, strict=True))
        ]

    submitit.AutoExecutor.map_array = waiting_map_array
    try:
        yield
    finally:
        submitit.AutoExecutor.map_array = map_array


def ended_without_result(
    launcher: Any, job: Any, overrides: list[str], number: int, error: Exception
) -> JobReturn:
    """The JobReturn of a failed run for a job that ended without a result, and its job report (the
    run's directory as its config names it), so that the sweep can say which run it was and
    why."""
    state = getattr(job, "state", "unknown")
    reason = " ".join(f"Slurm job {job.job_id} ended without a result ({state}): {error}".split())
    log.error("job %d (%s): %s", number, " ".join(overrides), reason)
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    hydra_config.set_config(config)  # ${hydra:...} in the run's directory resolves as in its job
    try:
        run_dir = str(OmegaConf.select(config, "hydra.sweep.subdir"))
    finally:
        hydra_config.cfg = before
    # COMPLETED with a failed result, as a run that failed on its node hands back: a FAILED
    # JobReturn re-raises its error in the sweeper (Hydra's basic sweeper reads every return
    # value), which would end the command with a traceback instead of the closing table.
    objective = str(OmegaConf.select(config, "objective", default=defaults.METRIC))
    ret = JobReturn(
        overrides=overrides,
        cfg=config,
        hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": run_dir}}}),
        status=JobStatus.COMPLETED,
        _return_value=JobResult.failed(objective, reason),
    )
    report = {**job_report(ret, number), "error": reason[:500]}
    write_job_report(Path(str(launcher.config.hydra.sweep.dir)), number, report)
    return ret
