"""Record sources: every ``result.json`` below a directory, the runs a sweep directory's
``summary.csv`` lists, or the runs a text file lists; read into one row per run, with the
types of the fields that group and label runs checked.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from poolbench.core import metrics
from poolbench.core.errors import DataError
from poolbench.core.record import (
    RECORD_FIELDS,
    RECORD_NAME,
    SWEEP_SUMMARY_NAME,
    read_record,
)


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
