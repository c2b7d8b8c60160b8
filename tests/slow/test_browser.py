"""The HTML report in a real browser: headless Chromium (Debian's package, which .ci/run
installs) renders the page with no console error, its table sorts on a click, and its
screenshot shows the table and the figures."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from poolbench.report.records import load_records
from poolbench.report.write import write_report
from tests.helpers.fake_records import write_runs
from tests.helpers.report_cases import one_setting

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CONSOLE = re.compile(r":CONSOLE[:(]")  # how Chromium's log (--enable-logging) writes console lines


def browser() -> str:
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    pytest.skip(f"no headless browser ({', '.join(BROWSERS)}); Debian's chromium package has one")


def chromium(page: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,3600",
            *flags,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("html")
    write_runs(where / "recs", one_setting())
    write_report(load_records([where / "recs"]), where / "out" / "r.csv", html=True)
    return where / "out" / "r.html"


@pytest.mark.slow
def test_the_page_renders_its_table_and_figures_without_console_errors(page: Path):
    shot = page.with_name("shot.png")
    done = chromium(page, f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [ln for ln in done.stderr.splitlines() if CONSOLE.search(ln)], done.stderr
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (3600, 1280)
    ink = (pixels.mean(axis=2) < 0.6).mean()  # dark pixels: text, table rules, plotted marks
    assert ink > 0.01, ink
    # the figures' blue (C0) marks are drawn: the SVGs rendered, not only the text
    blue = (pixels[..., 2] > 0.6) & (pixels[..., 0] < 0.3)
    assert blue.mean() > 1e-4, blue.mean()

    dom = chromium(page, "--dump-dom")
    assert 'data-sortable="ready"' in dom.stdout  # its script ran to the end
    assert dom.stdout.count("<svg") == 4 and dom.stdout.count("<tr") > 25


@pytest.mark.slow
def test_a_console_error_would_be_seen(page: Path):
    broken = page.with_name("broken.html")
    broken.write_text(page.read_text().replace("</body>", "<script>notDefined();</script></body>"))
    done = chromium(broken, "--dump-dom")
    assert [ln for ln in done.stderr.splitlines() if CONSOLE.search(ln)], done.stderr[-2000:]


@pytest.mark.slow
def test_the_summary_sorts_by_a_clicked_column(page: Path):
    summary = pd.read_csv(page.with_name("r_summary.csv"))
    clicks = page.with_name("clicks.html")
    script = """<script>
const table = document.getElementById("summary-table");
const header = Array.from(table.tHead.rows[0].cells).find((th) => th.textContent === "test_acc");
header.click();
const order = () => Array.from(table.tBodies[0].rows, (r) => r.cells[0].textContent).join(",");
document.body.dataset.ascending = order();
header.click();
document.body.dataset.descending = order();
const byName = Array.from(table.tHead.rows[0].cells).find((th) => th.textContent === "pool");
byName.click();
document.body.dataset.names = order();
</script></body>"""
    clicks.write_text(page.read_text().replace("</body>", script))
    dom = chromium(clicks, "--dump-dom").stdout
    by_acc = summary.sort_values("test_acc_mean")["pool"].tolist()
    assert f'data-ascending="{",".join(by_acc)}"' in dom
    assert f'data-descending="{",".join(reversed(by_acc))}"' in dom
    assert f'data-names="{",".join(sorted(by_acc))}"' in dom  # text columns sort too
