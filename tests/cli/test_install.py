"""The installed command: a real subprocess, and a wheel installed somewhere else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FAST, REPO


def test_installed_console_script_runs(workdir: Path):
    exe = shutil.which("poolbench", path=str(Path(sys.executable).parent)) or shutil.which(
        "poolbench"
    )
    assert exe, "poolbench is not installed (pip install -e .)"
    out = subprocess.run(
        [exe, "run", "pool=max", *FAST], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    (record,) = list((workdir / "results" / "runs").rglob("result.json"))
    assert json.loads(record.read_text())["status"] == "ok"
    bad = subprocess.run([exe, "run", "pool=nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: unknown pool 'nope'")
    assert "Traceback" not in bad.stderr + bad.stdout


def test_wheel_finds_its_configs_from_elsewhere(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("poolbench-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "poolbench" / "configs" / "config.yaml").is_file()
    # the command line installs inside poolbench's namespace: no top-level "cli" of its own
    assert (target / "poolbench" / "cli" / "main.py").is_file()
    packages = {p.name for p in target.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {"poolbench"}, packages
    assert not (target / "cli").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    script = target / "bin" / "poolbench"
    where = subprocess.run(
        [sys.executable, "-c", "import poolbench.core.paths as p; print(p.config_dir())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == target / "poolbench" / "configs"
    help_out = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help_out.returncode == 0 and "report" in help_out.stdout
    run = subprocess.run(
        [sys.executable, str(script), "run", *FAST],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert list((elsewhere / "results" / "runs").rglob("result.json"))


@pytest.mark.parametrize("line", [0, 1])
def test_readme_commands_match_ci(line: int):
    readme = (REPO / "README.md").read_text().splitlines()
    commands = [ln for ln in readme[:12] if ln.startswith("python3 -m venv")]
    assert len(commands) == 2
    ci = (REPO / ".ci" / "run").read_text()
    if line == 1:
        assert commands[1] in ci
    else:
        assert "poolbench run" in commands[0]
