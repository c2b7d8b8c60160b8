"""+tags=[...]: free-form run metadata, kept in the record, outside the run's identity, shown and
grouped by reports."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from poolbench.cli.main import app
from poolbench.core.config import check_tags
from poolbench.core.errors import ConfigError
from poolbench.report.records import records_frame, with_tags
from poolbench.report.summary import summarize
from poolbench.report.write import write_report
from poolbench.sweep.plan import plan
from tests.helpers import FAST
from tests.helpers.fake_records import record

runner = CliRunner()


def test_tags_are_metadata_not_identity():
    plain = plan(["pool=avg"]).runs[0]
    tagged = plan(["pool=avg", "+tags=[paper,v2]"]).runs[0]
    assert tagged.tags == ("paper", "v2")
    assert tagged.run_id == plain.run_id and tagged.run_name == plain.run_name


@pytest.mark.parametrize(
    ("value", "expected"),
    [("paper", ("paper",)), (["a", "b", "a"], ("a", "b")), ([2024, "x"], ("2024", "x"))],
)
def test_check_tags(value, expected):
    assert check_tags(value) == expected


@pytest.mark.parametrize("value", [["a,b"], [""], [{"k": 1}], [True]])
def test_bad_tags_are_refused(value):
    with pytest.raises(ConfigError, match="tags"):
        check_tags(value)


def test_run_records_tags_and_a_skipped_run_takes_new_ones(workdir: Path):
    first = runner.invoke(app, ["run", "pool=max", "+tags=[baseline]", *FAST])
    assert first.exit_code == 0, first.output
    (path,) = workdir.glob("results/runs/*/result.json")
    assert json.loads(path.read_text())["tags"] == ["baseline"]
    again = runner.invoke(app, ["run", "pool=max", "+tags=[paper]", *FAST])
    assert again.exit_code == 0 and "skipped" in again.output
    assert list(workdir.glob("results/runs/*/result.json")) == [path]  # the same run
    assert json.loads(path.read_text())["tags"] == ["baseline", "paper"]


def test_reports_show_group_pivot_and_filter_by_tags(tmp_path: Path):
    records = [
        record("max", seed=0, test_acc=0.90, tags=["a"]),
        record("max", seed=1, test_acc=0.92, tags=["b"]),
        record("avg", seed=0, test_acc=0.80, tags=["a"]),
        record("avg", seed=1, test_acc=0.84, tags=["b", "x"]),
    ]
    df = records_frame(records)
    assert sorted(df["tags"]) == ["a", "a", "b", "b,x"]
    summary = summarize(df)
    assert len(summary) == 4 and "tags" in summary.columns  # tags split the seed groups
    written = write_report(df, tmp_path / "report.csv", pivot_on=("tags", "pool"), plots=False)
    table = pd.read_csv(tmp_path / "report_pivot_test_acc.csv")
    assert sorted(table["tags"]) == ["a", "b", "b,x"]
    assert written.summary["tags"].notna().all()
    assert sorted(with_tags(df, ["b"])["test_acc"]) == [0.84, 0.92]
    with pytest.raises(Exception, match="no run has the tags y; tags in these records: a, b, x"):
        with_tags(df, ["y"])


def test_report_tag_option(workdir: Path):
    runs = workdir / "results" / "runs"
    for i, r in enumerate([record("max", tags=["keep"]), record("avg", tags=["drop"])]):
        (runs / str(i)).mkdir(parents=True)
        (runs / str(i) / "result.json").write_text(json.dumps(r))
    result = runner.invoke(app, ["report", "--tag", "keep", "-o", "rep.csv", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(workdir / "rep.csv")["pool"]) == ["max"]
