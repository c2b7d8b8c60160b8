"""The benchmark scripts the README names run end to end and print what it says they print.

Tiny settings: these check that the scripts work, not how fast anything is.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def run_script(name: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_train_speed_prints_both_rates_and_their_ratio():
    text = run_script("train_speed.py", "--epochs", "1", "--repeats", "1", "--threads", "1")
    plain = float(re.search(r"plain loop \(fp32\)\s+(\d+) img/s", text).group(1))
    fast = float(re.search(r"poolbench engine\s+(\d+) img/s", text).group(1))
    ratio = float(re.search(r"ratio\s+([\d.]+)x", text).group(1))
    assert plain > 0 and fast > 0
    assert abs(ratio - fast / plain) < 0.01 + 0.01 * ratio  # the printed rates are rounded
    assert len(re.findall(r"test acc (0|1)\.\d{4}", text)) == 2


def test_layout_times_each_pool_in_both_orders():
    text = run_script("layout.py", "--pools", "max,lp", "--repeats", "1", "--threads", "1")
    rows = {
        m.group(1): m for m in re.finditer(r"^(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text, re.M)
    }
    assert set(rows) == {"max", "lp"}
    for row in rows.values():
        nchw, nhwc, ratio = (float(row.group(i)) for i in (2, 3, 4))
        assert nchw > 0 and nhwc > 0 and abs(ratio - nhwc / nchw) < 0.01
    assert "NHWC over 5% slower:" in text


def test_startup_reports_first_step_and_per_run_overhead():
    text = run_script("startup.py", "--starts", "1", "--runs", "2")
    first = float(re.search(r"first training step: median ([\d.]+) s", text).group(1))
    whole = float(re.search(r"whole process ([\d.]+) s", text).group(1))
    assert 0 < first < whole
    overhead = re.search(r"overhead_s in a 2-run multirun: median (\d+) ms", text)
    assert overhead is not None
    assert re.search(r"Hydra between runs: median -?[\d.]+ s", text)


def test_benchmarks_name_the_cpu_they_ran_on():
    from poolbench.core.host import cpu_text

    text = run_script("layout.py", "--pools", "max", "--repeats", "1", "--threads", "1")
    assert cpu_text() in text.splitlines()[0]  # the model and its speed flags


def test_latency_trained_times_trained_fresh_and_rebuilt_models():
    text = run_script("latency_trained.py", "--pools", "max,gem", "--epochs", "1", "--repeats", "2")
    rows = {
        m.group(1): [float(v) for v in m.groups()[1:]]
        for m in re.finditer(r"^(\w+)" + r"\s+([\d.]+)" * 8 + r"\s*$", text, re.M)
    }
    assert set(rows) == {"max", "gem"}
    for trained, _, fresh, _, rebuilt, _, tr_fresh, tr_rebuilt in rows.values():
        assert min(trained, fresh, rebuilt) > 0
        assert abs(tr_fresh - trained / fresh) < 0.01 and abs(tr_rebuilt - trained / rebuilt) < 0.01


@pytest.mark.parametrize("recipe", ["airbench", "vgg"])
def test_time_to_accuracy_trains_both_implementations_side_by_side(tmp_path: Path, recipe: str):
    from tests.helpers.datafiles import write_tensors

    data = write_tensors(tmp_path / "c.npz", n_train=64, n_test=32, size=32, classes=10)
    text = run_script(
        "time_to_accuracy.py",
        "--recipe",
        recipe,
        "--data",
        str(data),
        "--test",
        "test",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--tta",
        "none",
    )
    engine = float(re.search(r"^engine\s+(\d+) img/s\s+accuracy ([\d.]+)", text, re.M).group(1))
    plain = float(re.search(r"^plain\s+(\d+) img/s\s+accuracy ([\d.]+)", text, re.M).group(1))
    ratio = float(re.search(r"^ratio\s+([\d.]+)x", text, re.M).group(1))
    assert engine > 0 and plain > 0
    # the rates are printed rounded to whole images/s, the ratio from the exact ones
    assert (engine - 0.5) / (plain + 0.5) - 0.01 <= ratio <= (engine + 0.5) / (plain - 0.5) + 0.01
    assert f"recipe {recipe}," in text


def test_time_to_accuracy_profiles_where_the_time_goes(tmp_path: Path):
    from tests.helpers.datafiles import write_tensors

    data = write_tensors(tmp_path / "c.npz", n_train=64, n_test=32, size=32, classes=10)
    args = ["--data", str(data), "--test", "test", "--epochs", "1", "--batch", "32"]
    text = run_script("time_to_accuracy.py", *args, "--repeats", "1", "--profile")
    for side in ("engine", "plain"):
        assert f"--- profile, {side}, 1 epoch (top 12 by self CPU time)" in text
    assert "Self CPU time total" in text and "aten::" in text


def test_plain_loop_cifar_trains_and_scores(tmp_path: Path):
    from tests.helpers.datafiles import write_tensors

    data = write_tensors(tmp_path / "c.npz", n_train=32, n_test=16, n_val=16, size=16, classes=4)
    text = run_script(
        "plain_loop_cifar.py", "--data", str(data), "--epochs", "1", "--widths", "8,16"
    )
    match = re.search(r"val accuracy ([\d.]+), training \d+ s \((\d+) images/s\)", text)
    assert match and 0 <= float(match.group(1)) <= 1 and int(match.group(2)) > 0


def test_gpu_check_writes_its_table_and_skips_what_the_budget_leaves_out(tmp_path: Path):
    from tests.helpers.datafiles import write_tensors

    data = write_tensors(tmp_path / "c.npz", n_train=64, n_test=32, size=32, classes=10)
    out = tmp_path / "check.json"
    text = run_script("gpu_check.py", "--data", str(data), "--out", str(out), "--budget", "1")
    result = json.loads(out.read_text())
    env = result["steps"]["environment"]
    assert env["status"] == "ok" and env["cpu"] and env["torch"]
    skipped = [name for name, step in result["steps"].items() if step["status"] == "skipped"]
    assert len(skipped) == 7 and "main job" in skipped and "pytest -m gpu" in skipped
    assert "main job: skipped" in text and f"wrote {out}" in text
