"""The README is a front page, the reference lives in docs/, and what the docs list is what the
code defines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from poolbench.core.record import field_table
from tests.helpers import REPO

DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", REPO / "benchmarks" / "README.md", *DOCS]


def test_the_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 250, len(lines)
    assert lines[3].startswith("python3 -m venv") and lines[4].startswith("python3 -m venv")


def test_the_record_table_is_the_record():
    assert field_table() in (REPO / "docs" / "results.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_names_a_path_outside_the_repository(page: Path):
    text = page.read_text()
    assert not re.search(r"(^|[\s`(])\.\./", text.replace("](../", "](")), page
    assert "/work/" not in text and "/tmp/" not in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_between_pages_finds_its_page_and_heading(page: Path):
    for target in re.findall(r"\]\(([^)#\s]+\.md)(#[^)]*)?\)", page.read_text()):
        path = (page.parent / target[0]).resolve()
        assert path.is_file(), f"{page.name}: {target[0]}"
        if target[1]:
            headings = [
                re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)
            ]
            assert target[1][1:] in headings, f"{page.name}: {target[0]}{target[1]}"
