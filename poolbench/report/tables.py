"""Tables for papers: the summary as Markdown, the runs as CSV or Parquet, and the pivot and
ranking of one metric (CSV, Markdown, LaTeX) with their legends.
"""

from __future__ import annotations

import importlib.util
import math
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
    subtree,
    summary_keys,
    unique_index,
    varying_keys,
)
from poolbench.report.summary import (
    Significance,
)

FORMATS = ("csv", "parquet")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    return (
        df.astype({c: object for c in df.columns})
        .fillna("")
        .to_markdown(index=False, floatfmt=floatfmt)
        + "\n"
    )


def summary_markdown(summary: pd.DataFrame, significance: Significance) -> str:
    """The summary as a Markdown table with the sentence that explains ``tied_with_best``."""
    if summary.empty:
        return "no runs\n"
    return (
        to_markdown(summary)
        + "\n"
        + significance.legend(summary["n"], marker="tied_with_best")
        + "; ci95: half-width of the 95% t-interval of the mean\n"
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
    ``columns`` across: ``mean``, ``std``, ``n`` and ``tied`` (the summary's
    ``tied_with_best``) share index and columns; a cell without a group is NaN / NA."""

    metric: str
    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    tied: pd.DataFrame


def _column_part(key: str, value: Any) -> str:
    """A pivot column's name: a registry name as it is (``vgg``), another value with its key
    (``train.lr=0.05``), so that a header says what varies."""
    return key_text(value) if config_key(key).endswith(".name") else f"{key}={key_text(value)}"


def pivot(
    summary: pd.DataFrame,
    metric: str = defaults.METRIC,
    rows: str = "pool",
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
    values = {name: np.full(shape, np.nan) for name in ("mean", "std", "n")}
    tied = np.full(shape, None, dtype=object)
    has_tied = "tied_with_best" in summary.columns
    for i, (r, c) in enumerate(zip(row_keys, col_keys, strict=True)):
        cell = at_row[r], at_col[c]
        source = summary.iloc[i]
        values["mean"][cell] = source[f"{metric}_mean"]
        values["std"][cell] = source[f"{metric}_std"]
        values["n"][cell] = source["n"]
        if has_tied and pd.notna(source["tied_with_best"]):
            tied[cell] = bool(source["tied_with_best"])
    frames = {name: pd.DataFrame(v, index=idx, columns=cols) for name, v in values.items()}
    tied = pd.DataFrame(
        {c: pd.array(tied[:, j].tolist(), dtype="boolean") for j, c in enumerate(cols)}
    ).set_axis(idx)
    tied.columns = cols
    return Pivot(metric, frames["mean"], frames["std"], frames["n"], tied)


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
    # average ranks for ties (Demšar 2006), as the critical-difference diagram ranks
    ranks = table.mean.rank(ascending=not significance.info.higher_is_better, method="average")
    counts = ranks.notna().sum(axis=1)
    ranks["mean_rank"] = ranks.mean(axis=1)
    ranks.insert(len(ranks.columns) - 1, "settings", counts)
    order = sorted(range(len(ranks)), key=lambda i: (-counts.iloc[i], ranks["mean_rank"].iloc[i]))
    return table, ranks.iloc[order]


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&")):
        text = text.replace(char, repl)
    return text.replace("±", r"$\pm$")


def table_text(
    table: Pivot,
    style: str,
    significance: Significance,
    mean_rank: pd.Series | None = None,
) -> str:
    """``mean ± std`` cells (``(n=k)`` where the groups' sizes differ), every cell tied with
    the best of its comparison in bold, as ``markdown`` or ``latex``, followed by the legend
    (LaTeX: as comments). With ``mean_rank`` (from :func:`ranking`): rows in its order and a
    ``mean rank`` column."""
    info = metrics.get(table.metric)
    sizes = table.n.stack().dropna().astype(int)
    uneven = sizes.nunique() > 1

    def cell(m: float, s: float, n: float) -> str:
        if pd.isna(m):
            return MISSING
        text = info.format(m) if pd.isna(s) else f"{info.format(m)} ± {info.format(s)}"
        return text + (f" (n={int(n)})" if uneven else "")

    order = list(mean_rank.index) if mean_rank is not None else list(table.mean.index)
    index_names = [str(n) for n in table.mean.index.names]
    header = [*index_names, *map(str, table.mean.columns)] + ["mean rank"] * (mean_rank is not None)
    rows = []
    for key in order:
        keys = key if isinstance(key, tuple) else (key,)
        cells = []
        for c in table.mean.columns:
            text = cell(table.mean.loc[key, c], table.std.loc[key, c], table.n.loc[key, c])
            text = text if style == "markdown" else _latex_escape(text)
            tied = table.tied.loc[key, c]
            if pd.notna(tied) and bool(tied):
                text = f"**{text}**" if style == "markdown" else f"\\textbf{{{text}}}"
            cells.append(text)
        rank = []
        if mean_rank is not None:
            ran = int(table.mean.loc[key].notna().sum())
            part = f" ({ran} of {len(table.mean.columns)})" if ran < len(table.mean.columns) else ""
            rank = [f"{mean_rank.loc[key]:.2f}{part}"]
        rows.append([*(str(k) for k in keys), *cells, *rank])
    legend = [
        "cells: mean ± std over seeds" + (", (n=k) the group's size" if uneven else ""),
        significance.legend(sizes.tolist()),
        f"{MISSING}: no group there, or none with an ok run",
    ]
    if mean_rank is not None:
        legend.append(
            f"mean rank: mean over the columns (settings) of the rank in each, 1 the best "
            f"({table.metric}: {info.direction}), so a lower mean rank is better; (k of m): the "
            f"row ran in k of the m settings and is listed after the rows that ran in all"
        )
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n\n" + "\n".join(f"{line}." for line in legend) + "\n"
    spec = "l" * len(index_names) + "r" * (len(header) - len(index_names))
    lines = [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(_latex_escape(h) for h in header) + " \\\\",
        "\\midrule",
        *(
            " & ".join([*map(_latex_escape, r[: len(index_names)]), *r[len(index_names) :]])
            + " \\\\"
            for r in rows
        ),
        "\\bottomrule",
        "\\end{tabular}",
        *(f"% {line}." for line in legend),
    ]
    return "\n".join(lines) + "\n"
