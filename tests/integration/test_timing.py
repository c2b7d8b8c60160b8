"""Comparable latency: every configuration timed in one process, round by round; and the
sentences a sweep ends with, drawn from constructed records with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.measure.device import Precision
from poolbench.report.conclusions import conclusions
from poolbench.report.records import records_frame
from poolbench.report.summary import summarize
from poolbench.run.timing import Target, time_interleaved
from tests.helpers import FAST

runner = CliRunner()


class FakeClock:
    """A clock whose every call of the model under test costs a known time: it advances by
    ``costs[label]`` when that model runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow_model(clock: FakeClock, seconds: list[float]) -> nn.Module:
    class Slow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            clock.now += seconds[self.calls % len(seconds)]
            self.calls += 1
            return x

    return Slow()


def test_interleaved_rounds_time_every_config_once_per_round():
    clock = FakeClock()
    fp32 = Precision("fp32", None)
    cpu = torch.device("cpu")
    # warm-up calls (3 each) come first: their cost must not count
    a = slow_model(clock, [9.0, 9.0, 9.0, 0.010, 0.012, 0.011, 0.030, 0.010])
    b = slow_model(clock, [9.0, 9.0, 9.0] + [0.020] * 5)
    targets = [
        Target("a", "a", a, (1, 2, 2), cpu, fp32, False, []),
        Target("b", "b", b, (1, 2, 2), cpu, fp32, False, []),
    ]
    order: list[str] = []
    timings = time_interleaved(targets, batch=2, repeats=5, warmup=3, clock=clock, order=order)
    assert order == ["a", "b"] * 5  # round by round, never all of a first
    ta, tb = timings
    # a's five timed calls: 10, 12, 11, 30, 10 ms -> median 11, IQR 12 - 10 = 2
    assert ta.median_ms == pytest.approx(11.0) and ta.iqr_ms == pytest.approx(2.0)
    assert tb.median_ms == pytest.approx(20.0) and tb.iqr_ms == pytest.approx(0.0)
    assert ta.unstable and not tb.unstable  # 2 / 11 = 18% > 15%; 0%


def test_unstable_flag_is_iqr_over_15_percent_of_the_median():
    clock = FakeClock()
    fp32, cpu = Precision("fp32", None), torch.device("cpu")
    noisy = slow_model(clock, [0.0, 0.010, 0.010, 0.020, 0.020])
    steady = slow_model(clock, [0.010])
    timings = time_interleaved(
        [
            Target("n", "n", noisy, (1, 2, 2), cpu, fp32, False, []),
            Target("s", "s", steady, (1, 2, 2), cpu, fp32, False, []),
        ],
        batch=1,
        repeats=4,
        warmup=1,
        clock=clock,
    )
    assert timings[0].unstable and not timings[1].unstable


def test_poolbench_time_writes_comparable_figures_into_records(workdir: Path):
    result = runner.invoke(
        app, ["run", "-m", "pool=max,avg", "seed=0,1", "latency_interleaved=false", *FAST]
    )
    assert result.exit_code == 0, result.output
    assert "each run's own timing" in result.output  # not timed interleaved: said so
    records = sorted((workdir / "results" / "runs").rglob("result.json"))
    assert all(json.loads(p.read_text())["latency_interleaved_ms"] is None for p in records)
    timed = runner.invoke(app, ["time", "results", "--repeats", "3"])
    assert timed.exit_code == 0, timed.output
    assert "2 configs" not in timed.output and "wrote latency_interleaved_ms into 4" in timed.output
    values = [json.loads(p.read_text()) for p in records]
    sessions = {v["latency_session"] for v in values}
    assert len(sessions) == 1 and all(v["latency_interleaved_ms"] > 0 for v in values)
    for pool in ("max", "avg"):  # one timing per config, shared by its seeds
        assert len({v["latency_interleaved_ms"] for v in values if v["pool"] == pool}) == 1
    assert all(v["latency_ms"] is not None for v in values)  # the in-run figure stays
    bad = runner.invoke(app, ["time", str(workdir / "nowhere")])
    assert bad.exit_code == 2 and bad.output.startswith("error: ")


def test_a_sweep_ends_with_interleaved_latency_and_conclusions(workdir: Path):
    result = runner.invoke(app, ["run", "-m", "pool=max,avg", "seed=0,1", *FAST])
    assert result.exit_code == 0, result.output
    assert "ms (interleaved)" in result.output
    assert "2 configs timed interleaved in one process" in result.output
    assert "Best test accuracy:" in result.output and "Fastest inference (timed" in result.output
    record = json.loads(next((workdir / "results" / "runs").rglob("result.json")).read_text())
    assert record["latency_interleaved_ms"] > 0 and record["cpu"]


# -- conclusions from constructed records ----------------------------------------------------


