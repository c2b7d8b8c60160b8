"""Worse, equivalent, undecided: the tests behind every verdict, built from the discrete values
real metrics take (k/450 accuracies), checked against scipy and statsmodels, and the claims
they must not make (float rounding, a run counted twice, a best picked from the same data)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from poolbench.report.records import once_per_run
from poolbench.report.significance import (
    PAIRED,
    RANK,
    SIGN,
    against_best,
    equivalence_test,
    one_sided_test,
    pair_test,
)

IMAGES = 450


def acc(*images: int) -> dict[int, float]:
    """Accuracies of k/450 by seed."""
    return {seed: k / IMAGES for seed, k in enumerate(images)}


def test_one_image_behind_on_every_seed_is_the_sign_test_not_a_t_test():
    # the case: differences 0.0022222222222222365 and 0.0022222222222221255 are one
    # image each; the t-test on them gave p = 2.8e-28
    best, behind = acc(441, 441, 447), acc(440, 440, 446)
    diffs = {best[s] - behind[s] for s in best}
    assert len(diffs) > 1  # float rounding: not one value
    for resolution in (None, 1 / IMAGES):
        assert pair_test(best, behind, resolution) == (0.25, SIGN)
        assert one_sided_test(best, behind, resolution) == (0.125, SIGN)


def test_over_every_triple_of_accuracies_from_430_to_450_no_float_claim_is_made():
    # 1,771 seed triples: one image behind on each seed is never significant at n = 3
    for a in range(430, 451):
        for b in range(a, 451):
            for c in range(b, 451):
                p, test = pair_test(acc(a, b, c), acc(a - 1, b - 1, c - 1))
                assert (p, test) == (0.25, SIGN), (a, b, c)


def test_constant_accuracies_over_a_few_seeds_are_not_an_exact_difference():
    # two groups each constant over three seeds have not varied yet: a sign test, not p = 0
    assert pair_test(acc(449, 449, 449), acc(448, 448, 448)) == (0.25, SIGN)
    unpaired = {10: 448 / IMAGES, 11: 448 / IMAGES, 12: 448 / IMAGES}
    p, test = pair_test(acc(449, 449, 449), unpaired)
    assert test == RANK and p == pytest.approx(2 / math.comb(6, 3))
    # a model's size is exact: equal for every seed by construction
    assert pair_test({0: 10.0, 1: 10.0}, {0: 12.0, 1: 12.0}, exact=True) == (0.0, PAIRED)


def test_tost_matches_statsmodels_paired_and_welch():
    from statsmodels.stats.weightstats import ttost_ind, ttost_paired

    rng = random.Random(3)
    for _ in range(20):
        a = {s: 0.99 + rng.gauss(0, 0.003) for s in range(6)}
        b = {s: a[s] - 0.001 + rng.gauss(0, 0.002) for s in range(6)}
        p, _ = equivalence_test(a, b, 0.005)
        ref = ttost_paired(np.array([*a.values()]), np.array([*b.values()]), -0.005, 0.005)[0]
        assert p == pytest.approx(ref, rel=1e-9)
        c = {s + 100: v for s, v in b.items()}  # other seeds: Welch
        p, _ = equivalence_test(a, c, 0.005)
        x, y = np.array([*a.values()]), np.array([*c.values()])
        ref = ttost_ind(x, y, -0.005, 0.005, usevar="unequal")[0]
        assert p == pytest.approx(ref, rel=1e-9)


def test_equal_groups_without_spread_need_five_seeds_for_equivalence():
    same = acc(449, 449, 449, 449)
    assert equivalence_test(same, acc(449, 449, 449, 449), 0.005) == (0.5**4, SIGN)
    assert equivalence_test(acc(449, 449, 449, 449, 449), acc(449, 449, 449, 449, 449), 0.005)[
        0
    ] == pytest.approx(0.03125)
    # outside the margin: never equivalent
    assert equivalence_test(acc(449, 449, 449), acc(446, 446, 446), 0.005) == (1.0, SIGN)


def test_one_sided_tests_match_scipy():
    rng = random.Random(5)
    a = {s: rng.gauss(0.99, 0.004) for s in range(5)}
    b = {s: rng.gauss(0.98, 0.004) for s in range(5)}
    p, test = one_sided_test(a, b)
    assert test == PAIRED
    assert p == pytest.approx(
        stats.ttest_rel(list(a.values()), list(b.values()), alternative="greater").pvalue
    )


def test_with_two_groups_worse_is_the_two_sided_paired_t_test():
    rng = random.Random(7)
    a = {s: rng.gauss(0.99, 0.004) for s in range(5)}
    b = {s: rng.gauss(0.985, 0.004) for s in range(5)}
    best, other = against_best([a, b], higher_is_better=True)
    if not best.best:
        best, other = other, best
    expected = stats.ttest_rel(list(a.values()), list(b.values())).pvalue
    assert other.p == pytest.approx(expected)


def test_picking_the_best_from_the_same_data_does_not_inflate_false_eliminations():
    # ten equal configurations: testing each against the sample best alone (the earlier rule)
    # eliminated one in about 10% of the repetitions at alpha 0.05; this rule stays under it
    rng = random.Random(11)
    reps, false = 300, 0
    for _ in range(reps):
        seed_effect = [rng.gauss(0, 1) for _ in range(5)]
        groups = [{s: seed_effect[s] + rng.gauss(0, 1) for s in range(5)} for _ in range(10)]
        false += any(v.status == "worse" for v in against_best(groups, True, 0.05))
    upper = stats.binomtest(false, reps).proportion_ci(0.95).low
    assert upper <= 0.05, false / reps


def test_a_clearly_worse_group_is_worse_and_close_ones_are_equivalent_or_undecided():
    best = acc(449, 450, 449, 450, 449, 450)
    close = acc(449, 449, 449, 450, 449, 450)
    worse = acc(440, 441, 439, 442, 440, 441)
    verdicts = against_best([best, close, worse], True, 0.05, delta=0.005, resolution=1 / IMAGES)
    assert [v.status for v in verdicts] == ["best", "equivalent", "worse"]
    few = [acc(449, 446, 450), acc(447, 449, 446)]  # close, but three seeds that disagree
    assert [v.status for v in against_best(few, True, 0.05, delta=0.005)] == ["best", "undecided"]


def test_a_run_met_twice_is_counted_once_with_a_warning_naming_both_paths():
    first = {"run_id": "a", "run_name": "r", "status": "ok", "record_path": "x/result.json"}
    copy = {**first, "record_path": "y/result.json"}
    other = {"run_id": "b", "run_name": "s", "status": "ok", "record_path": "z/result.json"}
    kept, notes = once_per_run([first, other, copy])
    assert kept == [first, other]
    (note,) = notes
    assert "run a (r) found 2 times, counted once" in note
    assert "x/result.json" in note and "y/result.json" in note


def test_of_two_copies_of_a_run_the_ok_one_and_then_the_latest_is_counted():
    failed = {"run_id": "a", "status": "failed", "started_at": "2026-12-05", "record_path": "f"}
    ok = {"run_id": "a", "status": "ok", "started_at": "2026-12-01", "record_path": "o"}
    newer = {**ok, "started_at": "2026-12-03", "record_path": "n"}
    assert once_per_run([failed, ok])[0] == [ok]
    assert once_per_run([ok, newer])[0] == [newer]


values = st.lists(st.integers(400, 450), min_size=2, max_size=8)


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_p_values_lie_in_0_1_and_the_two_sided_test_is_symmetric(xs, ys):
    n = min(len(xs), len(ys))
    a, b = acc(*xs[:n]), acc(*ys[:n])
    p, _ = pair_test(a, b)
    assert 0 <= p <= 1
    assert pair_test(b, a)[0] == pytest.approx(p)
    for q, _ in (one_sided_test(a, b), equivalence_test(a, b, 0.005)):
        assert 0 <= q <= 1


@settings(max_examples=200, deadline=None)
@given(values, values, st.integers(-20, 20))
def test_adding_a_constant_to_both_sides_changes_no_p_value(xs, ys, shift):
    n = min(len(xs), len(ys))
    a, b = acc(*xs[:n]), acc(*ys[:n])
    moved_a = {s: v + shift / IMAGES for s, v in a.items()}
    moved_b = {s: v + shift / IMAGES for s, v in b.items()}
    res = 1 / IMAGES
    assert pair_test(moved_a, moved_b, res)[0] == pytest.approx(pair_test(a, b, res)[0], abs=1e-9)
    assert one_sided_test(moved_a, moved_b, res)[0] == pytest.approx(
        one_sided_test(a, b, res)[0], abs=1e-9
    )
    assert equivalence_test(moved_a, moved_b, 0.005, res)[0] == pytest.approx(
        equivalence_test(a, b, 0.005, res)[0], abs=1e-9
    )
