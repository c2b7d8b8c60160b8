"""Sweep overhead: time from ``poolbench run`` to the first training step, and per-run overhead.

    python benchmarks/startup.py [--starts 5] [--runs 8]

1. **Time to the first training step.** Starts ``poolbench run train.epochs=1`` ``--starts``
   times, each in a fresh Python process, and reports the seconds from just before the process
   is started to the end of its first optimizer step (the step is timed by wrapping
   ``poolbench.engine.optim.SGD.step``; nothing else changes), and to the end of the process. The
   first start also fills the data cache, so it is reported but left out of the median.
2. **Per-run overhead in a multirun.** Runs one ``poolbench run -m`` sweep of ``--runs`` pooling
   layers (2 epochs each) and reads the records: ``overhead_s`` (the run's wall time that was
   neither training, evaluation nor measurement) and the gap Hydra leaves between one run's end
   and the next one's start (``started_at`` + ``wall_s``).

Results go to a temporary directory; nothing in ``results/`` is touched.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from poolbench.core.host import cpu_text
from poolbench.core.record import RECORD_NAME, read_record

POOLS = ["max", "avg", "gem", "lp", "softpool", "stochastic", "median", "blur", "mixed", "tree"]

# Runs the real CLI in this process, printing when the first optimizer step has ended.
_FIRST_STEP = """
import sys, time
import poolbench.engine.optim
step = poolbench.engine.optim.SGD.step
def timed(self, *args, **kwargs):
    out = step(self, *args, **kwargs)
    if not getattr(timed, "done", False):
        timed.done = True
        print(f"FIRST_STEP {time.time():.6f}", file=sys.stderr, flush=True)
    return out
poolbench.engine.optim.SGD.step = timed
from poolbench.cli.main import app
app(args=sys.argv[1:])
"""


def time_to_first_step(results: Path) -> tuple[float, float]:
    args = ["run", "train.epochs=1", "rerun=true", "progress=false", f"results_dir={results}"]
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", _FIRST_STEP, *args], capture_output=True, text=True, check=False
    )
    end = time.time()
    if proc.returncode != 0:
        sys.exit(f"poolbench run failed:\n{proc.stderr[-2000:]}")
    line = next(x for x in proc.stderr.splitlines() if x.startswith("FIRST_STEP "))
    return float(line.split()[1]) - start, end - start


def per_run_overhead(results: Path, pools: list[str]) -> list[dict]:
    args = ["run", "-m", f"pool={','.join(pools)}", "train.epochs=2", "progress=false"]
    proc = subprocess.run(
        [sys.executable, "-m", "poolbench.cli.main", *args, f"results_dir={results}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"poolbench run -m failed:\n{proc.stderr[-2000:]}")
    records = [read_record(p) for p in results.rglob(RECORD_NAME)]
    return sorted(records, key=lambda r: r["started_at"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--runs", type=int, default=8, help=f"2 to {len(POOLS)}")
    args = parser.parse_args()
    if args.starts < 1:
        parser.error(f"--starts must be at least 1, got {args.starts}")
    if not 2 <= args.runs <= len(POOLS):
        parser.error(f"--runs must be between 2 and {len(POOLS)}, got {args.runs}")
    with tempfile.TemporaryDirectory(prefix="poolbench-startup-") as tmp:
        first, total = [], []
        for i in range(args.starts + 1):
            f, t = time_to_first_step(Path(tmp) / "single")
            print(
                f"start {i}: first step ends at {f:.2f} s, process ends at {t:.2f} s"
                + ("  (warm-up, not counted)" if i == 0 else ""),
                flush=True,
            )
            if i:
                first.append(f)
                total.append(t)
        records = per_run_overhead(Path(tmp) / "sweep", POOLS[: args.runs])
    gaps = []
    for prev, run in itertools.pairwise(records):
        ended = datetime.fromisoformat(prev["started_at"]).timestamp() + prev["wall_s"]
        gaps.append(datetime.fromisoformat(run["started_at"]).timestamp() - ended)
    overheads = [r["overhead_s"] for r in records]
    print(f"conditions: {cpu_text()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}")
    print(
        f"time to the end of the first training step: median {statistics.median(first):.2f} s "
        f"(min {min(first):.2f}, max {max(first):.2f}) over {len(first)} starts; "
        f"whole process {statistics.median(total):.2f} s"
    )
    print(
        f"per-run overhead_s in a {len(records)}-run multirun: median "
        f"{statistics.median(overheads) * 1000:.0f} ms (max {max(overheads) * 1000:.0f} ms); "
        f"Hydra between runs: median {statistics.median(gaps):.2f} s (max {max(gaps):.2f} s)"
    )


if __name__ == "__main__":
    main()
