"""``hydra/sweeper=race``: Hydra's side of poolbench's racing sweeper. Hydra finds this module
in the ``hydra_plugins`` namespace, registers :class:`RaceSweeperConf` under
``hydra/sweeper`` as it does its own sweepers' configs, and instantiates :class:`RaceSweeper`;
the race itself is :mod:`poolbench.sweep.race`.

Each round goes through whatever launcher is configured (basic, joblib, submitit, ...), so a
race runs wherever a sweep runs.

No ``from __future__ import annotations`` here: Hydra's plugin discovery executes this module
without entering it in ``sys.modules``, where dataclasses would look string annotations up.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from poolbench.core import defaults

log = logging.getLogger("poolbench")


@dataclass
class RaceSweeperConf:
    _target_: str = "hydra_plugins.poolbench_race.race_sweeper.RaceSweeper"
    # the configurations, as the basic sweeper takes them (pool: max,avg); the command line's
    # sweeps are added to them
    params: Any = None
    seeds: Any = defaults.RACE_SEEDS  # raced one a round; a list, a sweep string or a count
    min_seeds: int = defaults.RACE_MIN_SEEDS  # every configuration's first round
    alpha: float = defaults.ALPHA  # family-wise, spent evenly over the looks
    delta: Any = None  # equivalence margin in the objective's units (null: 0.005 for accuracy)
    budget: Any = None  # null, a number of runs, or wall time: 300s, 10m


ConfigStore.instance().store(
    group="hydra/sweeper", name="race", node=RaceSweeperConf, provider="poolbench"
)


class RaceSweeper(Sweeper):
    """Runs the sweep's configurations in rounds of seeds through the configured launcher and
    stops spending seeds on what is decided (:mod:`poolbench.sweep.race`)."""

    def __init__(
        self,
        params: Any = None,
        seeds: Any = defaults.RACE_SEEDS,
        min_seeds: int = defaults.RACE_MIN_SEEDS,
        alpha: float = defaults.ALPHA,
        delta: Any = None,
        budget: Any = None,
    ) -> None:
        self.options = {
            "seeds": seeds,
            "min_seeds": min_seeds,
            "alpha": alpha,
            "delta": delta,
            "budget": budget,
        }
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        from poolbench.sweep.seed_loader import SeedCachingLoader

        # a normal module's class, so that joblib's workers can unpickle it (this module is
        # executed by Hydra's discovery outside sys.modules)
        loader = SeedCachingLoader(hydra_context.config_loader)
        self.hydra_context = HydraContext(config_loader=loader, callbacks=hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from poolbench.sweep.race import Race, RaceSettings, configurations

        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        objective = str(self.config.get("objective", defaults.METRIC))
        settings = RaceSettings.from_config(self.options, objective)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        configs = configurations(parser, self.params, arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        race = Race(configs, settings)
        log.info("race: %d configurations, %s", len(configs), settings.schedule(len(configs)))
        start, launched, job_idx = time.monotonic(), 0, 0
        while batch := race.next_batch():
            if settings.budget_runs is not None and launched + len(batch) > settings.budget_runs:
                race.stop(f"budget of {settings.budget_runs} runs")
                break
            if settings.budget_s is not None and time.monotonic() - start >= settings.budget_s:
                race.stop(f"budget of {settings.budget_s:g} s")
                break
            jobs = [[*entry.overrides, f"seed={seed}"] for entry, seed in batch]
            if job_idx == 0:  # one job a configuration: the others differ in the seed alone
                firsts = {id(entry): job for (entry, _), job in zip(batch, jobs, strict=True)}
                self.validate_batch_is_legal(list(firsts.values()))
            returns = self.launcher.launch(jobs, initial_job_idx=job_idx)
            job_idx += len(jobs)
            launched += len(jobs)
            for (entry, seed), job in zip(batch, returns, strict=True):
                race.record(entry, seed, _value(job, race))
            log.info(race.look())
            race.write(sweep_dir)
        race.write(sweep_dir)
        summary = race.summary()
        log.info(
            "race over (%s): %s",
            race.stopped or "no runs",
            "; ".join(f"{status}: {', '.join(names)}" for status, names in summary.items()),
        )


def _value(job: Any, race: Any) -> float | None:
    """The objective a job handed back (None: the run failed); the resolution of an accuracy
    (1 / test images) is taken from the first record that has it."""
    try:
        result = job.return_value
    except Exception:  # the job raised: Hydra keeps the exception, the record says failed
        return None
    record = getattr(result, "record", None) or {}
    if race.resolution is None and record.get("test_images"):
        if race.settings.objective in ("test_acc", "test_top5"):
            race.resolution = 1.0 / float(record["test_images"])
    if record.get("status") != "ok":
        return None
    return float(result)
