"""Reports: read run records, never train.

``load_records`` reads record sources (a directory of records, a sweep directory, a file listing
runs) into one row per run. ``summarize`` groups runs whose config identity less the seed is
equal, gives each metric's mean, std and n (failed runs are counted, not averaged), the 95%
confidence interval of the mean from Student's t-distribution with n-1 degrees of freedom
(seeds are few, so the normal approximation's 1.96 would be too narrow: t(0.975, 2) = 4.30
for 3 seeds), and tests every group against the best of its comparison
(:mod:`poolbench.report.significance`). ``pivot``/``ranking`` make the tables for papers (CSV,
Markdown, LaTeX), :mod:`poolbench.report.plots` the figures, ``compare`` the difference between two
record sources, pairing only groups whose identity agrees apart from what tells A from B.

Every table shows a column for each config key that varies between its groups, named by the
config key (``train.lr``); the record fields in ``LABELS`` stand for the config keys they repeat
(``pool`` for ``pool.name``, ``F`` for ``pool.F``).
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from poolbench.core import metrics
from poolbench.core.errors import ConfigError, DataError
from poolbench.core.record import (
    RECORD_FIELDS,
    RECORD_NAME,
    SWEEP_SUMMARY_NAME,
    atomic_write_text,
    read_record,
)
from poolbench.report.significance import (
    MIN_N,
    PAIRED,
    SIGN,
    WELCH,
    against_best,
    holm,
    pair_test,
)

# Record fields that describe a run's setup, shown before the metrics in tables, and the config
# key each one repeats.
LABEL_KEYS = {
    "data": "data.name",
    "model": "model.name",
    "pool": "pool.name",
    "F": "pool.F",
    "S": "pool.S",
    "p": "pool.p",
    "head": "head.name",
    "epochs": "train.epochs",
}
LABELS = list(LABEL_KEYS)
# Record fields that are not config but split groups and can be --pivot keys: a run's tags
# (``+tags=[...]``, joined with commas; not part of its identity).
METADATA = ("tags",)
# Conditions of the measurements, kept per group for captions (values joined when they differ).
CONDITIONS = ("device", "cpu", "dtype", "latency_session")
FORMATS = ("csv", "parquet")
UNSTABLE_IQR = 0.15  # poolbench.run.timing's threshold (not imported: it would load torch)
MISSING = "-"  # a key a group does not have (e.g. p for max pooling), a cell without an ok run


@dataclass(frozen=True)
class Significance:
    """What the summary tests: ``metric`` of every group against the best group of its
    comparison, i.e. among groups equal in everything but ``compare_by`` (and the keys below
    it: ``pool`` covers ``pool.F``, ``pool.p``, ...), at level ``alpha`` after Holm's correction."""

    metric: str = "test_acc"
    alpha: float = 0.05
    compare_by: str = "pool"

    def __post_init__(self) -> None:
        metrics.get(self.metric)
        if isinstance(self.alpha, bool) or not 0 < self.alpha < 1:
            raise ConfigError(f"expected --alpha in (0, 1), got {self.alpha!r}")

    @property
    def info(self) -> metrics.Metric:
        return metrics.get(self.metric)

    def legend(self, n: Iterable[int], marker: str = "bold") -> str:
        """The sentence that explains a table's or plot's marks; ``n`` the groups' sizes."""
        sizes = sorted({int(k) for k in n})
        if sizes and sizes[-1] < MIN_N:
            claim = f"n < {MIN_N} in every group: no test, no claim of ties (nothing {marker})"
        else:
            claim = (
                f"{marker}: the best mean of each comparison of {self.compare_by} values "
                f"(groups equal in everything else) and every one not significantly worse "
                f"({self.info.direction}): two-sided {PAIRED} by seed where the seeds "
                f"match ({SIGN} where the differences do not vary), {WELCH} otherwise, "
                f"Holm-corrected within each comparison, "
                f"alpha {self.alpha:g}"
            )
            if sizes and sizes[0] < MIN_N:
                claim += f"; groups with n < {MIN_N}: no test, no claim (never {marker})"
        return f"{self.metric}, {n_text(sizes)}; {claim}"


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


# --- Record sources -------------------------------------------------------------------------


