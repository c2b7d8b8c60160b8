"""Shared fixtures: every test runs in its own temporary working directory. They apply to every
folder below tests/; the constants and functions tests import live in tests/helpers/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_live_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    os.environ.pop("HYDRA_FULL_ERROR", None)


@pytest.fixture
def unverified_cifar(monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR read by torchvision without the real files' checksums (tests/helpers/datafiles.py)."""
    import poolbench.data.cifar as cifar
    from tests.helpers.datafiles import UNVERIFIED

    monkeypatch.setattr(cifar, "dataset_class", UNVERIFIED.__getitem__)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` (deselected by default; ``pytest -m gpu`` runs them) need CUDA:
    where there is none they are skipped, saying so."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False here")
    for item in gpu:
        item.add_marker(skip)