def fake_records(accs: dict[str, list[float]], latency: dict[str, float] | None = None) -> list:
    out = []
    for pool, values in accs.items():
        for seed, acc in enumerate(values):
            config = {"pool": {"name": pool}, "model": {"name": "vgg"}, "seed": seed}
            out.append(
                {
                    "status": "ok",
                    "pool": pool,
                    "model": "vgg",
                    "data": "digits",
                    "head": "global_avg",
                    "seed": seed,
                    "test_acc": acc,
                    "shift_consistency": 0.5 + acc / 10,
                    "latency_ms": 1.0,
                    "latency_interleaved_ms": (latency or {}).get(pool),
                    "latency_interleaved_iqr_ms": 0.01,
                    "config": config,
                }
            )
    return out


def test_conclusions_name_the_tied_and_the_worse():
    df = records_frame(
        fake_records(
            {
                "max": [0.90, 0.91, 0.92, 0.93, 0.94],
                "avg": [0.899, 0.912, 0.915, 0.931, 0.937],  # within the noise of max
                "none": [0.50, 0.52, 0.51, 0.53, 0.50],  # truly apart
            },
            {"max": 2.0, "avg": 1.0, "none": 8.0},
        )
    )
    text = conclusions(df)
    assert text[0].startswith("Best test accuracy: max 0.9200 ± ")
    # avg is 0.1-0.5 points from max on every seed: within the default margin of half a point
    assert "; equivalent to it within ±0.005 (TOST, Holm-corrected, alpha 0.05): avg;" in text[0]
    assert "significantly worse (one-sided tests against each other pool" in text[0]
    assert text[0].endswith(": 'none' (p=1.8e-06).")  # the pool none, quoted in a sentence
    assert text[1].startswith("Most shift-consistent: max")
    assert text[2].startswith("Fastest inference (timed interleaved in one process): avg 1.00 ms")
    assert "slowest 'none' 8.00 ms (8.0x)" in text[2]
    summary = summarize(df)
    assert summary.set_index("pool").loc["none", "tied_with_best"] == False  # noqa: E712


def test_one_seed_makes_no_claim():
    df = records_frame(fake_records({"max": [0.9], "avg": [0.8]}))
    text = conclusions(df)
    assert "no difference can be told from seed noise: run seed=0,1,2" in text[0]
    assert not any("Significantly worse" in t for t in text)
    assert "each run's own timing" in text[-1]  # no interleaved figures: said so


# -- learned exponents: recorded, and set in the models `poolbench time` rebuilds ------------


def test_learned_exponents_round_trip_into_a_rebuilt_model():
    from poolbench.core.config import PoolSpec
    from poolbench.models.inspect import learned_exponents, set_learned_exponents
    from poolbench.models.registry import create_model

    def gem_net() -> nn.Module:
        return create_model("vgg", 10, 1, PoolSpec("gem"), PoolSpec("global_gem"), widths=[4, 8])

    trained = gem_net()
    with torch.no_grad():
        for i, (name, param) in enumerate(trained.named_parameters()):
            if name.endswith(".p"):
                param.fill_(2.5 + i / 100)
    learned = learned_exponents(trained)
    assert learned is not None and len(learned) == 3  # two stage pools and the head
    assert all(v != 3.0 for v in learned.values())
    fresh = gem_net()
    assert learned_exponents(fresh) != learned
    assert set_learned_exponents(fresh, json.loads(json.dumps(learned))) == 3  # via a record
    assert learned_exponents(fresh) == learned
    # paths the model lacks, values of another size or type, and no record are left alone
    assert set_learned_exponents(fresh, {"nowhere": 1.0, next(iter(learned)): [1.0, 2.0]}) == 0
    assert set_learned_exponents(fresh, {next(iter(learned)): "x"}) == 0
    assert set_learned_exponents(fresh, None) == 0
    plain = create_model("vgg", 10, 1, PoolSpec("max"), PoolSpec("global_avg"), widths=[4])
    assert learned_exponents(plain) is None


def test_poolbench_time_rebuilds_gem_with_the_exponents_it_learned(workdir: Path):
    from poolbench.models.inspect import learned_exponents
    from poolbench.run.timing import targets_from_records

    result = runner.invoke(app, ["run", "pool=gem", "latency_interleaved=false", *FAST])
    assert result.exit_code == 0, result.output
    path = next((workdir / "results" / "runs").rglob("result.json"))
    record = json.loads(path.read_text())
    learned = record["learned_p"]
    assert learned and all(v != 3.0 for v in learned.values())  # trained away from the init
    (target,) = targets_from_records([path])
    assert learned_exponents(target.model) == learned
    frame = records_frame([record])  # the report keeps them as one JSON text column
    assert json.loads(frame.loc[0, "learned_p"]) == learned


def test_poolbench_time_labels_tell_apart_configs_of_one_pool(tmp_path: Path):
    from poolbench.run.timing import targets_from_records
    from tests.helpers.fake_records import record, write_runs

    paths = write_runs(
        tmp_path, [record("max", 0, 0.9, {"train": {"lr": lr}}) for lr in (0.05, 0.005)]
    )
    labels = sorted(t.label for t in targets_from_records(paths))
    assert labels[0] != labels[1]
    assert labels[0].endswith("train.lr=0.005") and labels[1].endswith("train.lr=0.05")
