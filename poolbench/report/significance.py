"""Which groups of runs are statistically tied with the best one.

Within one comparison (runs that agree on everything but the compared key, usually the pool),
every group is tested against the group with the best mean: a two-sided paired t-test
(:func:`scipy.stats.ttest_rel`) when both groups ran the same seeds (each seed is one pair),
Welch's t-test (:func:`scipy.stats.ttest_ind` with ``equal_var=False``) otherwise; the sign
test where the paired differences have no spread (:func:`pair_test`). The p-values
of one comparison are Holm-corrected together (:func:`holm`), and a group is *tied with the
best* when its corrected p-value is at least ``alpha``; the best is tied with itself. A group
with fewer than two values (or a best with fewer than two) gets no test and no claim.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

from poolbench.core import defaults

PAIRED = "paired t-test"
WELCH = "Welch's t-test"
SIGN = "sign test"  # paired differences without spread: the t statistic is x/0
MIN_N = 2  # a t-test needs a variance: two values per group at least


@dataclass(frozen=True)
class Verdict:
    """One group against the best of its comparison.

    ``p`` is Holm-corrected (NaN for the best and where no test ran), ``p_raw`` the test's own;
    ``tied`` is None where no claim can be made (n < 2).
    """

    best: bool
    p: float
    p_raw: float
    test: str
    tied: bool | None


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979): the i-th smallest of m p-values becomes
    max over j <= i of min(1, (m - j + 1) * p_(j)); NaN entries are left out of m."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(order)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def pair_test(a: Mapping[object, float], b: Mapping[object, float]) -> tuple[float, str]:
    """Two-sided p-value that ``a`` and ``b`` (seed -> value) have the same mean, and the test:
    paired by seed when both have the same seeds, Welch's otherwise. NaN when a side has fewer
    than two values.

    Where the t statistic is 0/0 or x/0: values without spread on both sides (e.g. FLOPs, equal
    for every seed) give 1.0 when they are equal and 0.0 when they differ (the difference is
    exact); paired differences that are all equal while the values themselves vary (accuracy
    one test image apart on every seed) get the two-sided sign test
    (:func:`scipy.stats.binomtest`: p = 2^(1-n) for n seeds), which claims nothing for n < 6
    at alpha 0.05, where a t-test would claim p = 0."""
    if len(a) < MIN_N or len(b) < MIN_N:
        return math.nan, ""
    paired = set(a) == set(b)
    if paired:
        seeds = sorted(a, key=str)
        x, y = [a[s] for s in seeds], [b[s] for s in seeds]
        if len({xi - yi for xi, yi in zip(x, y, strict=True)}) == 1:  # no spread of differences
            if x[0] == y[0]:
                return 1.0, PAIRED
            if len(set(x)) == 1 and len(set(y)) == 1:
                return 0.0, PAIRED
            return float(stats.binomtest(len(x), len(x), 0.5).pvalue), SIGN
    else:
        x, y = list(a.values()), list(b.values())
        if len(set(x)) == 1 and len(set(y)) == 1:
            return (1.0 if x[0] == y[0] else 0.0), WELCH
    with warnings.catch_warnings():  # nearly equal values: scipy warns, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        if paired:
            p = stats.ttest_rel(x, y).pvalue
        else:
            p = stats.ttest_ind(x, y, equal_var=False).pvalue
    return float(p), PAIRED if paired else WELCH


def against_best(
    groups: Sequence[Mapping[object, float]], higher_is_better: bool, alpha: float = defaults.ALPHA
) -> list[Verdict]:
    """A :class:`Verdict` for each group (seed -> value) of one comparison."""
    means = [sum(g.values()) / len(g) if g else math.nan for g in groups]
    candidates = [i for i, m in enumerate(means) if not math.isnan(m)]
    if not candidates:
        return [Verdict(False, math.nan, math.nan, "", None) for _ in groups]
    pick = max if higher_is_better else min
    best = pick(candidates, key=lambda i: means[i])
    tests = [
        (math.nan, "") if i == best else pair_test(groups[i], groups[best])
        for i in range(len(groups))
    ]
    adjusted = holm([p for p, _ in tests])
    verdicts = []
    for i, ((p_raw, test), p) in enumerate(zip(tests, adjusted, strict=True)):
        if i == best:
            tied = True if len(groups[best]) >= MIN_N else None
            verdicts.append(Verdict(True, math.nan, math.nan, "", tied))
        else:
            tied = None if math.isnan(p) else bool(p >= alpha)
            verdicts.append(Verdict(False, p, p_raw, test, tied))
    return verdicts