def record_paths(source: Path) -> list[Path]:
    """The records of one source: every ``result.json`` below a directory; for a sweep
    directory (``results/sweeps/<time>/``, which holds no record) the runs its
    ``summary.csv`` lists, from ``results/runs/<run_name>/``; for a file, the runs it lists,
    one a line (a run directory, or a run name or id found in the nearest ``runs/``)."""
    source = Path(source)
    if source.is_file():
        return _listed_records(source)
    if not source.is_dir():
        raise DataError(f"no such directory or file: {source}")
    found = sorted(p.resolve() for p in source.rglob(RECORD_NAME))
    if found or not (source / SWEEP_SUMMARY_NAME).is_file():
        return found
    return _sweep_records(source)


def _sweep_records(sweep: Path) -> list[Path]:
    table = sweep / SWEEP_SUMMARY_NAME
    with open(table, newline="", encoding="utf-8") as fh:
        names = [row.get("run_name") or "" for row in csv.DictReader(fh)]
    if not names or not all(names):
        raise DataError(f"expected {table} to list its runs in a run_name column")
    runs = sweep.resolve().parent.parent / "runs"
    paths = [runs / name / RECORD_NAME for name in names]
    missing = [name for name, path in zip(names, paths, strict=True) if not path.is_file()]
    if missing:
        raise DataError(
            f"sweep {sweep} lists {len(missing)} run(s) without a record in {runs}: "
            + ", ".join(missing)
        )
    return paths


def _listed_records(listing: Path) -> list[Path]:
    lines = listing.read_text(encoding="utf-8").splitlines()
    entries = [line.split("#", 1)[0].strip() for line in lines]
    entries = [e for e in entries if e]
    if not entries:
        raise DataError(f"{listing} lists no run (one run directory, name or id a line)")
    runs_dirs = [d / "runs" for d in (listing.resolve().parent, *listing.resolve().parents)]
    runs_dirs = [d for d in runs_dirs if d.is_dir()][:1] + [Path("results/runs")]
    by_id: dict[str, Path] | None = None
    paths: list[Path] = []
    for entry in entries:
        where = next((c for c in (Path(entry), listing.parent / entry) if c.exists()), None)
        if where is not None:
            found = [where] if where.name == RECORD_NAME else record_paths(where)
            if not found:
                raise DataError(f"{listing}: {entry} holds no run record ({RECORD_NAME})")
            paths += found
            continue
        named = [d / entry / RECORD_NAME for d in runs_dirs if (d / entry / RECORD_NAME).is_file()]
        if named:
            paths.append(named[0])
            continue
        if by_id is None:
            by_id = {}
            for d in runs_dirs:
                for path in d.glob(f"*/{RECORD_NAME}"):
                    by_id.setdefault(str(read_record(path).get("run_id")), path)
        if entry not in by_id:
            raise DataError(
                f"{listing}: {entry!r} is neither a path nor a run name or id in "
                + ", ".join(str(d) for d in runs_dirs)
            )
        paths.append(by_id[entry])
    return [p.resolve() for p in paths]


def find_records(sources: Iterable[Path]) -> list[Path]:
    return sorted({p.resolve() for s in sources for p in record_paths(Path(s))})


def load_records(sources: Iterable[Path]) -> pd.DataFrame:
    """One row per run record; known fields first, unknown fields kept as extra columns.

    The config identity is flattened to ``config.<key>`` columns; lists and dicts (e.g.
    ``config.model.widths``, ``history``) become JSON text, so that they can be grouped.
    """
    rows = []
    unusable: list[str] = []
    for path in find_records(sources):
        try:
            record = read_record(path)
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"unreadable run record {path}: {err}") from None
        unusable += check_record(record, path)
        record["record_path"] = str(path)
        rows.append(record)
    df = records_frame(rows)
    if unusable:
        runs = len({u.split(": ", 1)[0] for u in unusable})
        df.attrs["notes"] = [
            f"{runs} record{'s' * (runs != 1)} with unusable metrics, left out of every mean "
            f"and test (a run with no {PRIMARY} still counts in n): " + "; ".join(unusable)
        ]
    return df


# Fields that group and label runs: a record with another type there cannot be placed.
TEXT_FIELDS = ("run_id", "run_name", "status", "pool", "head", "model", "data")
INTEGER_FIELDS = ("seed", "epochs")
PRIMARY = "test_acc"


