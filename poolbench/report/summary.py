"""Summaries over seeds: runs whose config identity less the seed is equal form a group; each
metric's mean, std and n (failed runs are counted, not averaged), the 95% confidence interval
of the mean from Student's t-distribution with n-1 degrees of freedom (seeds are few, so the
normal approximation's 1.96 would be too narrow: t(0.975, 2) = 4.30 for 3 seeds), and every
group tested against the best of its comparison (:mod:`poolbench.report.significance`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

from poolbench.core import defaults, metrics
from poolbench.core.defaults import UNSTABLE_IQR
from poolbench.core.errors import ConfigError
from poolbench.report.keys import (
    LABELS,
    METADATA,
    _key_columns,
    _placed,
    _sort_key,
    key_text,
    resolve_key,
    subtree,
    summary_keys,
)
from poolbench.report.significance import (
    MIN_N,
    PAIRED,
    SIGN,
    TOST,
    WELCH,
    against_best,
)

# Conditions of the measurements, kept per group for captions (values joined when they differ).
CONDITIONS = ("device", "cpu", "dtype", "latency_session")


@dataclass(frozen=True)
class Significance:
    """What the summary tests: ``metric`` of every group against the best group of its
    comparison, i.e. among groups equal in everything but ``compare_by`` (and the keys below
    it: ``pool`` covers ``pool.F``, ``pool.p``, ...), at level ``alpha`` after Holm's correction:
    worse, and equivalent within ``±delta`` (the metric's units; None: the default margin,
    :data:`~poolbench.core.defaults.DELTA` for metrics in [0, 1] and none for others; 0: no
    equivalence test)."""

    metric: str = defaults.METRIC
    alpha: float = defaults.ALPHA
    compare_by: str = defaults.COMPARE_BY
    delta: float | None = None

    def __post_init__(self) -> None:
        metrics.get(self.metric)
        if isinstance(self.alpha, bool) or not 0 < self.alpha < 1:
            raise ConfigError(f"expected --alpha in (0, 1), got {self.alpha!r}")
        if self.delta is not None and (
            isinstance(self.delta, bool)
            or not isinstance(self.delta, (int, float))
            or not math.isfinite(self.delta)
            or self.delta < 0
        ):
            raise ConfigError(f"expected --delta to be a number >= 0, got {self.delta!r}")

    @property
    def info(self) -> metrics.Metric:
        return metrics.get(self.metric)

    @property
    def margin(self) -> float | None:
        """The equivalence margin in force (None: no equivalence test)."""
        if self.delta is None:
            return defaults.DELTA if self.info.bounded else None
        return float(self.delta) or None

    def equivalence_text(self) -> str:
        """How equivalence is decided, for legends (empty without a margin)."""
        if self.margin is None:
            return ""
        return (
            f"equivalent: shown within ±{self.margin:g} of the best ({TOST} on the paired "
            f"differences, {SIGN} where they do not vary; Holm-corrected, alpha {self.alpha:g}); "
            f"undecided: neither worse nor equivalent (more seeds would decide)"
        )

    def verdict_legend(self, n: Iterable[int]) -> str:
        """The sentence that explains a table's verdict column; ``n`` the groups' sizes."""
        sizes = sorted({int(k) for k in n})
        if sizes and sizes[-1] < MIN_N:
            return (
                f"{self.metric}, {n_text(sizes)}: n < {MIN_N} in every group, no test, no verdict"
            )
        text = (
            f"{self.metric}, {n_text(sizes)}; verdict against the best of each comparison of "
            f"{self.compare_by} values (groups equal in everything else; {self.info.direction}): "
            f"worse: another value is significantly better (one-sided {PAIRED}s by seed where "
            f"the seeds match, {SIGN} where the differences do not vary, {WELCH} otherwise, "
            f"against every other value, combined by Simes' rule, Holm within the comparison, "
            f"alpha {self.alpha:g})"
        )
        if self.margin is not None:
            text += f"; {self.equivalence_text()}"
        else:
            text += "; undecided: not shown worse (no equivalence margin for this metric)"
        if sizes and sizes[0] < MIN_N:
            text += f"; groups with n < {MIN_N}: no test, no verdict"
        return text


def n_text(sizes: Sequence[int]) -> str:
    if not sizes:
        return "n = 0"
    low, high = sizes[0], sizes[-1]
    seeds = "seed" if high == 1 else "seeds"
    return f"n = {low} {seeds} per group" if low == high else f"n = {low}-{high} seeds per group"


def ci95_halfwidth(std: float, n: int) -> float:
    """Half-width of the 95% interval of a mean of ``n`` values: t(0.975, n-1) * std / sqrt(n)."""
    if n < 2 or math.isnan(std):
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def run_groups(df: pd.DataFrame) -> Iterable[tuple[dict[str, Any], pd.DataFrame]]:
    """(key values, runs) per group of runs equal in identity but the seed."""
    keys = _key_columns(df)
    config = [c for c in df.columns if c.startswith("config.") and c != "config.seed"]
    by = (config or [c for c in LABELS if c in df.columns]) + [
        c for c in METADATA if c in df.columns
    ]
    for _, group in df.groupby(by, dropna=False, sort=False):
        yield {name: group[col].iloc[0] for name, col in keys.items()}, group


_UNPAIRED = itertools.count()


def _samples(good: pd.DataFrame, metric: str) -> dict[object, float]:
    """seed -> value. A group in which a seed occurs twice (e.g. copied records) keeps every
    value under keys no other group has, so that it is never paired by seed (Welch's test)."""
    values = pd.to_numeric(good[metric], errors="coerce")
    seeds = good["seed"].tolist()
    unique = len(set(seeds)) == len(seeds)
    group = next(_UNPAIRED)
    return {
        (s if unique else ("unpaired", group, i)): float(v)
        for i, (s, v) in enumerate(zip(seeds, values, strict=True))
        if pd.notna(v)
    }


def _summarize(
    df: pd.DataFrame, significance: Significance, keys: Sequence[str]
) -> tuple[pd.DataFrame, list[dict[object, float]]]:
    metric = significance.metric
    names = metrics.present(df.columns)
    if metric not in names:
        raise ConfigError(
            f"--metric {metric}: no record has it; these records have {', '.join(names)}"
        )
    ok = df["status"].eq("ok")
    rows, samples = [], []
    for key_values, group in run_groups(df):
        good = group[ok.loc[group.index]]
        row: dict[str, Any] = dict(key_values)
        row.update({k: math.nan for k in keys if k not in row})
        row["n"] = len(good)
        row["failed"] = int((~ok.loc[group.index]).sum())
        row["seeds"] = " ".join(str(s) for s in sorted(good["seed"].tolist()))
        for c in CONDITIONS:
            if c in group.columns:
                values = sorted({str(v) for v in group[c] if pd.notna(v)})
                row[c] = ", ".join(values) if values else None
        if "test_images" in good.columns:  # the step of an accuracy: 1 / test images
            sizes = pd.to_numeric(good["test_images"], errors="coerce").dropna().unique()
            row["test_images"] = int(sizes[0]) if len(sizes) == 1 else None
        for m in names:
            values = pd.to_numeric(good[m], errors="coerce")
            row[f"{m}_mean"] = values.mean()
            row[f"{m}_std"] = values.std(ddof=1) if values.count() > 1 else float("nan")
            if m in ("test_acc", "latency_ms", metric):
                row[f"{m}_ci95"] = ci95_halfwidth(row[f"{m}_std"], int(values.count()))
        row.update(latency_figure(row))
        rows.append(row)
        samples.append(_samples(good, metric))
    out = pd.DataFrame(rows)
    placed = out[_placed(out, list(_key_columns(df)))]
    constant = [
        k
        for k in _key_columns(df)
        if k not in LABELS and k not in keys and placed[k].nunique(dropna=False) <= 1
    ]
    return _judge(out.drop(columns=constant), samples, significance)


def latency_figure(row: dict[str, Any]) -> dict[str, Any]:
    """The group's comparable latency: ``latency_source`` is ``interleaved`` when its runs were
    timed in one session with the others (``latency_interleaved_ms``, see
    :mod:`poolbench.run.timing`), else ``in_run`` (each run's own, at its own moment: not
    comparable across runs on a busy machine); ``latency_unstable`` flags an interquartile
    range above :data:`~poolbench.core.defaults.UNSTABLE_IQR` of the median."""
    for name, iqr in (
        ("latency_interleaved_ms", "latency_interleaved_iqr_ms"),
        ("latency_ms", "latency_iqr_ms"),
    ):
        median = row.get(f"{name}_mean")
        if median is not None and pd.notna(median):
            spread = row.get(f"{iqr}_mean")
            unstable = bool(pd.notna(spread) and spread > UNSTABLE_IQR * median)
            source = "interleaved" if name == "latency_interleaved_ms" else "in_run"
            return {"latency_source": source, "latency_unstable": unstable}
    return {"latency_source": None, "latency_unstable": None}


def _judge(
    out: pd.DataFrame, samples: list[dict[object, float]], significance: Significance
) -> tuple[pd.DataFrame, list[dict[object, float]]]:
    """Add ``p_vs_best``, ``test_vs_best`` and ``tied_with_best``; sort comparisons together,
    best first."""
    names = summary_keys(out)
    compare_by = resolve_key(significance.compare_by, names)
    sets = [k for k in names if k not in subtree(compare_by, names)]
    p = [math.nan] * len(out)
    test = [""] * len(out)
    tied: list[bool | None] = [None] * len(out)
    p_equiv = [math.nan] * len(out)
    equivalent: list[bool | None] = [None] * len(out)
    verdict = [""] * len(out)
    positions: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(out[sets].itertuples(index=False)):
        positions.setdefault(tuple(key_text(v) for v in row), []).append(i)
    for members in positions.values():
        verdicts = against_best(
            [samples[i] for i in members],
            significance.info.higher_is_better,
            significance.alpha,
            delta=significance.margin,
            resolution=resolution(out.iloc[members], significance.metric),
            exact=significance.info.exact,
        )
        for i, v in zip(members, verdicts, strict=True):
            p[i], test[i], tied[i] = v.p, v.test, v.tied
            p_equiv[i], equivalent[i], verdict[i] = v.p_equiv, v.equivalent, v.status
    mean = f"{significance.metric}_mean"
    at = out.columns.get_loc(mean) + 1
    out.insert(at, "verdict", verdict)
    out.insert(at, "equivalent_to_best", pd.array(equivalent, dtype="boolean"))
    out.insert(at, "p_equiv", p_equiv)
    out.insert(at, "tied_with_best", pd.array(tied, dtype="boolean"))
    out.insert(at, "test_vs_best", test)
    out.insert(at, "p_vs_best", p)
    out["_i"] = range(len(out))
    by = [*sets, mean]
    ascending = [True] * len(sets) + [not significance.info.higher_is_better]
    out = out.sort_values(by, ascending=ascending, key=_sort_key, na_position="last")
    samples = [samples[i] for i in out["_i"]]
    return out.drop(columns="_i").reset_index(drop=True), samples


def resolution(groups: pd.DataFrame, metric: str) -> float | None:
    """The step of ``metric`` in these groups: 1 / test images for a test accuracy when every
    group scored the same number of test images, else None (float rounding decides)."""
    if metric not in ("test_acc", "test_top5") or "test_images" not in groups.columns:
        return None
    sizes = groups["test_images"]
    if sizes.isna().any() or sizes.nunique() != 1 or sizes.iloc[0] <= 0:
        return None
    return 1.0 / float(sizes.iloc[0])


def summarize(
    df: pd.DataFrame, significance: Significance | None = None, keys: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per group of runs equal in config identity but the seed.

    Columns: the labels, each config key that varies between groups (and ``keys``, even
    constant), then ``n`` (ok runs), ``failed`` (counted, not averaged), ``seeds``, the
    conditions (``device``, ``dtype``, ``latency_source``), ``<metric>_mean``/``_std`` of every
    metric, ``<metric>_ci95`` (95% t-interval half-width) of ``test_acc``, ``latency_ms`` and the
    tested metric, and beside the tested metric's mean ``p_vs_best`` (Holm-corrected),
    ``test_vs_best``, ``tied_with_best`` (NA: n < 2, no claim), ``p_equiv`` (Holm-corrected
    TOST), ``equivalent_to_best`` and ``verdict`` (best, equivalent, undecided, worse; empty:
    no claim). See :class:`Significance`.
    """
    if df.empty:
        return pd.DataFrame()
    return _summarize(df, significance or Significance(), keys)[0]


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[bool]:
    """Points not dominated by another with x no larger and y no smaller (one strictly)."""
    points = list(zip(x, y, strict=True))
    return [
        not any((x2 <= x1 and y2 >= y1) and (x2 < x1 or y2 > y1) for x2, y2 in points)
        for x1, y1 in points
    ]


def comparable_latency(summary: pd.DataFrame) -> str | None:
    """The latency to compare across ``summary``'s groups with finished runs (one rule for
    tables, sentences and plots): ``latency_interleaved_ms`` when every such group has that
    figure and all of them come from one timing session, else ``latency_ms``, each run's own
    (None: no latency at all)."""
    ok = summary[summary["n"] > 0] if "n" in summary.columns else summary
    interleaved = "latency_interleaved_ms_mean"
    if len(ok) and interleaved in ok.columns and ok[interleaved].notna().all():
        sessions = ok["latency_session"] if "latency_session" in ok.columns else None
        if sessions is None or (
            sessions.nunique(dropna=True) <= 1 and not sessions.astype(str).str.contains(", ").any()
        ):
            return "latency_interleaved_ms"
    if "latency_ms_mean" in ok.columns and ok["latency_ms_mean"].notna().any():
        return "latency_ms"
    return None
