"""Shared fixtures: every test runs in its own temporary working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Overrides that make a run take about a second on 2 CPU cores.
FAST = [
    "train.epochs=1",
    "model.widths=[8,16,16]",
    "latency_batch=8",
    "latency_repeats=2",
    "threads=1",  # a tiny model gains nothing from 2 threads, and on a busy machine loses 2-10x
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_live_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    os.environ.pop("HYDRA_FULL_ERROR", None)
