"""Reports from the records of a real tiny sweep: every number traced back to the records."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.report.summary import ci95_halfwidth, pareto_front
from tests.helpers import FAST
from tests.helpers.fake_records import record, write_runs

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records of pool=max,avg x seed=0,1 plus one failed run (a copy marked failed)."""
    root = tmp_path_factory.mktemp("sweep")
    result = runner.invoke(
        app, ["run", "-m", "pool=max,avg", "seed=0,1", f"results_dir={root}", *FAST]
    )
    assert result.exit_code == 0, result.output
    ok = next(root.glob("runs/*max*-s1-*/result.json"))
    failed = json.loads(ok.read_text())
    failed.update(
        status="failed", error="TrainingDiverged: x", test_acc=None, seed=7, run_id="f" * 16
    )
    failed["config"]["seed"] = 7
    (root / "runs" / "failed-run").mkdir()
    (root / "runs" / "failed-run" / "result.json").write_text(json.dumps(failed))
    return root


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in root.glob("runs/*/result.json")]


def test_report_tables_and_plots_match_the_records(sweep: Path, workdir: Path):
    result = runner.invoke(app, ["report", str(sweep), "-o", "out/report.csv"])
    assert result.exit_code == 0, result.output
    records = _records(sweep)
    runs = pd.read_csv("out/report.csv")
    assert len(runs) == len(records) == 5 and runs["run_id"].is_unique

    summary = pd.read_csv("out/report_summary.csv").set_index("pool")
    pivot = pd.read_csv("out/report_pivot_test_acc.csv").set_index("pool")
    for pool in ("max", "avg"):
        accs = [r["test_acc"] for r in records if r["pool"] == pool and r["status"] == "ok"]
        row = summary.loc[pool]
        assert row["n"] == 2
        assert row["failed"] == (1 if pool == "max" else 0)  # counted, not averaged
        assert row["test_acc_mean"] == pytest.approx(statistics.mean(accs))
        assert row["test_acc_std"] == pytest.approx(statistics.stdev(accs))
        half = stats.t.ppf(0.975, 1) * statistics.stdev(accs) / math.sqrt(2)
        assert row["test_acc_ci95"] == pytest.approx(half)
        assert pivot.loc[pool, "vgg"] == pytest.approx(statistics.mean(accs))

    # Every cell tied with the best is bold: the best, and the other pool unless the paired
    # t-test over the two seeds (Holm over one comparison: unchanged) tells them apart.
    best = summary["test_acc_mean"].idxmax()
    other = "avg" if best == "max" else "max"
    accs = {
        pool: [
            r["test_acc"]
            for r in sorted(records, key=lambda r: r["seed"])
            if r["pool"] == pool and r["status"] == "ok"
        ]
        for pool in ("max", "avg")
    }
    p = stats.ttest_rel(accs[other], accs[best]).pvalue
    assert summary.loc[best, "tied_with_best"] and pd.isna(summary.loc[best, "p_vs_best"])
    assert summary.loc[other, "p_vs_best"] == pytest.approx(p, nan_ok=True)
    assert summary.loc[other, "test_vs_best"] == "paired t-test"
    tied = summary["tied_with_best"].astype(bool)
    assert summary.loc[other, "tied_with_best"] == (p >= 0.05)
    # the best cell in bold, a worse one with a dagger; one not shown worse is not marked worse
    md = Path("out/report_pivot_test_acc.md").read_text()
    best_line = next(line for line in md.splitlines() if line.startswith(f"| {best} |"))
    assert f"**{summary.loc[best, 'test_acc_mean']:.4f} ± " in best_line
    assert md.count("**") == 2
    other_line = next(line for line in md.splitlines() if line.startswith(f"| {other} |"))
    assert ("†" in other_line) is not bool(tied[other])
    assert "one-sided paired t-tests by seed" in md and "Holm" in md and "alpha 0.05" in md
    tex = Path("out/report_pivot_test_acc.tex").read_text()
    assert "\\begin{tabular}{lr@{}l}" in tex and tex.count("\\textbf{") == 2  # mean, interval
    assert "$\\pm$" in tex and "test\\_acc, n = 2 seeds per group" in tex
    ranking = pd.read_csv("out/report_ranking_test_acc.csv")
    assert ranking["pool"].iloc[0] == best and ranking["test_acc"].iloc[0] == 1
    for name in ("acc_vs_latency", "test_acc_per_pool"):
        assert Path(f"out/report_{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert not Path("out/report_acc_vs_params.png").exists()  # max and avg: same params
    assert "no acc_vs_params plot: every group has the same number of parameters" in result.output


def test_pivot_by_other_labels_and_metric(sweep: Path, workdir: Path):
    args = ["report", str(sweep), "-o", "r.csv", "--pivot", "model,pool", "--metric", "params"]
    assert runner.invoke(app, [*args, "--no-plots"]).exit_code == 0
    pivot = pd.read_csv("r_pivot_params.csv").set_index("model")
    assert set(pivot.columns) == {"max", "avg"}
    params = {r["pool"]: r["params"] for r in _records(sweep) if r["status"] == "ok"}
    assert pivot.loc["vgg", "max"] == params["max"]
    assert not list(workdir.glob("*.png"))
    bad = runner.invoke(app, ["report", str(sweep), "--metric", "acc"])
    assert bad.exit_code == 2 and "expected --metric to name one of" in bad.output


def test_compare_two_sweeps(sweep: Path, workdir: Path):
    shutil.copytree(sweep / "runs", "b/runs")
    for path in Path("b/runs").glob("*/result.json"):
        record = json.loads(path.read_text())
        if record["test_acc"] is not None:
            record["test_acc"] += 0.01
        path.write_text(json.dumps(record))
    result = runner.invoke(app, ["report", "--compare", str(sweep), "b", "-o", "c.csv"])
    assert result.exit_code == 0, result.output
    diff = pd.read_csv("c_compare_test_acc.csv")
    assert sorted(diff["pool"]) == ["avg", "max"]
    assert diff["test_acc_diff"].tolist() == pytest.approx([0.01, 0.01])
    assert "+0.0100" in result.output


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow present")
def test_parquet_without_pyarrow_is_one_clear_line(sweep: Path, workdir: Path):
    result = runner.invoke(app, ["report", str(sweep), "--format", "parquet"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --format parquet needs pyarrow: pip install pyarrow (or use csv)"
    )


def test_ci95_uses_the_t_distribution():
    assert ci95_halfwidth(1.0, 3) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(ci95_halfwidth(1.0, 1))


def test_pareto_front_keeps_only_undominated_points():
    latency = [1.0, 2.0, 3.0, 2.5, 1.0]
    accuracy = [0.5, 0.7, 0.9, 0.6, 0.4]
    assert pareto_front(latency, accuracy) == [True, True, True, False, False]


def _installed(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("poolbench"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda r: {**r, "seed": {"a": 1}}, "expected seed to be an integer, got {'a': 1}"),
        (lambda r: [r], "expected a JSON object, got a list"),
        (lambda r: {**r, "pool": 3}, "expected pool to be text, got 3"),
        (
            lambda r: {**r, "config": "vgg"},
            "expected config to be an object of config keys, got 'vgg'",
        ),
    ],
)
def test_a_record_of_the_wrong_shape_is_one_line_naming_its_file(
    workdir: Path, damage, expected: str
):
    paths = write_runs(workdir / "results", [record("max", 0), record("max", 1)])
    paths[1].write_text(json.dumps(damage(json.loads(paths[1].read_text()))))
    done = _installed("report", "results", "--no-plots")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == f"error: run record {paths[1].resolve()}: {expected}\n"
    assert not Path("results/report.csv").exists()


def test_unusable_metrics_are_counted_and_said_not_shown_as_missing(workdir: Path):
    good = [record("max", s, 0.9 + s / 100) for s in range(3)]
    bad = [
        record("avg", 0, "abc"),  # text where a number belongs
        record("avg", 1, None),  # an ok record without its accuracy
        record("avg", 2, 0.8, latency_ms={"x": 1}),
    ]
    paths = write_runs(workdir / "results", good + bad)
    result = runner.invoke(app, ["report", "results", "-o", "out/report.csv", "--no-plots"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "3 records with unusable metrics, left out of every mean and test" in text
    for path, what in zip(
        paths[3:], ('test_acc = "abc"', "test_acc missing", 'latency_ms = {"x": 1}'), strict=True
    ):
        assert f"{path.resolve()}: {what}" in text
    summary = pd.read_csv("out/report_summary.csv").set_index("pool")
    assert summary.loc["avg", "test_acc_mean"] == pytest.approx(0.8)  # the one usable value
