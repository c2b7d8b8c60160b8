"""The commands through typer's CliRunner: runs, sweeps, reports, listings, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from poolbench.cli.main import app
from poolbench.core.record import RECORD_FIELDS
from poolbench.measure.probe import PREFER_MARGIN
from tests.helpers import FAST, loads_dynamo
from tests.helpers.cli import invoke, runner


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))]


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "report", "list"):
        assert command in result.output


def test_single_run_writes_complete_record(workdir: Path):
    result = invoke("run", "pool=avg", "seed=3", *FAST)
    assert result.exit_code == 0, result.output
    (record,) = records(workdir / "results")
    assert set(RECORD_FIELDS) <= set(record)
    assert record["status"] == "ok" and record["error"] is None
    assert (record["pool"], record["F"], record["S"], record["seed"]) == ("avg", 2, 2, 3)
    assert 0.0 <= record["test_acc"] <= record["test_top5"] <= 1.0
    assert record["latency_ms"] > 0 and record["throughput_img_s"] > 0
    # the run's wall time splits into work (training, evaluation, measurement) and overhead
    assert 0 < record["overhead_s"] < record["wall_s"]
    assert record["train_time_s"] < record["wall_s"] - record["overhead_s"]
    assert record["started_at"].endswith("+00:00")
    assert (
        record["params"]
        == 8 * 9 + 2 * 8 + 16 * 8 * 9 + 2 * 16 + 16 * 16 * 9 + 2 * 16 + 16 * 10 + 10
    )
    assert "pool=avg" in record["overrides"]
    run_dir = workdir / "results" / "runs" / record["run_name"]
    assert (run_dir / "poolbench.log").read_text().count("epoch 1/1") == 1
    assert "test_acc" in result.output  # the one-line summary


def test_same_config_same_run_id_different_seed_different_id(workdir: Path):
    from poolbench.sweep.plan import plan

    a = plan(["pool=max", "seed=0"]).runs[0]
    b = plan(["seed=0", "pool=max"]).runs[0]
    c = plan(["pool=max", "seed=1"]).runs[0]
    assert a.run_id == b.run_id != c.run_id


def test_multirun_sweep_prints_table_and_csv(workdir: Path):
    result = invoke("run", "-m", "pool=max,avg", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(r["pool"] for r in records(workdir / "results" / "runs")) == ["avg", "max"]
    assert "2 ok, 0 failed" in result.output
    (csv,) = (workdir / "results" / "sweeps").rglob("summary.csv")
    assert sorted(pd.read_csv(csv)["pool"]) == ["avg", "max"]
    # the sweep's page: both pools, each run linked to its record, said in the last line
    page = csv.with_name("report.html")
    assert f"page: {page}" in " ".join(result.output.split())
    text = page.read_text()
    assert text.count('href="../../runs/') == 2 and "<svg" in text
    assert all(f">{pool}</td>" in text for pool in ("max", "avg"))


def test_no_arguments_is_the_quick_sweep_plan():
    from poolbench.pooling import list_pools
    from poolbench.sweep.plan import plan

    the_plan = plan(["experiment=quick"])
    assert the_plan.multirun
    pools = {r.pool.name for r in the_plan.runs}
    assert len(pools) == 10 and pools <= set(list_pools("local"))
    assert {"max", "avg", "none"} <= pools
    # a race: every pool on seeds 0-3, then one seed a round while any is undecided, up to 6
    assert the_plan.race is not None and the_plan.configurations == 10
    assert the_plan.race.seeds == (0, 1, 2, 3, 4, 5) and the_plan.race.min_seeds == 4
    assert sorted(r.seed for r in the_plan.runs if r.pool.name == "max") == [0, 1, 2, 3, 4, 5]
    assert {r.data.name for r in the_plan.runs} == {"digits"}
    assert all(r.train.val_fraction == 0 for r in the_plan.runs)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pool=sofpool"], "unknown pool 'sofpool'; available: avg"),
        (["model=resnet"], "unknown model 'resnet'; available:"),
        (["data=mnist"], "unknown data 'mnist'; available: cifar10, cifar100, digits"),
        (["pool.foo=3"], "unknown key 'pool.foo': pool 'max' has no 'foo'; valid keys: F, S"),
        (["+pool.foo=3"], "pool 'max' has no parameter 'foo'; its parameters: F, S"),
        (["pool=="], "Error parsing override 'pool=='"),
        (["pool.F=0"], "MaxPool: expected F to be an integer >= 1, got 0"),
        (["pool.F=9"], "pool 2 (stages.1.1) (F=9, S=2) needs input >= 9, feature map is 4x4"),
        (["head=max"], "unknown head 'max'; available: adaptive_avg, adaptive_feature"),
        (["device=tpu"], "expected device to be one of auto, cpu, cuda, got 'tpu'"),
        (["train.optimizer=adam"], "expected train.optimizer to be one of sgd, adamw"),
        (["-m", "pool=max,sofpool"], "unknown pool 'sofpool'"),
        (["pool.foo=1"], "pool 'max' has no 'foo'; valid keys: F, S, ceil_mode, padding"),
        (["train.lr=[0.1]"], "expected train.lr to be a number > 0, got [0.1]"),
        (["data.image_size=abc"], "digits: expected image_size to be an integer >= 8, got 'abc'"),
        (["pool.ceil_mode=maybe"], "MaxPool: expected ceil_mode to be true or false, got 'maybe'"),
        (["++pool.ceil_mode=maybe"], "MaxPool: expected ceil_mode to be true or false"),
        (["+pool.ceil_mode=maybe"], "An item is already at 'pool.ceil_mode'"),
        (["pool=avg", "pool.ceil_mode=1"], "AvgPool: expected ceil_mode to be true or false"),
        (["experiment=nosuch"], "unknown experiment 'nosuch'; available: allcnn_table3"),
        (["results_dir="], "expected results_dir to be a directory path, got ''"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir: Path, args: list[str], expected: str):
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (workdir / "results").exists()  # nothing ran, nothing half-written


def test_failing_run_is_recorded_and_sweep_continues(workdir: Path, monkeypatch):
    import poolbench.run.runner as runner_mod

    real_train = runner_mod.train

    def flaky_train(model, data, cfg, compute, seed, **kw):
        if seed == 1:
            raise FloatingPointError("boom")
        return real_train(model, data, cfg, compute, seed, **kw)

    monkeypatch.setattr(runner_mod, "train", flaky_train)
    result = runner.invoke(app, ["run", "-m", "seed=0,1", *FAST])
    assert result.exit_code == 1
    by_seed = {r["seed"]: r for r in records(workdir / "results" / "runs")}
    assert by_seed[0]["status"] == "ok"
    assert by_seed[1]["status"] == "failed" and "boom" in by_seed[1]["error"]
    assert "1 ok, 1 failed" in result.output


def test_cfg_job_prints_composed_config(workdir: Path, capfd):
    result = invoke("run", "pool=avg", "pool.F=3", "--cfg", "job")
    assert result.exit_code == 0
    out = capfd.readouterr().out + result.output
    assert "name: avg" in out and "F: 3" in out
    assert not (workdir / "results").exists()


def test_report_summary_over_seeds(workdir: Path):
    assert invoke("run", "-m", "pool=max,avg", "seed=0,1", *FAST).exit_code == 0
    result = invoke("report", "results", "-o", "out/report.csv")
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(workdir / "out" / "report.csv")
    # every field a column; the config identity as one column per key (config.<key>)
    assert len(runs) == 4 and set(RECORD_FIELDS) - {"config"} <= set(runs.columns)
    assert "config.pool.name" in runs.columns
    summary = pd.read_csv(workdir / "out" / "report_summary.csv")
    assert sorted(summary["pool"]) == ["avg", "max"]
    assert (summary["n"] == 2).all()
    for _, row in summary.iterrows():
        accs = runs.loc[runs["pool"] == row["pool"], "test_acc"]
        assert row["test_acc_mean"] == pytest.approx(accs.mean())
        assert row["test_acc_std"] == pytest.approx(accs.std(ddof=1), nan_ok=True)
    md = (workdir / "out" / "report_summary.md").read_text()
    assert md.startswith("|") and "test_acc_mean" in md


def test_report_without_records_is_an_error(workdir: Path):
    (workdir / "empty").mkdir()
    result = runner.invoke(app, ["report", "empty"])
    assert result.exit_code == 2 and "no run records" in result.output


@pytest.mark.parametrize("what", ["pools", "heads", "models", "datasets", "loggers"])
def test_list(what: str):
    result = invoke("list", what)
    assert result.exit_code == 0
    expected = {
        "pools": "max",
        "heads": "global_avg",
        "models": "vgg",
        "datasets": "digits",
        "loggers": "tensorboard",
    }
    assert expected[what] in result.output


def test_list_unknown_category():
    result = runner.invoke(app, ["list", "poolz"])
    assert result.exit_code == 2
    assert result.output == (
        "error: unknown list 'poolz'; available: pools, heads, models, datasets, loggers\n"
    )


def test_the_installed_command_answers_bad_input_in_one_line(workdir: Path):
    exe = str(Path(sys.executable).with_name("poolbench"))
    cases = [
        (["list", "nosuch"], "error: unknown list 'nosuch'; available: pools, heads, models"),
        (["report", "--compare", "results"], "error: expected --compare A B (two record sources)"),
        (["run", "train.lr=[0.1]"], "error: expected train.lr to be a number > 0, got [0.1]"),
    ]
    for args, expected in cases:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stdout == "" and done.stderr.startswith(expected), (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert list(workdir.iterdir()) == []


def test_a_run_never_imports_dynamo(workdir: Path):
    """Startup: torch._dynamo costs about a second to import, and a run that compiles nothing
    must not load it (torch.optim and dispatch modes would; see poolbench/optim.py)."""
    code = (
        "import sys\n"
        "from poolbench.cli.main import app\n"
        "try:\n"
        "    app(args=sys.argv[1:])\n"
        "except SystemExit as end:\n"
        "    assert not end.code, end.code\n"
    )
    assert not loads_dynamo(code, "run", "pool=gem", "progress=false", *FAST, cwd=workdir)
    assert records(workdir / "results")[0]["status"] == "ok"


def test_auto_layout_is_measured_and_the_record_says_which_and_why(workdir: Path):
    """channels_last=auto times both layouts before the run trains (the record keeps the
    times and what was chosen: the fastest where it beats NCHW fp32 by more than the margin,
    else NCHW fp32); an explicit layout is obeyed, and only precisions in it are timed."""
    result = invoke("run", "-m", "channels_last=auto,true", "eval.enabled=false", *FAST)
    assert result.exit_code == 0, result.output
    auto, forced = sorted(records(workdir / "results"), key=lambda r: r["channels_last"] is True)
    if auto["config"]["channels_last"] != "auto":
        auto, forced = forced, auto
    assert auto["compute_choice"] in ("measured", "cache")
    times = auto["compute_times_ms"]
    assert set(times) >= {"NCHW fp32", "NHWC fp32"}
    fastest = min(times, key=times.get)
    if times[fastest] >= (1 - PREFER_MARGIN) * times["NCHW fp32"]:
        fastest = "NCHW fp32"
    assert auto["channels_last"] is fastest.startswith("NHWC")
    assert auto["dtype"] == fastest.split()[1]
    assert forced["channels_last"] is True
    assert all(label.startswith("NHWC") for label in forced["compute_times_ms"] or {})


def test_dry_run_lists_every_run_with_its_pool_as_built(workdir: Path):
    result = runner.invoke(
        app,
        ["run", "-m", "model=alexnet_small", "pool=max,wavelet", "seed=0,1", "--dry-run"],
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "dry run: 4 runs, nothing trained" in text
    # the model's overlapping window applies to max; wavelet has no window
    assert "max(F=3, S=2, padding=0, ceil_mode=False, return_indices=False)" in text
    assert "wavelet(wavelet=haar)" in text and "4 of 4 runs can run" in text
    assert not (workdir / "results").exists()  # nothing written


def test_dry_run_names_each_failing_run_and_exits_2(workdir: Path):
    result = runner.invoke(
        app, ["run", "-m", "model=resnet18", "pool=max,fractional", "seed=0,1", "--dry-run"]
    )
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, result.output
    assert errors[0].startswith("error: run 3 (model=resnet18 pool=fractional seed=0):")
    assert "ceil(W/2)" in errors[0] and "run 4 (" in errors[1]
    # without --dry-run the first failing run is named and nothing runs
    plain = runner.invoke(app, ["run", "-m", "model=resnet18", "pool=max,fractional"])
    assert plain.exit_code == 2
    assert "run 2 of 2 (model=resnet18 pool=fractional)" in plain.output
    assert not (workdir / "results").exists()


def test_hydra_run_dir_is_honoured_and_its_record_found(workdir: Path):
    exe = str(Path(sys.executable).with_name("poolbench"))
    done = subprocess.run(
        [exe, "run", "pool=avg", *FAST, "hydra.run.dir=mine/${now:%Y%m%d}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = Path("mine").glob("*/result.json")
    assert json.loads(record.read_text())["status"] == "ok"
    assert f"-> {record.parent.resolve()}" in done.stdout  # where Hydra put it, found there
    assert not Path("results").exists()
    # the same directory for another config would mix two runs: refused before anything
    other = runner.invoke(app, ["run", "pool=max", *FAST, f"hydra.run.dir={record.parent}"])
    assert other.exit_code == 2
    assert "holds the record of another run" in other.output
    # a sweep's own files go to hydra.sweep.dir, its runs to <results_dir>/runs/
    sweep = invoke("run", "-m", "pool=avg,max", *FAST, "hydra.sweep.dir=my-sweep")
    assert sweep.exit_code == 0, sweep.output
    names = sorted(p.name for p in Path("my-sweep").iterdir())
    # jobs/: one report per job; report.html: the comparison on one page
    assert names == ["jobs", "multirun.yaml", "report.html", "summary.csv"]
    assert len(list(Path("results/runs").glob("*/result.json"))) == 2
    subdir = runner.invoke(app, ["run", "-m", "pool=avg,max", "hydra.sweep.subdir=x"])
    assert subdir.exit_code == 2 and "hydra.sweep.subdir cannot be set" in subdir.output


def test_a_sweep_from_a_directory_with_quotes_and_commas(workdir: Path, monkeypatch):
    """The directories poolbench hands to Hydra are quoted override values."""
    odd = workdir / "it's, here"
    odd.mkdir()
    monkeypatch.chdir(odd)
    result = invoke("run", "-m", "pool=max,avg", *FAST, "latency_interleaved=false")
    assert result.exit_code == 0, result.output
    assert len(list((odd / "results" / "runs").glob("*/result.json"))) == 2
    assert len(list((odd / "results" / "sweeps").glob("*/summary.csv"))) == 1
