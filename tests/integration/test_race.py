"""Real races through the command line: three pools under the basic and the joblib launcher,
a race stopped with Ctrl-C and resumed to the same decisions, the dry run's schedule, and bad
settings stopped before anything runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.helpers import FAST
from tests.helpers.cli import invoke, records

RACE = ["-m", "hydra/sweeper=race", "pool=max,avg,none", "hydra.sweeper.seeds=[0,1,2,3]"]


def decisions(sweep: Path) -> dict[str, str]:
    """The last look's status of every configuration in the sweep's race.csv."""
    with open(sweep / "race.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {row["configuration"]: row["status"] for row in rows if row["look"] == rows[-1]["look"]}


def sweep_dir() -> Path:
    (found,) = Path("results/sweeps").iterdir()
    return found


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_race_of_three_pools_runs_through_the_launcher(workdir: Path, launcher: str):
    extra = [] if launcher == "basic" else ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    result = invoke("run", *RACE, *extra, *FAST)
    assert result.exit_code == 0, result.output
    runs = records()
    seeds = {(r["pool"], r["seed"]) for r in runs}
    assert {(p, s) for p in ("max", "avg", "none") for s in (0, 1, 2)} <= seeds  # round 1
    assert len(runs) <= 12
    final = decisions(sweep_dir())
    assert set(final) == {"pool=max", "pool=avg", "pool=none"}
    assert list(final.values()).count("best") == 1
    assert set(final.values()) <= {"best", "equivalent", "eliminated", "undecided"}
    assert "verdict: the race's decisions" in result.output
    assert "Race: best pool=" in result.output
    (best,) = [label for label, status in final.items() if status == "best"]
    first_row = next(ln for ln in result.output.splitlines() if ln.startswith("│ "))
    assert first_row.split("│")[1].strip() == best.removeprefix("pool=")  # the best first
    # a configuration eliminated or equivalent at a look runs no more seeds
    for label, status in final.items():
        if status in ("eliminated", "equivalent"):
            pool = label.removeprefix("pool=")
            ran = sorted(s for p, s in seeds if p == pool)
            assert ran == list(range(len(ran)))


def test_a_race_stopped_with_ctrl_c_resumes_to_the_same_decisions(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
):
    import poolbench.run.runner as runner_mod

    reference = workdir / "reference"
    reference.mkdir()
    monkeypatch.chdir(reference)
    assert invoke("run", *RACE, *FAST).exit_code == 0
    expected = decisions(sweep_dir())
    monkeypatch.chdir(workdir)

    real_train = runner_mod.train

    def stop_in_round_two(model, data, cfg, compute, seed, **kw):
        if seed == 3:
            raise KeyboardInterrupt
        return real_train(model, data, cfg, compute, seed, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(runner_mod, "train", stop_in_round_two)
        interrupted = invoke("run", *RACE, *FAST)
    assert interrupted.exit_code == 130
    assert "run the same command again to go on" in interrupted.output
    done = {(r["pool"], r["seed"]) for r in records()}
    assert len(done) >= 9  # round 1 kept
    resumed = invoke("run", *RACE, *FAST)
    assert resumed.exit_code == 0, resumed.output
    assert "skipped: already ok" in resumed.output
    sweeps = sorted(Path("results/sweeps").iterdir())
    assert decisions(sweeps[-1]) == expected


def test_the_dry_run_lists_the_configurations_and_the_seed_schedule(workdir: Path):
    result = invoke("run", *RACE, *FAST, "--dry-run")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "a race of 3 configurations: seeds 0, 1, 2 for every configuration" in text
    assert "then one more a round (3) while any is undecided; at most 12 runs" in text
    assert text.count("at most 12 runs") == 1
    assert not Path("results/runs").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("hydra.sweeper.min_seeds=5", "min_seeds=5 is more than the 4 seeds"),
        ("hydra.sweeper.delta=-1", "expected hydra.sweeper.delta to be a number >= 0"),
        ("objective=nope", "expected objective to name one of"),
        ("hydra.sweeper.seeds=[]", "expected hydra.sweeper.seeds to be a non-empty list"),
        ("seed=0,1", "the race chooses the seeds"),
    ],
)
def test_bad_race_settings_stop_before_anything_runs(workdir: Path, option: str, message: str):
    result = invoke("run", *RACE, *FAST, option)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not Path("results").exists()


@pytest.mark.parametrize(("budget", "says"), [("9", "budget of 9 runs"), ("1s", "budget of 1 s")])
def test_a_budget_stops_the_race_with_what_is_left_undecided(workdir: Path, budget, says):
    """The sweeper's own budget: 9 runs, or one second of wall time (the first round takes
    longer), stops the race after its first round, whatever is still racing undecided."""
    result = invoke("run", *RACE, *FAST, f"hydra.sweeper.budget={budget}")
    assert result.exit_code == 0, result.output
    runs = records()
    assert sorted((r["pool"], r["seed"]) for r in runs) == sorted(
        (p, s) for p in ("max", "avg", "none") for s in (0, 1, 2)
    )
    final = decisions(sweep_dir())
    assert "undecided" in final.values() or "eliminated" in final.values()
    assert says in " ".join(result.output.split())
