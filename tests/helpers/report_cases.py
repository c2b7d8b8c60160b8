"""Record sets with known shapes for the report tests (no training): one setting of five pools
over five seeds (with latency, parameters and histories), six settings of four pools, a sweep
over train.lr, and one seed each."""

from __future__ import annotations

import random
from typing import Any

from tests.helpers.fake_records import record

POOLS = {"max": 0.93, "avg": 0.925, "lp": 0.928, "gem": 0.88, "strided_conv": 0.931}


def history(epochs: int, seed: int) -> list[dict[str, Any]]:
    return [
        {"epoch": e, "train_loss": 2 / e + seed / 100, "val_acc": 0.5 + e / 20, "lr": 0.1}
        for e in range(1, epochs + 1)
    ]


def one_setting() -> list[dict[str, Any]]:
    """Five pools x five seeds, timed in one session; strided_conv has more parameters."""
    rng = random.Random(0)
    return [
        record(
            p,
            s,
            round(m + rng.gauss(0, 0.008), 4),
            params=1000 + 500 * (p == "strided_conv"),
            latency_interleaved_ms=1 + rng.random(),
            latency_session="s1",
            history=history(4, s),
        )
        for p, m in POOLS.items()
        for s in range(5)
    ]


def six_settings() -> list[dict[str, Any]]:
    """Four pools x three seeds on six datasets (a critical-difference diagram's worth)."""
    rng = random.Random(1)
    return [
        record(p, s, round(m - d / 50 + rng.gauss(0, 0.01), 4), {"data": {"name": f"set{d}"}})
        for d in range(6)
        for p, m in {"max": 0.9, "avg": 0.89, "gem": 0.87, "softpool": 0.905}.items()
        for s in range(3)
    ]


def lr_sweep() -> list[dict[str, Any]]:
    return [
        record(p, s, 0.9 - 0.05 * (p == "avg") + s / 200 - lr, {"train": {"lr": lr}})
        for lr in (0.05, 0.005)
        for p in ("max", "avg")
        for s in range(3)
    ]


def one_seed() -> list[dict[str, Any]]:
    return [record(p, 0, 0.9 - 0.01 * i) for i, p in enumerate(("max", "avg", "lp"))]


CASES = {"one setting": one_setting, "six settings": six_settings, "lr": lr_sweep, "n=1": one_seed}
