"""The command line in-process, through typer's CliRunner, and the records its runs leave."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from poolbench.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    """``poolbench *args`` in this process; an exception propagates instead of becoming exit 1."""
    return runner.invoke(app, list(args), catch_exceptions=False)


def records(results: Path = Path("results")) -> list[dict]:
    """The record of every run under ``results`` (its runs/ folder), in run-name order."""
    return [json.loads(p.read_text()) for p in sorted(results.glob("runs/*/result.json"))]
