"""Rich tables the commands print. Formatting only: the numbers come from the library."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from poolbench.core import metrics
from poolbench.core.defaults import UNSTABLE_TEXT

# Type names only: pandas (~0.5 s), torch (poolbench.sweep: ~1.5 s) are imported by the commands
# that need them, so that `poolbench --help` and shell completion stay fast.
if TYPE_CHECKING:
    import pandas as pd

    from poolbench.report.compare import Comparison
    from poolbench.report.summary import Significance
    from poolbench.sweep.outcome import SweepOutcome
    from poolbench.sweep.plan import Plan


@dataclass
class Column:
    """A column of a table that must fit the terminal: its cells are printed whole, its
    header may wrap at spaces; ``drop`` orders the columns left out when the table is too
    wide (1 first; None: never)."""

    header: str
    cells: list[str] = field(default_factory=list)
    justify: str = "right"
    drop: int | None = None

    @property
    def width(self) -> int:
        """The narrowest it can be: its widest cell, or its header's longest word."""
        words = max((cell_len(w) for w in self.header.split()), default=0)
        return max([words, *(cell_len(c) for c in self.cells)])

    @property
    def natural(self) -> int:
        """The width at which its header takes one line."""
        return max(self.width, cell_len(self.header))


def table_width(columns: list[Column]) -> int:
    """The width of a rich table of ``columns`` at their narrowest: three characters a column
    (a rule and two of padding) and the closing rule."""
    return sum(c.width for c in columns) + 3 * len(columns) + 1


def fit(columns: list[Column], width: int) -> tuple[list[Column], list[Column]]:
    """The columns that fit ``width`` terminal columns with every cell whole (rich's box:
    three characters a column and one), leaving out the droppable ones in their ``drop``
    order; and those left out."""
    kept, left_out = list(columns), []

    while table_width(kept) > width:
        droppable = [c for c in kept if c.drop is not None]
        if not droppable:
            break
        first = min(droppable, key=lambda c: c.drop or 0)
        kept.remove(first)
        left_out.append(first)
    return kept, left_out


def fitted_table(
    console: Console, title: str, columns: list[Column], rows_style: list[str | None]
) -> tuple[Any, str]:
    """A rich table of ``columns`` that fits the console, and the line naming the columns
    left out (empty when none was). Where even the columns that stay are wider than the
    console (many keys vary), each row is a paragraph of every column instead, wrapped at
    words, every number whole."""
    kept, left_out = fit(columns, console.width)
    if table_width(kept) > console.width:  # every column, wrapped
        return _paragraphs(console, title, columns, rows_style), ""
    note = ""
    if left_out:
        names = ", ".join(c.header for c in left_out)
        note = f"left out at {console.width} columns: {names} (a wider terminal shows them)"
    # Widths are set here, not left to rich: its shrinking of a table wider than the console
    # can leave one a column too wide (then cropped). What is spare goes to headers that
    # would otherwise wrap, left to right.
    spare = console.width - table_width(kept)
    table = Table(title=title)
    for c in kept:
        grow = min(spare, c.natural - c.width)
        spare -= grow
        table.add_column(c.header, justify=c.justify, width=c.width + grow, overflow="fold")
    for i, style in enumerate(rows_style):
        table.add_row(*(c.cells[i] for c in kept), style=style)
    return table, note


def add_row(columns: list[Column], cells: list[str]) -> None:
    for column, cell in zip(columns, cells, strict=True):
        column.cells.append(cell)


def print_fitted(
    console: Console, title: str, columns: list[Column], styles: list[str | None], where: str
) -> None:
    """:func:`fitted_table`, printed, with the line naming what it left out and ``where`` it
    is."""
    table, note = fitted_table(console, title, columns, styles)
    console.print(table)
    if note:
        console.print(f"{note}; {where}", highlight=False)


