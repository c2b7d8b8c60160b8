"""Rich tables the commands print. Formatting only: the numbers come from the library."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from poolbench.hydra_app import Plan
from poolbench.record import atomic_write_text
from poolbench.sweep import SweepOutcome

if TYPE_CHECKING:  # pandas costs ~0.5 s to import: only after the runs, not before the first
    import pandas as pd


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def print_outcome(console: Console, outcome: SweepOutcome, plan: Plan) -> int:
    """One line for a single run; for a sweep a table, its CSV and the counts. Returns the
    number of runs that failed (or left no record)."""
    records, failed = outcome.records, outcome.failed
    if not plan.multirun:
        r = records[0]
        if r.get("status") == "ok":
            skipped = " (already ok: skipped; rerun=true runs it again)" * bool(outcome.skipped)
            console.print(
                f"{r['run_name']}: test_acc {r['test_acc']:.4f}, latency {r['latency_ms']:.2f} ms "
                f"(batch {r['latency_batch']}), {r['params']:,} params, "
                f"{r['train_time_s']:.1f} s training -> {plan.run_dir(plan.runs[0])}{skipped}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(f"[red]{r['run_name']} {r['status']}:[/red] {r.get('error')}")
        return len(failed)

    table = Table(title=f"poolbench sweep: {len(records)} runs in {outcome.seconds:.0f} s")
    # Setup columns only where the runs differ (pool always); metrics where any run has them.
    # F, S and p only where they vary within one pool: each pool's defaults are in its config.
    pools = {r.get("pool") for r in records}
    labels = ["pool"] + [
        c for c in ("data", "model", "head", "seed") if len({str(r.get(c)) for r in records}) > 1
    ]
    labels += [
        c for c in ("F", "S", "p") if len({(r.get("pool"), r.get(c)) for r in records}) > len(pools)
    ]
    metrics = [
        (name, spec, scale)
        for name, spec, scale in (
            ("test_acc", ".4f", 1),
            ("shift_consistency", ".3f", 1),
            ("latency_ms", ".2f", 1),
            ("params", ",", 1),
            ("flops", ".1f", 1e-6),
        )
        if any(r.get(name) is not None for r in records)
    ]
    for col in labels:
        table.add_column(col, no_wrap=True)
    for name, _, _ in metrics:
        table.add_column("MFLOPs" if name == "flops" else name, justify="right")
    table.add_column("status")
    for r in sorted(records, key=lambda r: -(r.get("test_acc") or -1)):
        status = r.get("status", "?")
        if status != "ok":
            status = f"[red]{status}[/red]"
        elif r.get("run_name") in outcome.skipped:
            status = "skipped"
        cells = [str(r.get(c)) for c in labels]
        for name, spec, scale in metrics:
            value = r.get(name)
            cells.append(_fmt(value * scale if scale != 1 and value is not None else value, spec))
        table.add_row(*cells, status)
    console.print(table)
    import pandas as pd

    assert outcome.sweep_dir is not None
    csv_path = outcome.sweep_dir / "summary.csv"
    atomic_write_text(csv_path, pd.json_normalize(records).to_csv(index=False))
    ok = len(records) - len(failed)
    summary = (
        f"{ok} ok, {len(failed)} failed ({ok - len(outcome.skipped)} ran, "
        f"{len(outcome.skipped)} skipped: already ok); table: {csv_path}"
    )
    console.print(summary, highlight=False, soft_wrap=True)
    for r in failed:
        epoch = f" (epoch {r['failed_epoch']})" if r.get("failed_epoch") else ""
        console.print(
            f"[red]{r.get('status')}[/red] {r['run_name']}{epoch}: {r.get('error')}",
            highlight=False,
            soft_wrap=True,
        )
    return len(failed)


def print_summary(console: Console, summary: pd.DataFrame) -> None:
    if summary.empty:
        console.print("no runs")
        return
    table = Table(title="summary over seeds (mean ± std, n; ci95: t-interval half-width)")
    cols = [c for c in ("data", "model", "pool", "head") if c in summary.columns]
    for c in cols:
        table.add_column(c)
    for c in ("test_acc", "ci95", "latency_ms", "params", "n", "failed"):
        table.add_column(c, justify="right")
    for _, row in summary.iterrows():
        acc = _fmt(row.get("test_acc_mean"), ".4f")
        if not math.isnan(row.get("test_acc_std", math.nan)):
            acc += f" ± {row['test_acc_std']:.4f}"
        table.add_row(
            *(str(row[c]) for c in cols),
            acc,
            _fmt(row.get("test_acc_ci95"), ".4f"),
            _fmt(row.get("latency_ms_mean"), ".2f"),
            _fmt(row.get("params_mean"), ",.0f"),
            str(row["n"]),
            str(row["failed"]),
        )
    console.print(table)


def print_bench(console: Console, rows: list[Any]) -> None:
    """The ``poolbench bench`` table: one line per layer, forward and forward+backward."""
    if not rows:
        return
    first = rows[0]
    table = Table(
        title=f"pooling layers at {first.shape} {first.dtype} on {first.device}, "
        f"{first.threads} threads, allocator {first.allocator}, "
        f"median of {first.repeats} (interleaved)"
    )
    table.add_column("pool")
    for mode in ("fwd", "fwd+bwd"):
        table.add_column(f"{mode} ms ± IQR", justify="right")
        table.add_column(f"{mode} × max", justify="right")
        table.add_column(f"{mode} GB/s", justify="right")
    by_pool: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_pool.setdefault(r.pool, {})[r.mode] = r
    for pool, modes in by_pool.items():
        cells = []
        for mode in ("fwd", "fwd+bwd"):
            r = modes[mode]
            cells += [f"{r.median_ms:.2f} ± {r.iqr_ms:.2f}", f"{r.ratio:.2f}", f"{r.gb_s:.2f}"]
        table.add_row(pool, *cells)
    console.print(table)


def print_compare(console: Console, diff: pd.DataFrame, metric: str, a: Path, b: Path) -> None:
    table = Table(title=f"{metric}: B - A (A = {a}, B = {b})")
    keys = [c for c in ("data", "model", "pool", "head") if c in diff.columns]
    for c in keys:
        table.add_column(c)
    for c in ("A", "B", "B - A", "n A", "n B"):
        table.add_column(c, justify="right")
    for _, row in diff.iterrows():
        table.add_row(
            *(str(row[c]) for c in keys),
            _fmt(row[f"{metric}_mean_a"], ".4f"),
            _fmt(row[f"{metric}_mean_b"], ".4f"),
            _fmt(row[f"{metric}_diff"], "+.4f"),
            _fmt(row["n_a"], ".0f"),
            _fmt(row["n_b"], ".0f"),
        )
    console.print(table)


def print_registry(console: Console, what: str) -> None:
    from poolbench.data import DATASETS
    from poolbench.models import MODELS
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
        registry = MODELS if what == "models" else DATASETS
        table = Table(title=f"{what} ({'model' if what == 'models' else 'data'}=<name>)")
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
    if not plan.expanded:
        title += " (the sweeper picks its jobs as it goes: each is checked when it starts)"
    console.print(title, highlight=False)
    failures = []
    width = len(str(len(jobs)))
    for i, job in enumerate(jobs, 1):
        name = job.run.run_name if job.run is not None else " ".join(job.overrides)
        if job.error is None:
            console.print(f"{i:>{width}} ok    {name}  {job.pool}", highlight=False, soft_wrap=True)
        else:
            failures.append(f"run {i} ({' '.join(job.overrides)}): {job.error}")
            console.print(f"{i:>{width}} [red]fails[/red] {name}", highlight=False, soft_wrap=True)
    failed = f", {len(failures)} cannot run" if failures else ""
    console.print(f"{len(jobs) - len(failures)} of {len(jobs)} runs can run{failed}")
    return failures
