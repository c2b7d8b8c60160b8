"""Reports: read run records, never train.

``load_records`` finds every ``result.json`` below some directories and returns one row per
run; ``summarize`` groups runs that differ only in their seed and gives mean, std and n of the
metrics (failed runs are counted, not averaged) and a 95% confidence interval of the mean
``test_acc`` from Student's t-distribution with n-1 degrees of freedom (seeds are few, so the
normal approximation's 1.96 would be too narrow: t(0.975, 2) = 4.30 for 3 seeds).
``pivot``/``ranking`` make the tables for papers (CSV, Markdown, LaTeX), ``write_plots`` the
figures (PNG), ``compare`` the difference between two sweeps.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from scipy import stats

from poolbench.errors import ConfigError, DataError
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


# Metrics where smaller is better (for "best" marks, rankings and the Pareto front).
LOWER_IS_BETTER = {"latency_ms", "latency_iqr_ms", "params", "train_loss", "train_time_s"}
FORMATS = ("csv", "parquet")


def ci95_halfwidth(std: float, n: int) -> float:
    """Half-width of the 95% interval of a mean of ``n`` values: t(0.975, n-1) * std / sqrt(n)."""
    if n < 2 or math.isnan(std):
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


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


def load_nonempty(dirs: Iterable[Path]) -> pd.DataFrame:
    """``load_records``, with an error naming the directories when they hold no record."""
    dirs = list(dirs)
    df = load_records(dirs)
    if df.empty:
        raise DataError(f"no run records ({RECORD_NAME}) below {', '.join(map(str, dirs))}")
    return df


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
            if m == "test_acc":
                row["test_acc_ci95"] = ci95_halfwidth(row["test_acc_std"], int(values.count()))
        rows.append(row)
    out = pd.DataFrame(rows)
    sort = [c for c in ("data", "model", "test_acc_mean") if c in out.columns]
    return out.sort_values(sort, ascending=[True] * (len(sort) - 1) + [False]).reset_index(
        drop=True
    )


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) + "\n"


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


def _labels_that_vary(summary: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    return [
        c
        for c in LABELS
        if c in summary.columns and c not in exclude and summary[c].nunique(dropna=False) > 1
    ]


def pivot(
    summary: pd.DataFrame, metric: str = "test_acc", rows: str = "pool", columns: str = "model"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and std of ``metric`` with ``rows`` down and ``columns`` across.

    Labels other than these that vary (e.g. ``head`` in a sweep over heads) join the rows, so
    that no cell mixes different configurations.
    """
    for key, value in (("--metric", metric), ("--pivot", rows), ("--pivot", columns)):
        column = f"{value}_mean" if key == "--metric" else value
        if column not in summary.columns:
            valid = METRICS if key == "--metric" else [c for c in LABELS if c in summary.columns]
            raise ConfigError(f"expected {key} to name one of {', '.join(valid)}, got {value!r}")
    index = [rows, *_labels_that_vary(summary, (rows, columns))]
    table = summary.assign(**{c: summary[c].astype(str) for c in [*index, columns]})
    mean = table.pivot_table(f"{metric}_mean", index, columns, aggfunc="first", sort=False)
    std = table.pivot_table(f"{metric}_std", index, columns, aggfunc="first", dropna=False)
    std = std.reindex(index=mean.index, columns=mean.columns)
    return mean, std


def _best_mask(mean: pd.DataFrame, metric: str) -> pd.DataFrame:
    best = mean.min() if metric in LOWER_IS_BETTER else mean.max()
    return mean.eq(best, axis="columns") & mean.notna()


