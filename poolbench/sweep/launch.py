"""Hand a command line to Hydra's own run and multirun machinery, so that every sweeper
(``hydra/sweeper=optuna``, ``race``) and launcher plugin (``joblib``, ``submitit_slurm``) works
unchanged.
"""

from __future__ import annotations

from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.core.global_hydra import GlobalHydra

from poolbench.core.paths import CONFIG_NAME, config_dir
from poolbench.sweep.task import task


def launch(overrides: list[str], multirun: bool, extra_args: list[str] | None = None) -> None:
    """Run ``overrides`` (with Hydra's flags ``extra_args``: ``--cfg job``, ``--info``) as
    ``@hydra.main`` would run them from a command line, without touching ``sys.argv``."""
    import hydra

    hydra.version.setbase("1.3")  # else Hydra would chdir into each run's directory
    argv = [*overrides, *(["--multirun"] if multirun else []), *(extra_args or [])]
    parser = get_args_parser()
    try:
        _run_hydra(
            args=parser.parse_args(argv),
            args_parser=parser,
            task_function=task,
            config_path=str(config_dir()),
            config_name=CONFIG_NAME,
        )
    finally:
        GlobalHydra.instance().clear()
