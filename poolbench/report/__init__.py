"""Reports: read run records, never train. Summaries over seeds with their tests against the
best, pivot and ranking tables, comparisons of two record sources, conclusions and figures.

May import ``core`` and the records ``run`` writes; never torch, the training loop or Hydra.
"""

from poolbench.report.compare import compare, write_compare
from poolbench.report.conclusions import conclusions
from poolbench.report.keys import parse_pivot
from poolbench.report.records import load_nonempty, load_records, with_tags
from poolbench.report.summary import summarize
from poolbench.report.write import write_report

__all__ = [
    "compare",
    "conclusions",
    "load_nonempty",
    "load_records",
    "parse_pivot",
    "summarize",
    "with_tags",
    "write_compare",
    "write_report",
]
