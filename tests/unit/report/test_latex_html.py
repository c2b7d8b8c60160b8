"""Reports a reader uses as they are: LaTeX tables that compile (a table float with caption,
label, booktabs rules, numbers aligned on the ±, verdicts marked), one interval everywhere,
shared ranks for means that print the same, and the self-contained HTML page."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from poolbench.report.records import load_records
from poolbench.report.summary import Significance, summarize
from poolbench.report.tables import latex_escape, ranking, table_text
from poolbench.report.write import write_report
from tests.helpers.cli import invoke
from tests.helpers.fake_records import record, write_runs
from tests.helpers.report_cases import CASES, one_setting


def report_of(records: list[dict], where: Path, **options) -> tuple[pd.DataFrame, Path]:
    write_runs(where / "recs", records)
    df = load_records([where / "recs"])
    written = write_report(df, where / "out" / "r.csv", **options)
    return written.summary, where / "out"


def test_latex_is_a_float_with_caption_label_booktabs_and_marked_verdicts(tmp_path: Path):
    summary, out = report_of(one_setting(), tmp_path, plots=False)
    tex = (out / "r_pivot_test_acc.tex").read_text()
    assert "\\begin{table}" in tex and "\\end{table}" in tex
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\label{tab:poolbench-pivot-test-acc}" in tex
    caption = re.search(r"\\caption\[([^]]*)\]\{(.*)\}\n", tex).group(2)
    assert re.search(r"\\caption\[test\\_acc: mean \$\\pm\$ ci95 over seeds\]", tex)
    # the legend is the caption, where it renders: the interval, the test, alpha, n
    for words in ("95\\% t-interval", "paired t-tests", "alpha 0.05", "n = 5 seeds", "Holm"):
        assert words in caption, words
    assert not any(line.startswith("%") and "seeds" in line for line in tex.splitlines())
    # aligned on the ±: each metric column is a right-aligned mean and a left-aligned interval
    assert "\\begin{tabular}{lr@{}l}" in tex
    verdicts = summary.set_index("pool")["verdict"]
    body = tex[tex.index("\\midrule") : tex.index("\\bottomrule")]
    for pool, verdict in verdicts.items():
        line = next(ln for ln in body.splitlines() if ln.startswith(latex_escape(pool) + " &"))
        assert ("\\textbf{" in line) is (verdict == "best"), line
        assert ("\\textit{" in line) is (verdict == "equivalent"), line
        assert ("$^\\dagger$" in line) is (verdict == "worse"), line
    assert verdicts.eq("worse").any() and verdicts.eq("best").sum() == 1


def test_markdown_cells_carry_the_same_marks(tmp_path: Path):
    summary, out = report_of(one_setting(), tmp_path, plots=False)
    md = (out / "r_pivot_test_acc.md").read_text()
    verdicts = summary.set_index("pool")["verdict"]
    for pool, verdict in verdicts.items():
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {pool} |"))
        assert ("**" in line) is (verdict == "best"), line
        assert ("†" in line) is (verdict == "worse"), line
    assert "bold: the best" in md and "†: significantly worse" in md


def test_every_artefact_shows_the_95_interval_not_the_std(tmp_path: Path):
    summary, out = report_of(one_setting(), tmp_path, plots=False)
    row = summary.iloc[0]
    half, std = f"{row['test_acc_ci95']:.4f}", f"{row['test_acc_std']:.4f}"
    assert half != std
    for name in ("pivot_test_acc.md", "ranking_test_acc.md", "pivot_test_acc.tex", "summary.md"):
        text = (out / f"r_{name}").read_text()
        assert half in text, name
        assert f"± {std}" not in text and f"$\\pm$ {std}" not in text, name
        assert "half-width of the 95% t-interval" in text.replace("\\%", "%"), name


def test_means_that_print_the_same_share_their_rank(tmp_path: Path):
    # max 0.90004 and avg 0.90001 print as 0.9000: the table shows a tie, so they rank 1.5
    recs = [
        record(p, s, acc + s / 1000)
        for p, acc in (("max", 0.90004), ("avg", 0.90001), ("lp", 0.8))
        for s in range(3)
    ]
    write_runs(tmp_path / "recs", recs)
    significance = Significance()
    table, ranks = ranking(summarize(load_records([tmp_path / "recs"]), significance), significance)
    assert ranks.loc["max", "mean_rank"] == ranks.loc["avg", "mean_rank"] == 1.5
    assert ranks.loc["lp", "mean_rank"] == 3
    text = table_text(table, "markdown", significance, mean_rank=ranks["mean_rank"])
    assert text.count("| 1.50 |") == 2


def pdflatex() -> str:
    exe = shutil.which("pdflatex")
    if exe is None:
        pytest.skip(
            "pdflatex is not installed (Debian: texlive-latex-recommended; .ci/run installs it)"
        )
    return exe


@pytest.mark.parametrize("case", list(CASES))
def test_every_tex_file_compiles(tmp_path: Path, case: str):
    exe = pdflatex()
    _, out = report_of(CASES[case](), tmp_path, plots=False)
    tables = sorted(out.glob("*.tex"))
    assert len(tables) == 2
    body = "\n".join(f"\\input{{{t.name}}}" for t in tables)
    (out / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        f"\\begin{{document}}\n{body}\n\\end{{document}}\n"
    )
    done = subprocess.run(
        [exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (out / "doc.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    assert (out / "doc.pdf").read_bytes()[:4] == b"%PDF"
    assert "Missing character" not in log


class Page(HTMLParser):
    """The tags, attributes, section order and table rows of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: list[str] = []
        self.rows: dict[str, list[dict[str, str | None]]] = {}
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self.sections.append(a.get("id") or "")
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.rows.setdefault(self._table, []).append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False


