"""logger=csv|tensorboard|mlflow, read back with each library's own reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core.errors import ConfigError
from poolbench.engine.loggers import list_loggers
from poolbench.sweep.plan import plan
from tests.helpers import FAST, REPO

runner = CliRunner()
TWO_EPOCHS = [*FAST, "train.epochs=2", "eval.enabled=false"]


def run(*args: str) -> dict:
    result = runner.invoke(app, ["run", *args], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    (path,) = Path("results/runs").glob("*/result.json")
    return json.loads(path.read_text()) | {"run_dir": str(path.parent)}


def test_loggers_are_the_config_group():
    group = sorted(p.stem for p in REPO.glob("configs/logger/*.yaml"))
    assert group == list_loggers() == ["csv", "mlflow", "tensorboard"]
    assert plan([]).runs[0].logger.name == "csv"


def test_csv_is_the_default_metrics_file(workdir: Path):
    record = run(*TWO_EPOCHS)
    lines = (Path(record["run_dir"]) / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_acc,lr,img_s"
    assert [ln.split(",")[0] for ln in lines[1:]] == ["1", "2"]
    assert float(lines[2].split(",")[1]) == pytest.approx(
        record["history"][1]["train_loss"], rel=1e-5
    )


def test_tensorboard_event_files_in_the_run_dir(workdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = run("logger=tensorboard", "+tags=[tb]", *TWO_EPOCHS)
    assert record["status"] == "ok"
    assert list(Path(record["run_dir"]).glob("events.out.tfevents.*"))
    assert not (Path(record["run_dir"]) / "metrics.csv").exists()
    events = EventAccumulator(record["run_dir"])
    events.Reload()
    loss = events.Scalars("train_loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([h["train_loss"] for h in record["history"]])
    (final,) = events.Scalars("final/test_acc")
    assert final.value == pytest.approx(record["test_acc"]) and final.step == 2
    assert (
        "train.lr" in events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    )
    again = run("logger=tensorboard", "rerun=true", *TWO_EPOCHS)  # afresh: its curves too
    assert len(list(Path(again["run_dir"]).glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(again["run_dir"])
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]


def mlflow_runs(workdir: Path, **search):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=(workdir / "results" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("poolbench")
    return client, client.search_runs([experiment.experiment_id], **search)


def test_mlflow_one_run_per_run_with_params_and_metrics(workdir: Path):
    record = run("logger=mlflow", "+tags=[ml]", *TWO_EPOCHS)
    client, (found,) = mlflow_runs(workdir)
    assert found.info.run_name == record["run_name"] and found.info.status == "FINISHED"
    assert found.data.tags["poolbench.run_id"] == record["run_id"]
    assert found.data.tags["poolbench.tags"] == "ml"
    params = found.data.params
    assert params["pool.name"] == "max" and float(params["train.lr"]) == 0.05
    assert params["model.widths"] == "[8, 16, 16]" and params["seed"] == "0"
    history = client.get_metric_history(found.info.run_id, "train_loss")
    history = sorted(history, key=lambda m: m.step)
    assert [m.step for m in history] == [h["epoch"] for h in record["history"]]
    assert [m.value for m in history] == pytest.approx([h["train_loss"] for h in record["history"]])
    assert found.data.metrics["test_acc"] == pytest.approx(record["test_acc"])
    assert found.data.metrics["params"] == record["params"]

    run("logger=mlflow", *TWO_EPOCHS)  # skipped: already ok, nothing logged again
    assert len(mlflow_runs(workdir)[1]) == 1
    run("logger=mlflow", "rerun=true", *TWO_EPOCHS)  # afresh: its MLflow run too
    _, (again,) = mlflow_runs(workdir)
    assert again.info.run_id != found.info.run_id and again.info.status == "FINISHED"


def test_mlflow_marks_a_failed_run_failed(workdir: Path):
    record = run("logger=mlflow", "train.lr=1e12", "train.schedule=constant", *TWO_EPOCHS)
    assert record["status"] == "failed"
    _, (found,) = mlflow_runs(workdir)
    assert found.info.status == "FAILED"
    assert found.data.tags["poolbench.error"].startswith("TrainingDiverged")


def interrupted_after_epoch_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C right after the checkpoint of epoch 2 is saved: the loggers heard of epoch 1,
    not of epoch 2, which the resumed run restores."""
    from poolbench.engine.checkpoint import Checkpoint

    save = Checkpoint.save

    def save_then_interrupt(self, epoch, *args, **kwargs):
        save(self, epoch, *args, **kwargs)
        if epoch == 2:
            monkeypatch.setattr(Checkpoint, "save", save)
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_interrupt)


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_resumed_run_logs_every_epoch_once(name: str, workdir: Path, monkeypatch):
    from poolbench.run.runner import execute

    cfg = plan([f"logger={name}", *TWO_EPOCHS, "train.epochs=3"]).runs[0]
    run_dir = workdir / "results" / "runs" / cfg.run_name
    interrupted_after_epoch_2(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, run_dir)
    record = execute(cfg, run_dir)  # resumes after epoch 2
    assert record["status"] == "ok" and len(record["history"]) == 3
    losses = [h["train_loss"] for h in record["history"]]
    if name == "mlflow":
        client, (found,) = mlflow_runs(workdir)
        history = client.get_metric_history(found.info.run_id, "train_loss")
        steps = sorted((m.step, m.value) for m in history)
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run_dir))
        events.Reload()
        steps = sorted((e.step, e.value) for e in events.Scalars("train_loss"))
    assert [s for s, _ in steps] == [1, 2, 3]
    assert [v for _, v in steps] == pytest.approx(losses)


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_missing_extra_is_one_line_naming_it(name: str, monkeypatch, workdir: Path):
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(ConfigError, match=rf"logger={name} needs the {name} package: "):
        plan([f"logger={name}"])
    result = runner.invoke(app, ["run", f"logger={name}"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: logger={name} needs the {name} package: pip install 'poolbench[{name}]'"
    )


def test_the_library_imports_no_logger_package():
    code = (
        "import sys, poolbench.run.runner, poolbench.engine.loggers\n"
        "print(sorted(m for m in ('mlflow', 'tensorboard') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_logger_and_parameter_list_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown logger 'wandb'; available: csv, mlflow"):
        plan(["logger=wandb"])
    with pytest.raises(ConfigError, match="logger 'mlflow' has no parameter 'uri'"):
        plan(["logger=mlflow", "+logger.uri=x"])
