"""The figures of a report (PNG, and PDF for a paper, through matplotlib's Agg backend: files
only, no display).

:func:`make_figures` builds them from a summary (:func:`poolbench.report.summarize`) and,
for the learning curves, the runs; :func:`write_plots` saves them beside the report:

- ``<stem>_<metric>_per_<rows>.png``: every group's mean and 95% t-interval over seeds, one panel
  per comparison (groups equal in everything but ``rows``), best first, the set tied with the
  best marked; the panels share one x-range;
- ``<stem>_acc_vs_latency.png``: test accuracy against ``latency_ms`` as recorded, the Pareto
  front of each comparison drawn, each point labelled with its name;
- ``<stem>_acc_vs_params.png``: the same against parameters, only where these differ;
- ``<stem>_learning_curves.png``: per-epoch training loss and validation accuracy, mean over
  seeds, where the records carry ``history``;
- ``<stem>_critical_difference.png``: the critical-difference diagram (Demšar 2006) of
  ``rows`` ranked over five or more settings (Friedman test, Nemenyi post-hoc: scikit-posthocs).

Every title states data, model, n, device, dtype and latency source. Axis rule
(:data:`AXIS_RULE`), so that small spreads are not blown up to the full height: an axis of a
metric bounded to [0, 1] (accuracies) spans at least :data:`MIN_SPAN` and stays within [0, 1];
any other axis spans at least :data:`MIN_FRACTION` of its largest value and does not go below 0
when the values do not. Scatter labels are the groups' names, placed where they overlap no
other label (:func:`place_labels`). No text overlaps another (:func:`lay_out`; a test
compares the boxes of every text of every figure).
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from scipy import stats

from poolbench.core import metrics
from poolbench.report.keys import (
    key_text,
    resolve_key,
    row_labels,
    shown_keys,
    subtree,
    summary_keys,
    unique_index,
    varying_keys,
)
from poolbench.report.significance import MIN_N
from poolbench.report.summary import (
    Significance,
    comparable_latency,
    n_text,
    pareto_front,
    run_groups,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MIN_SPAN = 0.1  # of an accuracy axis
MIN_FRACTION = 0.25  # of any other axis, as a share of its largest value
AXIS_RULE = (
    f"axis rule: accuracy axes span at least {MIN_SPAN:g} within [0, 1]; other axes at least "
    f"{MIN_FRACTION:.0%} of their largest value, never below 0"
)
INTERVAL = "mean and 95% t-interval over seeds (none where n < 2)"
# The settings (blocks) a Friedman test and its critical-difference diagram need: autorank
# refuses fewer than five (Herbold 2020), and below that the CD exceeds what k values can span.
MIN_SETTINGS = 5
# How the per-group figure marks each group's verdict against the best of its comparison.
VERDICT_STYLES: dict[str, dict[str, Any]] = {
    "best": {"marker": "D", "facecolors": "C0", "edgecolors": "C0", "label": "best"},
    "equivalent": {
        "marker": "o",
        "facecolors": "C0",
        "edgecolors": "C0",
        "label": "equivalent (within ±{margin:g})",
    },
    "undecided": {
        "marker": "o",
        "facecolors": "white",
        "edgecolors": "C0",
        "label": "undecided",
    },
    "worse": {"marker": "o", "facecolors": "0.55", "edgecolors": "0.55", "label": "worse"},
    # a race's own decision for one shown worse at a look (its page shows the race's verdicts)
    "eliminated": {
        "marker": "o",
        "facecolors": "0.55",
        "edgecolors": "0.55",
        "label": "eliminated",
    },
    "": {"marker": "x", "color": "0.3", "label": "n < {n}: no claim"},
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed (clusters, CI)
    import matplotlib.pyplot as plt

    return plt


def _conditions(summary: pd.DataFrame, column: str) -> list[str]:
    if column not in summary.columns:
        return []
    values = {v for cell in summary[column].dropna() for v in str(cell).split(", ")}
    return sorted(values)


def caption(summary: pd.DataFrame) -> str:
    """``data digits; model vgg; n = 3 seeds per group; device cpu; dtype bf16; latency
    interleaved`` for the groups of ``summary`` (every value where they differ)."""
    parts = []
    for key in ("data", "model"):
        if key in summary.columns:
            parts.append(f"{key} {', '.join(sorted(set(map(key_text, summary[key]))))}")
    parts.append(n_text(sorted({int(n) for n in summary["n"]})))
    for column in ("device", "cpu", "dtype"):
        parts.append(f"{column} {', '.join(_conditions(summary, column)) or 'not recorded'}")
    sources = _conditions(summary, "latency_source")
    if not sources:
        parts.append("latency source not recorded")
    elif len(sources) == 1:
        parts.append(f"latency {sources[0]}")
    else:
        parts.append(f"latency: mixed sources ({', '.join(sources)})")
    return "; ".join(parts)


def value_limits(info: metrics.Metric, low: float, high: float) -> tuple[float, float]:
    """Axis limits for values in [low, high] under :data:`AXIS_RULE`."""
    if info.bounded:
        span, floor, ceiling = MIN_SPAN, 0.0, 1.0
    else:
        span, floor, ceiling = MIN_FRACTION * max(abs(low), abs(high), 1e-12), None, None
    pad = 0.05 * max(high - low, span)
    low, high = low - pad, high + pad
    if high - low < span:
        middle = (low + high) / 2
        low, high = middle - span / 2, middle + span / 2
    if floor is None and low < 0 <= low + pad:  # a cost never below 0: no negative axis
        floor = 0.0
    if floor is not None and low < floor:
        low, high = floor, high + (floor - low)
    if ceiling is not None and high > ceiling:
        low, high = max(floor or 0.0, low - (high - ceiling)), ceiling
    return low, high


def _span(mean: pd.Series, half: pd.Series) -> tuple[float, float]:
    half = half.fillna(0)
    return float((mean - half).min()), float((mean + half).max())


def _wrap(text: str, width: int = 110) -> str:
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def _per_group(summary: pd.DataFrame, significance: Significance) -> Figure:
    plt = _pyplot()
    info = significance.info
    mean, half = f"{info.name}_mean", f"{info.name}_ci95"
    names = summary_keys(summary)
    by = resolve_key(significance.compare_by, names)
    below = subtree(by, names)
    ok = summary[summary["n"].gt(0) & summary[mean].notna()]
    sets = [k for k in varying_keys(ok, names) if k not in below]
    panels = list(ok.groupby(sets, dropna=False, sort=False)) if sets else [((), ok)]
    heights = [len(panel) + 1.5 for _, panel in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 2.4 + 0.3 * sum(heights)),
        squeeze=False,
        sharex=True,  # one x-range: panels compare by eye
        gridspec_kw={"height_ratios": heights},
    )
    limits = value_limits(info, *_span(ok[mean], ok[half]))
    for ax, (key, panel) in zip(axes[:, 0], panels, strict=True):
        panel = panel.sort_values(mean, ascending=info.higher_is_better)  # best at the top
        labels = row_labels(panel, unique_index(panel, [by], varying_keys(panel, below)))
        y = list(range(len(panel)))
        ax.errorbar(panel[mean], y, xerr=panel[half], fmt="none", ecolor="0.2", capsize=3)
        verdicts = panel["verdict"].fillna("").astype(str) if "verdict" in panel else None
        for verdict, style in VERDICT_STYLES.items():
            pick = [v == verdict for v in verdicts] if verdicts is not None else [False] * len(y)
            if any(pick):
                label = style["label"].format(margin=significance.margin, n=MIN_N)
                ax.scatter(
                    panel[mean][pick],
                    [yi for yi, p in zip(y, pick, strict=True) if p],
                    s=40,
                    zorder=3,
                    **{k: v for k, v in style.items() if k != "label"},
                    label=label,
                )
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlim(*limits)
        ax.set_ylim(-0.7, len(panel) - 0.3)
        ax.grid(axis="x", alpha=0.3)
        if sets:
            values = key if isinstance(key, tuple) else (key,)
            ax.set_title(
                " ".join(f"{k}={key_text(v)}" for k, v in zip(sets, values, strict=True)),
                fontsize=9,
            )
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel(f"{info.axis_label()} ({info.direction}): {INTERVAL}")
    fig.suptitle(_wrap(f"{info.name} per {by}\n{caption(ok)}"), fontsize=10)
    footer = fig.text(
        0.01,
        0.005,
        _wrap(significance.verdict_legend(ok["n"]) + ".\n" + AXIS_RULE, 150),
        fontsize=6.5,
        va="bottom",
    )
    lay_out(fig, footer)
    return fig


def _scatter(summary: pd.DataFrame, significance: Significance, x: str, pareto: bool) -> Figure:
    """Test accuracy against ``x``, one panel per setting (the keys that vary besides the
    compared one), the panels sharing both axes; each point labelled with its group's name."""
    plt = _pyplot()
    acc, xinfo = metrics.get("test_acc"), metrics.get(x)
    names = summary_keys(summary)
    by = resolve_key(significance.compare_by, names)
    ok = summary[summary["n"].gt(0) & summary["test_acc_mean"].notna()].reset_index(drop=True)
    ok = ok[ok[f"{x}_mean"].notna()].reset_index(drop=True)
    below = subtree(by, names)
    sets = [k for k in varying_keys(ok, names) if k not in below]
    panels = list(ok.groupby(sets, dropna=False, sort=False)) if sets else [((), ok)]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    size = (9, 6.5) if len(panels) == 1 else (4.2 * ncols, 1.6 + 3.6 * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, sharex=True, sharey=True)
    x_half = ok[f"{x}_ci95"] if f"{x}_ci95" in ok.columns else ok[f"{x}_mean"] * 0
    placed = []
    for ax, (key, panel) in zip(axes.flat, panels, strict=False):
        values = key if isinstance(key, tuple) else (key,)
        if sets:
            title = " ".join(f"{k}={key_text(v)}" for k, v in zip(sets, values, strict=True))
            ax.set_title(title, fontsize=9)
        xerr = panel[f"{x}_ci95"] if f"{x}_ci95" in panel.columns else None
        ax.errorbar(
            panel[f"{x}_mean"],
            panel["test_acc_mean"],
            xerr=xerr,
            yerr=panel["test_acc_ci95"],
            fmt="o",
            color="C0",
            ms=4,
            capsize=2,
        )
        if pareto:
            # pareto_front wants x lower-is-better and y higher-is-better: signs from the registry
            xs = panel[f"{x}_mean"] * (-1 if xinfo.higher_is_better else 1)
            ys = panel["test_acc_mean"] * (1 if acc.higher_is_better else -1)
            front = panel[pareto_front(xs.tolist(), ys.tolist())].sort_values(f"{x}_mean")
            ax.step(front[f"{x}_mean"], front["test_acc_mean"], where="post", color="C1", alpha=0.6)
            # the points on it ringed, so that a front of one point shows too
            ax.scatter(
                front[f"{x}_mean"],
                front["test_acc_mean"],
                s=110,
                facecolors="none",
                edgecolors="C1",
                zorder=3,
                label="Pareto front",
            )
            if ax is axes.flat[0]:
                ax.legend(fontsize=7, loc="lower right")
        ax.set_ylim(*value_limits(acc, *_span(ok["test_acc_mean"], ok["test_acc_ci95"])))
        ax.set_xlim(*value_limits(xinfo, *_span(ok[f"{x}_mean"], x_half)))
        ax.grid(alpha=0.3)
        labels = row_labels(panel, unique_index(panel, [by], varying_keys(panel, below)))
        placed.append((ax, panel[f"{x}_mean"].tolist(), panel["test_acc_mean"].tolist(), labels))
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-1, :]:
        ax.set_xlabel(xinfo.axis_label(), fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("test_acc", fontsize=8)
    what = {
        "latency_ms": "each run's own timing: not comparable on a busy machine",
        "latency_interleaved_ms": "every config timed in one process, interleaved",
    }.get(x, x)
    fig.suptitle(_wrap(f"test accuracy vs {x} ({what})\n{caption(ok)}", 120), fontsize=10)
    footer = _wrap(
        f"x: {xinfo.axis_label()}, {xinfo.description}; y: test accuracy; each point the "
        f"{INTERVAL}.\n{AXIS_RULE}",
        150,
    )
    lay_out(fig, fig.text(0.01, 0.005, footer, fontsize=6.5, va="bottom"))
    for ax, xs, ys, labels in placed:
        place_labels(ax, xs, ys, labels)
    return fig


# Offsets (points) tried for a label, nearest first: 8 directions on growing rings.
_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
_RINGS = (6, 12, 20, 30, 42, 56)


def place_labels(ax: Any, xs: list[float], ys: list[float], texts: list[str]) -> list[Any]:
    """Annotate each point with its text at the nearest offset where the text's box overlaps
    no label placed before (nor the legend) and stays inside the axes (a thin line joins text
    and point beyond the first ring); where none is free, at the last offset tried. Call after
    the layout is final: boxes are measured in display space."""
    from matplotlib.text import Text

    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed, annotations = [], []
    legend = ax.get_legend()
    if legend is not None:  # the labels keep off the legend too
        placed.append(legend.get_window_extent(renderer))
    for x, y, text in zip(xs, ys, texts, strict=True):
        for ring in _RINGS:
            for dx, dy in _DIRECTIONS:
                annotation = ax.annotate(
                    text,
                    (x, y),
                    xytext=(dx * ring, dy * ring),
                    textcoords="offset points",
                    fontsize=7,
                    ha="center",
                    va="center",
                    arrowprops=(
                        None
                        if ring == _RINGS[0]
                        else {"arrowstyle": "-", "lw": 0.4, "color": "0.5", "shrinkB": 2}
                    ),
                )
                annotation.update_positions(renderer)
                box = Text.get_window_extent(annotation, renderer)  # the text, not its line
                inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
                if inside and not any(box.overlaps(other) for other in placed):
                    break
                annotation.remove()
            else:
                continue
            break
        else:
            annotation = ax.annotate(
                text, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=7
            )
            annotation.update_positions(renderer)
            box = Text.get_window_extent(annotation, renderer)
        placed.append(box)
        annotations.append(annotation)
    return annotations


def _histories(group: pd.DataFrame) -> list[list[dict[str, Any]]]:
    out = []
    for text in group.get("history", pd.Series(dtype=object)):
        if isinstance(text, str):
            history = json.loads(text)
            if history:
                out.append(history)
    return out


def _learning_curves(
    runs: pd.DataFrame, summary: pd.DataFrame, significance: Significance
) -> Figure | None:
    ok = runs[runs["status"].eq("ok")]
    if "history" not in ok.columns or not ok["history"].map(lambda h: isinstance(h, str)).any():
        return None
    by = resolve_key(significance.compare_by, summary_keys(summary))
    shown = shown_keys(summary, by)
    curves = []
    for key_values, group in run_groups(ok):
        histories = _histories(group)
        if not histories:
            continue
        frame = pd.DataFrame([dict(h) for history in histories for h in history])
        frame = frame.apply(pd.to_numeric, errors="coerce")
        per_epoch = frame.groupby("epoch").mean(numeric_only=True).sort_index()
        label = row_labels(pd.DataFrame([key_values]), [k for k in shown if k in key_values])[0]
        curves.append((f"{label} (n={len(histories)})", per_epoch))
    if not curves:
        return None
    plt = _pyplot()
    has_val = any("val_acc" in c and c["val_acc"].notna().any() for _, c in curves)
    fig, axes = plt.subplots(
        1, 2 if has_val else 1, figsize=(12 if has_val else 8, 5), squeeze=False
    )
    loss_ax = axes[0, 0]
    for label, c in curves:
        loss_ax.plot(c.index, c["train_loss"], marker=".", label=label)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train_loss (mean over seeds)")
    loss_ax.set_ylim(bottom=0)
    loss_ax.grid(alpha=0.3)
    if has_val:
        val_ax = axes[0, 1]
        low, high = math.inf, -math.inf
        for _, c in curves:
            if "val_acc" in c and c["val_acc"].notna().any():
                val_ax.plot(c.index, c["val_acc"], marker=".")
                low, high = min(low, c["val_acc"].min()), max(high, c["val_acc"].max())
            else:
                val_ax.plot([], [])  # keep the colours of both panels in step
        val_ax.set_ylim(*value_limits(metrics.get("val_acc"), low, high))
        val_ax.set_xlabel("epoch")
        val_ax.set_ylabel("val_acc (mean over seeds; epochs evaluated)")
        val_ax.grid(alpha=0.3)
    fig.legend(loc="center right", fontsize=7)
    title = "learning curves: per-epoch mean over seeds"
    if not has_val:
        title += " (no validation accuracy recorded: train.eval_every = 0)"
    fig.suptitle(_wrap(f"{title}\n{caption(summary[summary['n'] > 0])}"), fontsize=10)
    lay_out(fig, fig.text(0.01, 0.005, AXIS_RULE, fontsize=6.5, va="bottom"), right=0.75)
    return fig


def critical_difference(
    summary: pd.DataFrame, significance: Significance
) -> tuple[Figure | None, str]:
    """The critical-difference diagram of ``significance.compare_by`` values ranked by
    ``significance.metric`` within each setting (each comparison: data, model, ...), and a
    sentence for the command's output (why there is none, what it left out)."""
    info = significance.info
    mean = f"{info.name}_mean"
    names = summary_keys(summary)
    by = resolve_key(significance.compare_by, names)
    below = subtree(by, names)
    ok = summary[summary["n"].gt(0) & summary[mean].notna()]
    sets = [k for k in varying_keys(ok, names) if k not in below]
    treatments = unique_index(ok, [by], varying_keys(ok, below), sets)
    n_settings = len(ok.groupby(sets, dropna=False)) if sets else 1
    if n_settings < MIN_SETTINGS:
        return None, (
            f"no critical-difference diagram: it ranks {by} values over settings (data, "
            f"model, ...), and the Friedman test needs {MIN_SETTINGS} or more (as autorank "
            f"asks); these records hold {n_settings} setting{'s' * (n_settings != 1)}"
        )
    frame = ok.assign(_setting=row_labels(ok, sets), _treatment=row_labels(ok, treatments)).pivot(
        index="_setting", columns="_treatment", values=mean
    )
    complete = frame.dropna(axis=1)
    left_out = [c for c in frame.columns if c not in complete.columns]
    if complete.shape[1] < 2 or complete.shape[0] < MIN_SETTINGS:
        return None, (
            f"no critical-difference diagram: fewer than 2 {by} values ran in all "
            f"{n_settings} settings"
        )
    import scikit_posthocs as sp

    plt = _pyplot()
    # average ranks for ties (Demšar 2006), as the ranking table ranks
    ranks = complete.rank(axis=1, ascending=not info.higher_is_better, method="average").mean()
    nemenyi = sp.posthoc_nemenyi_friedman(complete.to_numpy())
    nemenyi.index = nemenyi.columns = complete.columns
    k, n = complete.shape[1], complete.shape[0]
    if k >= 3:
        columns = [complete[c].to_numpy() for c in complete.columns]
        friedman = f"Friedman p = {stats.friedmanchisquare(*columns).pvalue:.3g}"
    else:
        friedman = "Friedman test needs 3 or more"
    q = stats.studentized_range.ppf(1 - significance.alpha, k, math.inf) / math.sqrt(2)
    cd = q * math.sqrt(k * (k + 1) / (6 * n))
    fig, ax = plt.subplots(figsize=(9, 2.2 + 0.22 * k))
    sp.critical_difference_diagram(ranks, nemenyi, alpha=significance.alpha, ax=ax)
    fig.suptitle(
        _wrap(
            f"critical difference: mean rank of {info.name} over {n} settings "
            f"({info.direction}, rank 1 = best; {friedman}); bars join {by} values the Nemenyi "
            f"test does not tell apart at alpha {significance.alpha:g} (CD = {cd:.2f})\n"
            f"{caption(ok)}"
        ),
        fontsize=9,
    )
    lay_out(fig)
    note = f"critical-difference diagram: {k} {by} values over {n} settings ({friedman})"
    if left_out:
        note += f"; left out (not run in every setting): {', '.join(left_out)}"
    return fig, note


def _left_out(summary: pd.DataFrame, columns: list[str], figure: str, by: str) -> str | None:
    """A note naming the groups a figure cannot show (no ok run, or no value of a column)."""
    shown = summary["n"].gt(0)
    for column in columns:
        shown &= summary[column].notna()
    if shown.all():
        return None
    labels = row_labels(summary[~shown], shown_keys(summary, by))
    needs = ", ".join(c.removesuffix("_mean") for c in columns)
    return f"{figure}: left out {len(labels)} group(s) without an ok run with {needs}: " + (
        "; ".join(labels)
    )


def make_figures(
    summary: pd.DataFrame, significance: Significance, runs: pd.DataFrame | None = None
) -> tuple[dict[str, Figure], list[str]]:
    """Figures by file suffix, and notes for the command's output: the figures not made and
    why, the groups a figure leaves out."""
    figures: dict[str, Figure] = {}
    notes: list[str] = []
    info = significance.info
    ok = summary[summary["n"].gt(0)] if "n" in summary.columns else summary
    if ok.empty or f"{info.name}_mean" not in ok.columns:
        return figures, ["no plots: no ok run"]
    by = resolve_key(significance.compare_by, summary_keys(summary))

    def add(name: str, fig: Figure, needs: list[str]) -> None:
        figures[name] = fig
        note = _left_out(summary, needs, name, by)
        if note:
            notes.append(note)

    add(f"{info.name}_per_{by}", _per_group(summary, significance), [f"{info.name}_mean"])
    if "test_acc_mean" in ok.columns and ok["test_acc_mean"].notna().any():
        latency = comparable_latency(ok)
        if latency is not None:
            fig = _scatter(summary, significance, latency, True)
            add("acc_vs_latency", fig, ["test_acc_mean", f"{latency}_mean"])
        if "params_mean" in ok.columns and ok["params_mean"].nunique() > 1:
            fig = _scatter(summary, significance, "params", False)
            add("acc_vs_params", fig, ["test_acc_mean", "params_mean"])
        elif "params_mean" in ok.columns:
            notes.append("no acc_vs_params plot: every group has the same number of parameters")
    curves = _learning_curves(runs, summary, significance) if runs is not None else None
    if curves is not None:
        figures["learning_curves"] = curves
    else:
        notes.append("no learning curves: the records carry no per-epoch history")
    cd, note = critical_difference(summary, significance)
    notes.append(note)
    if cd is not None:
        figures["critical_difference"] = cd
    return figures, notes


def write_plots(
    summary: pd.DataFrame,
    out: Path | None,
    significance: Significance | None = None,
    runs: pd.DataFrame | None = None,
    svg: dict[str, str] | None = None,
) -> tuple[list[Path], list[str]]:
    """The figures of :func:`make_figures` as ``<stem>_<name>.png`` and, vector for a paper,
    ``<stem>_<name>.pdf`` beside ``out`` (None: no files); each also as SVG text into ``svg``
    where given (for the HTML page). Returns the paths written and the notes (figures not
    made and why, groups left out)."""
    plt = _pyplot()
    figures, notes = make_figures(summary, significance or Significance(), runs)
    paths = []
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        for suffix, options in ((".png", {"dpi": 120}), (".pdf", {})) if out else ():
            path = Path(out).with_name(f"{Path(out).stem}_{name}{suffix}")
            tmp = path.with_name(f".{path.name}.tmp{suffix}")
            fig.savefig(tmp, **options)
            tmp.replace(path)
            paths.append(path)
        if svg is not None:
            text = io.StringIO()
            fig.savefig(text, format="svg")
            svg[name] = text.getvalue()
        plt.close(fig)
    return paths, notes


def lay_out(fig: Figure, footer: Any = None, right: float = 1.0) -> None:
    """Lay the axes out above ``footer`` (a text at the figure's bottom-left: the legend, the
    axis rule), so that caption, axis labels, tick labels and legends never overlap: the
    footer's height is measured as drawn, then the layout leaves it that room."""
    bottom = 0.0
    if footer is not None:
        fig.canvas.draw()
        box = footer.get_window_extent(fig.canvas.get_renderer())
        bottom = box.height / fig.bbox.height + 0.015
    fig.tight_layout(rect=(0, bottom, right, 1))
