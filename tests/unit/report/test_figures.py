"""Figures for a paper: no text of any figure poolbench writes overlaps another or leaves the
figure (caption, axis labels, tick labels, legends, point labels: the boxes matplotlib reports),
panels of one figure share their x-range, points carry their names, and each figure is written
as PDF beside the PNG. On records with known answers: one setting, six settings, a sweep over
train.lr, one seed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from poolbench.report.plots import make_figures, write_plots
from poolbench.report.records import load_records
from poolbench.report.summary import Significance, summarize
from tests.helpers.fake_records import write_runs
from tests.helpers.report_cases import CASES, one_setting, six_settings


def figures_of(records: list[dict], tmp_path: Path) -> dict:
    write_runs(tmp_path / "recs", records)
    df = load_records([tmp_path / "recs"])
    significance = Significance()
    figures, _ = make_figures(summarize(df, significance), significance, df)
    return figures


def drawn_ticks(axis) -> list:
    """The tick labels matplotlib draws: those of ticks inside the axis' view interval (it
    also keeps labels for ticks just beyond it, which it does not draw)."""
    low, high = sorted(axis.get_view_interval())
    slack = (high - low) * 1e-9
    return [
        tick.label1
        for tick in axis.get_major_ticks()
        if low - slack <= tick.get_loc() <= high + slack
    ]


def text_boxes(fig) -> list[tuple[str, object]]:
    """Every visible, non-empty text of ``fig`` with its box in display space."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(fig.texts)
    if fig._suptitle is not None:
        texts.append(fig._suptitle)
    for legend in fig.legends:
        texts += legend.get_texts()
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        texts += drawn_ticks(ax.xaxis) + drawn_ticks(ax.yaxis) + ax.texts
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    out = []
    for t in dict.fromkeys(texts):  # the suptitle is among fig.texts too
        if t.get_visible() and t.get_text().strip():
            out.append((t.get_text()[:40], t.get_window_extent(renderer)))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_no_text_of_any_figure_overlaps_another(tmp_path: Path, case: str):
    figures = figures_of(CASES[case](), tmp_path)
    assert figures
    for name, fig in figures.items():
        boxes = text_boxes(fig)
        frame = fig.bbox
        outside = [t for t, b in boxes if b.x0 < frame.x0 - 1 or b.x1 > frame.x1 + 1]
        outside += [t for t, b in boxes if b.y0 < frame.y0 - 1 or b.y1 > frame.y1 + 1]
        assert not outside, (name, outside)
        overlapping = [
            (a, b)
            for i, (a, box_a) in enumerate(boxes)
            for b, box_b in boxes[i + 1 :]
            if box_a.overlaps(box_b)
        ]
        assert not overlapping, (name, overlapping)


def test_panels_share_their_x_range(tmp_path: Path):
    figures = figures_of(six_settings(), tmp_path)
    axes = figures["test_acc_per_pool"].axes
    assert len(axes) == 6
    assert len({ax.get_xlim() for ax in axes}) == 1


def test_points_carry_their_names(tmp_path: Path):
    figures = figures_of(one_setting(), tmp_path)
    for name in ("acc_vs_latency", "acc_vs_params"):
        (ax,) = figures[name].axes
        assert sorted(t.get_text() for t in ax.texts) == sorted(
            ["max", "avg", "lp", "gem", "strided_conv"]
        ), name


def test_every_figure_is_written_as_png_and_pdf(tmp_path: Path):
    write_runs(tmp_path / "recs", one_setting())
    df = load_records([tmp_path / "recs"])
    summary = summarize(df)
    paths, _ = write_plots(summary, tmp_path / "out" / "r.csv", Significance(), df)
    pngs = {p.stem for p in paths if p.suffix == ".png"}
    pdfs = {p.stem for p in paths if p.suffix == ".pdf"}
    assert pngs == pdfs and len(pngs) == 4, paths
    for p in paths:
        magic = b"\x89PNG" if p.suffix == ".png" else b"%PDF"
        assert p.read_bytes()[:4] == magic
    assert not list((tmp_path / "out").glob(".*tmp*"))  # nothing half-written
    assert isinstance(summary, pd.DataFrame)


def test_a_race_s_eliminated_groups_are_marked_like_the_worse(tmp_path: Path):
    """A sweep's page shows the race's own verdicts, where a configuration shown worse at a look
    is 'eliminated': the per-group figure marks it (grey), not leaves it bare."""
    write_runs(tmp_path / "recs", one_setting())
    df = load_records([tmp_path / "recs"])
    summary = summarize(df)
    summary.loc[summary["pool"] == "gem", "verdict"] = "eliminated"
    figures, _ = make_figures(summary, Significance(), df)
    (ax,) = figures["test_acc_per_pool"].axes
    assert "eliminated" in [t.get_text() for t in ax.get_legend().get_texts()]
