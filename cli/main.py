"""``poolbench`` commands. Each one translates arguments, calls the library and turns a
:class:`PoolbenchError` into one line on stderr and exit code 2.

Nothing here imports torch, pandas or Hydra at module level: ``poolbench --help`` and shell
completion load this module only (a test keeps it so); each command imports what it needs.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from poolbench.cli import tables
from poolbench.core import defaults
from poolbench.core.errors import ConfigError, PoolbenchError


class _FlagsAsFlags:
    """Help shows a boolean flag as ``--debug``, not ``--debug <bool>`` (typer prints every
    option's type, a flag's too, unless it has a metavar; an empty one prints nothing)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Group(_FlagsAsFlags, TyperGroup):
    pass


class Command(_FlagsAsFlags, TyperCommand):
    pass


app = typer.Typer(
    cls=Group,
    help="poolbench: which pooling layer should my CNN use? Train, measure, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def output_width() -> int | None:
    """The width tables and prose fit: a terminal's own (None: rich asks it), else ``COLUMNS``
    where set, else no limit (a pipe is read by programs and pagers, which must get whole
    lines, not a table cut to 80 columns)."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else UNLIMITED


UNLIMITED = 10_000  # columns: wider than any table or sentence poolbench prints
console = Console(width=output_width())
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED_RUNS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def one_line_errors(fn: F) -> F:
    """Turn PoolbenchError into ``error: <message>`` and exit 2 (``--debug`` keeps the trace)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PoolbenchError as err:
            if kwargs.get("debug"):
                raise
            # escaped: a message may hold brackets (pip install 'poolbench[mlflow]')
            err_console.print(
                f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from poolbench import __version__

        console.print(f"poolbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


class CfgKind(str, Enum):
    job = "job"
    hydra = "hydra"
    all = "all"


# Hydra's --info takes an optional KIND, which typer's options cannot: the flag is declared and
# its KIND found among the overrides (a bare word, which no override is).
INFO_KINDS = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


@app.command(
    cls=Command,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Train and measure: one run, or a sweep with -m (no arguments: the quick comparison).",
)
@one_line_errors
def run(
    overrides: list[str] = typer.Argument(
        None, help="Hydra overrides, e.g. pool=avg model=vgg train.epochs=3 seed=1"
    ),
    multirun: bool = typer.Option(
        False, "-m", "--multirun", help="Sweep over comma-separated values (pool=max,avg)."
    ),
    cfg: CfgKind | None = typer.Option(
        None, "--cfg", "-c", help="Print the composed config (job, hydra or all) and exit."
    ),
    resolve: bool = typer.Option(False, "--resolve", help="With --cfg: resolve interpolations."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Compose and check every run (data, shapes, parameters), list them, train nothing.",
    ),
    info: bool = typer.Option(
        False,
        "--info",
        help="Hydra's information about the composed config, then exit: --info [KIND], KIND "
        f"one of {', '.join(INFO_KINDS)} (default all).",
    ),
    hydra_help: bool = typer.Option(
        False, "--hydra-help", help="Hydra's own help (its flags and override syntax)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks."),
) -> None:
    from poolbench.sweep.launch import launch
    from poolbench.sweep.outcome import run_plan
    from poolbench.sweep.plan import plan

    overrides = list(overrides or [])
    if hydra_help or info:  # Hydra's own output; it reports its own errors
        kinds = [o for o in overrides if o in INFO_KINDS]
        overrides = [o for o in overrides if o not in INFO_KINDS]
        flags = ["--hydra-help"] if hydra_help else ["--info", *kinds[:1]]
        launch(overrides, multirun, flags)
        return
    if not overrides and not multirun and cfg is None:
        overrides = ["experiment=quick"]
    the_plan = plan(overrides, multirun, collect=dry_run)
    if dry_run:
        failures = tables.print_dry_run(console, the_plan)
        for line in failures:
            err_console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT if failures else 0)
    if cfg is not None:
        launch(overrides, False, ["--cfg", cfg.value, *(["--resolve"] if resolve else [])])
        return
    if the_plan.multirun:
        what = tables.sweep_size(the_plan)
        console.print(
            f"poolbench: {what if the_plan.race else 'sweep of ' + what}", highlight=False
        )
    try:
        outcome = run_plan(the_plan, overrides)
    except SystemExit as exc:  # Hydra reports its own errors and exits
        raise typer.Exit(exc.code if isinstance(exc.code, int) else 1) from None
    except KeyboardInterrupt:
        from poolbench.sweep.outcome import interrupted

        err_console.print(interrupted(the_plan), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if tables.print_outcome(console, outcome, the_plan):
        raise typer.Exit(EXIT_FAILED_RUNS)


class ReportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


@app.command(
    cls=Command,
    help="Collect run records: per-run table, summary over seeds (mean, std, n, 95% CI, "
    "tested against the best), pivot and ranking tables (CSV, Markdown, LaTeX), figures (PNG, "
    "PDF) and, with --html, one HTML page.",
)
@one_line_errors
def report(
    sources: list[Path] = typer.Argument(
        None,
        help="Record sources: directories holding result.json files, sweep directories "
        "(results/sweeps/<time>/), or files listing run directories, names or ids.",
    ),
    output: Path = typer.Option(
        Path("results/report.csv"), "-o", "--output", help="Per-run table; the rest goes beside it."
    ),
    fmt: ReportFormat = typer.Option(
        ReportFormat.csv, "--format", help="Per-run table as csv or parquet (needs pyarrow)."
    ),
    pivot: str = typer.Option(
        f"{defaults.COMPARE_BY},model",
        "--pivot",
        help="ROWS,COLUMNS of the pivot table: any config key or label (pool,train.lr). "
        "ROWS is also what the significance tests compare.",
    ),
    metric: str = typer.Option(
        defaults.METRIC, "--metric", help="Metric of the pivot, ranking and significance tests."
    ),
    alpha: float = typer.Option(
        defaults.ALPHA, "--alpha", help="Significance level of the tests against the best (Holm)."
    ),
    delta: float | None = typer.Option(
        None,
        "--delta",
        help=f"Equivalence margin in the metric's units (default {defaults.DELTA:g} for "
        "accuracies; 0: none).",
    ),
    plots: bool = typer.Option(
        True, "--plots/--no-plots", help="Write the figures (PNG, and PDF for a paper)."
    ),
    html: bool = typer.Option(
        False,
        "--html",
        help="Also write one self-contained HTML page (OUTPUT with .html): conclusions, "
        "sortable summary, figures, environment, links to the records.",
    ),
    tags: list[str] = typer.Option(
        None, "--tag", help="Only the runs with this tag (+tags=[...]); repeat for several."
    ),
    compare: bool = typer.Option(
        False,
        "--compare",
        help="--compare A B: pair the groups of two record sources A and B that agree in all "
        "but what tells A from B, and show B - A.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks."),
) -> None:
    from poolbench import report as rp

    sources = list(sources or [])
    if compare:
        if html:
            raise ConfigError("--html writes a report's page; --compare writes a comparison only")
        if len(sources) != 2:
            given = ", ".join(map(str, sources)) or "none"
            raise ConfigError(f"expected --compare A B (two record sources), got {given}")
        a, b = (rp.with_tags(rp.load_nonempty([s]), tags or []) for s in sources)
        comparison = rp.compare(a, b, metric, alpha)
        path = rp.write_compare(comparison, output)
        tables.print_compare(console, comparison, *sources)
        for note in [*a.attrs.get("notes", []), *b.attrs.get("notes", [])]:
            console.print(note, highlight=False, markup=False)
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
        return
    df = rp.with_tags(rp.load_nonempty(sources or [Path("results")]), tags or [])
    written = rp.write_report(
        df, output, fmt.value, rp.parse_pivot(pivot), metric, plots, alpha, delta, html
    )
    tables.print_summary(console, written.summary, written.significance)
    for note in written.notes:
        console.print(note, highlight=False, markup=False)
    console.print("wrote " + ", ".join(str(p) for p in written.paths), highlight=False)


@app.command(
    "time",
    cls=Command,
    help="Time the models of existing runs in one process, interleaved (comparable latency), "
    "and write the figures into their records.",
)
@one_line_errors
def time_(
    sources: list[Path] = typer.Argument(
        None, help="Run records: directories, sweep directories or run lists (default results/)."
    ),
    batch: int = typer.Option(
        defaults.TIME_BATCH, "--batch", help="Images per timed forward pass."
    ),
    repeats: int = typer.Option(
        defaults.TIME_REPEATS, "--repeats", help="Rounds; each times every config once."
    ),
    warmup: int = typer.Option(
        defaults.TIME_WARMUP, "--warmup", help="Untimed calls per config first."
    ),
    factory: list[str] = typer.Option(
        None,
        "--factory",
        help="A custom model's model.factory (package.module:function) that may be imported to "
        "rebuild it; records name code, which runs only when named here. Repeatable.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks."),
) -> None:
    from poolbench.core.checks import check_int
    from poolbench.report.records import find_records
    from poolbench.run.timing import time_records

    for key, value, minimum in (
        ("--batch", batch, 1),
        ("--repeats", repeats, 1),
        ("--warmup", warmup, 0),
    ):
        check_int(key, value, minimum)
    paths = find_records(sources or [Path("results")])
    outcome = time_records(paths, batch, repeats, warmup, factories=factory or ())
    tables.print_timings(console, outcome, batch, repeats)


class ListWhat(str, Enum):
    pools = "pools"
    heads = "heads"
    models = "models"
    datasets = "datasets"
    loggers = "loggers"


@app.command(
    "list",
    cls=Command,
    help="List what can be named in a config: pools, heads, models, datasets, loggers.",
)
@one_line_errors
def list_(
    # a plain string, checked here: Typer would answer a wrong choice with a boxed usage error
    what: str | None = typer.Argument(None, help="pools, heads, models, datasets or loggers"),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks."),
) -> None:
    kinds = [k.value for k in ListWhat]
    if what is not None and what not in kinds:
        raise ConfigError(f"unknown list '{what}'; available: {', '.join(kinds)}")
    for kind in [what] if what else kinds:
        tables.print_registry(console, kind)


@app.command(
    cls=Command, help="Time pooling layers (forward, forward+backward) against native max_pool2d."
)
@one_line_errors
def bench(
    pools: str | None = typer.Option(
        None, "--pools", help="Comma-separated pool names (default: every local pool)."
    ),
    shape: str = typer.Option("64,128,32,32", "--shape", help="Input shape N,C,H,W."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 or bf16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    threads: int | None = typer.Option(None, "--threads", help="torch threads (default: all)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed calls per layer and mode."),
    repeats: int = typer.Option(10, "--repeats", help="Timed rounds (interleaved)."),
    allocator: str = typer.Option(
        "keep",
        "--allocator",
        help="keep: reuse freed memory for large tensors (glibc), so page faults do not "
        "swamp the timings; system: the allocator's default.",
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="CSV path (default: results/bench/bench-<conditions>.csv)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks."),
) -> None:
    from poolbench.measure.bench import default_csv_path, make_spec, run_bench, write_csv

    spec = make_spec(pools, shape, dtype, device, threads, warmup, repeats, allocator)
    rows = run_bench(spec)
    tables.print_bench(console, rows)
    path = write_csv(rows, output or default_csv_path(spec))
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()
