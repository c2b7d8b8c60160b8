"""Real Optuna sweeps (hydra-optuna-sweeper) of a few tiny trials: every job returns the
configured objective as a float, in the metric's direction; the records, the closing table and
Optuna's best value agree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core.errors import ConfigError
from poolbench.sweep.plan import plan
from tests.helpers import FAST

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
runner = CliRunner()
TINY = [*FAST, "eval.enabled=false", "latency_interleaved=false"]
OPTUNA = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0"]


@pytest.fixture(autouse=True)
def _optuna_logs_through_logging() -> None:
    """Optuna's own handler keeps the stderr of the first CliRunner call it saw, closed in
    the next test; log through the root logger instead."""
    import optuna

    optuna.logging.disable_default_handler()


def sweep(*args: str):
    return runner.invoke(app, ["run", *OPTUNA, *args, *TINY], catch_exceptions=False)


def records(workdir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(workdir.glob("results/runs/*/result.json"))]


def optuna_result(workdir: Path) -> dict:
    (path,) = workdir.glob("results/sweeps/*/optimization_results.yaml")
    return yaml.safe_load(path.read_text())


def test_interval_sweep_maximises_test_acc(workdir: Path):
    result = sweep("train.lr=interval(0.01,0.1)", "hydra.sweeper.n_trials=3")
    assert result.exit_code == 0, result.output
    runs = records(workdir)
    assert len(runs) == 3 and {r["status"] for r in runs} == {"ok"}
    lrs = [r["config"]["train"]["lr"] for r in runs]
    assert len(set(lrs)) == 3 and all(0.01 <= lr <= 0.1 for lr in lrs)
    best = max(runs, key=lambda r: r["test_acc"])
    found = optuna_result(workdir)
    assert found["best_value"] == pytest.approx(best["test_acc"])  # maximised, not minimised
    assert found["best_params"]["train.lr"] == pytest.approx(best["config"]["train"]["lr"])
    # the closing table and the counts come from what the jobs returned
    assert "3 ok, 0 failed (3 ran, 0 skipped: already ok)" in result.output
    assert "Traceback" not in result.output
    (jobs,) = workdir.glob("results/sweeps/*/jobs")
    reports = [json.loads(p.read_text()) for p in sorted(jobs.glob("*.json"))]
    assert [r["objective"] for r in reports] == pytest.approx(
        [r["test_acc"] for r in sorted(runs, key=lambda r: r["started_at"])]
    )
    # the same seeded study again: every trial is a run already ok, skipped as it comes
    again = sweep("train.lr=interval(0.01,0.1)", "hydra.sweeper.n_trials=3")
    assert again.exit_code == 0, again.output
    assert "3 ok, 0 failed (0 ran, 3 skipped: already ok)" in again.output
    assert len(records(workdir)) == 3


@pytest.fixture
def fresh_workers():
    """joblib keeps its worker processes for the next sweep, and a worker resolves the run
    directory from its own working directory: a later test (another directory) needs new ones."""
    yield
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def test_parallel_trials_under_joblib_report_from_the_workers(workdir: Path, fresh_workers):
    result = sweep(
        "train.lr=interval(0.01,0.1)",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",  # Optuna's batch: two trials at once
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    assert result.exit_code == 0, result.output
    runs = records(workdir)
    assert len(runs) == 2
    (jobs,) = workdir.glob("results/sweeps/*/jobs")
    assert len(list(jobs.glob("*.json"))) == 2  # written in the joblib workers
    assert "2 ok, 0 failed (2 ran, 0 skipped: already ok)" in result.output
    assert optuna_result(workdir)["best_value"] == pytest.approx(max(r["test_acc"] for r in runs))


def test_choice_sweep_skips_repeated_configs_and_minimises_latency(workdir: Path):
    result = sweep("pool=choice(max,avg)", "objective=latency_ms", "hydra.sweeper.n_trials=4")
    assert result.exit_code == 0, result.output
    runs = records(workdir)
    assert sorted(r["pool"] for r in runs) == ["avg", "max"]  # 4 trials, 2 configs
    assert optuna_result(workdir)["best_value"] == pytest.approx(min(r["latency_ms"] for r in runs))
    assert "2 ok, 0 failed (2 ran, 0 skipped: already ok)" in result.output


def test_failed_trials_return_the_worst_value_and_the_sweep_goes_on(workdir: Path):
    result = sweep(
        "train.lr=interval(1e11,1e12)", "train.schedule=constant", "hydra.sweeper.n_trials=2"
    )
    assert result.exit_code == 1, result.output  # failed runs, as in any sweep
    runs = records(workdir)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"failed"}
    assert optuna_result(workdir)["best_value"] == -math.inf  # Optuna kept them, as worst
    assert "0 ok, 2 failed" in result.output and "Traceback" not in result.output


def test_a_job_the_sweeper_composes_badly_fails_alone(workdir: Path):
    grid = ["-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid"]
    args = [*grid, "train.optimizer=choice(sgd,adam)", "hydra.sweeper.n_trials=2", *TINY]
    result = runner.invoke(app, ["run", *args], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    (ok,) = records(workdir)  # adam never became a run
    assert ok["config"]["train"]["optimizer"] == "sgd"
    assert "1 ok, 1 failed" in result.output
    assert "expected train.optimizer to be one of sgd, adamw" in result.output
    assert optuna_result(workdir)["best_value"] == pytest.approx(ok["test_acc"])


def test_direction_comes_from_the_metric():
    maximise = plan(["hydra/sweeper=optuna", "train.lr=interval(0.01,0.1)"], True)
    assert maximise.sweeper_overrides == ("hydra.sweeper.direction=maximize",)
    assert not maximise.expanded and maximise.size == 20  # the plugin's n_trials
    minimise = plan(["hydra/sweeper=optuna", "objective=params", "train.lr=interval(0.01,0.1)"])
    assert minimise.sweeper_overrides == ()  # the plugin's default already
    with pytest.raises(ConfigError, match="direction=minimize contradicts objective=test_acc"):
        plan(["hydra/sweeper=optuna", "hydra.sweeper.direction=minimize", "train.lr=0.1,0.2"])
    with pytest.raises(ConfigError, match="to be one direction"):
        plan(["hydra/sweeper=optuna", "hydra.sweeper.direction=[maximize,minimize]"])
    with pytest.raises(ConfigError, match="expected objective to name one of test_acc"):
        plan(["hydra/sweeper=optuna", "objective=accuracy"])


def test_dry_run_says_the_sweeper_picks_its_jobs(workdir: Path):
    result = runner.invoke(app, ["run", *OPTUNA, "train.lr=interval(0.01,0.1)", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "the sweeper picks its jobs as it goes" in result.output
