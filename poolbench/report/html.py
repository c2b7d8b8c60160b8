"""One self-contained HTML page of a comparison (``poolbench report --html``, and a sweep's
``report.html``): the conclusions first, then the summary table (sortable, verdicts marked,
unstable latencies flagged), the figures as inline SVG, the learning curves, the config keys
that vary, the environment and a link to each run's record. Rendered with Jinja2 from
``templates/report.html.j2``, every value escaped; nothing is fetched from a network.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from poolbench.core import metrics
from poolbench.core.defaults import UNSTABLE_TEXT
from poolbench.report.keys import key_text, shown_keys, summary_keys, varying_keys
from poolbench.report.summary import Significance
from poolbench.report.tables import summary_columns

# The run fields that describe where and how runs were measured, as the page names them.
ENVIRONMENT = {
    "cpu": "CPU",
    "device": "device",
    "dtype": "precision",
    "channels_last": "NHWC",
    "threads": "torch threads",
    "torch_version": "torch",
    "poolbench_version": "poolbench",
    "git_sha": "git commit",
    "latency_session_cpu": "latency timed on",
}
# Summary columns as the page's headers say them (X_mean is X; X_ci95 is ± ci95).
HEADERS = {"p_vs_best": "p vs best", "n": "n", "failed": "failed"}
# Runs' fields the page lists beside each record's link.
RUN_COLUMNS = ("run_name", "status", "seed", "test_acc", "train_time_s", "started_at")


@dataclass
class Cell:
    text: str
    value: str = ""  # what the column sorts by (a number as text; empty: last)
    flag: str = ""  # a class: best, equivalent, undecided, worse, unstable


def _number(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(number) else repr(number)


def _format(column: str, value: Any) -> str:
    """A summary cell as the tables print it: a metric's mean or interval in its format."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    name = re.sub(r"_(mean|ci95|std)$", "", column)
    if name != column and metrics.find(name) is not None:
        return metrics.get(name).format(float(value))
    if column == "p_vs_best":
        return format(float(value), ".3g")
    return key_text(value)


def _summary_rows(summary: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    rows = []
    for _, row in summary.iterrows():
        verdict = str(row.get("verdict") or "")
        cells = []
        for column in columns:
            value = row.get(column)
            cell = Cell(_format(column, value), _number(value))
            if column == "verdict":
                cell = Cell(verdict or "no claim", verdict, verdict)
            elif (
                column.startswith("latency") and cell.value and row.get("latency_unstable") is True
            ):
                cell.flag, cell.text = "unstable", cell.text + " !"
            cells.append(cell)
        rows.append({"verdict": verdict, "cells": cells})
    return rows


def _environment(df: pd.DataFrame) -> list[tuple[str, str]]:
    out = []
    for field, label in ENVIRONMENT.items():
        if field not in df.columns:
            continue
        counts = df[field].dropna().map(key_text).value_counts()
        if len(counts):
            out.append((label, "; ".join(f"{v} ({n} runs)" for v, n in counts.items())))
    return out


def _varying(summary: pd.DataFrame) -> list[tuple[str, str]]:
    names = summary_keys(summary)
    return [
        (k, ", ".join(dict.fromkeys(key_text(v) for v in summary[k])))
        for k in varying_keys(summary, names)
    ]


def _runs(df: pd.DataFrame, page: Path) -> list[dict[str, Any]]:
    runs = []
    ordered = df.sort_values([c for c in ("run_name", "seed") if c in df.columns])
    for _, row in ordered.iterrows():
        path = row.get("record_path")
        link = ""
        if isinstance(path, str) and path:
            link = quote(os.path.relpath(path, page.parent).replace(os.sep, "/"))
        cells = [Cell(_format(c, row.get(c)), _number(row.get(c))) for c in RUN_COLUMNS]
        runs.append({"cells": cells, "link": link, "status": str(row.get("status") or "")})
    return runs


def _inline(svg: str) -> str:
    """matplotlib's SVG file as an element to place in HTML (no XML prolog or DOCTYPE)."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else ""


def render_html(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    significance: Significance,
    page: Path,
    sentences: list[str],
    figures: dict[str, str],
    notes: list[str],
    legend: str,
    title: str = "poolbench report",
) -> str:
    """The page's text (see the module docstring); ``page`` is where it will be written, for
    the records' relative links."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from poolbench import __version__

    env = Environment(
        loader=PackageLoader("poolbench.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    columns = summary_columns(summary, significance) if not summary.empty else []
    headers = [
        HEADERS.get(c) or ("± ci95" if c.endswith("_ci95") else re.sub(r"_mean$", "", c))
        for c in columns
    ]
    n_keys = len(shown_keys(summary, significance.compare_by)) if not summary.empty else 0
    curves = {k: _inline(v) for k, v in figures.items() if k == "learning_curves"}
    shown = {k: _inline(v) for k, v in figures.items() if k != "learning_curves"}
    unstable = "latency_unstable" in summary and summary["latency_unstable"].eq(True).any()
    return env.get_template("report.html.j2").render(
        title=title,
        written=time.strftime("%Y-%m-%d %H:%M %Z"),
        version=__version__,
        n_runs=len(df),
        n_ok=int(df["status"].eq("ok").sum()) if "status" in df else 0,
        sentences=sentences,
        legend=legend,
        columns=headers,
        n_keys=n_keys,
        rows=_summary_rows(summary, columns),
        unstable=UNSTABLE_TEXT if unstable else "",
        figures=shown,
        curves=curves,
        notes=notes,
        varying=_varying(summary) if not summary.empty else [],
        environment=_environment(df),
        runs=_runs(df, page),
    )
