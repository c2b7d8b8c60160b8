"""Checkpoints: a run stopped after any epoch resumes and ends with the metrics of an
uninterrupted run (bit for bit on CPU); finished runs are skipped; failures carry their epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from poolbench.engine.checkpoint import CHECKPOINT_NAME, Checkpoint
from poolbench.run.runner import execute
from poolbench.sweep.plan import plan
from tests.helpers import FAST, SAME

RUN = ["pool=max", *FAST, "train.epochs=2", "device=cpu"]


def _config(*extra: str):
    return plan([*RUN, *extra]).runs[0]


def test_interrupted_run_resumes_to_identical_metrics(workdir: Path, monkeypatch):
    cfg = _config()
    reference = execute(cfg, workdir / "a")
    assert reference["status"] == "ok"
    assert not (workdir / "a" / CHECKPOINT_NAME).exists()  # removed after success

    save = Checkpoint.save

    def save_then_interrupt(self, epoch, *args, **kwargs):
        save(self, epoch, *args, **kwargs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, workdir / "b")
    assert not (workdir / "b" / "result.json").exists()
    assert torch.load(workdir / "b" / CHECKPOINT_NAME, weights_only=True)["epoch"] == 1
    assert [p.name for p in (workdir / "b").iterdir()] == [CHECKPOINT_NAME]  # no temp files

    monkeypatch.setattr(Checkpoint, "save", save)
    resumed = execute(cfg, workdir / "b")
    assert resumed["status"] == "ok"
    assert {k: resumed[k] for k in SAME} == {k: reference[k] for k in SAME}


def test_checkpoint_of_another_config_is_ignored(workdir: Path):
    cfg = _config()
    execute(_config("seed=5", "keep_checkpoint=true"), workdir / "run")
    (workdir / "run" / "result.json").unlink()
    assert (workdir / "run" / CHECKPOINT_NAME).exists()
    record = execute(cfg, workdir / "run")
    clean = execute(cfg, workdir / "clean")
    assert {k: record[k] for k in SAME} == {k: clean[k] for k in SAME}


def test_ok_record_is_skipped_unless_rerun(workdir: Path):
    cfg = _config()
    first = execute(cfg, workdir)
    mtime = (workdir / "result.json").stat().st_mtime_ns
    assert execute(cfg, workdir) == first
    assert (workdir / "result.json").stat().st_mtime_ns == mtime
    again = execute(_config("rerun=true"), workdir)
    assert again["status"] == "ok" and again["run_id"] == first["run_id"]
    assert (workdir / "result.json").stat().st_mtime_ns > mtime


def test_diverged_run_records_error_and_epoch(workdir: Path):
    record = execute(_config("train.lr=1e12", "train.schedule=constant"), workdir)
    assert record["status"] == "failed"
    assert record["error"].startswith("TrainingDiverged")
    assert record["failed_epoch"] == 1
    assert json.loads((workdir / "result.json").read_text())["failed_epoch"] == 1


def test_ctrl_c_says_what_it_kept(workdir: Path, monkeypatch):
    """The message names what is really there: no 'checkpoint kept' before the first one."""
    from typer.testing import CliRunner

    import poolbench.sweep.outcome as sweep_mod
    from poolbench.cli.main import app

    args = ["run", "-m", "pool=max,avg", *FAST]

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    # (monkeypatch.context, not undo: undo would also undo workdir's chdir, and the runs below
    # would land in the checkout's results/)
    with monkeypatch.context() as patch:
        patch.setattr(sweep_mod, "launch", interrupted)
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert "checkpoint kept" not in result.output
    assert (
        "interrupted: 0 finished runs kept; no unfinished run had saved a checkpoint yet "
        "(they start afresh); run the same command again to go on" in result.output
    )
    assert Path.cwd() == workdir
    assert CliRunner().invoke(app, [*args, "keep_checkpoint=true"]).exit_code == 0
    (first, _) = sorted(Path("results/runs").iterdir())
    (first / "result.json").unlink()
    monkeypatch.setattr(sweep_mod, "launch", interrupted)
    result = CliRunner().invoke(app, [*args, "keep_checkpoint=true"])
    assert result.exit_code == 130
    assert "interrupted: 1 finished run kept; 1 unfinished run kept a checkpoint" in result.output


def test_interrupted_run_before_its_first_checkpoint_says_so(workdir: Path, monkeypatch, caplog):
    import poolbench.run.runner as runner_mod

    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "train", interrupt)
    with pytest.raises(KeyboardInterrupt):
        execute(_config(), workdir / "run")
    assert not (workdir / "run" / CHECKPOINT_NAME).exists()
    assert "interrupted before its first checkpoint: it starts afresh" in caplog.text
    assert "checkpoint kept" not in caplog.text


def test_a_dataloader_worker_traceback_is_one_line_in_the_record():
    from poolbench.core.errors import one_line

    wrapped = RuntimeError(
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
        'last):\n  File "x.py", line 1, in f\n    g()\npoolbench.core.errors.DataError: cannot '
        "decode image a.png: image file is truncated\n"
    )
    assert one_line(wrapped) == (
        "poolbench.core.errors.DataError: cannot decode image a.png: image file is truncated"
    )
    assert one_line(ValueError("one line")) == "one line"
