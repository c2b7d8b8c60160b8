"""Real sweeps at tiny size: parallel launchers, failures that do not sink the sweep, the
launcher presets. (submitit and a sweep killed and re-run: tests/slow/test_sweeps.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from poolbench.measure.device import available_cpus
from tests.helpers import FAST
from tests.helpers.cli import invoke, records


def test_joblib_sweep_splits_threads_and_logs_each_run(workdir: Path):
    result = invoke("run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "pool=max,avg", *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 ok, 0 failed (2 ran, 0 skipped" in result.output
    runs = records()
    assert sorted(r["pool"] for r in runs) == ["avg", "max"]
    assert all(r["status"] == "ok" for r in runs)
    # two jobs at once share the CPUs instead of each taking all of them
    assert {r["threads"] for r in runs} == {max(1, available_cpus() // 2)}
    for r in runs:
        log = (workdir / "results" / "runs" / r["run_name"] / "poolbench.log").read_text()
        assert "epoch 1/1" in log


def test_forced_nan_run_fails_while_siblings_succeed(workdir: Path):
    result = invoke("run", "-m", "train.lr=0.05,1e12", "train.schedule=constant", *FAST)
    assert result.exit_code == 1
    by_lr = {r["config"]["train"]["lr"]: r for r in records()}
    assert by_lr[0.05]["status"] == "ok"
    failed = by_lr[1e12]
    assert failed["status"] == "failed" and failed["failed_epoch"] == 1
    assert failed["error"].startswith("TrainingDiverged: training loss is nan")
    # both ran, the failed one too
    assert "1 ok, 1 failed (2 ran, 0 skipped: already ok)" in result.output
    # the failure is printed once, at the end, with where its log is
    line = f"failed {failed['run_name']} (epoch 1): TrainingDiverged"
    assert result.output.count("training loss is nan") == 1
    assert line in result.output and "poolbench.log)" in result.output
    # re-running retries the failed run only
    again = invoke("run", "-m", "train.lr=0.05,1e12", "train.schedule=constant", *FAST)
    assert "1 ok, 1 failed (1 ran, 1 skipped: already ok)" in again.output


def test_joblib_defaults_to_one_job_per_gpu_or_two_cpus():
    from poolbench.measure.device import default_parallel_jobs
    from poolbench.sweep.plan import plan

    default = plan(["hydra/launcher=joblib", "pool=max,avg"]).launcher_overrides
    assert default == (f"hydra.launcher.n_jobs={default_parallel_jobs()}",)
    assert plan(["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"]).launcher_overrides == ()
    assert plan(["pool=max,avg"]).launcher_overrides == ()


@pytest.mark.parametrize(
    ("preset", "gpus", "cpus"),
    [("slurm_gpu", 1, 8), ("slurm_cpu", 0, 4), ("submitit_local", None, None)],
)
def test_launcher_presets_extend_the_plugin_configs(preset: str, gpus, cpus):
    from hydra import compose, initialize_config_dir

    from poolbench.core.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        launcher = compose(
            "config", overrides=[f"hydra/launcher={preset}"], return_hydra_config=True
        ).hydra.launcher
    # the Slurm presets' launcher is submitit's, waiting for every job (poolbench_slurm); by
    # name: Hydra's plugin discovery executes plugin modules again, so classes are copies
    from hydra.utils import get_class

    bases = {f"{c.__module__}.{c.__name__}" for c in get_class(launcher._target_).__mro__}
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.BaseSubmititLauncher" in bases
    assert launcher.gpus_per_node == gpus and launcher.cpus_per_task == cpus
    assert launcher.timeout_min > 0 and "partition" in launcher or preset == "submitit_local"
