"""The race's decisions on constructed values with known answers: a clearly worse
configuration goes at its first look, equal ones reach equivalence, a budget stops it with what
is left undecided, bad settings are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolbench.core.errors import ConfigError
from poolbench.sweep.race import (
    ELIMINATED,
    EQUIVALENT,
    Race,
    RaceSettings,
    labels_of,
    parse_budget,
    parse_seeds,
    race_sentences,
    tag_records,
)

IMAGES = 450


def run(race: Race, values: dict[str, list[int]], budget: int | None = None) -> int:
    """Feed ``values`` (images right, by configuration and seed) round by round, as the
    sweeper does; returns the runs launched."""
    runs = 0
    while batch := race.next_batch():
        if budget is not None and runs + len(batch) > budget:
            race.stop(f"budget of {budget} runs")
            break
        for entry, seed in batch:
            race.record(entry, seed, values[entry.label.removeprefix("pool=")][seed] / IMAGES)
        runs += len(batch)
        race.look()
    return runs


def race_of(names: list[str], **settings) -> Race:
    options = {"seeds": tuple(range(10)), "min_seeds": 3, "alpha": 0.05, "delta": 0.005}
    return Race([[f"pool={n}"] for n in names], RaceSettings(**(options | settings)), 1 / IMAGES)


def status(race: Race) -> dict[str, str]:
    return {e.label.removeprefix("pool="): race.final_status(e) for e in race.entries}


def test_a_clearly_worse_configuration_is_eliminated_at_the_first_look():
    values = {
        "a": [449, 450, 448, 449, 450, 449, 450, 449, 448, 450],
        "b": [300, 310, 290, 305, 300, 295, 300, 310, 305, 290],
    }
    race = race_of(["a", "b"], seeds=(0, 1, 2, 3), min_seeds=3)
    runs = run(race, values)
    assert status(race) == {"a": "best", "b": ELIMINATED}
    assert race.entries[1].decided_at == 1 and runs == 6  # decided at n=3: nothing more ran
    assert race.stopped.startswith("decided")


def test_two_equal_configurations_reach_equivalence_and_stop():
    same = [449, 449, 448, 449, 450, 449, 449, 448, 449, 450]
    values = {"a": same, "b": [v - (i % 2) for i, v in enumerate(same)]}
    race = race_of(["a", "b"])
    runs = run(race, values)
    assert status(race) == {"a": "best", "b": EQUIVALENT}
    assert runs < 20  # stopped before the seeds ran out


def test_a_budget_stops_the_race_and_what_is_left_is_undecided():
    noisy = {
        "a": [449, 440, 446, 444, 450, 441, 447, 445, 443, 449],
        "b": [444, 447, 441, 449, 442, 446, 448, 440, 447, 444],
        "c": [446, 443, 448, 441, 447, 444, 442, 449, 445, 441],
    }
    race = race_of(["a", "b", "c"])
    runs = run(race, noisy, budget=12)
    assert runs == 12 and race.stopped == "budget of 12 runs"
    assert set(status(race).values()) <= {"best", "undecided"}
    assert "undecided" in status(race).values()
    sentences = race_sentences(
        {
            e.label: {"status": race.final_status(e), "n": len(e.values), "look": e.decided_at}
            for e in race.entries
        },
        race.settings,
    )
    assert sentences[0].startswith("Race: best pool=")
    assert sentences[1].startswith("Undecided when the race stopped: ")


def test_each_look_spends_its_share_of_alpha_and_writes_a_row_per_configuration(tmp_path):
    race = race_of(["a", "b"], seeds=tuple(range(6)), min_seeds=3)
    assert race.settings.looks == 4 and race.settings.alpha_per_look == pytest.approx(0.0125)
    run(race, {"a": [449] * 6, "b": [300] * 6})
    text = race.write(tmp_path).read_text().splitlines()
    assert text[0] == "look,configuration,n,failed,mean,p_vs_best,p_equiv,alpha,status"
    assert {line.split(",")[1] for line in text[1:]} == {"pool=a", "pool=b"}
    assert all(line.split(",")[7] == "0.0125" for line in text[1:])


def test_a_configuration_whose_runs_all_fail_is_out_of_the_race():
    race = race_of(["a", "b"], seeds=(0, 1, 2, 3), min_seeds=2)
    for entry, seed in race.next_batch():
        race.record(entry, seed, None if entry.label == "pool=b" else 0.99)
    race.look()
    assert status(race)["b"] == "failed"


def test_labels_are_the_overrides_that_tell_configurations_apart():
    configs = [["pool=max", "train.epochs=3"], ["pool=avg", "train.epochs=3"]]
    assert labels_of(configs) == ["pool=max", "pool=avg"]


def test_records_carry_their_configurations_decision():
    decisions = {"pool=max": {"status": "best"}, "pool=avg": {"status": "eliminated"}}
    records = [{"overrides": "pool=avg train.epochs=3 seed=0"}, {"overrides": "pool=gem seed=0"}]
    assert [r["race"] for r in tag_records(records, decisions)] == ["eliminated", None]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("range(0,4)", (0, 1, 2, 3)), ("0,2,5", (0, 2, 5)), (3, (0, 1, 2)), ([4, 5], (4, 5))],
)
def test_seeds_take_a_sweep_string_a_count_or_a_list(value, expected):
    assert parse_seeds(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, (None, None)), (40, (40, None)), ("3m", (None, 180.0))]
)
def test_a_budget_is_runs_or_wall_time(value, expected):
    assert parse_budget(value) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_seeds": 12}, "min_seeds=12 is more than the 10 seeds"),
        ({"min_seeds": 1}, "min_seeds to be an integer >= 2"),
        ({"delta": -0.1}, "delta to be a number >= 0"),
        ({"seeds": []}, "seeds to be a non-empty list of integers"),
        ({"seeds": "range(0,0)"}, "seeds to be a non-empty list"),
        ({"alpha": 1.5}, "alpha in (0, 1)"),
        ({"budget": "soon"}, "budget to be a number of runs"),
    ],
)
def test_bad_settings_are_one_line(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RaceSettings.from_config({"seeds": "range(0,10)", **options}, "test_acc")


def test_an_unknown_objective_lists_the_metrics():
    with pytest.raises(ConfigError, match="expected objective to name one of test_acc"):
        RaceSettings.from_config({"seeds": 5}, "accuracy")


def test_a_decision_is_read_at_the_look_that_made_it(tmp_path: Path):
    """A configuration stopped at look 2 is repeated in look 3's rows: its decision (and the
    look the sentences name) is look 2's."""
    from poolbench.sweep.race import RACE_CSV, race_sentences, read_decisions

    head = "look,configuration,n,failed,mean,p_vs_best,p_equiv,alpha,status\n"
    rows = [
        "1,pool=max,4,0,0.99,nan,nan,0.0167,best",
        "1,pool=none,4,0,0.96,0.04,1.0,0.0167,undecided",
        "2,pool=max,5,0,0.99,nan,nan,0.0167,best",
        "2,pool=none,5,0,0.96,0.008,1.0,0.0167,eliminated",
        "3,pool=max,6,0,0.99,nan,nan,0.0167,best",
        "3,pool=none,5,0,0.96,0.008,1.0,0.0167,eliminated",
    ]
    (tmp_path / RACE_CSV).write_text(head + "\n".join(rows) + "\n")
    decisions = read_decisions(tmp_path)
    assert decisions["pool=none"]["look"] == "2" and decisions["pool=max"]["look"] == "3"
    settings = RaceSettings(seeds=tuple(range(6)), min_seeds=4)
    text = " ".join(race_sentences(decisions, settings))
    assert "pool=none (look 2, p=0.008)" in text


def test_a_seed_of_a_composed_configuration_is_what_hydra_composes():
    """The race composes each configuration once: another seed's config, patched, equals a
    fresh composition key for key (hydra's own fields included), and pickles (joblib)."""
    import pickle

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from poolbench.core.paths import CONFIG_NAME, config_dir
    from poolbench.sweep.seed_loader import SeedCachingLoader

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            CONFIG_NAME, ["hydra/sweeper=race", "experiment=quick"], RunMode.MULTIRUN
        )
        cached = SeedCachingLoader(loader)
        job = ["pool=gem", "train.lr=0.02", "seed={}", "experiment=quick"]
        for seed in (0, 3, 11):
            overrides = [o.format(seed) for o in job]
            got = cached.load_sweep_config(master, overrides)
            want = loader.load_sweep_config(master, overrides)
            assert OmegaConf.to_container(got) == OmegaConf.to_container(want)
            assert got.seed == seed and f"seed={seed}" in got.hydra.job.override_dirname
        assert len(cached.composed) == 1
        assert pickle.loads(pickle.dumps(cached)).composed.keys() == cached.composed.keys()