def _paragraphs(
    console: Console, title: str, columns: list[Column], rows_style: list[str | None]
) -> Any:
    """The rows of a table too wide for the console, one paragraph each: the keys (the
    left-justified columns) as ``key=value``, then ``header value`` of every other column."""
    from rich.console import Group
    from rich.text import Text

    width = max(20, console.width)
    keys = [c for c in columns if c.justify == "left"]
    values = [c for c in columns if c.justify != "left"]
    lines = [Text(line) for line in textwrap.wrap(title, width)]
    for i, style in enumerate(rows_style):
        head = " ".join(f"{c.header}={c.cells[i]}" for c in keys)
        body = "; ".join(f"{c.header} {c.cells[i]}" for c in values)
        wrapped = textwrap.wrap(
            f"{head}: {body}",
            width,
            subsequent_indent="    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines += [Text(line, style=style or "") for line in wrapped]
    return Group(*lines)


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def sweep_size(plan: Plan) -> str:
    """``6 runs``; ``20 jobs the sweeper picks as it goes`` (Optuna); a race's configurations
    and seed schedule."""
    if plan.race is not None:
        n = plan.configurations
        return f"a race of {n} configuration{'s' * (n != 1)}: {plan.race.schedule(n)}"
    n = plan.size
    if plan.expanded:
        return f"{n} run{'s' * (n != 1)}"
    count = "" if n is None else f"{n} "
    return f"{count}job{'s' * (n != 1)} the sweeper picks as it goes"


def print_outcome(console: Console, outcome: SweepOutcome, plan: Plan) -> int:
    """One line for a single run; for a sweep a table, its CSV and the counts. Returns the
    number of runs that failed (or left no record)."""
    records, failed = outcome.records, outcome.failed
    if not plan.multirun:
        r = records[0]
        run_dir = plan.run_dir(plan.runs[0])
        if r["run_name"] in outcome.elsewhere:
            note = " (trained by another process while this one waited)"
        else:
            note = " (already ok: skipped; rerun=true runs it again)" * bool(outcome.skipped)
        if r.get("status") == "ok":
            console.print(
                f"{r['run_name']}: test_acc {r['test_acc']:.4f}, latency {r['latency_ms']:.2f} ms "
                f"(batch {r['latency_batch']}), {r['params']:,} params, "
                f"{r['train_time_s']:.1f} s training -> {run_dir}{note}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(
                f"[red]{r['run_name']} {r['status']}:[/red] {r.get('error')}{note}"
                f"{_log_hint(r, run_dir)}",
                highlight=False,
                soft_wrap=True,
            )
        return len(failed)

    print_sweep_summary(console, outcome)
    for note in outcome.notes:  # they quote what jobs returned: no markup
        console.print(note, highlight=False, markup=False)
    if outcome.timing:
        console.print(outcome.timing, highlight=False)
    ok = len(records) - len(failed)
    elsewhere = len(outcome.elsewhere)
    by_others = f", {elsewhere} trained by another process meanwhile" if elsewhere else ""
    console.print(
        f"{ok} ok, {len(failed)} failed ({len(outcome.ran)} ran, "
        f"{len(outcome.skipped)} skipped: already ok{by_others})",
        highlight=False,
    )
    # a path on a line of its own, never cut (a terminal narrower than it wraps it)
    console.print(f"table: {outcome.table}", highlight=False, soft_wrap=True)
    if outcome.page is not None:
        console.print(f"page: {outcome.page}", highlight=False, soft_wrap=True)
    for r in failed:
        epoch = f" (epoch {r['failed_epoch']})" if r.get("failed_epoch") else ""
        run_dir = plan.results_dir / "runs" / str(r.get("run_name"))
        console.print(
            f"[red]{r.get('status')}[/red] {r['run_name']}{epoch}: {r.get('error')}"
            f"{_log_hint(r, run_dir)}",
            highlight=False,
            soft_wrap=True,
        )
    return len(failed)


def _log_hint(record: dict[str, Any], run_dir: Path) -> str:
    """Where a failed run's log is (a traceback, when the error is not one of poolbench's)."""
    log = run_dir / "poolbench.log"
    return f" (log: {log})" if record.get("status") == "failed" and log.is_file() else ""


def print_sweep_summary(console: Console, outcome: SweepOutcome) -> None:
    """A sweep's closing table: one row per configuration over its seeds (mean ± 95% interval,
    tied with the best or not, shift consistency, comparable latency, parameters, FLOPs), the
    statement of the test, and the sentences the statistics support."""
    from poolbench.report.keys import key_text

    found = outcome.closing()
    if found is None:
        return
    summary, keys, latency = found.summary, found.keys, found.latency
    # left out first when the terminal is narrow (the CSV holds every column)
    specs = [
        ("test_acc", "test_acc ± ci95", None),
        ("verdict", "verdict", None),
        ("shift_consistency", "shift cons.", 3),
        (latency, "ms" if latency == "latency_ms" else "ms (interleaved)", 4),
        ("params", "params", 2),
        ("flops", "MFLOPs", 1),
    ]
    specs = [(m, h, d) for m, h, d in specs if m == "verdict" or f"{m}_mean" in summary]
    columns = [Column(c, justify="left") for c in keys]
    columns += [Column(header, drop=drop) for _, header, drop in specs]
    columns.append(Column("n"))
    styles: list[str | None] = []
    for (_, row), verdict in zip(summary.iterrows(), found.verdicts, strict=True):
        cells = [key_text(row[c]) for c in keys]
        for name, _, _ in specs:
            if name == "verdict":
                cells.append(VERDICTS.get(verdict, verdict) or "-")
                continue
            info = metrics.get(name)
            value = row.get(f"{name}_mean")
            if name == "flops":
                cells.append(_fmt(None if value is None else value / 1e6, ".1f"))
            elif name == "test_acc":
                half = row.get("test_acc_ci95")
                text = _fmt(value, info.fmt)
                cells.append(text if half is None or math.isnan(half) else f"{text} ± {half:.4f}")
            elif name.startswith("latency"):
                flag = " !" if row.get("latency_unstable") is True else ""
                cells.append(_fmt(value, ".2f") + flag)
            else:
                cells.append(_fmt(value, info.fmt))
        failed = f" ({row['failed']} failed)" if row["failed"] else ""
        cells.append(f"{row['n']}{failed}")
        add_row(columns, cells)
        styles.append("bold" if verdict in ("best", "equivalent") else None)
    title = (
        f"poolbench sweep: {len(outcome.records)} runs in {outcome.seconds:.0f} s, mean over "
        f"seeds (ci95: 95% t-interval half-width)"
    )
    print_fitted(console, title, columns, styles, f"all in {outcome.table}")
    console.print(found.legend, highlight=False)
    if latency == "latency_ms":
        console.print(
            "latency: each run's own timing (not every config was timed interleaved in one "
            "session: latency_interleaved=false, or `poolbench time` them): not comparable on a "
            "busy machine",
            highlight=False,
        )
    elif "latency_unstable" in summary and summary["latency_unstable"].eq(True).any():
        console.print(f"!: {UNSTABLE_TEXT}", highlight=False)
    for sentence in found.sentences:
        console.print(sentence, highlight=False)


# A verdict as the tables print it.
VERDICTS = {"equivalent": "equiv.", "eliminated": "elim.", "undecided": "undecided"}


def _mean_ci(row: Any, metric: metrics.Metric) -> str:
    text = _fmt(row.get(f"{metric.name}_mean"), metric.fmt)
    half = row.get(f"{metric.name}_ci95")
    if half is not None and not (isinstance(half, float) and math.isnan(half)):
        text += f" ± {metric.format(half)}"
    return text


def _claim(value: Any) -> str:
    import pandas as pd

    return "-" if value is None or value is pd.NA else ("yes" if value else "no")


def print_summary(console: Console, summary: pd.DataFrame, significance: Significance) -> None:
    """One row per group: the keys that tell groups apart, the tested metric (mean ± 95%
    interval half-width, p against the best, verdict), accuracy, latency, parameters, n and
    failed runs; columns left out, in a documented order, where the terminal is narrow."""
    from poolbench.report.keys import key_text, shown_keys
    from poolbench.report.summary import comparable_latency

    if summary.empty:
        console.print("no runs")
        return
    info = significance.info
    keys = shown_keys(summary, significance.compare_by)
    latency = comparable_latency(summary) or "latency_ms"  # as the figures and the page
    others = [
        metrics.get(m)
        for m in ("test_acc", latency, "params")
        if m != info.name and f"{m}_mean" in summary.columns
    ]
    drops = {"params": 1, latency: 2, "test_acc": 3}
    columns = [Column(c, justify="left") for c in keys]
    columns += [Column(f"{info.name} ± ci95"), Column("p vs best"), Column("verdict")]
    columns += [
        Column(f"{m.name} ± ci95" if m.name == "test_acc" else m.name, drop=drops[m.name])
        for m in others
    ]
    columns.append(Column("n"))
    any_failed = bool(summary["failed"].gt(0).any()) if "failed" in summary else False
    if any_failed:
        columns.append(Column("failed", drop=4))
    styles: list[str | None] = []
    for _, row in summary.iterrows():
        verdict = row.get("verdict") or "no claim"  # n < 2: no test
        cells = [key_text(row[c]) for c in keys]
        cells += [
            _mean_ci(row, info),
            _fmt(row.get("p_vs_best"), ".3g"),
            VERDICTS.get(verdict, verdict),
        ]
        cells += [
            _mean_ci(row, m) if m.name == "test_acc" else _fmt(row.get(f"{m.name}_mean"), m.fmt)
            for m in others
        ]
        cells.append(str(row["n"]))
        if any_failed:
            cells.append(str(row["failed"]))
        add_row(columns, cells)
        styles.append("bold" if verdict in ("best", "equivalent") else None)
    title = (
        f"summary over seeds: {info.name} ({info.direction}), mean ± ci95 (95% t-interval "
        f"half-width)"
    )
    print_fitted(console, title, columns, styles, "the summary CSV holds every column")
    console.print(significance.verdict_legend(summary["n"]), highlight=False)


def print_bench(console: Console, rows: list[Any]) -> None:
    """The ``poolbench bench`` table: one line per layer, forward and forward+backward; on a
    narrow terminal the bandwidths go first, then the ratios (the CSV holds them all)."""
    if not rows:
        return
    first = rows[0]
    title = (
        f"pooling layers at {first.shape} {first.dtype} on {first.device}, "
        f"{first.threads} threads, allocator {first.allocator}, "
        f"median of {first.repeats} (interleaved)"
    )
    columns = [Column("pool", justify="left")]
    drops = {"fwd": (4, 2), "fwd+bwd": (3, 1)}  # (× max, GB/s): left out in this order
    for mode in ("fwd", "fwd+bwd"):
        ratio, gb_s = drops[mode]
        columns += [
            Column(f"{mode} ms ± IQR"),
            Column(f"{mode} × max", drop=ratio),
            Column(f"{mode} GB/s", drop=gb_s),
        ]
    by_pool: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_pool.setdefault(r.pool, {})[r.mode] = r
    for pool, modes in by_pool.items():
        cells = [pool]
        for mode in ("fwd", "fwd+bwd"):
            r = modes[mode]
            cells += [f"{r.median_ms:.2f} ± {r.iqr_ms:.2f}", f"{r.ratio:.2f}", f"{r.gb_s:.2f}"]
        add_row(columns, cells)
    print_fitted(console, title, columns, [None] * len(by_pool), "the CSV holds every column")


def print_compare(console: Console, comparison: Comparison, a: Path, b: Path) -> None:
    """The matched pairs (B - A, p, differs), then every group that has no partner."""
    from poolbench.report.compare import compare_legend
    from poolbench.report.keys import key_text, row_labels

    info = metrics.get(comparison.metric)
    diff = comparison.table
    matched = diff[diff["pair"] == "matched"]
    told = [f"{k}_{side}" for k in comparison.distinguishing for side in ("a", "b")]
    columns = [Column(c, justify="left") for c in (*comparison.keys, *told)]
    # on a narrow terminal the counts go first, then the two means (B - A and p stay)
    for c, drop in (("A", 4), ("B", 3), ("B - A", None), ("p", None), ("differs", None)):
        columns.append(Column(c, drop=drop))
    columns += [Column("n A", drop=1), Column("n B", drop=2)]
    for _, row in matched.iterrows():
        add_row(
            columns,
            [
                *(key_text(row[c]) for c in (*comparison.keys, *told)),
                _fmt(row[f"{info.name}_mean_a"], info.fmt),
                _fmt(row[f"{info.name}_mean_b"], info.fmt),
                _fmt(row[f"{info.name}_diff"], "+" + info.fmt),
                _fmt(row["p"], ".3g"),
                _claim(row["differs"]),
                _fmt(row["n_a"], ".0f"),
                _fmt(row["n_b"], ".0f"),
            ],
        )
    title = f"{info.name}: B - A (A = {a}, B = {b})"
    print_fitted(console, title, columns, [None] * len(matched), "the comparison CSV holds all")
    console.print(compare_legend(comparison), highlight=False)
    for side, suffix in (("A", "a"), ("B", "b")):
        alone = diff[diff["pair"] == f"only in {side}"]
        if not alone.empty:
            keys = [*comparison.keys, *(f"{k}_{suffix}" for k in comparison.distinguishing)]
            console.print(
                f"only in {side} ({len(alone)}, no group of {'B' if side == 'A' else 'A'} "
                f"to pair with): " + "; ".join(row_labels(alone, keys)),
                highlight=False,
                soft_wrap=True,
            )


def print_registry(console: Console, what: str) -> None:
    from poolbench.data import DATASETS
    from poolbench.engine.loggers import LOGGERS
    from poolbench.models.registry import MODELS
    from poolbench.pooling import POOLS

    if what in ("pools", "heads"):
        kind = "local" if what == "pools" else "global"
        entries = [e for e in POOLS.entries() if e.meta["kind"] == kind]
        title = f"{what} ({'pool=' if kind == 'local' else 'head='}<name>)"
        table = Table(title=title)
        for c in ("name", "parameters", "learnable", "paper", "description"):
            table.add_column(c, overflow="fold")
        for e in entries:
            table.add_row(
                e.name,
                ", ".join(map(str, e.params)),
                "yes" if e.meta.get("learnable") else "no",
                e.meta.get("paper", ""),
                e.description,
            )
    else:
        registry = {"models": MODELS, "datasets": DATASETS, "loggers": LOGGERS}[what]
        key = {"models": "model", "datasets": "data", "loggers": "logger"}[what]
        table = Table(title=f"{what} ({key}=<name>)")
        columns = ["name", "parameters", "description"]
        if what == "models":
            columns.append("pools and heads it cannot take as they are")
        for c in columns:
            table.add_column(c, overflow="fold")
        for e in registry.entries():
            row = [e.name, ", ".join(map(str, e.params)), e.description]
            if what == "models":
                limits = e.meta.get("limits", {})
                row.append("; ".join(f"{k}: {v}" for k, v in limits.items()) or "-")
            table.add_row(*row)
    console.print(table)


def print_dry_run(console: Console, plan: Plan) -> list[str]:
    """The runs a command line would train, one line each with its pool as built; returns one
    line per run that cannot run (empty: all can)."""
    jobs = plan.jobs
    title = f"dry run: {len(jobs)} run{'s' * (len(jobs) != 1)}, nothing trained"
    if plan.race is not None:
        title = f"dry run: nothing trained ({sweep_size(plan)})"
    elif not plan.expanded:
        title += " (the sweeper picks its jobs as it goes: each is checked when it starts)"
    console.print(title, highlight=False)
    if plan.resources:
        console.print(f"launcher: {plan.resources}", highlight=False, markup=False)
    if plan.on_cluster:
        console.print(
            "computes: as measured on this machine; each node measures its own", highlight=False
        )
    failures = []
    width = len(str(len(jobs)))
    indent = " " * (width + 7)
    for i, job in enumerate(jobs, 1):
        name = job.run.run_name if job.run is not None else " ".join(job.overrides)
        if job.error is None:
            how = f"; computes {job.compute}" if job.compute else ""
            line = f"{i:>{width}} ok    {name}  {job.pool}{how}"
            if len(line) > console.width:  # the pool and the compute below, wrapped at words
                line = "\n".join(
                    [f"{i:>{width}} ok    {name}"]
                    + textwrap.wrap(
                        f"{job.pool}{how}",
                        max(20, console.width - len(indent)),
                        initial_indent=indent,
                        subsequent_indent=indent + "  ",
                        break_on_hyphens=False,
                        break_long_words=False,
                    )
                )
            console.print(line, highlight=False, soft_wrap=True)
        else:
            failures.append(f"run {i} ({' '.join(job.overrides)}): {job.error}")
            console.print(f"{i:>{width}} [red]fails[/red] {name}", highlight=False, soft_wrap=True)
    failed = f", {len(failures)} cannot run" if failures else ""
    console.print(f"{len(jobs) - len(failures)} of {len(jobs)} runs can run{failed}")
    return failures


def print_timings(console: Console, outcome: Any, batch: int, repeats: int) -> None:
    """``poolbench time``: one row per configuration, fastest first."""
    from poolbench.core.host import cpu_text

    title = (
        f"latency, interleaved: batch {batch}, median of {repeats} rounds, one process "
        f"({cpu_text()}; session {outcome.session})"
    )
    columns = [Column("config", justify="left"), Column("ms"), Column("IQR ms", drop=2)]
    columns += [Column("stable", drop=3), Column("runs", drop=1)]
    timings = sorted(outcome.timings, key=lambda t: t.median_ms)
    for t in timings:
        stable = "no !" if t.unstable else "yes"
        add_row(
            columns, [t.label, f"{t.median_ms:.3f}", f"{t.iqr_ms:.3f}", stable, str(len(t.records))]
        )
    print_fitted(console, title, columns, [None] * len(timings), "the records hold every figure")
    if any(t.unstable for t in timings):
        console.print(f"!: {UNSTABLE_TEXT}", highlight=False)
    skipped = f"; {outcome.skipped} records not ok, not timed" if outcome.skipped else ""
    console.print(
        f"wrote latency_interleaved_ms into {sum(len(t.records) for t in outcome.timings)} "
        f"records{skipped}",
        highlight=False,
        soft_wrap=True,
    )
