"""Checkpoints: a run stopped after any epoch resumes and ends with the metrics of an
uninterrupted run (bit for bit on CPU); finished runs are skipped; failures carry their epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from poolbench.engine.checkpoint import CHECKPOINT_NAME, Checkpoint
from poolbench.run.runner import execute
from poolbench.sweep.plan import plan
from tests.conftest import FAST

SAME = ("test_acc", "test_top5", "train_loss", "params")
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
    assert torch.load(workdir / "b" / CHECKPOINT_NAME, weights_only=False)["epoch"] == 1
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


def _poolbench(*args: str, **kwargs) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("poolbench")
    return subprocess.Popen(
        [str(exe), "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the test can kill all of it
        **kwargs,
    )


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_identical_metrics(workdir: Path):
    args = ["pool=max", "model.widths=[16,32,32]", "train.epochs=6", "device=cpu", *FAST[2:]]
    assert _poolbench(*args, "results_dir=ref").wait(timeout=300) == 0
    proc = _poolbench(*args, "results_dir=killed")
    deadline = time.time() + 120
    checkpoints: list[Path] = []
    while time.time() < deadline and not checkpoints:
        checkpoints = list(Path("killed/runs").glob(f"*/{CHECKPOINT_NAME}"))
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoints, "no checkpoint appeared"
    run_dir = checkpoints[0].parent
    assert not (run_dir / "result.json").exists(), "run finished before it could be killed"
    epoch = torch.load(checkpoints[0], weights_only=False)["epoch"]
    assert 1 <= epoch < 6
    assert _poolbench(*args, "results_dir=killed").wait(timeout=300) == 0
    log = (run_dir / "poolbench.log").read_text()
    assert f"resumed after epoch {epoch}/6" in log
    killed = json.loads((run_dir / "result.json").read_text())
    (ref,) = (json.loads(p.read_text()) for p in Path("ref/runs").glob("*/result.json"))
    assert {k: killed[k] for k in SAME} == {k: ref[k] for k in SAME}


@pytest.mark.slow
def test_ctrl_c_keeps_checkpoint_exits_130_and_rerun_resumes(workdir: Path):
    args = ["-m", "pool=max,avg", "train.epochs=4", "device=cpu", *FAST[1:]]
    proc = _poolbench(*args)
    deadline = time.time() + 120
    while time.time() < deadline and not list(Path("results/runs").glob(f"*/{CHECKPOINT_NAME}")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    assert proc.wait(timeout=60) == 130
    (checkpoint,) = Path("results/runs").glob(f"*/{CHECKPOINT_NAME}")
    assert not (checkpoint.parent / "result.json").exists()
    assert not list(Path("results").rglob("*.tmp"))  # nothing half-written
    epoch = torch.load(checkpoint, weights_only=False)["epoch"]
    assert (
        f"interrupted; checkpoint kept after epoch {epoch}"
        in (checkpoint.parent / "poolbench.log").read_text()
    )
    assert _poolbench(*args).wait(timeout=600) == 0
    assert f"resumed after epoch {epoch}/4" in (checkpoint.parent / "poolbench.log").read_text()
    assert not checkpoint.exists()  # deleted after success


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
        'last):\n  File "x.py", line 1, in f\n    g()\npoolbench.core.errors.DataError: cannot decode '
        "image a.png: image file is truncated\n"
    )
    assert one_line(wrapped) == (
        "poolbench.core.errors.DataError: cannot decode image a.png: image file is truncated"
    )
    assert one_line(ValueError("one line")) == "one line"