def check_record(record: Any, path: Path) -> list[str]:
    """Check the types of a record read from ``path``: a field that groups or labels runs
    with the wrong type raises :class:`DataError` naming the file; a metric that is not a
    number is set to None (missing) and returned as ``"<path>: <metric> = <value>"``, as is
    an ok record without ``test_acc``, so that the report can say so."""
    if not isinstance(record, dict):
        raise DataError(f"run record {path}: expected a JSON object, got a {type(record).__name__}")

    def fail(key: str, what: str) -> DataError:
        return DataError(f"run record {path}: expected {key} to be {what}, got {record[key]!r}")

    for key in TEXT_FIELDS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise fail(key, "text")
    for key in INTEGER_FIELDS:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise fail(key, "an integer")
    if record.get("config") is not None and not isinstance(record["config"], dict):
        raise fail("config", "an object of config keys")
    unusable = []
    for name in metrics.present(record):
        value = record[name]
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            continue
        unusable.append(f"{path}: {name} = {json.dumps(value)[:40]}")
        record[name] = None
    if record.get("status") == "ok" and not isinstance(record.get(PRIMARY), (int, float)):
        if not any(u.startswith(f"{path}: {PRIMARY} =") for u in unusable):
            unusable.append(f"{path}: {PRIMARY} missing")
    return unusable


def records_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Run records (dicts) as one row each, flattened as :func:`load_records` describes."""
    rows = [dict(r) for r in records]
    if not rows:
        return pd.DataFrame(columns=list(RECORD_FIELDS))
    for r in rows:  # tags as one text key ("paper,v2"), so that they can be grouped and shown
        if "tags" in r:
            r["tags"] = ",".join(r["tags"] or []) or None
    history = [r.pop("history", None) for r in rows]
    has_learned = any("learned_p" in r for r in rows)
    learned = [r.pop("learned_p", None) for r in rows]  # {module path: p}: one JSON text
    df = pd.json_normalize(rows, sep=".")
    for col in df.columns:  # lists (e.g. config.model.widths) as text, so they can be grouped
        if df[col].map(lambda v: isinstance(v, (list, dict))).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    if any(h is not None for h in history):
        df["history"] = [None if h is None else json.dumps(h) for h in history]
    if has_learned:
        df["learned_p"] = [None if p is None else json.dumps(p) for p in learned]
    first = [c for c in RECORD_FIELDS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def with_tags(df: pd.DataFrame, tags: Sequence[str]) -> pd.DataFrame:
    """The runs that carry every one of ``tags``; an error naming the tags there are when none
    does."""
    if not tags:
        return df
    have = df["tags"] if "tags" in df.columns else pd.Series([None] * len(df), index=df.index)
    sets = have.map(lambda t: set(t.split(",")) if isinstance(t, str) else set())
    kept = df[sets.map(lambda s: set(tags) <= s)]
    if kept.empty:
        known = sorted(set().union(*sets)) if len(sets) else []
        raise DataError(
            f"no run has the tags {', '.join(tags)}; tags in these records: "
            f"{', '.join(known) or 'none'}"
        )
    return kept


def load_nonempty(sources: Iterable[Path]) -> pd.DataFrame:
    """``load_records``, with an error naming the sources when they hold no record."""
    sources = list(sources)
    df = load_records(sources)
    if df.empty:
        raise DataError(f"no run records ({RECORD_NAME}) in {', '.join(map(str, sources))}")
    return df


# --- Identity keys --------------------------------------------------------------------------


def config_key(name: str) -> str:
    """The config key a table column stands for (``pool`` -> ``pool.name``)."""
    return LABEL_KEYS.get(name, name.removeprefix("config."))


def _key_columns(df: pd.DataFrame) -> dict[str, str]:
    """Column name in tables -> column of ``df``, for every key of a run's identity but its
    seed: the labels, then each config key they do not repeat, named by the key (``train.lr``;
    ``config.device`` where the record has a field of the same name)."""
    keys = {c: c for c in LABELS if c in df.columns}
    repeated = {LABEL_KEYS[c] for c in keys}
    for col in df.columns:
        if not col.startswith("config.") or col == "config.seed":
            continue
        key = col.removeprefix("config.")
        if key not in repeated:
            keys[col if key in df.columns else key] = col
    keys.update({c: c for c in METADATA if c in df.columns})
    return keys


def valid_keys(df: pd.DataFrame) -> list[str]:
    """The names ``--pivot`` accepts for these records (config keys as well: ``pool.name``)."""
    return list(_key_columns(df))


def resolve_key(name: str, available: Sequence[str], option: str = "--pivot") -> str:
    """``name`` as a column in ``available`` (``pool.name`` is ``pool``); ConfigError else."""
    if name in available:
        return name
    for column in available:
        if config_key(column) == config_key(name):
            return column
    raise ConfigError(
        f"expected {option} to name a config key or label, one of {', '.join(available)}; "
        f"got {name!r}"
    )


def parse_pivot(text: str) -> tuple[str, str]:
    """``ROWS,COLUMNS`` (``ROWS`` alone: columns ``model``)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts.append("model")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ConfigError(f"expected --pivot ROWS,COLUMNS (two different keys), got {text!r}")
    return parts[0], parts[1]


