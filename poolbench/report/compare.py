"""Two record sources against each other: each group of A paired with the groups of B whose
identity agrees apart from what tells A from B, B - A of one metric and its test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from poolbench.core import defaults, metrics
from poolbench.core.storage import atomic_write_text
from poolbench.report.keys import (
    config_key,
    shown_keys,
    valid_keys,
)
from poolbench.report.significance import (
    MIN_N,
    PAIRED,
    SIGN,
    WELCH,
    holm,
    pair_test,
)
from poolbench.report.summary import (
    Significance,
    _summarize,
)


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
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str = defaults.METRIC,
    alpha: float = defaults.ALPHA,
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
    exact = significance.info.exact
    tests = [pair_test(samples_a[i], samples_b[j], exact=exact) for i, j in pairs]
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
        f"{SIGN} where the differences do not vary, {WELCH} otherwise, Holm-corrected over "
        f"the pairs; differs: p < {comparison.alpha:g} (empty: n < {MIN_N}, no claim)"
    )


def write_compare(comparison: Comparison, out: Path) -> Path:
    """``<stem>_compare_<metric>.csv`` beside ``out``: every pair and every unmatched group."""
    path = Path(out).with_name(f"{Path(out).stem}_compare_{comparison.metric}.csv")
    atomic_write_text(path, comparison.table.to_csv(index=False))
    return path
