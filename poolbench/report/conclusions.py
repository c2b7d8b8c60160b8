"""What a sweep concludes, in two to four plain sentences drawn from the statistics of its
records: the best, what is tied with it or worse, the most shift-consistent, the fastest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from poolbench.core import defaults, metrics
from poolbench.core.defaults import UNSTABLE_TEXT
from poolbench.report.keys import (
    compared_key,
    in_prose,
    key_text,
    resolve_key,
    row_labels,
    shown_keys,
    subtree,
    summary_keys,
    varying_keys,
)
from poolbench.report.records import records_frame
from poolbench.report.significance import (
    MIN_N,
)
from poolbench.report.summary import (
    Significance,
    comparable_latency,
    run_groups,
    summarize,
)


def conclusions(
    df: pd.DataFrame,
    alpha: float = defaults.ALPHA,
    compare_by: str = defaults.COMPARE_BY,
    delta: float | None = None,
    tests: bool = True,
) -> list[str]:
    """Two to four plain sentences drawn from the statistics of ``df``'s records (one
    comparison of ``compare_by`` values; with several, the first that has finished runs and a
    pointer to the report): the best test accuracy with the groups equivalent to it, worse and
    undecided (``delta``: the margin, see :class:`Significance`), the most shift-consistent,
    and the fastest by comparable latency; without ``tests`` the last two only."""
    if df.empty or not df["status"].eq("ok").any():
        return ["No run finished: nothing to conclude."]
    acc = Significance("test_acc", alpha, compare_by, delta)
    summary = summarize(df, acc)
    names = summary_keys(summary)
    by = resolve_key(compare_by, names)
    sets = [k for k in varying_keys(summary, names) if k not in subtree(by, names)]
    note = []
    if sets:
        texts = summary[sets].apply(lambda column: column.map(key_text))
        first = texts[summary["n"] > 0].iloc[0]
        summary = summary[texts.eq(first).all(axis=1)]
        df = df[df.index.isin(_rows_of(df, summary))]
        where = ", ".join(f"{k}={first[k]}" for k in sets)
        note = [f"(For {where}; `poolbench report` compares every setting.)"]
    shown = [in_prose(t) for t in row_labels(summary, shown_keys(summary, compare_by))]
    labels = dict(zip(summary.index, shown, strict=True))
    ok = summary[summary["n"] > 0]
    best = ok.iloc[0]
    sentences = [f"Best test accuracy: {labels[best.name]} {_interval(best, 'test_acc')}"]
    others = ok.iloc[1:]
    if best["n"] < MIN_N:
        seeds = "one seed" if ok["n"].max() < MIN_N else f"one seed for {labels[best.name]}"
        sentences[0] += (
            f"; with {seeds} no difference can be told from seed noise: run seed=0,1,2 for a claim."
        )
    else:
        sentences[0] = _verdicts(sentences[0], others, labels, acc, by)
    if "shift_consistency" in df.columns and df["shift_consistency"].notna().any():
        shift = summarize(df, Significance("shift_consistency", alpha, compare_by))
        shift = shift[(shift["n"] > 0) & shift["shift_consistency_mean"].notna()]
        top = shift.iloc[0]
        top_label = row_labels(shift.iloc[:1], shown_keys(shift, compare_by))[0]
        sentence = f"Most shift-consistent: {top_label} {_interval(top, 'shift_consistency')}"
        if top["n"] >= MIN_N:
            rest = shift.iloc[1:]
            others_tied = row_labels(
                rest[rest["tied_with_best"].eq(True).fillna(False)], shown_keys(shift, compare_by)
            )
            if others_tied:
                sentence += f", tied with {', '.join(others_tied)}"
            elif rest["tied_with_best"].notna().any():
                sentence += ", ahead of all others"
        sentences.append(sentence + ".")
    sentences += _fastest(summary, labels)
    if not tests:  # the caller says what was decided (a race): shift and latency only
        sentences = sentences[1:]
    return sentences[:4] + note


def _verdicts(
    first: str, others: pd.DataFrame, labels: dict[Any, str], acc: Significance, by: str
) -> str:
    """The best's sentence with what the tests say of the others: equivalent within the margin,
    significantly worse (with p), undecided (neither: more seeds would decide), one seed."""

    def names(status: str) -> list[str]:
        return [labels[i] for i, r in others.iterrows() if r["verdict"] == status]

    def listed(items: list[str], limit: int = 8) -> str:
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    worse = others[others["verdict"].eq("worse")]
    untested = [labels[i] for i, r in others.iterrows() if not r["verdict"]]
    parts = [first]
    if acc.margin is not None:
        equivalent = names("equivalent")
        parts.append(
            f"equivalent to it within ±{acc.margin:g} (TOST, Holm-corrected, alpha "
            f"{acc.alpha:g}): {listed(equivalent) if equivalent else 'none'}"
        )
    if len(worse):
        shown = [f"{labels[i]} (p={r['p_vs_best']:.2g})" for i, r in worse.iterrows()]
        parts.append(
            f"significantly worse (one-sided tests against each other {by}, Holm-corrected, "
            f"alpha {acc.alpha:g}): {listed(shown)}"
        )
    elif len(others) > len(untested):
        parts.append(f"no {by} is significantly worse")
    if acc.margin is None:  # no margin: "not shown worse" is all that can be said
        undecided, label = names("undecided"), "not shown worse"
    else:
        undecided, label = names("undecided"), "undecided, neither shown worse nor equivalent"
    if undecided:
        parts.append(f"{label}: {listed(undecided)}")
    if untested:
        parts.append(f"one seed, no claim: {listed(untested)}")
    return "; ".join(parts) + "."


def _rows_of(df: pd.DataFrame, summary: pd.DataFrame) -> list[Any]:
    """Indices of ``df``'s records that belong to ``summary``'s groups."""
    wanted = {
        tuple(key_text(v) for v in r)
        for r in summary[summary_keys(summary)].itertuples(index=False)
    }
    keys = summary_keys(summary)
    out = []
    for values, group in run_groups(df):
        if tuple(key_text(values.get(k)) for k in keys) in wanted:
            out.extend(group.index)
    return out


def _interval(row: pd.Series, metric: str) -> str:
    info = metrics.get(metric)
    mean = info.format(row[f"{metric}_mean"])
    half = row.get(f"{metric}_ci95")
    if half is None or pd.isna(half):
        return f"{mean} (n={int(row['n'])})"
    return f"{mean} ± {info.format(half)} (95% CI, n={int(row['n'])})"


def _fastest(summary: pd.DataFrame, labels: dict[Any, str]) -> list[str]:
    name = comparable_latency(summary)
    if name is None:
        return []
    column = f"{name}_mean"
    source = (
        "timed interleaved in one process"
        if name == "latency_interleaved_ms"
        else "each run's own timing, not comparable on a busy machine"
    )
    ok = summary[summary["n"] > 0]
    timed = ok[ok[column].notna()].sort_values(column)
    fast, slow = timed.iloc[0], timed.iloc[-1]
    unstable = int(timed["latency_unstable"].eq(True).sum()) if "latency_unstable" in timed else 0
    flag = f"; {unstable} figure(s) unstable ({UNSTABLE_TEXT})" if unstable else ""
    return [
        f"Fastest inference ({source}): {labels[fast.name]} {fast[column]:.2f} ms per batch; "
        f"slowest {labels[slow.name]} {slow[column]:.2f} ms ({slow[column] / fast[column]:.1f}x)"
        f"{flag}."
    ]


@dataclass
class SweepSummary:
    """What a sweep's closing table shows, computed once from its records: the summary (tested
    by what the sweep compared: the pools, else the models or other choices it varied), the key
    columns that tell its rows apart, the comparable latency, each row's verdict (best,
    equivalent, undecided, worse; a race's own decisions where the sweep raced) with its legend,
    and the sentences."""

    summary: pd.DataFrame
    significance: Significance
    keys: list[str]
    latency: str
    sentences: list[str]
    verdicts: list[str]
    legend: str


RACE_FIELD = "race"  # a record's race decision, set by the sweep that raced it (not on disk)


def sweep_summary(
    records: Sequence[dict[str, Any]],
    delta: float | None = None,
    race_legend: str | None = None,
    race_sentences: Sequence[str] = (),
) -> SweepSummary | None:
    """The :class:`SweepSummary` of a sweep's ``records``; None when no run finished. Records
    that carry a ``race`` field (the race's decision for their configuration) give the
    verdicts, with ``race_legend`` and ``race_sentences`` in place of the tests' own."""
    df = records_frame(records)
    if df.empty or not df["status"].eq("ok").any():
        return None
    summary = summarize(df, Significance(delta=delta))
    by = compared_key(summary)
    significance = Significance(compare_by=by, delta=delta)
    if by != defaults.COMPARE_BY:  # by pool first; again only when it compared something else
        summary = summarize(df, significance)
    latency = comparable_latency(summary) or "latency_ms"
    verdicts = [str(v) for v in summary["verdict"]]
    legend = significance.verdict_legend(summary["n"])
    sentences = conclusions(df, compare_by=by, delta=delta)
    if RACE_FIELD in df.columns:
        verdicts = []
        for i in range(len(summary)):
            rows = _rows_of(df, summary.iloc[[i]])
            found = df.loc[rows, RACE_FIELD].dropna() if rows else pd.Series(dtype=object)
            verdicts.append(str(found.iloc[0]) if len(found) else "")
        # the race's best first (a configuration stopped early as equivalent may show a higher
        # mean over its fewer seeds), the others by their mean
        order = sorted(range(len(summary)), key=lambda i: verdicts[i] != "best")
        summary = summary.iloc[order].reset_index(drop=True)
        verdicts = [verdicts[i] for i in order]
        legend = race_legend or legend
        sentences = [*race_sentences, *conclusions(df, compare_by=by, delta=delta, tests=False)]
    return SweepSummary(
        summary, significance, shown_keys(summary, by), latency, sentences, verdicts, legend
    )