def summary_keys(summary: pd.DataFrame) -> list[str]:
    """The key columns of a summary: those before ``n``."""
    columns = list(summary.columns)
    return columns[: columns.index("n")] if "n" in columns else []


def subtree(key: str, names: Iterable[str]) -> list[str]:
    """``key`` and the keys below it among ``names``: ``pool`` (``pool.name``) covers ``F``,
    ``pool.F``, ``pool.p``, ...; a leaf key (``train.lr``) only itself."""
    target = config_key(key)
    prefix = target.removesuffix("name") if target.endswith(".name") else None
    return [
        n
        for n in names
        if config_key(n) == target or (prefix is not None and config_key(n).startswith(prefix))
    ]


def _placed(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Rows with at least one of ``keys``: a job that failed before its run started (a config
    a sweeper composed) has no identity, and must not make every key look as if it varied."""
    if not keys:
        return pd.Series(True, index=frame.index)
    return frame[list(keys)].notna().any(axis=1)


def varying_keys(frame: pd.DataFrame, keys: Iterable[str]) -> list[str]:
    """Those of ``keys`` whose value differs between rows (a missing value counts as one),
    rows without any identity left out."""
    placed = frame[_placed(frame, summary_keys(frame))]
    return [k for k in keys if placed[k].nunique(dropna=False) > 1]


def unique_index(
    frame: pd.DataFrame, first: Sequence[str], candidates: Sequence[str], fixed: Sequence[str] = ()
) -> list[str]:
    """``first`` plus those of ``candidates`` (in order) needed for every row of ``frame`` to
    differ in ``index + fixed``: a pool's own parameters join its name only where two rows of
    one pool differ in them."""
    index = list(first)
    rest = [c for c in candidates if c not in index and c not in fixed]
    while rest:
        cols = [*index, *fixed]
        if cols:
            dup = frame.duplicated(subset=cols, keep=False)
            if not dup.any():
                break
            clusters = frame[dup].groupby(cols, dropna=False)
            splits = [c for c in rest if clusters[c].nunique(dropna=False).gt(1).any()]
        else:
            splits = [c for c in rest if frame[c].nunique(dropna=False) > 1]
        if not splits:
            break
        index.append(splits[0])
        rest.remove(splits[0])
    return index


def shown_keys(summary: pd.DataFrame, compare_by: str = "pool") -> list[str]:
    """The key columns a compact table of ``summary`` shows: ``compare_by``, every key outside
    its subtree that varies, and the keys below it needed to tell rows apart. Another registry
    choice that varies (``model``, ``head``, ``data``) stands for its own parameters as the
    compared one does: ``model.widths`` joins ``model`` only where two rows of one model differ
    in it (a sweep over models would otherwise show every model's every parameter)."""
    names = summary_keys(summary)
    compare_by = resolve_key(compare_by, names)
    below = subtree(compare_by, names)
    varying = varying_keys(summary, names)
    outside = [k for k in varying if k not in below]
    roots = [k for k in outside if config_key(k).endswith(".name")]
    owned = {k for r in roots for k in subtree(r, names) if k != r}
    first = [compare_by, *(k for k in outside if k not in owned)]
    return unique_index(summary, first, [k for k in varying if k in below or k in owned])


def compared_key(summary: pd.DataFrame) -> str:
    """What a sweep compares: ``pool`` when it varies, else the first registry choice that
    does (``model`` in ``-m model=vgg,resnet18``), else the first key that varies."""
    names = summary_keys(summary)
    varying = varying_keys(summary, names)
    for key in ("pool", *(k for k in varying if config_key(k).endswith(".name")), *varying):
        if key in varying:
            return key
    return "pool"


def key_text(value: Any) -> str:
    """A key's value in a table: ``-`` where the group has none, 2.0 as ``2``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def row_labels(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """``max``, ``gem p=3``: the first key's value, then ``key=value`` for the others that
    the row has."""

    def label(row: pd.Series) -> str:
        rest = [f"{k}={key_text(row[k])}" for k in keys[1:] if key_text(row[k]) != MISSING]
        return " ".join([key_text(row[keys[0]]), *rest])

    return [label(row) if keys else "" for _, row in frame.iterrows()]


def _sort_key(column: pd.Series) -> pd.Series:
    return column if pd.api.types.is_numeric_dtype(column) else column.map(key_text)


# --- Summary --------------------------------------------------------------------------------


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
    range above 15% of the median."""
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
    positions: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(out[sets].itertuples(index=False)):
        positions.setdefault(tuple(key_text(v) for v in row), []).append(i)
    for members in positions.values():
        verdicts = against_best(
            [samples[i] for i in members], significance.info.higher_is_better, significance.alpha
        )
        for i, v in zip(members, verdicts, strict=True):
            p[i], test[i], tied[i] = v.p, v.test, v.tied
    mean = f"{significance.metric}_mean"
    at = out.columns.get_loc(mean) + 1
    out.insert(at, "tied_with_best", pd.array(tied, dtype="boolean"))
    out.insert(at, "test_vs_best", test)
    out.insert(at, "p_vs_best", p)
    out["_i"] = range(len(out))
    by = [*sets, mean]
    ascending = [True] * len(sets) + [not significance.info.higher_is_better]
    out = out.sort_values(by, ascending=ascending, key=_sort_key, na_position="last")
    samples = [samples[i] for i in out["_i"]]
    return out.drop(columns="_i").reset_index(drop=True), samples


def summarize(
    df: pd.DataFrame, significance: Significance | None = None, keys: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per group of runs equal in config identity but the seed.

    Columns: the labels, each config key that varies between groups (and ``keys``, even
    constant), then ``n`` (ok runs), ``failed`` (counted, not averaged), ``seeds``, the
    conditions (``device``, ``dtype``, ``latency_source``), ``<metric>_mean``/``_std`` of every
    metric, ``<metric>_ci95`` (95% t-interval half-width) of ``test_acc``, ``latency_ms`` and the
    tested metric, and beside the tested metric's mean ``p_vs_best`` (Holm-corrected),
    ``test_vs_best`` and ``tied_with_best`` (NA: n < 2, no claim). See :class:`Significance`.
    """
    if df.empty:
        return pd.DataFrame()
    return _summarize(df, significance or Significance(), keys)[0]


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


# --- Pivot and ranking ----------------------------------------------------------------------


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
    metric: str = "test_acc",
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
    ranks = table.mean.rank(ascending=not significance.info.higher_is_better, method="min")
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


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[bool]:
    """Points not dominated by another with x no larger and y no smaller (one strictly)."""
    points = list(zip(x, y, strict=True))
    return [
        not any((x2 <= x1 and y2 >= y1) and (x2 < x1 or y2 > y1) for x2, y2 in points)
        for x1, y1 in points
    ]


# --- Compare --------------------------------------------------------------------------------


@dataclass
class Comparison:
    """B against A, group by group.

    ``table`` has a row per matched pair (``pair`` = ``matched``) and per group without a
    partner (``only in A``/``only in B``): the shown keys, each distinguishing key as
    ``<key>_a``/``<key>_b``, ``<metric>_mean_a``... ``_diff`` (B - A), ``p`` (Holm-corrected
    over the pairs), ``test`` and ``differs`` (NA: n < 2, no claim).
    """

    table: pd.DataFrame
    metric: str
    distinguishing: list[str]
    keys: list[str]
    alpha: float


def _norm(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def compare(
    a: pd.DataFrame, b: pd.DataFrame, metric: str = "test_acc", alpha: float = 0.05
) -> Comparison:
    """Pair each group of A with the groups of B whose identity is equal apart from the keys
    that tell A from B (each one value throughout A and another throughout B, e.g. ``train.lr``
    when A ran 0.05 and B 0.005); groups without such a partner are listed, never paired. A key
    whose values differ within a side (A ran max and avg, B gem and lp) tells nothing apart:
    its groups pair only with equal values, so none pair there."""
    significance = Significance(metric, alpha)
    info = significance.info
    keys = list(dict.fromkeys([*valid_keys(a), *valid_keys(b)]))
    sa, samples_a = _summarize(a, significance, keys)
    sb, samples_b = _summarize(b, significance, keys)
    distinguishing = [
        k
        for k in keys
        if len(set(map(_norm, sa[k]))) == 1
        and len(set(map(_norm, sb[k]))) == 1
        and not set(map(_norm, sa[k])) & set(map(_norm, sb[k]))
    ]
    match = [k for k in keys if k not in distinguishing]
    partners: dict[tuple, list[int]] = {}
    for j, row in enumerate(sb[match].itertuples(index=False)):
        partners.setdefault(tuple(map(_norm, row)), []).append(j)
    pairs = [
        (i, j)
        for i, row in enumerate(sa[match].itertuples(index=False))
        for j in partners.get(tuple(map(_norm, row)), [])
    ]
    only_a = sorted(set(range(len(sa))) - {i for i, _ in pairs})
    only_b = sorted(set(range(len(sb))) - {j for _, j in pairs})
    tests = [pair_test(samples_a[i], samples_b[j]) for i, j in pairs]
    adjusted = holm([p for p, _ in tests])

    every = pd.concat([sa[match], sb[match]], ignore_index=True).assign(n=0)
    by = next((k for k in match if config_key(k) == "pool.name"), match[0] if match else None)
    shown = shown_keys(every, by) if by is not None else []

    def side(row: pd.Series, suffix: str) -> dict[str, Any]:
        out = {f"{k}_{suffix}": row[k] for k in distinguishing}
        out[f"{metric}_mean_{suffix}"] = row[f"{metric}_mean"]
        out[f"{metric}_std_{suffix}"] = row[f"{metric}_std"]
        out[f"n_{suffix}"] = row["n"]
        return out

    rows = []
    for (i, j), (_, test), p in zip(pairs, tests, adjusted, strict=True):
        ra, rb = sa.iloc[i], sb.iloc[j]
        diff = rb[f"{metric}_mean"] - ra[f"{metric}_mean"]
        rows.append(
            {k: ra[k] for k in shown}
            | side(ra, "a")
            | side(rb, "b")
            | {
                f"{metric}_diff": diff,
                "p": p,
                "test": test,
                "differs": None if math.isnan(p) else bool(p < alpha),
                "pair": "matched",
            }
        )
    for label, frame, members in (("only in A", sa, only_a), ("only in B", sb, only_b)):
        suffix = "a" if label == "only in A" else "b"
        for i in members:
            row = frame.iloc[i]
            rows.append({k: row[k] for k in shown} | side(row, suffix) | {"pair": label})
    columns = [
        *shown,
        *(f"{k}_{s}" for k in distinguishing for s in ("a", "b")),
        *(c for x in ("a", "b") for c in (f"{metric}_mean_{x}", f"{metric}_std_{x}", f"n_{x}")),
        f"{metric}_diff",
        "p",
        "test",
        "differs",
        "pair",
    ]
    table = pd.DataFrame(rows, columns=columns)
    table["differs"] = pd.array(table["differs"].tolist(), dtype="boolean")
    matched = table["pair"].eq("matched")
    table = pd.concat(
        [
            table[matched].sort_values(
                f"{metric}_diff", ascending=not info.higher_is_better, na_position="last"
            ),
            table[~matched],
        ]
    ).reset_index(drop=True)
    return Comparison(table, metric, distinguishing, shown, alpha)


def compare_legend(comparison: Comparison) -> str:
    info = metrics.get(comparison.metric)
    told = ", ".join(comparison.distinguishing) or "nothing (same configs)"
    return (
        f"{comparison.metric}: B - A ({info.direction}); pairs agree in every config key but "
        f"what tells A from B: {told}; p: two-sided {PAIRED} by seed where the seeds match, "
        f"{WELCH} otherwise, Holm-corrected over the pairs; differs: p < "
        f"{comparison.alpha:g} (empty: n < {MIN_N}, no claim)"
    )


def write_compare(comparison: Comparison, out: Path) -> Path:
    """``<stem>_compare_<metric>.csv`` beside ``out``: every pair and every unmatched group."""
    path = Path(out).with_name(f"{Path(out).stem}_compare_{comparison.metric}.csv")
    atomic_write_text(path, comparison.table.to_csv(index=False))
    return path


# --- Everything -----------------------------------------------------------------------------


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
    metric: str = "test_acc",
    plots: bool = True,
    alpha: float = 0.05,
) -> Written:
    """Every report file, named after ``out`` (default ``results/report.csv``):

    - ``report.csv`` (or ``.parquet``): one row per run;
    - ``report_summary.csv``/``.md``: grouped over seeds, tested against the best;
    - ``report_pivot_<metric>.csv``/``.md``/``.tex``: ``pivot_on[0]`` x ``pivot_on[1]``;
    - ``report_ranking_<metric>.csv``/``.md``/``.tex``: rows by mean rank, ties with the best
      in bold;
    - the PNG figures of :func:`poolbench.report.plots.write_plots`.

    ``pivot_on[0]`` is also what the significance tests compare (see :class:`Significance`).
    """
    out = Path(out)
    available = valid_keys(df)
    rows, columns = (resolve_key(k, available) for k in pivot_on)
    if rows == columns:
        raise ConfigError(f"expected --pivot ROWS,COLUMNS to name two keys, got {rows} twice")
    significance = Significance(metric, alpha, rows)
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
        return written
    table = pivot(summary, metric, rows, columns)
    write(f"pivot_{metric}.csv", table.mean.to_csv())
    write(f"pivot_{metric}.md", table_text(table, "markdown", significance))
    write(f"pivot_{metric}.tex", table_text(table, "latex", significance))
    by_setting, ranks = ranking(summary, significance)
    write(f"ranking_{metric}.csv", ranks.to_csv())
    for style, suffix in (("markdown", "md"), ("latex", "tex")):
        text = table_text(by_setting, style, significance, mean_rank=ranks["mean_rank"])
        write(f"ranking_{metric}.{suffix}", text)
    if plots:
        from poolbench.report.plots import write_plots

        figures = write_plots(summary, out, significance, df)
        written.paths += figures.paths
        written.notes += figures.notes
    return written


# --- What a sweep concludes -----------------------------------------------------------------


def conclusions(df: pd.DataFrame, alpha: float = 0.05, compare_by: str = "pool") -> list[str]:
    """Two to four plain sentences drawn from the statistics of ``df``'s records (one
    comparison of ``compare_by`` values; with several, the first that has finished runs and a
    pointer to the report): the best test accuracy and the groups tied with it, the ones
    significantly worse, the most shift-consistent, and the fastest by comparable latency."""
    if df.empty or not df["status"].eq("ok").any():
        return ["No run finished: nothing to conclude."]
    acc = Significance("test_acc", alpha, compare_by)
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
    labels = dict(
        zip(summary.index, row_labels(summary, shown_keys(summary, compare_by)), strict=True)
    )
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
        tied = [labels[i] for i, r in others.iterrows() if r["tied_with_best"] is True]
        worse = others[others["tied_with_best"].eq(False).fillna(False)]
        untested = [labels[i] for i, r in others.iterrows() if pd.isna(r["tied_with_best"])]
        used = sorted({t for t in others["test_vs_best"] if t})
        test = " or ".join(f"{t} by seed" if t == PAIRED else t for t in used) or "no test"
        tested = len(others) - len(untested)
        sentences[0] += (
            f"; not significantly worse ({test}, Holm-corrected, alpha {alpha:g}): "
            f"{', '.join(tied) if tied else 'none'} ({len(tied)} of {tested})"
        )
        if untested:
            sentences[0] += f"; one seed, no claim: {', '.join(untested)}"
        sentences[0] += "."
        if len(worse):
            listed = ", ".join(
                f"{labels[i]} (p={r['p_vs_best']:.2g})" for i, r in worse.head(8).iterrows()
            )
            more = f" and {len(worse) - 8} more" if len(worse) > 8 else ""
            sentences.append(f"Significantly worse than {labels[best.name]}: {listed}{more}.")
        elif tested:
            sentences.append(f"No {by} is significantly worse than {labels[best.name]}.")
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
    return sentences[:4] + note


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
    flag = f"; {unstable} figure(s) unstable (IQR > 15% of the median)" if unstable else ""
    return [
        f"Fastest inference ({source}): {labels[fast.name]} {fast[column]:.2f} ms per batch; "
        f"slowest {labels[slow.name]} {slow[column]:.2f} ms ({slow[column] / fast[column]:.1f}x)"
        f"{flag}."
    ]
