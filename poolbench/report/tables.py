"""Tables for papers: the summary as Markdown, the runs as CSV or Parquet, and the pivot and
ranking of one metric (CSV, Markdown, LaTeX) with their legends.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poolbench.core import defaults, metrics
from poolbench.core.errors import ConfigError
from poolbench.core.storage import atomic_write_text
from poolbench.report.keys import (
    MISSING,
    config_key,
    key_text,
    resolve_key,
    shown_keys,
    subtree,
    summary_keys,
    unique_index,
    varying_keys,
)
from poolbench.report.significance import BEST, EQUIVALENT, WORSE
from poolbench.report.summary import Significance

FORMATS = ("csv", "parquet")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    return (
        df.astype({c: object for c in df.columns})
        .fillna("")
        .to_markdown(index=False, floatfmt=floatfmt)
        + "\n"
    )


# What a reader compares in the Markdown summary, after the keys that tell groups apart (the
# CSV keeps every column): the tested metric's columns come first.
READER_METRICS = ("test_acc", "shift_consistency", "latency_interleaved_ms", "latency_ms")
READER_COSTS = ("params", "flops")


def summary_columns(summary: pd.DataFrame, significance: Significance) -> list[str]:
    """The columns of the Markdown summary, in order."""
    keys = shown_keys(summary, significance.compare_by)
    tested = significance.metric
    columns = [*keys, f"{tested}_mean", f"{tested}_ci95", "p_vs_best", "verdict"]
    for name in READER_METRICS:
        if name != tested:
            columns += [f"{name}_mean", f"{name}_ci95"]
    columns += [f"{name}_mean" for name in READER_COSTS] + ["n", "failed"]
    shown = [c for c in dict.fromkeys(columns) if c in summary.columns]
    # a metric no group has (in-run latency in a sweep timed interleaved) is left out
    return [
        c
        for c in shown
        if c in keys or not c.endswith(("_mean", "_ci95")) or summary[c].notna().any()
    ]


def summary_markdown(summary: pd.DataFrame, significance: Significance) -> str:
    """The summary as a Markdown table of the columns a reader compares
    (:func:`summary_columns`), with the sentence that explains the verdicts."""
    if summary.empty:
        return "no runs\n"
    shown = summary[summary_columns(summary, significance)]
    return (
        to_markdown(shown)
        + "\n"
        + significance.verdict_legend(summary["n"])
        + "; ci95: half-width of the 95% t-interval of the mean; every column in the CSV\n"
    )


def write_runs(df: pd.DataFrame, out: Path, fmt: str = "csv") -> Path:
    """One row per run as CSV, or as Parquet (needs pyarrow) with ``fmt="parquet"``."""
    if fmt not in FORMATS:
        raise ConfigError(f"expected format to be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if fmt == "csv":
        atomic_write_text(out, df.to_csv(index=False))
        return out
    if importlib.util.find_spec("pyarrow") is None:
        raise ConfigError("--format parquet needs pyarrow: pip install pyarrow (or use csv)")
    path = out.with_suffix(".parquet")
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


@dataclass
class Pivot:
    """``metric`` of each group, ``rows`` down (with the keys needed to tell rows apart) and
    ``columns`` across: ``mean``, ``std``, ``ci95`` (the 95% t-interval's half-width), ``n``
    and ``verdict`` (the summary's: best, equivalent, undecided, worse; empty where no claim is
    made) share index and columns; a cell without a group is NaN / None."""

    metric: str
    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    verdict: pd.DataFrame
    ci95: pd.DataFrame


def _column_part(key: str, value: Any) -> str:
    """A pivot column's name: a registry name as it is (``vgg``), another value with its key
    (``train.lr=0.05``), so that a header says what varies."""
    return key_text(value) if config_key(key).endswith(".name") else f"{key}={key_text(value)}"


def pivot(
    summary: pd.DataFrame,
    metric: str = defaults.METRIC,
    rows: str = defaults.COMPARE_BY,
    columns: str | Sequence[str] = "model",
) -> Pivot:
    """Every group of ``summary`` in one cell, ``rows`` down and ``columns`` (one key, or
    several: a column per combination) across; columns are named by the value of a registry
    name (``vgg``), by ``key=value`` otherwise (``train.lr=0.05``). Keys that vary and
    are in neither join the rows (a pool's or another registry choice's own parameters only
    where two rows of one pool, head, ... differ in them), so no cell holds two groups and no
    group is left out (a key a group lacks, e.g. ``p`` for max pooling, shows as ``-``)."""
    names = summary_keys(summary)
    rows = resolve_key(rows, names)
    across = [resolve_key(c, names) for c in ([columns] if isinstance(columns, str) else columns)]
    metrics.get(metric)
    if f"{metric}_mean" not in summary.columns:
        raise ConfigError(f"--metric {metric}: no record has it")
    attached = {k for key in (rows, *across) for k in subtree(key, names)}
    varying = varying_keys(summary, names)
    others = [k for k in varying if k not in attached and k not in across]
    # another registry choice that varies (head) stands for its own parameters (head.levels)
    roots = [k for k in others if config_key(k).endswith(".name")]
    owned = {k for r in roots for k in subtree(r, names) if k != r}
    first = [rows, *(k for k in others if k not in owned)]
    index = unique_index(
        summary, first, [k for k in varying if k in attached or k in owned], across
    )
    row_keys = [tuple(key_text(v) for v in r) for r in summary[index].itertuples(index=False)]
    col_keys = [
        " ".join(_column_part(k, v) for k, v in zip(across, r, strict=True)) or metric
        for r in summary[across].itertuples(index=False)
    ]
    col_order = list(dict.fromkeys(col_keys))
    if len(across) == 1 and pd.api.types.is_numeric_dtype(summary[across[0]]):
        first_at = {k: v for v, k in zip(summary[across[0]], col_keys, strict=True)}
        col_order.sort(key=lambda k: (math.isnan(first_at[k]), first_at[k]))
    row_order = list(dict.fromkeys(row_keys))
    if len(index) == 1:
        idx = pd.Index([k[0] for k in row_order], name=index[0])
    else:
        idx = pd.MultiIndex.from_tuples(row_order, names=index)
    cols = pd.Index(col_order, name=" ".join(across) or None)
    at_row = {k: i for i, k in enumerate(row_order)}
    at_col = {k: j for j, k in enumerate(col_order)}
    shape = (len(row_order), len(col_order))
    values = {name: np.full(shape, np.nan) for name in ("mean", "std", "n", "ci95")}
    verdict = np.full(shape, None, dtype=object)
    for i, (r, c) in enumerate(zip(row_keys, col_keys, strict=True)):
        cell = at_row[r], at_col[c]
        source = summary.iloc[i]
        values["mean"][cell] = source[f"{metric}_mean"]
        values["std"][cell] = source[f"{metric}_std"]
        values["ci95"][cell] = source.get(f"{metric}_ci95", np.nan)
        values["n"][cell] = source["n"]
        verdict[cell] = source.get("verdict") or ""
    frames = {name: pd.DataFrame(v, index=idx, columns=cols) for name, v in values.items()}
    verdicts = pd.DataFrame(verdict, index=idx, columns=cols)
    return Pivot(metric, frames["mean"], frames["std"], frames["n"], verdicts, frames["ci95"])


def printed(info: metrics.Metric, value: float) -> float:
    """``value`` as the tables print it (``info.fmt``: 0.90004 is 0.9000, 3,778 is 3778), so
    that values that print the same compare equal."""
    if pd.isna(value):
        return value
    return float(re.sub(r"[^0-9eE.+-]", "", info.format(value)))


def ranking(summary: pd.DataFrame, significance: Significance) -> tuple[Pivot, pd.DataFrame]:
    """``significance.compare_by`` values ranked within each setting (every combination of the
    other keys that vary: data, model, ...; 1 = best, direction from the metric registry), and
    the mean rank over the settings a row ran in. Returns the pivot of rows x settings and the
    ranks (``settings``: how many settings the row ran in, then ``mean_rank``), best rows
    first: rows that ran in every setting before rows that ran in fewer (a mean over fewer
    settings is not comparable), each part by mean rank."""
    names = summary_keys(summary)
    by = resolve_key(significance.compare_by, names)
    settings = [k for k in varying_keys(summary, names) if k not in subtree(by, names)]
    table = pivot(summary, significance.metric, by, settings)
    # average ranks for ties (Demšar 2006), as the critical-difference diagram ranks; means
    # that print the same (at the metric's precision) tie, so they share a rank
    shown = table.mean.map(lambda v: printed(significance.info, v))
    ranks = shown.rank(ascending=not significance.info.higher_is_better, method="average")
    counts = ranks.notna().sum(axis=1)
    ranks["mean_rank"] = ranks.mean(axis=1)
    ranks.insert(len(ranks.columns) - 1, "settings", counts)
    order = sorted(range(len(ranks)), key=lambda i: (-counts.iloc[i], ranks["mean_rank"].iloc[i]))
    return table, ranks.iloc[order]


# How a cell shows its group's verdict (Markdown, LaTeX): the best in bold, an equivalent one in
# italics, a worse one with a dagger; undecided and no-claim cells are plain.
MARKS = {
    BEST: ("**{}**", "\\textbf{{{}}}"),
    EQUIVALENT: ("*{}*", "\\textit{{{}}}"),
}
WORSE_MARK = ("†", "$^\\dagger$")
# Unicode the legends and labels use, as LaTeX writes it (pdflatex without extra packages).
LATEX_TEXT = {
    "\\": r"\textbackslash{}",
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "≈": r"$\approx$",
    "×": r"$\times$",
    "–": "--",
    "—": "---",
    "−": "$-$",
    "…": r"\ldots{}",
    "<": "$<$",  # OT1 text fonts set < and > as inverted marks
    ">": "$>$",
}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX typesets it: special characters escaped, the symbols poolbench's
    legends use as math, and any other non-ASCII character dropped for a ``?`` rather than
    left to break pdflatex."""
    out = []
    for char in str(text):
        if char in LATEX_TEXT:
            out.append(LATEX_TEXT[char])
        elif ord(char) < 128:
            out.append(char)
        else:
            out.append("?")
    return "".join(out)


def marks_legend(significance: Significance) -> str:
    """What the cells' marks mean."""
    text = "bold: the best of its comparison"
    if significance.margin is not None:
        text += f"; italics: equivalent to it (within ±{significance.margin:g})"
        text += "; plain: undecided (not shown worse, not shown equivalent) or no claim (n < 2)"
    else:
        text += "; plain: not shown worse (no equivalence margin for this metric) or no claim"
    return text + "; †: significantly worse"


def table_text(
    table: Pivot,
    style: str,
    significance: Significance,
    mean_rank: pd.Series | None = None,
    name: str = "",
) -> str:
    r"""``mean ± ci95`` cells (``(n=k)`` where the groups' sizes differ), each marked with its
    verdict against the best of its comparison (:data:`MARKS`), as ``markdown`` (the table,
    then the legend) or ``latex`` (a ``table`` float: booktabs rules, the legend as its
    caption, ``\label{tab:poolbench-<name>}``, numbers aligned on the ±, shrunk to the line
    width only when wider). With ``mean_rank`` (from :func:`ranking`): rows in its order and a
    ``mean rank`` column."""
    info = metrics.get(table.metric)
    sizes = table.n.stack().dropna().astype(int)
    uneven = sizes.nunique() > 1
    latex = style == "latex"

    def cell(key: Any, column: Any) -> list[str]:
        """The mean and the ``± half-width`` part of one cell, marked."""
        m, half = table.mean.loc[key, column], table.ci95.loc[key, column]
        if pd.isna(m):
            return [MISSING] if not latex else [f"\\multicolumn{{2}}{{c}}{{{MISSING}}}"]
        verdict = table.verdict.loc[key, column] or ""
        mean = info.format(m)
        rest = "" if pd.isna(half) else f"± {info.format(half)}"
        rest += f" (n={int(table.n.loc[key, column])})" if uneven else ""
        form = MARKS.get(verdict, ("{}", "{}"))[latex]
        worse = WORSE_MARK[latex] if verdict == WORSE else ""
        if not latex:
            return [form.format(f"{mean} {rest}".strip()) + worse]
        rest = latex_escape(rest.strip())
        return [form.format(mean), (f"\\,{form.format(rest)}" if rest else "") + worse]

    order = list(mean_rank.index) if mean_rank is not None else list(table.mean.index)
    index_names = [str(n) for n in table.mean.index.names]
    columns = list(table.mean.columns)
    header = [*index_names, *map(str, columns)] + ["mean rank"] * (mean_rank is not None)
    rows = []
    for key in order:
        keys = key if isinstance(key, tuple) else (key,)
        cells = [part for c in columns for part in cell(key, c)]
        rank = []
        if mean_rank is not None:
            ran = int(table.mean.loc[key].notna().sum())
            part = f" ({ran} of {len(columns)})" if ran < len(columns) else ""
            rank = [f"{mean_rank.loc[key]:.2f}{part}"]
        labels = [latex_escape(k) if latex else str(k) for k in keys]
        rows.append([*labels, *cells, *rank])
    legend = [
        "cells: mean ± ci95 over seeds (ci95: half-width of the 95% t-interval of the mean)"
        + (", (n=k) the group's size" if uneven else ""),
        marks_legend(significance),
        significance.verdict_legend(sizes.tolist()),
        f"{MISSING}: no group there, or none with an ok run",
    ]
    if mean_rank is not None:
        legend.append(
            f"mean rank: mean over the columns (settings) of the rank in each, 1 the best "
            f"({table.metric}: {info.direction}), so a lower mean rank is better; means that "
            f"print the same share their rank (two first: 1.5 each); (k of m): the row ran in "
            f"k of the m settings and is listed after the rows that ran in all"
        )
    if not latex:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n\n" + "\n".join(f"{line}." for line in legend) + "\n"
    spec = "l" * len(index_names) + "r@{}l" * len(columns) + "r" * (mean_rank is not None)
    head = [latex_escape(h) for h in index_names]
    head += [f"\\multicolumn{{2}}{{c}}{{{latex_escape(c)}}}" for c in columns]
    head += ["mean rank"] * (mean_rank is not None)
    label = "tab:poolbench-" + "-".join(
        part for part in re.split(r"[^A-Za-z0-9]+", name or f"{table.metric}") if part
    )
    caption = " ".join(f"{latex_escape(line)}." for line in legend)
    ranked = ", ranked" if mean_rank is not None else ""
    short = latex_escape(f"{table.metric}: mean ± ci95 over seeds{ranked}")
    lines = [
        "% poolbench table: needs \\usepackage{booktabs} and \\usepackage{graphicx}",
        "\\begin{table}[tbp]",
        "\\centering",
        f"\\caption[{short}]{{{caption}}}",  # the short form for \\listoftables
        f"\\label{{{label}}}",
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(head) + " \\\\",
        "\\midrule",
        *(" & ".join(r) + " \\\\" for r in rows),
        "\\bottomrule",
        "\\end{tabular}}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"