def ranking(mean: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rank of each row within each column (1 = best), the mean rank, best rows first."""
    ranks = mean.rank(ascending=metric in LOWER_IS_BETTER, method="min")
    ranks["mean_rank"] = ranks.mean(axis=1)
    return ranks.sort_values("mean_rank")


def _cells(mean: pd.DataFrame, std: pd.DataFrame, fmt: str) -> pd.DataFrame:
    def cell(m: float, s: float) -> str:
        if pd.isna(m):
            return "-"
        return f"{m:{fmt}}" if pd.isna(s) else f"{m:{fmt}} ± {s:{fmt}}"

    return pd.DataFrame(
        [
            [cell(m, s) for m, s in zip(mr, sr, strict=True)]
            for mr, sr in zip(mean.values, std.values, strict=True)
        ],
        index=mean.index,
        columns=mean.columns,
    )


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&")):
        text = text.replace(char, repl)
    return text.replace("±", r"$\pm$")


def table_text(
    mean: pd.DataFrame,
    std: pd.DataFrame,
    metric: str,
    style: str,
    fmt: str = ".4f",
    mean_rank: pd.Series | None = None,
) -> str:
    """``mean ± std`` cells, the best per column in bold, as ``markdown`` or ``latex``; with
    ``mean_rank`` (from :func:`ranking`), rows in its order and a ``mean rank`` column."""
    cells = _cells(mean, std, fmt)
    best = _best_mask(mean, metric)
    if mean_rank is not None:
        cells, best = cells.loc[mean_rank.index], best.loc[mean_rank.index]
    index_names = [str(n) for n in mean.index.names]
    header = [*index_names, *map(str, mean.columns)] + ["mean rank"] * (mean_rank is not None)
    rows = []
    for key, values in cells.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        marked = [
            (f"**{v}**" if style == "markdown" else f"\\textbf{{{_latex_escape(v)}}}")
            if is_best
            else (v if style == "markdown" else _latex_escape(v))
            for v, is_best in zip(values, best.loc[key], strict=True)
        ]
        rank = [] if mean_rank is None else [f"{mean_rank.loc[key]:.2f}"]
        rows.append([*(str(k) for k in keys), *marked, *rank])
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        note = "lower" if metric in LOWER_IS_BETTER else "higher"
        return (
            "\n".join(lines)
            + f"\n\n{metric}: mean ± std over seeds; bold: best per column ({note} is better)\n"
        )
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
    ]
    return "\n".join(lines) + "\n"


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[bool]:
    """Points not dominated by another with x no larger and y no smaller (one strictly)."""
    points = list(zip(x, y, strict=True))
    return [
        not any((x2 <= x1 and y2 >= y1) and (x2 < x1 or y2 > y1) for x2, y2 in points)
        for x1, y1 in points
    ]


def write_plots(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Accuracy vs latency (Pareto front marked), accuracy per pool with error bars, accuracy
    vs parameters: PNG files beside ``out`` (``<stem>_<plot>.png``)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed (clusters, CI)
    import matplotlib.pyplot as plt

    ok = summary[summary["n"] > 0] if "n" in summary.columns else summary
    if ok.empty or "test_acc_mean" not in ok.columns:
        return []
    out = Path(out)
    names = ok.apply(_point_label, axis=1, args=(_labels_that_vary(ok, ()),))
    paths = []

    def save(fig, name: str) -> None:
        path = out.with_name(f"{out.stem}_{name}.png")
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.tight_layout()
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        tmp.replace(path)
        paths.append(path)

    for x, name, xlabel in (
        ("latency_ms_mean", "acc_vs_latency", "inference latency per batch (ms, median)"),
        ("params_mean", "acc_vs_params", "parameters"),
    ):
        if x not in ok.columns or ok[x].isna().all():
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        ax.errorbar(ok[x], ok["test_acc_mean"], yerr=ok["test_acc_std"].fillna(0), fmt="o")
        for xi, yi, label in zip(ok[x], ok["test_acc_mean"], names, strict=True):
            ax.annotate(label, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if name == "acc_vs_latency":
            front = ok[pareto_front(ok[x].tolist(), ok["test_acc_mean"].tolist())]
            front = front.sort_values(x)
            ax.step(
                front[x], front["test_acc_mean"], where="post", color="C3", label="Pareto front"
            )
            ax.legend()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        save(fig, name)

    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(ok)), 4.8))
    positions = range(len(ok))
    ax.bar(positions, ok["test_acc_mean"], yerr=ok["test_acc_std"].fillna(0), capsize=3)
    ax.set_xticks(list(positions), names, rotation=45, ha="right", fontsize=8)
    spread = ok["test_acc_std"].fillna(0)
    low, high = (ok["test_acc_mean"] - spread).min(), (ok["test_acc_mean"] + spread).max()
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, high + 0.02) + 0.01)  # whole error bars shown
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    save(fig, "acc_per_pool")
    return paths


def _point_label(row: pd.Series, varying: list[str]) -> str:
    keys = [c for c in varying if c in ("pool", "head", "model", "data")] or ["pool"]
    return "/".join(str(row[c]) for c in keys)


def compare(a: pd.DataFrame, b: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Two sweeps' summaries side by side, matched on their labels: B - A of ``metric``."""
    sa, sb = summarize(a), summarize(b)
    keys = [c for c in LABELS if c in sa.columns and c in sb.columns]
    cols = [f"{metric}_mean", f"{metric}_std", "n"]
    for s in (sa, sb):
        if f"{metric}_mean" not in s.columns:
            raise ConfigError(
                f"expected --metric to name one of {', '.join(METRICS)}, got {metric!r}"
            )
    left = sa[keys + cols].astype({k: str for k in keys})
    right = sb[keys + cols].astype({k: str for k in keys})
    merged = left.merge(right, on=keys, how="outer", suffixes=("_a", "_b"))
    merged[f"{metric}_diff"] = merged[f"{metric}_mean_b"] - merged[f"{metric}_mean_a"]
    return merged.sort_values(
        f"{metric}_diff", ascending=metric in LOWER_IS_BETTER, na_position="last"
    ).reset_index(drop=True)


def write_report(
    df: pd.DataFrame,
    out: Path,
    fmt: str = "csv",
    pivot_on: tuple[str, str] = ("pool", "model"),
    metric: str = "test_acc",
    plots: bool = True,
) -> list[Path]:
    """Every report file, named after ``out`` (default ``results/report.csv``):

    - ``report.csv`` (or ``.parquet``): one row per run;
    - ``report_summary.csv``/``.md``: grouped over seeds;
    - ``report_pivot_<metric>.csv``/``.md``/``.tex``: ``pivot_on[0]`` x ``pivot_on[1]``;
    - ``report_ranking_<metric>.csv``/``.md``/``.tex``: rows by mean rank, best per column bold;
    - ``report_<plot>.png``: the plots of :func:`write_plots`.
    """
    out = Path(out)
    summary = summarize(df)
    paths = [write_runs(df, out, fmt)]

    def write(suffix: str, text: str) -> None:
        path = out.with_name(f"{out.stem}_{suffix}")
        atomic_write_text(path, text)
        paths.append(path)

    write("summary.csv", summary.to_csv(index=False))
    write("summary.md", to_markdown(summary) if not summary.empty else "no runs\n")
    if summary.empty or summary["n"].sum() == 0:
        return paths
    mean, std = pivot(summary, metric, *pivot_on)
    write(f"pivot_{metric}.csv", mean.to_csv())
    write(f"pivot_{metric}.md", table_text(mean, std, metric, "markdown"))
    write(f"pivot_{metric}.tex", table_text(mean, std, metric, "latex"))
    ranks = ranking(mean, metric)
    write(f"ranking_{metric}.csv", ranks.to_csv())
    write(
        f"ranking_{metric}.md",
        table_text(mean, std, metric, "markdown", mean_rank=ranks["mean_rank"]),
    )
    write(
        f"ranking_{metric}.tex",
        table_text(mean, std, metric, "latex", mean_rank=ranks["mean_rank"]),
    )
    if plots:
        paths += write_plots(summary, out)
    return paths
