"""Shared fixtures: every test runs in its own temporary working directory."""

from __future__ import annotations

import os
import subprocess
import sys
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


def loads_dynamo(code: str, *args: str, cwd: Path | None = None) -> bool:
    """Run ``code`` in a fresh interpreter (``args`` as its ``sys.argv[1:]``); whether it left
    ``torch._dynamo`` imported. torch imports it (about a second) on first use of torch.optim
    and of dispatch modes; poolbench's startup depends on never doing so."""
    check = "\nimport sys\nprint('torch._dynamo' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code + check, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.fixture
def unverified_cifar(monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR read by torchvision without the real files' checksums (see tests/datafiles.py)."""
    import poolbench.data.cifar as cifar
    from tests.datafiles import UNVERIFIED

    monkeypatch.setattr(cifar, "dataset_class", UNVERIFIED.__getitem__)
