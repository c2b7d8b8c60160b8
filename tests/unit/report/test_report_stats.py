"""Reports from records made by hand, with known answers: significance against the best,
groups told apart by their config identity, pivots that keep every group, compare that pairs
only like with like, the metric registry, the figures. No training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core import metrics
from poolbench.core.errors import ConfigError
from poolbench.core.record import RECORD_FIELDS
from poolbench.report.compare import compare
from poolbench.report.plots import make_figures
from poolbench.report.records import load_records
from poolbench.report.significance import PAIRED, WELCH, holm
from poolbench.report.summary import Significance, summarize
from poolbench.report.tables import pivot, summary_markdown
from tests.helpers import REPO
from tests.helpers.fake_records import record, write_runs, write_sweep

runner = CliRunner()
APART = {"max": [0.90, 0.91, 0.92, 0.905, 0.915], "avg": [0.80, 0.82, 0.81, 0.805, 0.815]}


def frame(records: list[dict], tmp_path: Path) -> pd.DataFrame:
    write_runs(tmp_path / "recs", records)
    return load_records([tmp_path / "recs"])


def by_pool(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.set_index("pool")


# --- Significance ---------------------------------------------------------------------------


def test_pools_truly_apart_are_not_tied(tmp_path: Path):
    df = frame([record(p, s, a) for p, accs in APART.items() for s, a in enumerate(accs)], tmp_path)
    s = by_pool(summarize(df))
    assert s.loc["max", "tied_with_best"] == True  # noqa: E712 (pandas boolean NA)
    assert math.isnan(s.loc["max", "p_vs_best"])
    assert s.loc["avg", "tied_with_best"] == False  # noqa: E712
    assert s.loc["avg", "p_vs_best"] < 1e-3
    assert s.loc["avg", "test_vs_best"] == PAIRED


def test_equal_distributions_are_tied(tmp_path: Path):
    values = [0.90, 0.91, 0.89, 0.92, 0.88]
    shuffled = [0.92, 0.88, 0.91, 0.90, 0.89]  # the same values, other seeds
    df = frame(
        [record("max", s, a) for s, a in enumerate(values)]
        + [record("avg", s, a) for s, a in enumerate(shuffled)],
        tmp_path,
    )
    s = by_pool(summarize(df))
    assert s["tied_with_best"].tolist() == [True, True]
    assert s["p_vs_best"].dropna().iloc[0] > 0.5


def test_one_seed_makes_no_claim_and_says_so(tmp_path: Path):
    df = frame([record("max", 0, 0.9), record("avg", 0, 0.8)], tmp_path)
    summary = summarize(df)
    assert summary["tied_with_best"].isna().all()
    assert summary["p_vs_best"].isna().all()
    md = summary_markdown(summary, Significance())
    assert "n < 2 in every group, no test, no verdict" in md
    runner_out = runner.invoke(
        app, ["report", str(tmp_path / "recs"), "-o", str(tmp_path / "r.csv")]
    )
    assert runner_out.exit_code == 0, runner_out.output
    pivot_md = (tmp_path / "r_pivot_test_acc.md").read_text()
    assert "**" not in pivot_md and "no claim" in pivot_md
    assert "no claim" in runner_out.output


def test_paired_when_seeds_match_welch_otherwise_then_simes_and_holm(tmp_path: Path):
    """Each group is tested one-sided against every other (paired t where the seeds match,
    Welch otherwise, as scipy computes them), its p-values combined by Simes, then Holm over
    all three groups."""
    best = [0.90, 0.92, 0.91, 0.93, 0.905]
    same_seeds = [0.89, 0.90, 0.905, 0.91, 0.90]
    other_seeds = [0.86, 0.91, 0.88, 0.90, 0.87]
    df = frame(
        [record("max", s, a) for s, a in enumerate(best)]
        + [record("avg", s, a) for s, a in enumerate(same_seeds)]
        + [record("lp", s + 10, a) for s, a in enumerate(other_seeds)],
        tmp_path,
    )
    s = by_pool(summarize(df))

    def paired(a, b):  # a is worse than b
        return stats.ttest_rel(a, b, alternative="less").pvalue

    def welch(a, b):
        return stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue

    def simes(ps):
        ps = sorted(ps)
        return min(1.0, min(len(ps) * p / (i + 1) for i, p in enumerate(ps)))

    combined = {
        "max": simes([paired(best, same_seeds), welch(best, other_seeds)]),
        "avg": simes([paired(same_seeds, best), welch(same_seeds, other_seeds)]),
        "lp": simes([welch(other_seeds, best), welch(other_seeds, same_seeds)]),
    }
    order = sorted(combined, key=combined.get)
    adjusted, running = {}, 0.0
    for i, pool in enumerate(order):
        running = max(running, min(1.0, (3 - i) * combined[pool]))
        adjusted[pool] = running
    assert s.loc["avg", "test_vs_best"] == PAIRED
    assert s.loc["lp", "test_vs_best"] == WELCH
    assert s.loc["avg", "p_vs_best"] == pytest.approx(adjusted["avg"])
    assert s.loc["lp", "p_vs_best"] == pytest.approx(adjusted["lp"])


def test_holm_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    nan = float("nan")
    assert holm([0.01, nan, 0.02]) == pytest.approx([0.02, nan, 0.02], nan_ok=True)  # m = 2
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def test_comparisons_are_within_a_setting(tmp_path: Path):
    """max is best on digits, avg on shapes: each dataset has its own best and tied set."""
    records = []
    for data, winner in (("digits", "max"), ("shapes", "avg")):
        for pool, accs in APART.items():
            accs = APART["max"] if pool == winner else APART["avg"]
            records += [record(pool, s, a, {"data": {"name": data}}) for s, a in enumerate(accs)]
    s = summarize(frame(records, tmp_path)).set_index(["data", "pool"])
    assert s.loc[("digits", "max"), "tied_with_best"] and s.loc[("shapes", "avg"), "tied_with_best"]
    assert not s.loc[("digits", "avg"), "tied_with_best"]
    assert not s.loc[("shapes", "max"), "tied_with_best"]


# --- Groups by identity ---------------------------------------------------------------------


def lr_sweep(lr: float, pools: tuple[str, ...] = ("max", "avg"), seeds: int = 2) -> list[dict]:
    return [
        record(p, s, 0.9 - 0.1 * (p == "avg") + 0.01 * s + lr, {"train": {"lr": lr}})
        for p in pools
        for s in range(seeds)
    ]


def test_sweeps_differing_in_lr_are_labelled_rows(workdir: Path):
    write_sweep(workdir / "results", "t1", lr_sweep(0.05))
    write_sweep(workdir / "results", "t2", lr_sweep(0.005))
    result = runner.invoke(app, ["report", "results", "-o", "out/r.csv", "--no-plots"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv("out/r_summary.csv")
    assert sorted(zip(summary["pool"], summary["train.lr"], strict=True)) == [
        ("avg", 0.005),
        ("avg", 0.05),
        ("max", 0.005),
        ("max", 0.05),
    ]
    assert "train.lr" in result.output  # the CLI table shows the key too
    md = Path("out/r_pivot_test_acc.md").read_text()
    assert md.startswith("| pool | train.lr | vgg |")
    assert (summary["n"] == 2).all()


def test_pivot_by_a_config_key(workdir: Path):
    write_runs(workdir / "results", lr_sweep(0.05) + lr_sweep(0.005))
    result = runner.invoke(
        app, ["report", "results", "-o", "r.csv", "--pivot", "pool,train.lr", "--no-plots"]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv("r_pivot_test_acc.csv").set_index("pool")
    assert list(table.columns) == ["train.lr=0.005", "train.lr=0.05"]
    assert table.loc["max", "train.lr=0.05"] == pytest.approx(0.9 + 0.005 + 0.05)
    result = runner.invoke(
        app, ["report", "results", "-o", "m.csv", "--pivot", "pool,model", "--no-plots"]
    )
    assert result.exit_code == 0, result.output
    assert "train.lr" in pd.read_csv("m_pivot_test_acc.csv").columns


def test_pivot_with_nan_keys_keeps_every_group(tmp_path: Path):
    """24 pools, 2 of them with a p (the others: NaN): every pool has its row."""
    records = []
    for i in range(24):
        config = {"pool": {"p": 3.0}} if i < 2 else {}
        r = record(f"pool{i:02d}", 0, 0.5 + i / 100, config)
        r["p"] = 3.0 if i < 2 else None
        records.append(r)
    records.append(record("pool00", 0, 0.4, {"pool": {"p": 2.0}}) | {"p": 2.0})
    summary = summarize(frame(records, tmp_path))
    table = pivot(summary)
    assert len(summary) == 25 and len(table.mean) == 25
    assert table.mean.index.names == ["pool", "p"]  # p tells the two pool00 apart
    assert table.mean.notna().all().all()
    assert sorted(table.mean.index.get_level_values("pool")).count("pool00") == 2


def test_default_job_pivot_has_every_pool(workdir: Path):
    records = [
        record(f"pool{i:02d}", 0, 0.5 + i / 100, {"pool": {"p": 3.0}} if i < 2 else {})
        for i in range(24)
    ]
    write_runs(workdir / "results", records)
    assert runner.invoke(app, ["report", "-o", "r.csv", "--no-plots"]).exit_code == 0
    assert len(pd.read_csv("r_pivot_test_acc.csv")) == 24
    assert len(pd.read_csv("r_ranking_test_acc.csv")) == 24


def test_compare_pairs_only_like_with_like(tmp_path: Path):
    a = frame(lr_sweep(0.05, ("max", "avg")), tmp_path / "a")
    b = frame(lr_sweep(0.005, ("max", "gem")), tmp_path / "b")
    result = compare(a, b)
    assert result.distinguishing == ["train.lr"]
    table = result.table.set_index("pair")
    assert table.loc["matched", "pool"] == "max"
    assert table.loc["matched", "train.lr_a"] == 0.05
    assert table.loc["matched", "train.lr_b"] == 0.005
    assert table.loc["matched", "test_acc_diff"] == pytest.approx(0.005 - 0.05)
    assert table.loc["only in A", "pool"] == "avg"
    assert table.loc["only in B", "pool"] == "gem"


def test_compare_never_pairs_different_lrs_when_both_sides_hold_them(tmp_path: Path):
    a = frame(lr_sweep(0.05, ("max",)) + lr_sweep(0.005, ("max",)), tmp_path / "a")
    b = frame(lr_sweep(0.05, ("max", "avg")), tmp_path / "b")
    result = compare(a, b)
    assert result.distinguishing == []
    matched = result.table[result.table["pair"] == "matched"]
    assert len(matched) == 1 and matched["test_acc_diff"].iloc[0] == pytest.approx(0)
    alone = result.table[result.table["pair"] != "matched"]
    assert sorted(zip(alone["pair"], alone["pool"], alone["train.lr"], strict=True)) == [
        ("only in A", "max", 0.005),
        ("only in B", "avg", 0.05),
    ]


def test_compare_two_sweep_directories_of_one_results_dir(workdir: Path):
    t1 = write_sweep(workdir / "results", "20260101-000000", lr_sweep(0.05, seeds=3))
    t2 = write_sweep(workdir / "results", "20260102-000000", lr_sweep(0.005, seeds=3))
    result = runner.invoke(app, ["report", "--compare", str(t1), str(t2), "-o", "c.csv"])
    assert result.exit_code == 0, result.output
    diff = pd.read_csv("c_compare_test_acc.csv")
    assert sorted(diff["pool"]) == ["avg", "max"]
    assert (diff["pair"] == "matched").all()
    assert diff["test_acc_diff"].tolist() == pytest.approx([0.005 - 0.05] * 2)
    # the same difference on each of 3 seeds: the sign test (p = 0.25 each), no claim at 0.05
    assert (diff["test"] == "sign test").all() and not diff["differs"].any()
    assert diff["p"].tolist() == pytest.approx([0.5, 0.5])  # Holm over the two pairs
    assert "sign test where the differences do not vary" in " ".join(result.output.split())
    assert "train.lr_a" in diff.columns and "train.lr_a" in result.output


def test_compare_run_lists(workdir: Path):
    a_records, b_records = lr_sweep(0.05), lr_sweep(0.005, ("max",))
    write_runs(workdir / "results", a_records + b_records)
    Path("a.txt").write_text(
        "# runs of A: directories and names\n"
        + "\n".join(f"results/runs/{r['run_name']}" for r in a_records[:2])
        + "\n"
        + "\n".join(r["run_name"] for r in a_records[2:])
        + "\n"
    )
    Path("b.txt").write_text("\n".join(r["run_id"] for r in b_records) + "\n")
    result = runner.invoke(app, ["report", "--compare", "a.txt", "b.txt", "-o", "c.csv"])
    assert result.exit_code == 0, result.output
    diff = pd.read_csv("c_compare_test_acc.csv")
    assert sorted(zip(diff["pair"], diff["pool"], strict=True)) == [
        ("matched", "max"),
        ("only in A", "avg"),
    ]
    assert "only in A (1" in result.output
    Path("bad.txt").write_text("no-such-run\n")
    bad = runner.invoke(app, ["report", "--compare", "a.txt", "bad.txt"])
    assert bad.exit_code == 2 and "no-such-run" in bad.output


# --- Metric registry ------------------------------------------------------------------------


def test_flops_marks_the_cheapest_as_best(workdir: Path):
    records = [
        record(pool, s, 0.9, flops=flops)
        for pool, flops in (("max", 300), ("avg", 100), ("lp", 200))
        for s in range(3)
    ]
    write_runs(workdir / "results", records)
    result = runner.invoke(app, ["report", "-o", "r.csv", "--metric", "flops", "--no-plots"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv("r_summary.csv").set_index("pool")
    assert summary["tied_with_best"].to_dict() == {"avg": True, "lp": False, "max": False}
    md = Path("r_pivot_flops.md").read_text()
    assert md.count("**") == 2 and "| avg | **100 ± 0** |" in md
    assert pd.read_csv("r_ranking_flops.csv")["pool"].iloc[0] == "avg"
    assert "flops (lower is better)" in result.output


def test_cli_table_reads_directions_from_the_registry(workdir: Path, monkeypatch):
    records = [
        record(pool, s, 0.9, flops=flops)
        for pool, flops in (("max", 300), ("avg", 100))
        for s in range(2)
    ]
    write_runs(workdir / "results", records)
    flipped = metrics.Metric("flops", True, "FLOPs", ",.0f", "made higher-is-better for a test")
    monkeypatch.setitem(metrics.METRICS, "flops", flipped)
    result = runner.invoke(app, ["report", "-o", "r.csv", "--metric", "flops", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "flops (higher is better)" in result.output
    max_line = next(line for line in result.output.splitlines() if "│ max " in line)
    assert "best" in max_line
    assert pd.read_csv("r_summary.csv").set_index("pool").loc["max", "tied_with_best"]


def test_every_metric_has_a_direction_unit_and_format():
    for name in metrics.valid_names():
        concrete = name.replace("<k>", "1").replace("<size>", "24")
        m = metrics.get(concrete)
        assert isinstance(m.higher_is_better, bool) and m.description
        assert m.format(1234.5)
    lower = {
        "flops",
        "pool_flops",
        "macs",
        "peak_mem_mb",
        "latency_ms",
        "latency_ms_b1",
        "activations",
        "wall_s",
        "overhead_s",
        "params",
        "pool_params",
        "train_loss",
        "train_time_s",
    }
    higher = {"test_acc", "test_top5", "throughput_img_s", "shift_consistency", "acc_rot"}
    for name in lower | higher:
        assert name in RECORD_FIELDS
        assert metrics.get(name).higher_is_better == (name in higher), name
    assert metrics.get("acc_shift_3").higher_is_better and metrics.get("acc_res_12").bounded
    with pytest.raises(ConfigError, match="acc_shift_<k>"):
        metrics.get("acc")


# --- Figures --------------------------------------------------------------------------------


def plotted(records: list[dict], tmp_path: Path, **kwargs) -> tuple[dict, list[str], pd.DataFrame]:
    df = frame(records, tmp_path)
    significance = Significance(**kwargs)
    summary = summarize(df, significance)
    figures, notes = make_figures(summary, significance, df)
    return figures, notes, summary


def conditions(latency_source: str = "interleaved", **fields) -> dict:
    """Record fields of the measurement conditions; an ``interleaved`` latency source is a
    record that ``poolbench time`` wrote into (latency_interleaved_ms, one session)."""
    timed = {"latency_interleaved_ms": 2.0, "latency_session": "s1"}
    return (
        {"device": "cuda", "dtype": "bf16"}
        | (timed if latency_source == "interleaved" else {})
        | fields
    )


def test_figures_state_their_conditions_and_95_intervals(tmp_path: Path):
    records = [
        record(p, s, a, latency_ms=1 + s, **conditions())
        for p, accs in APART.items()
        for s, a in enumerate(accs[:3])
    ]
    figures, notes, summary = plotted(records, tmp_path)
    assert set(figures) == {"test_acc_per_pool", "acc_vs_latency"}
    assert any("acc_vs_params" in n for n in notes)  # params equal: no plot, said why
    assert any("no learning curves" in n for n in notes)
    assert any("no critical-difference diagram" in n for n in notes)
    for fig in figures.values():
        title = fig._suptitle.get_text().replace("\n", " ")
        for part in ("data digits", "model vgg", "n = 3 seeds", "device cuda", "dtype bf16"):
            assert part in title
        assert "latency interleaved" in title
    ax = figures["test_acc_per_pool"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["avg", "max"]  # best on top
    assert "95% t-interval" in ax.get_xlabel()
    segments = ax.containers[0].lines[2][0].get_segments()
    half = {round((seg[1][0] - seg[0][0]) / 2, 9) for seg in segments}
    expected = {
        round(stats.t.ppf(0.975, 2) * stats.tstd(accs[:3]) / math.sqrt(3), 9)
        for accs in APART.values()
    }
    assert half == expected
    assert set(summary["test_acc_ci95"].round(9)) == expected


def test_accuracy_axis_is_not_zoomed_into_a_small_spread(tmp_path: Path):
    records = [
        record(p, s, 0.996 + 0.001 * s + 0.001 * (p == "max")) for p in APART for s in range(3)
    ]
    figures, _, _ = plotted(records, tmp_path)
    low, high = figures["test_acc_per_pool"].axes[0].get_xlim()
    assert high <= 1.0 and high - low >= 0.1 - 1e-9


def test_mixed_latency_sources_are_said(tmp_path: Path):
    records = [
        record(p, s, 0.9, params=100 + 10 * (p == "max"), **conditions(latency_source=src))
        for p, src in (("max", "interleaved"), ("avg", "in_run"))
        for s in range(2)
    ]
    figures, _, _ = plotted(records, tmp_path)
    assert "acc_vs_params" in figures  # params differ
    title = figures["acc_vs_latency"]._suptitle.get_text().replace("\n", " ")
    assert "latency: mixed sources (in_run, interleaved)" in title


def test_learning_curves_from_history(tmp_path: Path):
    def history(scale: float) -> list[dict]:
        return [
            {"epoch": e, "train_loss": scale / e, "val_acc": 1 - 1 / (e + 1), "lr": 0.1, "img_s": 9}
            for e in (1, 2, 3)
        ]

    records = [record(p, s, 0.9, history=history(1 + s)) for p in APART for s in range(2)]
    figures, notes, _ = plotted(records, tmp_path)
    curves = figures["learning_curves"]
    loss_ax, val_ax = curves.axes[:2]
    assert loss_ax.get_xlabel() == "epoch" and "train_loss" in loss_ax.get_ylabel()
    line = loss_ax.get_lines()[0]
    assert list(line.get_ydata()) == pytest.approx([1.5, 0.75, 0.5])  # mean of seeds 1/e, 2/e
    assert "val_acc" in val_ax.get_ylabel()
    labels = [t.get_text() for t in curves.legends[0].get_texts()]
    assert sorted(labels) == ["avg (n=2)", "max (n=2)"]
    assert not any("no learning curves" in n for n in notes)


def test_critical_difference_diagram_needs_five_settings(workdir: Path):
    def records(settings: int) -> list[dict]:
        return [
            record(p, s, a - 0.01 * d, {"data": {"name": f"d{d}"}})
            for d in range(settings)
            for p, accs in (*APART.items(), ("lp", [0.7, 0.71, 0.72]))
            for s, a in enumerate(accs[:3])
        ]

    write_runs(workdir / "two", records(2))
    result = runner.invoke(app, ["report", "two", "-o", "two.csv"])
    assert result.exit_code == 0, result.output
    assert not Path("two_critical_difference.png").exists()
    assert "no critical-difference diagram" in result.output
    assert "needs 5 or more (as autorank asks); these records hold 2 settings" in result.output
    write_runs(workdir / "five", records(5))
    result = runner.invoke(app, ["report", "five", "-o", "five.csv"])
    assert result.exit_code == 0, result.output
    assert Path("five_critical_difference.png").read_bytes()[:4] == b"\x89PNG"
    assert "critical-difference diagram: 3 pool values over 5 settings" in result.output


# --- Command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pivot", "pool,train.lrr"], "expected --pivot to name a config key or label"),
        (["--pivot", "pool,model,data"], "expected --pivot ROWS,COLUMNS"),
        (["--metric", "acc"], "expected --metric to name one of test_acc"),
        (["--metric", "acc_res_99"], "--metric acc_res_99: no record has it"),
        (["--alpha", "1.5"], "expected --alpha in (0, 1)"),
        (["--compare", "results"], "expected --compare A B (two record sources), got results"),
    ],
)
def test_bad_report_options_are_one_line(workdir: Path, args: list[str], message: str):
    write_runs(workdir / "results", lr_sweep(0.05))
    sources = [] if args[0] == "--compare" else ["results"]
    result = runner.invoke(app, ["report", *sources, *args])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output
    if "config key" in message:
        assert "train.lr" in result.output and "pool" in result.output


def test_record_with_history_is_loaded_as_json_text(tmp_path: Path):
    hist = [{"epoch": 1, "train_loss": 1.0, "val_acc": None, "lr": 0.1, "img_s": 5.0}]
    df = frame([record("max", 0, 0.9, history=hist), record("avg", 0, 0.9)], tmp_path)
    by = df.set_index("pool")
    assert json.loads(by.loc["max", "history"]) == hist
    assert pd.isna(by.loc["avg", "history"])


def test_a_group_without_ok_runs_is_shown_and_said(workdir: Path):
    failed = [record("lp", s, None, status="failed", error="TrainingDiverged: x") for s in (0, 1)]
    write_runs(workdir / "results", lr_sweep(0.05) + failed)
    result = runner.invoke(app, ["report", "-o", "r.csv"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv("r_summary.csv").set_index("pool")
    assert summary.loc["lp", "n"] == 0 and summary.loc["lp", "failed"] == 2
    assert pd.isna(summary.loc["lp", "tied_with_best"])
    assert "| lp | - |" in Path("r_pivot_test_acc.md").read_text()
    assert "test_acc_per_pool: left out 1 group(s) without an ok run with test_acc: lp" in (
        result.output
    )


def test_readme_names_every_report_file(workdir: Path):
    def history(e_max: int) -> list[dict]:
        return [{"epoch": e, "train_loss": 1 / e, "val_acc": None} for e in range(1, e_max + 1)]

    records = [
        record(p, s, a, {"data": {"name": d}}, params=100 + (p == "max"), history=history(2))
        for d in ("digits", "shapes")
        for p, accs in (*APART.items(), ("lp", [0.7, 0.71]))
        for s, a in enumerate(accs[:2])
    ]
    write_runs(workdir / "results", records)
    result = runner.invoke(app, ["report", "-o", "report.csv"])
    assert result.exit_code == 0, result.output
    section = (REPO / "docs" / "reports.md").read_text()
    written = sorted(p.name for p in workdir.glob("report*"))
    # runs, summary 2, pivot 3, ranking 3, 4 figures as PNG and PDF (a critical-difference
    # diagram needs five settings, here are two)
    assert len(written) == 17, written
    for name in written:
        generic = name.replace("test_acc", "<metric>").replace("_per_pool", "_per_<ROWS>")
        stem, _, ext = generic.partition(".")
        assert f"`{stem}.{ext}`" in section or f"`{stem}." in section, name


def test_scatter_labels_do_not_overlap(tmp_path: Path):
    from matplotlib.text import Text

    records = [
        record(f"pool{i}", s, 0.95 + 0.001 * i, params=1000 + i, latency_ms=1 + 0.001 * i)
        for i in range(12)
        for s in range(2)
    ]
    figures, _, _ = plotted(records, tmp_path)
    for name, largest in (("acc_vs_latency", 1.011), ("acc_vs_params", 1011)):
        fig = figures[name]
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [Text.get_window_extent(t, renderer) for t in fig.axes[0].texts]
        assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(
            f"pool{i}" for i in range(12)
        )
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]), name
        low, high = fig.axes[0].get_xlim()
        assert low >= 0 and high - low >= 0.25 * largest - 1e-9  # the axis rule for costs


# --- Edges the review found: each with a known answer ----------------------------------------


def test_paired_differences_without_spread_get_the_sign_test():
    from poolbench.report.significance import SIGN, pair_test

    # one test image apart on every seed: the t statistic is x/0, the sign test claims nothing
    a = {0: 324 / 360, 1: 330 / 360}
    b = {0: 323 / 360, 1: 329 / 360}
    p, test = pair_test(a, b)
    assert test == SIGN and p == pytest.approx(stats.binomtest(2, 2).pvalue) and p == 0.5
    six = {s: 0.9 + s / 100 for s in range(6)}
    p6, _ = pair_test(six, {s: v - 0.01 for s, v in six.items()})
    assert p6 == pytest.approx(2 / 2**6)  # 0.031: six seeds of one sign can be told apart
    # deterministic values (FLOPs, equal for every seed) are exact either way
    assert pair_test({0: 5.0, 1: 5.0}, {0: 6.0, 1: 6.0}, exact=True) == (0.0, PAIRED)
    assert pair_test({0: 5.0, 1: 6.0}, {0: 5.0, 1: 6.0}) == (1.0, PAIRED)
    # an accuracy without spread on both sides is not exact: two seeds claim nothing
    assert pair_test({0: 0.9, 1: 0.9}, {0: 0.8, 1: 0.8}) == (0.5, SIGN)


def test_a_seed_recorded_twice_is_never_paired(tmp_path: Path):
    recs = [record("max", s, a) for s, a in ((0, 0.90), (0, 0.91), (1, 0.92))]
    recs += [
        record("avg", s, a, run_name=f"avg-{i}", run_id=f"avg-{i}")
        for i, (s, a) in enumerate(((0, 0.80), (0, 0.81), (1, 0.82)))
    ]
    for i, r in enumerate(recs[:3]):
        r["run_name"] = r["run_id"] = f"max-{i}"  # two runs of seed 0 (another run each)
    s = by_pool(summarize(frame(recs, tmp_path)))
    assert s.loc["avg", "test_vs_best"] == WELCH
    assert s.loc["avg", "n"] == 3


def test_the_same_run_found_twice_counts_once(tmp_path: Path):
    """A copied results folder: the run's record read from two paths is one run, not two
    seeds (nor a pair); the report says which path it counted."""
    recs = [
        record(p, s, 0.9 - 0.1 * (p == "avg") + s / 100) for p in ("max", "avg") for s in (0, 1)
    ]
    write_runs(tmp_path / "a", recs)
    write_runs(tmp_path / "b", recs[:1])
    df = load_records([tmp_path / "a", tmp_path / "b"])
    assert len(df) == 4
    s = by_pool(summarize(df))
    assert s.loc["max", "n"] == 2


def test_a_best_with_one_seed_makes_no_claim_in_the_sentences():
    from poolbench.report.conclusions import conclusions
    from poolbench.report.records import records_frame

    recs = [record("max", 0, 0.99)]
    recs += [record(p, s, 0.9 + s / 100) for p in ("avg", "lp") for s in range(3)]
    text = " ".join(conclusions(records_frame(recs)))
    assert "one seed for max" in text and "no difference can be told" in text
    assert "not significantly worse" not in text and "significantly worse" not in text


def test_sentences_conclude_on_a_setting_that_finished(tmp_path: Path):
    from poolbench.report.conclusions import conclusions
    from poolbench.report.records import records_frame

    failed = [
        record(
            p,
            s,
            None,
            status="failed",
            config={"model": {"name": "alexnet_small"}},
            model="alexnet_small",
        )
        for p in ("max", "avg")
        for s in range(2)
    ]
    done = [record(p, s, a) for p, accs in APART.items() for s, a in enumerate(accs)]
    text = conclusions(records_frame(failed + done))
    assert text[0].startswith("Best test accuracy: max") and "model=vgg" in text[-1]


def test_a_job_without_a_config_does_not_make_keys_vary():
    from poolbench.report.keys import shown_keys
    from poolbench.report.records import records_frame

    done = [record(p, s, a) for p, accs in APART.items() for s, a in enumerate(accs)]
    phantom = {"run_name": "x", "status": "failed", "error": "boom", "seed": None}
    summary = summarize(records_frame([*done, phantom]))
    assert shown_keys(summary) == ["pool"]
    assert summary["failed"].sum() == 1  # counted, not dropped


def test_one_latency_rule_for_table_sentences_and_plots():
    from poolbench.report.conclusions import conclusions
    from poolbench.report.records import records_frame
    from poolbench.report.summary import comparable_latency

    def recs(latency: dict, session: dict) -> list[dict]:
        return [
            record(p, s, a, latency_interleaved_ms=latency.get(p), latency_session=session.get(p))
            for p, accs in APART.items()
            for s, a in enumerate(accs)
        ]

    one = recs({"max": 2.0, "avg": 1.0}, {"max": "S1", "avg": "S1"})
    assert comparable_latency(summarize(records_frame(one))) == "latency_interleaved_ms"
    # two sessions, or a group not timed: each run's own figure, and the sentence says so
    for bad in (
        recs({"max": 2.0, "avg": 1.0}, {"max": "S1", "avg": "S2"}),
        recs({"max": 2.0}, {"max": "S1"}),
    ):
        assert comparable_latency(summarize(records_frame(bad))) == "latency_ms"
        assert "each run's own timing" in conclusions(records_frame(bad))[-1]
    # a group with no finished run does not need a figure
    failed = [record("lp", s, None, status="failed") for s in range(2)]
    assert comparable_latency(summarize(records_frame(one + failed))) == "latency_interleaved_ms"


def test_compare_does_not_pair_across_a_key_that_varies_within_a_side(tmp_path: Path):
    a = frame(lr_sweep(0.05, ("max", "avg")), tmp_path / "a")
    b = frame(lr_sweep(0.05, ("gem", "lp")), tmp_path / "b")
    result = compare(a, b)
    assert result.distinguishing == []
    assert not result.table["pair"].eq("matched").any()
    assert sorted(result.table["pair"]) == ["only in A"] * 2 + ["only in B"] * 2


def test_ranking_lists_rows_that_ran_everywhere_first(tmp_path: Path):
    from poolbench.report.tables import ranking, table_text

    recs = [
        record(p, s, acc, config={"model": {"name": m}}, model=m)
        for m, accs in (("vgg", {"max": 0.9, "avg": 0.8}), ("resnet18", {"max": 0.7, "avg": 0.6}))
        for p, acc in accs.items()
        for s in range(2)
    ]
    recs += [
        record("lp", s, 0.99, config={"model": {"name": "resnet18"}}, model="resnet18")
        for s in range(2)
    ]
    significance = Significance()
    table, ranks = ranking(summarize(frame(recs, tmp_path)), significance)
    assert list(ranks.index) == ["max", "avg", "lp"]  # lp ranks 1 in one setting only
    assert ranks.loc["lp", "settings"] == 1 and ranks.loc["max", "settings"] == 2
    text = table_text(table, "markdown", significance, mean_rank=ranks["mean_rank"])
    assert "1.00 (1 of 2)" in text and "a lower mean rank is better" in text


def test_a_sweep_over_models_compares_models_in_80_columns():
    from rich.console import Console

    from poolbench.cli.tables import print_sweep_summary
    from poolbench.sweep.outcome import SweepOutcome

    params = {"vgg": {"widths": [8, 16]}, "airbench": {"whiten_width": 24, "scale": 0.11}}
    accs = {"vgg": [0.90, 0.91, 0.92], "airbench": [0.80, 0.81, 0.83], "nin": [0.89, 0.915, 0.9]}
    recs = [
        record("max", s, a, config={"model": {"name": m, **params.get(m, {})}}, model=m)
        for m, values in accs.items()
        for s, a in enumerate(values)
    ]
    console = Console(width=80, record=True, color_system=None)
    print_sweep_summary(console, SweepOutcome(recs, set(), 1.0, None))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "test_acc" in line)
    assert "model" in header and "widths" not in header and "whiten" not in header
    assert all(len(line) <= 80 for line in text.splitlines() if line.startswith(("┃", "│")))
    assert "Best test accuracy: vgg" in text and "airbench" in text
    assert "comparison of model values" in " ".join(text.split())  # what the test compared


def test_pivot_rows_show_a_heads_parameters_only_where_they_tell_rows_apart(tmp_path: Path):
    def recs(spp_levels: list[list[int]]) -> list[dict]:
        out = [record("max", s, 0.9 + s / 100) for s in range(2)]
        for levels in spp_levels:
            head = {"name": "spp", "levels": levels, "mode": "max"}
            out += [
                record(
                    "max",
                    s,
                    0.8 + s / 100,
                    config={"model": {"name": "spp_net"}, "head": head},
                    model="spp_net",
                    head="spp",
                )
                for s in range(2)
            ]
        return out

    one = pivot(summarize(frame(recs([[1, 2, 4]]), tmp_path / "one")), rows="model", columns="pool")
    assert list(one.mean.index.names) == ["model", "head"]
    two = pivot(
        summarize(frame(recs([[1, 2, 4], [1, 2]]), tmp_path / "two")), rows="model", columns="pool"
    )
    assert "head.levels" in two.mean.index.names and len(two.mean) == 3
