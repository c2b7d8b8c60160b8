"""Which groups of runs are worse than the best one, which are shown equivalent to it, and
which are neither (undecided).

Within one comparison (runs that agree on everything but the compared key, usually the pool):

- **worse**: a group is worse than the best when some other group is significantly better
  than it. Each group is tested against every other one with a one-sided test
  (:func:`one_sided_test`: the paired t-test, :func:`scipy.stats.ttest_rel`, when both groups
  ran the same seeds, each seed one pair; Welch's t-test, :func:`scipy.stats.ttest_ind` with
  ``equal_var=False``, otherwise; the sign test where the paired differences have no spread);
  its p-value combines those (Simes 1986: valid for such positively dependent tests, and as
  sharp as the smallest times the number of other groups, Bonferroni, or sharper), and the
  groups' p-values are Holm-corrected together. Testing each group against the best alone
  would pick the best from the same data and claim too much: with ten equal groups the
  family-wise error of that test was 0.09-0.12 at a nominal 0.05 in a simulation, and 0.04-0.05
  with this one (``benchmarks/race_cost.py``). A group not shown worse is *tied with the best*:
  not shown worse, which is not shown equal.
- **equivalent** (:func:`equivalence_test`): two one-sided tests (TOST, Schuirmann 1987) that
  the difference from the best mean lies within ``±delta``, the margin in the metric's own
  units (0.005 is half a point of accuracy); paired by seed where the seeds match, Welch's
  otherwise, a sign test where the paired differences have no spread; Holm-corrected over the
  groups. A group is *equivalent to the best* when that p-value is below ``alpha``.
- **undecided**: neither; more seeds (or a wider margin) would decide it.

A group with fewer than two values (or a best with fewer than two) gets no test and no claim.

Values that differ by no more than the metric's resolution (``1 / test images`` for an
accuracy, passed as ``resolution``) or, without one, by float rounding (a relative tolerance)
count as equal: accuracies of k/450 give differences such as 0.0022222222222222365 and
0.0022222222222221255, which are one image each, not a spread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import special, stats

from poolbench.core import defaults

PAIRED = "paired t-test"
WELCH = "Welch's t-test"
SIGN = "sign test"  # paired differences without spread: the t statistic is x/0
RANK = "rank test"  # unpaired groups without spread: every value of one above the other
TOST = "TOST"
MIN_N = 2  # a t-test needs a variance: two values per group at least
REL_TOL = 1e-9  # of the values' magnitude: float rounding, not a difference

# The verdicts of a group against the best of its comparison.
BEST, EQUIVALENT, UNDECIDED, WORSE = "best", "equivalent", "undecided", "worse"


def t_statistic(
    x: Sequence[float], y: Sequence[float], paired: bool, shift: float = 0.0
) -> tuple[float, float]:
    """The t statistic of mean(x) - mean(y) - ``shift`` and its degrees of freedom: of the
    paired differences (:func:`scipy.stats.ttest_rel`'s), or Welch's
    (:func:`scipy.stats.ttest_ind` with ``equal_var=False``); the p-values follow from
    Student's t (:func:`scipy.special.stdtr`), as scipy's do. Written out because a comparison
    of k groups runs k(k-1) of them, and a race that many at every look."""
    if paired:
        d = [a - b - shift for a, b in zip(x, y, strict=True)]
        n = len(d)
        mean = sum(d) / n
        var = sum((v - mean) ** 2 for v in d) / (n - 1)
        return mean / math.sqrt(var / n) if var > 0 else math.copysign(math.inf, mean), n - 1
    nx, ny = len(x), len(y)
    mx, my = sum(x) / nx, sum(y) / ny
    vx = sum((v - mx) ** 2 for v in x) / (nx - 1) / nx
    vy = sum((v - my) ** 2 for v in y) / (ny - 1) / ny
    se2 = vx + vy
    diff = mx - my - shift
    if se2 <= 0:
        return math.copysign(math.inf, diff), nx + ny - 2
    df = se2**2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    return diff / math.sqrt(se2), df


def tolerance(values: Sequence[float], resolution: float | None = None) -> float:
    """How far apart two of ``values`` (or their differences) may be and still count as equal:
    half the metric's ``resolution`` where it has one, else float rounding of their magnitude."""
    if resolution:
        return resolution / 2
    scale = max((abs(v) for v in values), default=0.0)
    return REL_TOL * scale


def no_spread(values: Sequence[float], tol: float) -> bool:
    return max(values) - min(values) <= tol


@dataclass(frozen=True)
class Verdict:
    """One group against the best of its comparison.

    ``p`` is the Holm-corrected p-value that it is not worse (NaN for the best and where no test
    ran), ``p_raw`` the test's own; ``tied`` is None where no claim can be made (n < 2).
    ``p_equiv`` is the Holm-corrected TOST p-value (NaN where no test ran or no margin was
    given), ``equivalent`` whether it is below alpha (None: no claim). ``status`` is one of
    best, equivalent, undecided, worse ('' where no claim can be made)."""

    best: bool
    p: float
    p_raw: float
    test: str
    tied: bool | None
    p_equiv: float = math.nan
    equivalent: bool | None = None

    @property
    def status(self) -> str:
        if self.best:
            return BEST if self.tied is not None else ""
        if self.tied is None:
            return ""
        if not self.tied:
            return WORSE
        return EQUIVALENT if self.equivalent else UNDECIDED


def simes(pvalues: Sequence[float]) -> float:
    """Simes' (1986) combination of m p-values into one for "none of these is significant":
    min over r of m / r * p_(r). Valid where the tests depend positively on each other (PRDS,
    Sarkar 1998), as one-sided tests of one group against each of the others do; at least as
    sharp as Bonferroni's m * p_(1), and far sharper when several are small."""
    ordered = sorted(pvalues)
    m = len(ordered)
    return min(1.0, min(m / r * p for r, p in enumerate(ordered, 1))) if m else math.nan


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


def _pairs(
    a: Mapping[object, float], b: Mapping[object, float]
) -> tuple[list[float], list[float], bool]:
    """The values of both sides, in seed order when both ran the same seeds (paired)."""
    if set(a) == set(b):
        seeds = sorted(a, key=str)
        return [a[s] for s in seeds], [b[s] for s in seeds], True
    return list(a.values()), list(b.values()), False


def pair_test(
    a: Mapping[object, float],
    b: Mapping[object, float],
    resolution: float | None = None,
    exact: bool = False,
) -> tuple[float, str]:
    """Two-sided p-value that ``a`` and ``b`` (seed -> value) have the same mean, and the test:
    paired by seed when both have the same seeds, Welch's otherwise. NaN when a side has fewer
    than two values.

    Where the t statistic is 0/0 or x/0: equal values give 1.0; values of an ``exact`` metric
    (FLOPs, parameters: the same for every seed by construction) that differ give 0.0 (the
    difference is exact); paired differences that are all equal otherwise (accuracy one test
    image apart on every seed, or constant over a few seeds on both sides) get the two-sided
    sign test (:func:`scipy.stats.binomtest`: p = 2^(1-n) for n seeds), which claims nothing
    for n < 6 at alpha 0.05, where a t-test would claim p = 0; unpaired groups without spread
    the exact rank test (every value of one side above every value of the other:
    p = 2 / C(n_a + n_b, n_a)). "Equal" is to within ``resolution`` (see the module
    docstring)."""
    if len(a) < MIN_N or len(b) < MIN_N:
        return math.nan, ""
    x, y, paired = _pairs(a, b)
    tol = tolerance([*x, *y], resolution)
    if paired:
        diffs = [xi - yi for xi, yi in zip(x, y, strict=True)]
        if no_spread(diffs, tol):
            if abs(diffs[0]) <= tol:
                return 1.0, PAIRED
            if exact and no_spread(x, tol) and no_spread(y, tol):
                return 0.0, PAIRED
            return float(stats.binomtest(len(x), len(x), 0.5).pvalue), SIGN
    elif no_spread(x, tol) and no_spread(y, tol):
        if abs(x[0] - y[0]) <= tol:
            return 1.0, WELCH
        if exact:
            return 0.0, WELCH
        return min(1.0, 2 / math.comb(len(x) + len(y), len(x))), RANK
    t, df = t_statistic(x, y, paired)
    return float(2 * special.stdtr(df, -abs(t))), PAIRED if paired else WELCH


def one_sided_test(
    better: Mapping[object, float],
    worse: Mapping[object, float],
    resolution: float | None = None,
    exact: bool = False,
) -> tuple[float, str]:
    """One-sided p-value that ``better`` (seed -> value) has the larger mean than ``worse``,
    and the test: paired by seed when both ran the same seeds, Welch's otherwise; NaN when a
    side has fewer than two values. Without spread (see :func:`pair_test`): equal values give
    1.0, a difference of an ``exact`` metric 0.0 or 1.0 by its sign, paired differences that
    are all the same the one-sided sign test (2^-n when every seed favours ``better``, else
    1.0), unpaired groups without spread the exact rank test (1 / C(n_a + n_b, n_a))."""
    if len(better) < MIN_N or len(worse) < MIN_N:
        return math.nan, ""
    x, y, paired = _pairs(better, worse)
    tol = tolerance([*x, *y], resolution)
    if paired:
        diffs = [xi - yi for xi, yi in zip(x, y, strict=True)]
        if no_spread(diffs, tol):
            if abs(diffs[0]) <= tol:
                return 1.0, PAIRED
            if exact and no_spread(x, tol) and no_spread(y, tol):
                return (0.0 if diffs[0] > 0 else 1.0), PAIRED
            return (0.5 ** len(diffs) if diffs[0] > 0 else 1.0), SIGN
    elif no_spread(x, tol) and no_spread(y, tol):
        if x[0] - y[0] <= tol:
            return 1.0, WELCH
        return (0.0, WELCH) if exact else (1 / math.comb(len(x) + len(y), len(x)), RANK)
    t, df = t_statistic(x, y, paired)
    return float(special.stdtr(df, -t)), PAIRED if paired else WELCH


def equivalence_test(
    a: Mapping[object, float],
    b: Mapping[object, float],
    delta: float,
    resolution: float | None = None,
) -> tuple[float, str]:
    """The TOST p-value that the means of ``a`` and ``b`` (seed -> value) differ by less than
    ``delta`` (the larger of the two one-sided p-values), and the test; NaN when a side has
    fewer than two values.

    Paired by seed where both ran the same seeds (:func:`scipy.stats.ttest_1samp` of the
    differences against -delta and +delta), Welch's otherwise (:func:`scipy.stats.ttest_ind`
    with the margin added to one side). Paired differences without spread get the one-sided
    sign tests: each difference inside the margin has probability 1/2 at the boundary, so
    p = 2^-n for n seeds (none inside: 1.0), which needs five seeds at alpha 0.05."""
    if len(a) < MIN_N or len(b) < MIN_N or delta <= 0:
        return math.nan, ""
    x, y, paired = _pairs(a, b)
    tol = tolerance([*x, *y], resolution)
    if paired:
        diffs = [xi - yi for xi, yi in zip(x, y, strict=True)]
        if no_spread(diffs, tol):
            inside = abs(diffs[0]) < delta - tol
            return (0.5 ** len(diffs) if inside else 1.0), SIGN
    elif no_spread(x, tol) and no_spread(y, tol):
        inside = abs(x[0] - y[0]) < delta - tol
        return (0.5 ** min(len(x), len(y)) if inside else 1.0), SIGN
    low, df = t_statistic(x, y, paired, shift=-delta)  # H0: difference <= -delta
    high, _ = t_statistic(x, y, paired, shift=delta)  # H0: difference >= +delta
    p = max(special.stdtr(df, -low), special.stdtr(df, high))
    return float(p), f"{TOST} ({PAIRED if paired else WELCH})"


def best_index(groups: Sequence[Mapping[object, float]], higher_is_better: bool) -> int | None:
    """The group with the best mean (None when no group has a value)."""
    means = [sum(g.values()) / len(g) if g else math.nan for g in groups]
    candidates = [i for i, m in enumerate(means) if not math.isnan(m)]
    if not candidates:
        return None
    pick = max if higher_is_better else min
    return pick(candidates, key=lambda i: means[i])


def against_best(
    groups: Sequence[Mapping[object, float]],
    higher_is_better: bool,
    alpha: float = defaults.ALPHA,
    delta: float | None = None,
    resolution: float | None = None,
    alpha_equivalence: float | None = None,
    exact: bool = False,
) -> list[Verdict]:
    """A :class:`Verdict` for each group (seed -> value) of one comparison: worse at ``alpha``
    (see the module docstring) and, with a margin ``delta``, equivalent at
    ``alpha_equivalence`` (default ``alpha``).

    ``p_raw`` is the smallest one-sided p-value of another group being better, ``test`` that
    test; ``p`` the group's Holm-corrected p-value (the one-sided p-values against every other
    group combined by :func:`simes`, then Holm over all groups)."""
    best = best_index(groups, higher_is_better)
    if best is None:
        return [Verdict(False, math.nan, math.nan, "", None) for _ in groups]
    k = len(groups)

    def oriented(g: Mapping[object, float]) -> Mapping[object, float]:
        return g if higher_is_better else {s: -v for s, v in g.items()}

    signed = [oriented(g) for g in groups]
    strongest: list[tuple[float, str]] = []
    combined: list[float] = []
    for i in range(k):
        tests = [
            one_sided_test(signed[j], signed[i], resolution, exact) for j in range(k) if j != i
        ]
        tests = [t for t in tests if not math.isnan(t[0])]
        strongest.append(min(tests) if tests else (math.nan, ""))
        combined.append(simes([p for p, _ in tests]) if tests else math.nan)
    adjusted = holm(combined)
    others = [i for i in range(k) if i != best]
    equiv: dict[int, float] = dict.fromkeys(others, math.nan)
    if delta is not None:
        raw = [equivalence_test(groups[i], groups[best], delta, resolution)[0] for i in others]
        equiv = dict(zip(others, holm(raw), strict=True))
    level = alpha if alpha_equivalence is None else alpha_equivalence
    verdicts = []
    for i in range(k):
        if i == best:
            claim = True if len(groups[best]) >= MIN_N else None
            verdicts.append(Verdict(True, math.nan, math.nan, "", claim, math.nan, claim))
            continue
        p = adjusted[i] if len(groups[best]) >= MIN_N else math.nan
        tied = None if math.isnan(p) else bool(p >= alpha)
        p_eq = equiv[i]
        equivalent = None if math.isnan(p_eq) else bool(p_eq < level)
        p_raw, test = strongest[i]
        verdicts.append(Verdict(False, p, p_raw, test, tied, p_eq, equivalent))
    return verdicts
