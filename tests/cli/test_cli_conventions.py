"""Command-line conventions: --version, shell completion, flags shown as flags, Hydra's --info and
--hydra-help, and a --help that does not pay for torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import poolbench
from poolbench.cli.main import app
from tests.helpers import EXE

runner = CliRunner()
COMMANDS = ["run", "report", "time", "list", "bench"]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"poolbench {poolbench.__version__}"


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_shows_boolean_flags_without_a_type(command: list[str]):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    if command == ["run"]:
        line = next(ln for ln in result.output.splitlines() if "--dry-run" in ln)
        assert re.search(r"--dry-run\s+Compose", line), line  # the help text follows the flag
    if not command:
        for option in ("--version", "--install-completion", "--show-completion"):
            assert option in result.output


def test_help_imports_neither_torch_nor_pandas_nor_hydra():
    code = (
        "import sys\n"
        "sys.argv = ['poolbench', '--help']\n"
        "from poolbench.cli.main import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('torch', 'pandas', 'hydra', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "Usage: poolbench" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_shell_completion_of_the_installed_command():
    shown = subprocess.run(
        [EXE, "--show-completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "_POOLBENCH_COMPLETE=complete_bash" in shown.stdout
    env = {**os.environ, "_POOLBENCH_COMPLETE": "complete_bash", "COMP_CWORD": "2"}
    completed = subprocess.run(
        [EXE], env={**env, "COMP_WORDS": "poolbench run --dr"}, capture_output=True, text=True
    )
    assert completed.stdout.split() == ["--dry-run"]
    commands = subprocess.run(
        [EXE],
        env={**env, "COMP_WORDS": "poolbench re", "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
    )
    assert commands.stdout.split() == ["report"]


def test_info_reaches_hydra(workdir: Path, capfd):
    result = runner.invoke(app, ["run", "pool=avg", "--info", "defaults"])
    assert result.exit_code == 0, result.output
    out = capfd.readouterr().out + result.output
    assert "Defaults List" in out and "pool/avg" in out
    alone = runner.invoke(app, ["run", "--info"])
    assert alone.exit_code == 0, alone.output
    out = capfd.readouterr().out + alone.output
    assert "Installed Hydra Plugins" in out and "Defaults List" in out
    assert not (workdir / "results").exists()


def test_hydra_help_reaches_hydra(workdir: Path, capfd):
    result = runner.invoke(app, ["run", "--hydra-help"])
    assert result.exit_code == 0, result.output
    out = capfd.readouterr().out + result.output
    assert "Hydra (" in out and "--multirun" in out
    assert "LexerNoViableAltException" not in out
