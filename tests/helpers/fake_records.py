"""Run records made by hand, with known answers, for the report tests (no training)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

from poolbench.core.config import config_hash, run_name

CONFIG: dict[str, Any] = {
    "pool": {"name": "max", "F": 2, "S": 2, "padding": 0},
    "head": {"name": "global_avg"},
    "model": {"name": "vgg", "widths": [8, 16, 16], "convs_per_stage": 1, "dropout": 0.0},
    "train": {"epochs": 1, "batch_size": 64, "optimizer": "sgd", "lr": 0.05},
    "data": {"name": "digits", "image_size": 16},
    "seed": 0,
    "device": "auto",
    "precision": "auto",
}


def record(
    pool: str = "max",
    seed: int = 0,
    test_acc: float | None = 0.9,
    config: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A record of ``pool`` at ``seed``; ``config`` updates the config's groups (nested dicts
    are merged: ``{"train": {"lr": 0.005}}``); ``fields`` set record fields."""
    identity = copy.deepcopy(CONFIG)
    identity["pool"] = {"name": pool, "F": 2, "S": 2} if pool != "gem" else {"name": pool}
    for key, value in (config or {}).items():
        if isinstance(value, dict) and isinstance(identity.get(key), dict):
            identity[key] = {**identity[key], **value}
        else:
            identity[key] = value
    identity["seed"] = seed
    out = {
        "run_id": config_hash(identity),
        "run_name": run_name(identity),
        "status": "ok",
        "error": None,
        "pool": pool,
        "F": identity["pool"].get("F"),
        "S": identity["pool"].get("S"),
        "p": identity["pool"].get("p"),
        "head": identity["head"]["name"],
        "model": identity["model"]["name"],
        "data": identity["data"]["name"],
        "seed": seed,
        "epochs": identity["train"]["epochs"],
        "test_acc": test_acc,
        "params": 1000,
        "flops": 5000,
        "latency_ms": 1.0,
        "device": "cpu",
        "dtype": "fp32",
        "config": identity,
    }
    out.update(fields)
    return out


def write_runs(root: Path, records: list[dict[str, Any]]) -> list[Path]:
    """Each record as ``root/runs/<run_name>/result.json``, as ``poolbench run`` lays them."""
    paths = []
    for r in records:
        path = Path(root) / "runs" / r["run_name"] / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
        paths.append(path)
    return paths


def write_sweep(root: Path, name: str, records: list[dict[str, Any]]) -> Path:
    """The records as runs of ``root`` plus the sweep directory ``root/sweeps/<name>/`` with
    its ``summary.csv`` (a row per run, as the sweep table writes it)."""
    write_runs(root, records)
    sweep = Path(root) / "sweeps" / name
    sweep.mkdir(parents=True)
    with open(sweep / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["run_name", "pool", "seed", "test_acc"])
        writer.writeheader()
        for r in records:
            writer.writerow({k: r.get(k) for k in writer.fieldnames})
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep
