"""What racing costs and what it decides.

    python benchmarks/race_cost.py simulate [--reps 1000] [--seed 0] [--seeds N]
        [--min-seeds N] [--delta D]
    python benchmarks/race_cost.py real [--grid-seeds 5]

``simulate``: races with known truth. Each repetition draws the objective of every
configuration on every seed as ``mean + seed effect + noise``, rounded to whole test images
(k/450, as the digits test split scores), and runs poolbench's race on it
(:class:`poolbench.sweep.race.Race`, the same object ``hydra/sweeper=race`` drives) with the
main job's settings (or those given). Scenarios:

- ``null``: ten equal configurations; every elimination is false;
- ``main job``: the ten pools' means and per-seed spreads as a 5-seed grid of the main job
  measured them (``real``), taken as the truth;
- ``margin``: five configurations equal to the best and four exactly ``delta`` below it;
  calling one of those four equivalent is false;
- ``spread``: a sweep of settings most of which are clearly worse (learning rates, say): the
  best, one a third of ``delta`` below it, and eight from one to nine points below; where
  racing is meant to save runs.

Printed per scenario: the family-wise rate of a false elimination (a configuration as good as
the best eliminated) and of a false equivalence (one ``delta`` or more from the best called
equivalent), each with its 95% interval; the runs the race used; and the runs of the smallest
fixed grid (every configuration the same seeds, tested once at alpha, no spending) that reaches
at least the race's decisions.

``real``: the main job as a race (``poolbench run``) against the fixed grid of the same ten
pools at ``--grid-seeds`` seeds, each in a fresh results directory, one after the other:
runs, wall time, and whether the decisions agree.

Both print the CPU and its flags; the figures go into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from poolbench.core.host import cpu_text
from poolbench.report.significance import EQUIVALENT, WORSE, against_best
from poolbench.sweep.race import ELIMINATED, Race, RaceSettings

TEST_IMAGES = 450
# The main job's pools on a fixed 5-seed grid on digits (vgg 16-32-64, 8 epochs; `real` below,
# 2026-12-04, AVX2 EPYC): mean and 95% half-width.
MAIN_JOB = {
    "lp": (0.9969, 0.0015),
    "blur": (0.9964, 0.0031),
    "stochastic": (0.9951, 0.0049),
    "strided_conv": (0.9947, 0.0064),
    "softpool": (0.9942, 0.0042),
    "gem": (0.9933, 0.0052),
    "max": (0.9924, 0.0057),
    "avg": (0.9911, 0.0055),
    "fractional": (0.9707, 0.0106),
    "none": (0.9600, 0.0117),
}
SD_OF_CI95 = math.sqrt(5) / float(stats.t.ppf(0.975, 4))  # sd = half-width * sqrt(n) / t


@dataclass(frozen=True)
class Scenario:
    name: str
    means: dict[str, float]
    sds: dict[str, float]
    seed_sd: float = 0.001  # what a seed does to every configuration alike


def scenarios(delta: float) -> list[Scenario]:
    sd = 0.002
    null = {f"c{i}": 0.997 for i in range(10)}
    margin = {f"equal{i}": 0.997 for i in range(5)} | {
        f"margin{i}": 0.997 - delta for i in range(4)
    }
    spread = {"best": 0.99, "close": 0.99 - delta / 3} | {
        f"worse{i}": 0.99 - 0.01 * i for i in range(1, 9)
    }
    main = {k: m for k, (m, _) in MAIN_JOB.items()}
    main_sd = {k: max(h * SD_OF_CI95, 0.0005) for k, (_, h) in MAIN_JOB.items()}
    return [
        Scenario("null", null, dict.fromkeys(null, sd)),
        Scenario("main job", main, main_sd),
        Scenario("margin", margin, dict.fromkeys(margin, sd)),
        Scenario("spread", spread, dict.fromkeys(spread, 2 * sd)),
    ]


def draw(scenario: Scenario, seeds: int, rng: random.Random) -> dict[str, list[float]]:
    """Every configuration's objective on every seed, in whole test images."""
    effects = [rng.gauss(0, scenario.seed_sd) for _ in range(seeds)]
    out = {}
    for name, mean in scenario.means.items():
        values = []
        for s in range(seeds):
            v = mean + effects[s] + rng.gauss(0, scenario.sds[name])
            values.append(min(TEST_IMAGES, max(0, round(v * TEST_IMAGES))) / TEST_IMAGES)
        out[name] = values
    return out


def race_once(values: dict[str, list[float]], settings: RaceSettings) -> tuple[Race, int]:
    names = list(values)
    race = Race([[f"pool={n}"] for n in names], settings, resolution=1 / TEST_IMAGES)
    runs = 0
    while batch := race.next_batch():
        for entry, seed in batch:
            race.record(entry, seed, values[entry.label.removeprefix("pool=")][seed])
        runs += len(batch)
        race.look()
    return race, runs


def grid_runs(
    values: dict[str, list[float]],
    settings: RaceSettings,
    eliminated: set[str],
    equivalent: set[str],
) -> int:
    """The runs of the smallest fixed grid whose one test (alpha, no spending) reaches at
    least the race's decisions (every configuration the race eliminated shown worse, every
    one it found equivalent shown equivalent)."""
    names = list(values)
    for n in range(settings.min_seeds, len(settings.seeds) + 1):
        groups = [{s: values[name][s] for s in range(n)} for name in names]
        verdicts = against_best(
            groups, True, settings.alpha, delta=settings.margin, resolution=1 / TEST_IMAGES
        )
        worse = {name for name, v in zip(names, verdicts, strict=True) if v.status == WORSE}
        same = {name for name, v in zip(names, verdicts, strict=True) if v.status == EQUIVALENT}
        if eliminated <= worse and equivalent <= same:
            return n * len(names)
    return len(settings.seeds) * len(names)


def interval(k: int, n: int) -> str:
    low, high = stats.binomtest(k, n).proportion_ci(0.95)
    return f"{k / n:.3f} [{low:.3f}, {high:.3f}]"


def main_job_settings() -> RaceSettings:
    from poolbench.sweep.plan import plan

    race = plan(["experiment=quick"]).race
    assert race is not None, "the main job is expected to be a race"
    return race


def simulate(reps: int, seed: int, settings: RaceSettings) -> None:
    print(f"conditions: {cpu_text()}; {reps} repetitions, seed {seed}")
    print(f"race: {settings.schedule(10)}; values rounded to 1/{TEST_IMAGES}")
    print(
        f"{'scenario':<10} {'false elim. (95% CI)':<24} {'false equiv. (95% CI)':<24} "
        f"{'race runs':>9} {'grid runs':>9} {'share':>6}"
    )
    rng = random.Random(seed)
    for scenario in scenarios(settings.margin or 0.0):
        best = max(scenario.means.values())
        false_elim = false_equiv = 0
        race_total = grid_total = 0
        for _ in range(reps):
            values = draw(scenario, len(settings.seeds), rng)
            race, runs = race_once(values, settings)
            status = {e.label.removeprefix("pool="): race.final_status(e) for e in race.entries}
            eliminated = {k for k, s in status.items() if s == ELIMINATED}
            equivalent = {k for k, s in status.items() if s == EQUIVALENT}
            if any(scenario.means[k] >= best for k in eliminated):
                false_elim += 1
            if any(best - scenario.means[k] >= (settings.margin or 0) - 1e-12 for k in equivalent):
                false_equiv += 1
            race_total += runs
            grid_total += grid_runs(values, settings, eliminated, equivalent)
        print(
            f"{scenario.name:<10} {interval(false_elim, reps):<24} "
            f"{interval(false_equiv, reps):<24} {race_total / reps:>9.1f} "
            f"{grid_total / reps:>9.1f} {race_total / max(grid_total, 1):>6.2f}"
        )


def _poolbench(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "poolbench.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"poolbench {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - start, out.stdout


def real(grid_seeds: int) -> None:
    import csv

    import pandas as pd

    from poolbench.sweep.plan import plan

    main = plan(["experiment=quick"])
    assert main.race is not None, "the main job is expected to be a race"
    margin = main.race.margin
    pools = sorted({r.pool.name for r in main.runs}, key=list(MAIN_JOB).index)
    print(f"conditions: {cpu_text()}")
    with tempfile.TemporaryDirectory() as race_dir, tempfile.TemporaryDirectory() as grid_dir:
        race_s, race_out = _poolbench(["run"], Path(race_dir))
        (race_csv,) = Path(race_dir).glob("results/sweeps/*/race.csv")
        with open(race_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
        race = {r["configuration"].removeprefix("pool="): r["status"] for r in rows}
        race_runs = len(list(Path(race_dir).glob("results/runs/*/result.json")))
        grid_args = ["run", "-m", f"pool={','.join(pools)}", f"seed=range(0,{grid_seeds})"]
        grid_args += [o for o in _main_job_overrides() if not o.startswith(("pool=", "seed="))]
        grid_s, grid_out = _poolbench(grid_args, Path(grid_dir))
        # the grid's verdicts at the race's margin and alpha, tested once (no looks)
        report = ["report", "results", "-o", "r.csv", "--no-plots", "--delta", f"{margin:g}"]
        _poolbench(report, Path(grid_dir))
        summary = pd.read_csv(Path(grid_dir) / "r_summary.csv")
    grid = dict(zip(summary["pool"], summary["verdict"].fillna(""), strict=True))
    grid_runs = len(pools) * grid_seeds
    for name, seconds, out in (("race", race_s, race_out), ("grid", grid_s, grid_out)):
        tail = [ln for ln in out.splitlines() if ln.strip()][-16:]
        print(f"--- {name}: {seconds:.0f} s")
        print("\n".join(tail))
    print(f"--- decisions (margin {margin:g}; the race's 'eliminated' is the grid's 'worse')")
    same = 0
    for pool in pools:
        r, g = race.get(pool, "-"), grid.get(pool, "-")
        agree = r == g or (r == ELIMINATED and g == WORSE)
        same += agree
        print(f"{pool:<14} race {r:<11} grid {g:<11} {'same' if agree else 'differ'}")
    print(
        f"race: {race_runs} runs in {race_s:.0f} s; grid: {grid_runs} runs in {grid_s:.0f} s; "
        f"runs {race_runs / grid_runs:.2f} of the grid's, wall time {race_s / grid_s:.2f}; "
        f"{same} of {len(pools)} decisions the same"
    )


def _main_job_overrides() -> list[str]:
    """The main job's settings as command-line overrides, for a grid of the same runs."""
    import yaml

    quick = Path(__file__).resolve().parents[1] / "configs" / "experiment" / "quick.yaml"
    config = yaml.safe_load(quick.read_text())
    out: list[str] = []

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("hydra", "defaults"):
                    continue
                walk(value, f"{prefix}{key}.")
        else:
            value = "null" if node is None else node
            if isinstance(value, bool):
                value = str(value).lower()
            if isinstance(value, list):
                value = "[" + ",".join(map(str, value)) + "]"
            out.append(f"{prefix[:-1]}={value}")

    walk(config, "")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="races with known truth")
    sim.add_argument("--reps", type=int, default=1000)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--seeds", type=int, default=None, help="default: the main job's")
    sim.add_argument("--min-seeds", type=int, default=None, help="default: the main job's")
    sim.add_argument("--delta", type=float, default=None, help="default: the main job's")
    live = commands.add_parser("real", help="the main job as a race against the fixed grid")
    live.add_argument("--grid-seeds", type=int, default=5)
    args = parser.parse_args()
    if args.command == "simulate":
        main_job = main_job_settings()
        settings = RaceSettings(
            seeds=tuple(range(args.seeds)) if args.seeds else main_job.seeds,
            min_seeds=args.min_seeds or main_job.min_seeds,
            alpha=main_job.alpha,
            delta=args.delta if args.delta is not None else main_job.delta,
        )
        simulate(args.reps, args.seed, settings)
    else:
        real(args.grid_seeds)


if __name__ == "__main__":
    main()
