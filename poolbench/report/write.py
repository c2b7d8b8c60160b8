"""Every report file at once (``poolbench report``): runs, summary, pivot, ranking and the
figures; the only module that imports :mod:`poolbench.report.plots`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from poolbench.core import defaults
from poolbench.core.errors import ConfigError
from poolbench.core.storage import atomic_write_text
from poolbench.report.keys import resolve_key, row_labels, shown_keys, valid_keys
from poolbench.report.summary import (
    Significance,
    summarize,
)
from poolbench.report.tables import pivot, ranking, summary_markdown, table_text, write_runs


@dataclass
class Written:
    """What :func:`write_report` wrote, and what the command should tell (what it did not
    write and why, what a figure left out)."""

    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    significance: Significance = field(default_factory=Significance)


def write_report(
    df: pd.DataFrame,
    out: Path,
    fmt: str = "csv",
    pivot_on: tuple[str, str] = ("pool", "model"),
    metric: str = defaults.METRIC,
    plots: bool = True,
    alpha: float = defaults.ALPHA,
    delta: float | None = None,
    html: bool = False,
) -> Written:
    """Every report file, named after ``out`` (default ``results/report.csv``):

    - ``report.csv`` (or ``.parquet``): one row per run;
    - ``report_summary.csv``/``.md``: grouped over seeds, tested against the best;
    - ``report_pivot_<metric>.csv``/``.md``/``.tex``: ``pivot_on[0]`` x ``pivot_on[1]``;
    - ``report_ranking_<metric>.csv``/``.md``/``.tex``: rows by mean rank, ties with the best
      in bold;
    - the figures of :func:`poolbench.report.plots.write_plots` (PNG and PDF);
    - with ``html``, ``report.html``: the whole comparison on one page
      (:mod:`poolbench.report.html`), its figures inline.

    ``pivot_on[0]`` is also what the significance tests compare (see :class:`Significance`).
    """
    out = Path(out)
    available = valid_keys(df)
    rows, columns = (resolve_key(k, available) for k in pivot_on)
    if rows == columns:
        raise ConfigError(f"expected --pivot ROWS,COLUMNS to name two keys, got {rows} twice")
    significance = Significance(metric, alpha, rows, delta)
    summary = summarize(df, significance, keys=(rows, columns))
    written = Written(
        [write_runs(df, out, fmt)], list(df.attrs.get("notes", [])), summary, significance
    )

    def write(suffix: str, text: str) -> None:
        path = out.with_name(f"{out.stem}_{suffix}")
        atomic_write_text(path, text)
        written.paths.append(path)

    write("summary.csv", summary.to_csv(index=False))
    write("summary.md", summary_markdown(summary, significance))
    if summary.empty or summary["n"].sum() == 0:
        written.notes.append("no ok run: no pivot, ranking or plots")
        if html:
            write_html_page(df, summary, significance, out.with_suffix(".html"), written)
        return written
    table = pivot(summary, metric, rows, columns)
    write(f"pivot_{metric}.csv", table.mean.to_csv())
    write(f"pivot_{metric}.md", table_text(table, "markdown", significance))
    write(f"pivot_{metric}.tex", table_text(table, "latex", significance, name=f"pivot-{metric}"))
    by_setting, ranks = ranking(summary, significance)
    write(f"ranking_{metric}.csv", ranks.to_csv())
    for style, suffix in (("markdown", "md"), ("latex", "tex")):
        text = table_text(
            by_setting, style, significance, ranks["mean_rank"], name=f"ranking-{metric}"
        )
        write(f"ranking_{metric}.{suffix}", text)
    svg: dict[str, str] | None = {} if html else None
    if plots or html:
        from poolbench.report.plots import write_plots

        paths, notes = write_plots(summary, out if plots else None, significance, df, svg)
        written.paths += paths
        written.notes += notes
    if html:
        write_html_page(df, summary, significance, out.with_suffix(".html"), written, svg)
    return written


def write_html_page(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    significance: Significance,
    page: Path,
    written: Written,
    figures: dict[str, str] | None = None,
    sentences: list[str] | None = None,
    legend: str | None = None,
    title: str = "poolbench report",
) -> Path:
    """The HTML page of :mod:`poolbench.report.html` at ``page``, added to ``written``:
    ``figures`` (SVG text by name) are drawn here when not given; ``sentences`` and
    ``legend`` default to the tests' own (a race passes its decisions)."""
    from poolbench.report.conclusions import conclusions
    from poolbench.report.html import render_html

    if figures is None:
        from poolbench.report.plots import write_plots

        figures = {}
        _, notes = write_plots(summary, None, significance, df, figures)
        written.notes += notes

    if sentences is None:  # about test accuracy: the tested metric's margin is not its own
        accuracy = significance.delta if significance.metric == "test_acc" else None
        sentences = conclusions(df, significance.alpha, significance.compare_by, accuracy)
        if significance.metric != "test_acc" and not summary.empty:
            sentences = [tested_sentence(summary, significance), *sentences]
    if legend is None:
        legend = significance.verdict_legend(summary["n"]) if not summary.empty else ""
    notes = [n for n in written.notes if not n.startswith("wrote")]
    text = render_html(
        df, summary, significance, page, sentences, figures or {}, notes, legend, title
    )
    atomic_write_text(page, text)
    written.paths.append(page)
    return page


def tested_sentence(summary: pd.DataFrame, significance: Significance) -> str:
    """What the tests of a metric other than test accuracy decided, in one sentence."""
    labels = row_labels(summary, shown_keys(summary, significance.compare_by))
    by_verdict: dict[str, list[str]] = {}
    for label, verdict in zip(labels, summary["verdict"].fillna(""), strict=True):
        by_verdict.setdefault(str(verdict) or "no claim", []).append(label)
    info = significance.info
    best = ", ".join(by_verdict.pop("best", ["none"]))
    parts = [f"{info.name} ({info.direction}): best {best}"]
    names = {"equivalent": "equivalent", "worse": "significantly worse", "undecided": "undecided"}
    parts += [f"{text}: {', '.join(by_verdict[v])}" for v, text in names.items() if v in by_verdict]
    if "no claim" in by_verdict:
        parts.append(f"one seed, no claim: {', '.join(by_verdict['no claim'])}")
    return "; ".join(parts) + "."
