"""Hand a command line to Hydra's own run and multirun machinery, so that every sweeper
(``hydra/sweeper=optuna``, ``race``) and launcher plugin (``joblib``, ``submitit_slurm``,
``ray``) works unchanged, and keep what the launchers hand back: each job's return value
carries its run's record, which comes home from nodes without a shared disk
(:mod:`poolbench.run.homecoming`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn

from poolbench.core.paths import CONFIG_NAME, config_dir
from poolbench.sweep.task import task


@contextlib.contextmanager
def returns_kept(receive: Callable[[list[JobReturn]], None]) -> Iterator[None]:
    """Every launcher a sweeper makes meanwhile (in this process: the basic sweeper, Optuna,
    the race) hands each batch of its jobs' returns to ``receive`` (as they come: a race's
    rounds, Optuna's batches) as well as to the sweeper."""
    plugins = Plugins.instance()
    instantiate = plugins.instantiate_launcher

    def keeping(*args: Any, **kwargs: Any) -> Any:
        launcher = instantiate(*args, **kwargs)
        launch_jobs = launcher.launch

        def launch(job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            returns = launch_jobs(job_overrides, initial_job_idx)
            receive(list(returns))
            return returns

        launcher.launch = launch
        return launcher

    plugins.instantiate_launcher = keeping
    try:
        yield
    finally:
        del plugins.instantiate_launcher  # the class's own method again


def launch(
    overrides: list[str],
    multirun: bool,
    extra_args: list[str] | None = None,
    on_returns: Callable[[list[JobReturn]], None] | None = None,
) -> None:
    """Run ``overrides`` (with Hydra's flags ``extra_args``: ``--cfg job``, ``--info``) as
    ``@hydra.main`` would run them from a command line, without touching ``sys.argv``;
    ``on_returns`` receives each batch of a multirun's job returns as the launcher hands it
    back."""
    import hydra

    hydra.version.setbase("1.3")  # else Hydra would chdir into each run's directory
    argv = [*overrides, *(["--multirun"] if multirun else []), *(extra_args or [])]
    parser = get_args_parser()
    kept = returns_kept(on_returns) if on_returns is not None else contextlib.nullcontext()
    try:
        with kept:
            _run_hydra(
                args=parser.parse_args(argv),
                args_parser=parser,
                task_function=task,
                config_path=str(config_dir()),
                config_name=CONFIG_NAME,
            )
    finally:
        GlobalHydra.instance().clear()
