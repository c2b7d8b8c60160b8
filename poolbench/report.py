"""Reports: read run records, never train.

``load_records`` finds every ``result.json`` below some directories and returns one row per
run; ``summarize`` groups runs that differ only in their seed and gives mean, std and n of the
metrics (failed runs are counted, not averaged).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from poolbench.errors import DataError
from poolbench.record import RECORD_FIELDS, RECORD_NAME, atomic_write_text, read_record

# Columns that describe a run's setup and are shown before the metrics in tables.
LABELS = ["data", "model", "pool", "F", "S", "p", "head", "epochs"]
METRICS = [
    "test_acc",
    "test_top5",
    "train_loss",
    "latency_ms",
    "latency_ms_b1",
    "throughput_img_s",
    "train_time_s",
    "peak_mem_mb",
    "params",
    "flops",
    "pool_flops",
    "activations",
    "shift_consistency",
    "acc_rot",
]
# Invariance fields named by the eval config: acc_shift_<k>, acc_res_<size>.
INVARIANCE_PATTERN = re.compile(r"acc_(shift|res)_\d+")


def find_records(dirs: Iterable[Path]) -> list[Path]:
    paths: set[Path] = set()
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise DataError(f"no such directory: {d}")
        paths.update(p.resolve() for p in d.rglob(RECORD_NAME))
    return sorted(paths)


def load_records(dirs: Iterable[Path]) -> pd.DataFrame:
    """One row per run record; known fields first, unknown fields kept as extra columns."""
    rows = []
    for path in find_records(dirs):
        try:
            record = read_record(path)
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"unreadable run record {path}: {err}") from None
        record["record_path"] = str(path)
        rows.append(record)
    if not rows:
        return pd.DataFrame(columns=list(RECORD_FIELDS))
    df = pd.json_normalize(rows, sep=".")
    for col in df.columns:  # lists (e.g. config.model.widths) as text, so they can be grouped
        if df[col].map(lambda v: isinstance(v, (list, dict))).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    first = [c for c in RECORD_FIELDS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def _group_columns(df: pd.DataFrame) -> list[str]:
    """Everything that defines a run except its seed (the full config when recorded)."""
    config_cols = [c for c in df.columns if c.startswith("config.") and c != "config.seed"]
    return config_cols or [c for c in LABELS if c in df.columns]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n of each metric over seeds; ``failed`` counts failed runs per group."""
    if df.empty:
        return pd.DataFrame()
    keys = _group_columns(df)
    labels = [c for c in LABELS if c in df.columns]
    metrics = [m for m in METRICS if m in df.columns]
    metrics += [c for c in df.columns if INVARIANCE_PATTERN.fullmatch(c)]
    ok = df["status"].eq("ok")
    rows = []
    for _, group in df.groupby(keys, dropna=False, sort=False):
        good = group[ok.loc[group.index]]
        row = {c: group[c].iloc[0] for c in labels}
        row["n"] = len(good)
        row["failed"] = int((~ok.loc[group.index]).sum())
        row["seeds"] = " ".join(str(s) for s in sorted(good["seed"].tolist()))
        for m in metrics:
            values = pd.to_numeric(good[m], errors="coerce")
            row[f"{m}_mean"] = values.mean()
            row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
        rows.append(row)
    out = pd.DataFrame(rows)
    sort = [c for c in ("data", "model", "test_acc_mean") if c in out.columns]
    return out.sort_values(sort, ascending=[True] * (len(sort) - 1) + [False]).reset_index(
        drop=True
    )


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) + "\n"


def write_report(df: pd.DataFrame, out: Path) -> tuple[Path, Path, Path]:
    """Write the per-run CSV at ``out`` and the summary beside it (``*_summary.csv``/``.md``)."""
    out = Path(out)
    summary = summarize(df)
    summary_csv = out.with_name(f"{out.stem}_summary.csv")
    summary_md = out.with_name(f"{out.stem}_summary.md")
    atomic_write_text(out, df.to_csv(index=False))
    atomic_write_text(summary_csv, summary.to_csv(index=False))
    atomic_write_text(summary_md, to_markdown(summary) if not summary.empty else "no runs\n")
    return out, summary_csv, summary_md
