"""Where results go and what happens when they cannot: a results directory that is a file or
read-only, a full disk, an unreadable checkpoint, file modes that follow the umask."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.engine.checkpoint import CHECKPOINT_NAME
from tests.helpers import EXE, FAST

runner = CliRunner()


def poolbench(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300, **kwargs)


def _mount_tmpfs(where: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may create files in: chmod 555, or for root (whom permissions do
    not stop) a read-only tmpfs."""
    where = tmp_path / "read-only"
    if os.geteuid() != 0:
        where.mkdir()
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    if not _mount_tmpfs(where, "ro,size=64k"):
        pytest.skip("running as root without permission to mount a read-only tmpfs")
    yield where
    subprocess.run(["umount", str(where)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB file system: room for a run's small files, not for its first checkpoint."""
    where = tmp_path / "small"
    if not _mount_tmpfs(where, "size=64k"):
        pytest.skip("needs root and mount to make a small tmpfs")
    yield where
    subprocess.run(["umount", str(where)], check=True)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_results_dir_that_cannot_hold_results_is_one_line_before_anything(
    workdir: Path, read_only_dir: Path
):
    Path("a-file").write_text("not a directory\n")
    line = _one_error_line(poolbench("run", "results_dir=a-file", *FAST))
    assert f"expected results_dir to be a directory, got {workdir / 'a-file'}: it is a file" in line
    line = _one_error_line(poolbench("run", "results_dir=a-file/below", *FAST))
    assert "a-file is a file" in line
    line = _one_error_line(poolbench("run", f"results_dir={read_only_dir}/results", *FAST))
    assert f"cannot create files in {read_only_dir}" in line
    line = _one_error_line(poolbench("run", "results_dir=", *FAST))
    assert "expected results_dir to be a directory path, got ''" in line
    assert sorted(p.name for p in workdir.iterdir()) == ["a-file", "read-only"]
    assert not list(read_only_dir.iterdir())  # the probe left nothing


def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes_later(
    workdir: Path, small_disk: Path
):
    done = poolbench("run", "pool=max", f"results_dir={small_disk}", *FAST)
    line = _one_error_line(done)
    assert line.startswith("error: no space left on device: cannot write ")
    (run_dir,) = (small_disk / "runs").iterdir()
    assert f"{run_dir / CHECKPOINT_NAME} (" in line and "bytes free in" in line
    assert "unexpected pos" not in done.stdout + done.stderr
    assert not (run_dir / "result.json").exists()  # not a failure of the run: nothing recorded
    assert not list(run_dir.glob(".*.tmp"))
    assert "stopped: no space left on device" in (run_dir / "poolbench.log").read_text()
    # once there is room, the same command finishes the run
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    again = poolbench("run", "pool=max", f"results_dir={small_disk}", *FAST)
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "result.json").read_text())["status"] == "ok"


def test_a_full_disk_while_writing_is_reported_as_such(workdir: Path, monkeypatch):
    """Without a small file system: every fsync reports ENOSPC, as a full disk does for
    delayed writes (NFS, ext4 delalloc)."""

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    result = runner.invoke(app, ["run", "pool=max", *FAST])
    assert result.exit_code == 2
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith("error: no space left on device: cannot write ")
    assert "results/runs/digits-vgg-max-" in errors[0]
    assert not list(workdir.rglob("result.json")) and not list(workdir.rglob("*.tmp"))


def test_files_follow_the_umask(workdir: Path):
    done = poolbench("run", "pool=max", *FAST, umask=0o002)
    assert done.returncode == 0, done.stderr
    (run_dir,) = Path("results/runs").iterdir()
    report = poolbench("report", "results", "-o", "out/report.csv", "--no-plots", umask=0o002)
    assert report.returncode == 0, report.stderr
    for path in [run_dir / "result.json", run_dir / "metrics.csv", Path("out/report.csv")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path  # group-writable, as asked


def _checkpointed_run(workdir: Path) -> tuple[list[str], Path]:
    args = ["run", "pool=max", *FAST, "train.epochs=2", "keep_checkpoint=true"]
    assert runner.invoke(app, args).exit_code == 0
    (run_dir,) = Path("results/runs").iterdir()
    (run_dir / "result.json").unlink()  # unfinished, with a checkpoint to resume from
    return args, run_dir


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_an_unreadable_checkpoint_is_set_aside_and_the_run_starts_afresh(
    workdir: Path, damage: str
):
    args, run_dir = _checkpointed_run(workdir)
    checkpoint = run_dir / CHECKPOINT_NAME
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(
        {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"\x80\x02junk" * 9}[damage]
    )
    damaged = checkpoint.read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "ok"
    (aside,) = run_dir.glob(f"{CHECKPOINT_NAME}.corrupt-*")
    assert aside.read_bytes() == damaged  # kept as it was, not deleted
    log = (run_dir / "poolbench.log").read_text()
    assert f"{checkpoint} cannot be read (" in log
    assert f"set aside as {aside.name}; the run starts afresh" in log
    assert "resumed after epoch" not in log.split("cannot be read")[1]
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2  # a new one, readable
