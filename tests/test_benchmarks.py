"""The benchmark scripts the README names run end to end and print what it says they print.

Tiny settings: these check that the scripts work, not how fast anything is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        cwd=ROOT,
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
