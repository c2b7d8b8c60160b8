"""A real run's record carries the cost, speed, memory and invariance fields."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core.config import PoolSpec
from poolbench.measure.cost import model_cost
from poolbench.models.registry import create_model
from tests.helpers import FAST


def test_record_has_metrics(workdir: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "pool=max", "eval.sizes=[4,24]", "eval.shifts=[1]", *FAST]
    )
    assert result.exit_code == 0, result.output
    (path,) = workdir.rglob("result.json")
    record = json.loads(path.read_text())
    model = create_model(
        "vgg", 10, 1, PoolSpec("max", {}), PoolSpec("global_avg", {}), widths=[8, 16, 16]
    )
    expected = model_cost(model, (1, 16, 16))  # the FAST model on 16-px digits
    assert record["flops"] == expected.flops and record["macs"] == expected.macs
    assert record["pool_flops"] == expected.pool_flops > 0
    assert record["activations"] == 8 * 8 * 8 + 16 * 4 * 4 + 16 * 2 * 2 + 16
    assert record["pool_params"] == 0
    assert record["latency_ms"] > 0 and record["latency_ms_b1"] > 0
    assert record["latency_iqr_ms"] >= 0 and record["latency_b1_iqr_ms"] >= 0
    assert record["peak_mem_mb"] > 0 and record["peak_mem_kind"].startswith("rss_peak")
    assert isinstance(record["channels_last"], bool) and record["compile"] is False
    for key in ("shift_consistency", "acc_shift_1", "acc_rot", "acc_res_24"):
        assert 0 <= record[key] <= 1, key
    assert record["acc_res_4"] is None  # 4 -> 2 -> 1, and the third 2x2 pool cannot take 1x1
    assert record["threads"] >= 1 and record["dtype"] in ("bf16", "fp32")


def test_speed_and_eval_options_are_validated(workdir: Path) -> None:
    for override, message in (
        ("threads=0", "expected threads to be auto or an integer >= 1, got 0"),
        ("channels_last=maybe", "expected channels_last to be one of auto, true, false"),
        ("compile=3", "expected compile to be true or false, got 3"),
        ("eval.max_rot=400", "expected eval.max_rot to be a number in [0, 180], got 400"),
        ("+eval.shfits=[1]", "unknown eval key(s) shfits"),
    ):
        result = CliRunner().invoke(app, ["run", override])
        assert result.exit_code == 2, (override, result.output)
        assert message in result.output, (override, result.output)
    assert not (workdir / "results").exists()
