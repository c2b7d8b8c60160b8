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
    rows, twice = once_per_run(rows)
    df = records_frame(rows)
    notes = twice
    if unusable:
        runs = len({u.split(": ", 1)[0] for u in unusable})
        notes.append(
            f"{runs} record{'s' * (runs != 1)} with unusable metrics, left out of every mean "
            f"and test (a run with no {PRIMARY} still counts in n): " + "; ".join(unusable)
        )
    if notes:
        df.attrs["notes"] = notes
    return df


def once_per_run(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each run once: a record whose ``run_id`` was already read (the same run found in two
    folders, a copied results directory) is counted once, the ok one or else the latest
    started; returns the records (in their order) and one warning line per run met twice,
    naming its paths."""

    def rank(r: dict[str, Any]) -> tuple[bool, str]:
        return r.get("status") == "ok", str(r.get("started_at") or "")

    where: dict[Any, list[int]] = {}
    for i, record in enumerate(records):
        if record.get("run_id") is not None:
            where.setdefault(record["run_id"], []).append(i)
    chosen = {run_id: max(found, key=lambda i: rank(records[i])) for run_id, found in where.items()}
    keep = [r for i, r in enumerate(records) if r.get("run_id") is None or chosen[r["run_id"]] == i]
    notes = []
    for run_id, found in where.items():
        if len(found) > 1:
            used = records[chosen[run_id]]
            rest = [str(records[i].get("record_path")) for i in found if i != chosen[run_id]]
            notes.append(
                f"warning: run {run_id} ({used.get('run_name')}) found {len(found)} times, "
                f"counted once: {used.get('record_path')} (counted), {', '.join(rest)} (left out)"
            )
    return keep, notes


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


# Record fields holding a dict, kept as one JSON text column each.
JSON_FIELDS = ("learned_p", "compute_times_ms")


def records_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Run records (dicts) as one row each, flattened as :func:`load_records` describes."""
    rows = [dict(r) for r in records]
    if not rows:
        return pd.DataFrame(columns=list(RECORD_FIELDS))
    for r in rows:  # tags as one text key ("paper,v2"), so that they can be grouped and shown
        if "tags" in r:
            r["tags"] = ",".join(r["tags"] or []) or None
    history = [r.pop("history", None) for r in rows]
    # {module path: p}, {candidate: ms}: one JSON text column each, not a column per key
    as_text = {f: [r.pop(f, None) for r in rows] for f in JSON_FIELDS if any(f in r for r in rows)}
    df = pd.json_normalize(rows, sep=".")
    for col in df.columns:  # lists (e.g. config.model.widths) as text, so they can be grouped
        if df[col].map(lambda v: isinstance(v, (list, dict))).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    if any(h is not None for h in history):
        df["history"] = [None if h is None else json.dumps(h) for h in history]
    for name, values in as_text.items():
        df[name] = [None if v is None else json.dumps(v) for v in values]
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