def test_html_page_holds_the_whole_comparison_and_fetches_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_runs(Path("recs"), one_setting())
    result = invoke("report", "recs", "-o", "out/r.csv", "--html")
    assert result.exit_code == 0, result.output
    page = Path("out/r.html")
    text = page.read_text()
    parsed = Page()
    parsed.feed(text)
    order = ["conclusions", "summary", "figures", "learning-curves", "config", "environment"]
    assert parsed.sections == [*order, "runs"]
    # self-contained: no stylesheet, script, image or frame from anywhere
    assert not [t for t, a in parsed.tags if t in ("link", "img", "iframe")]
    assert not [a for t, a in parsed.tags if t == "script" and a.get("src")]
    hrefs = [a["href"] for t, a in parsed.tags if t == "a"]
    assert hrefs and not [h for h in hrefs if re.match(r"[a-z]+:", h or "")]
    # every run linked to its record, relative to the page
    assert len(hrefs) == 25
    assert all((page.parent / h).resolve().name == "result.json" for h in hrefs)
    assert all((page.parent / h).is_file() for h in hrefs)
    # the summary: a row per pool, the best and worse marked as the CSV says
    summary = pd.read_csv("out/r_summary.csv")
    rows = parsed.rows["summary-table"]
    assert len(rows) == len(summary) == 5
    assert [r.get("class") or "" for r in rows] == summary["verdict"].fillna("").tolist()
    # the figures, inline: one SVG per PNG written
    assert text.count("<svg") == len(list(Path("out").glob("r_*.png"))) == 4
    assert "Best test accuracy: strided_conv" in text
    assert "pool" in text[text.index('id="config"') :]


def test_html_flags_unstable_latency_and_escapes_what_records_say(tmp_path: Path):
    recs = one_setting()
    for r in recs:
        r["latency_interleaved_iqr_ms"] = r["latency_interleaved_ms"] * 0.5  # IQR 50%: unstable
        r["cpu"] = "<script>alert(1)</script> CPU"
    summary, out = report_of(recs, tmp_path, plots=False, html=True)
    text = (out / "r.html").read_text()
    assert summary["latency_unstable"].all()
    assert 'class="unstable"' in text and "latency unstable (IQR &gt; 15% of the median)" in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)" in text


def test_html_with_no_ok_run_says_so(tmp_path: Path):
    recs = [record("max", s, None, status="failed", error="boom") for s in range(2)]
    _, out = report_of(recs, tmp_path, html=True)
    text = (out / "r.html").read_text()
    assert "No run finished" in text


def test_the_markdown_summary_holds_what_a_reader_compares(tmp_path: Path):
    summary, out = report_of(one_setting(), tmp_path, plots=False)
    header = (out / "r_summary.md").read_text().splitlines()[0]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:5] == ["pool", "test_acc_mean", "test_acc_ci95", "p_vs_best", "verdict"]
    assert {"params_mean", "n"} <= set(columns) and len(columns) <= 16
    assert len(summary.columns) > len(columns) + 10  # the CSV keeps every column


def test_the_page_of_another_metric_says_what_its_tests_decided(tmp_path: Path):
    summary, out = report_of(one_setting(), tmp_path, plots=False, html=True, metric="params")
    text = (out / "r.html").read_text()
    conclusions = text[text.index('id="conclusions"') : text.index('id="summary"')]
    best = summary.loc[summary["verdict"] == "best", "pool"].tolist()
    assert f"params (lower is better): best {', '.join(best)}" in conclusions
    assert "Best test accuracy" in conclusions  # and what test accuracy says, as always


def test_html_and_compare_together_are_refused(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_runs(Path("a"), one_setting())
    result = invoke("report", "--compare", "a", "a", "--html")
    assert result.exit_code == 2 and "--html writes a report's page" in result.output


def test_a_metric_no_group_has_is_left_out_of_the_summary_a_reader_reads(tmp_path: Path):
    recs = [{**r, "latency_ms": None} for r in one_setting()]  # a sweep timed interleaved
    summary, out = report_of(recs, tmp_path, plots=False, html=True)
    header = (out / "r_summary.md").read_text().splitlines()[0]
    assert "latency_interleaved_ms_mean" in header and "latency_ms_mean" not in header
    assert ">latency_ms<" not in (out / "r.html").read_text()
