"""The keys of a run's identity as table columns: which config keys vary between groups, which
tell rows apart, how they are named (``pool`` for ``pool.name``) and printed.

The record fields in ``LABELS`` stand for the config keys they repeat (``pool`` for
``pool.name``, ``F`` for ``pool.F``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from poolbench.core import defaults
from poolbench.core.errors import ConfigError
from poolbench.core.record import LABEL_KEYS

# Record fields that describe a run's setup, shown before the metrics in tables, and the config
# key each one repeats (:data:`poolbench.core.record.LABEL_KEYS`).
LABELS = list(LABEL_KEYS)
# Record fields that are not config but split groups and can be --pivot keys: a run's tags
# (``+tags=[...]``, joined with commas; not part of its identity).
METADATA = ("tags",)
MISSING = "-"  # a key a group does not have (e.g. p for max pooling), a cell without an ok run


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


def shown_keys(summary: pd.DataFrame, compare_by: str = defaults.COMPARE_BY) -> list[str]:
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


# Labels that read as words of the sentence they are listed in ("worse: none").
PROSE_WORDS = frozenset({"none", "all", "no", "-"})


def in_prose(label: str) -> str:
    """``label`` as a sentence lists it: quoted where it reads as a word (the pool ``none``:
    "significantly worse: 'none'"), else as it is."""
    return f"'{label}'" if label.lower() in PROSE_WORDS else label


def _sort_key(column: pd.Series) -> pd.Series:
    return column if pd.api.types.is_numeric_dtype(column) else column.map(key_text)
