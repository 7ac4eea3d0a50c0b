"""The report's statistics on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from harness.report.stats import median, median_ci, paired_difference


def test_median_ci_contains_the_median_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(1)
    small = median_ci(rng.normal(100, 10, 5))
    large = median_ci(rng.normal(100, 10, 400))
    for e in (small, large):
        assert e.low <= e.median <= e.high
    assert (large.high - large.low) < (small.high - small.low)
    assert 97 <= large.median <= 103 and large.low < 100 < large.high
    assert median_ci([3.0, None, float("nan"), 1.0, 2.0]).median == 2.0  # gaps dropped
    assert median_ci([]).median is None and median_ci([]).text() == "-"
    one = median_ci([7.0])
    assert (one.median, one.low, one.high, one.n) == (7.0, 7.0, 7.0, 1)
    assert median_ci([1, 2, 3, 4, 5], seed=3) == median_ci([1, 2, 3, 4, 5], seed=3)


def test_median_leaves_out_gaps_as_the_bench_rows_need() -> None:
    """The bench's medians over seeds: a seed without a figure (None, NaN) is left out,
    an even count is the mean of the middle two, nothing at all is None."""
    assert median([3.0, None, 1.0, float("nan"), 2.0]) == 2.0
    assert median([4, 1, 3, 2]) == 2.5 and median([None, float("nan")]) is None
    assert median([]) is None and median_ci([5, None, 1]).median == median([5, None, 1]) == 3.0


def test_paired_difference_matches_a_hand_computed_case() -> None:
    base = {1: 10.0, 2: 12.0, 3: 11.0, 4: 13.0, 5: 9.0, 6: 10.0, 7: 12.0, 8: 11.0}
    slower = {s: v + 5 + (s % 3) for s, v in base.items()}  # every seed 5-7 worse
    p = paired_difference(slower, base)
    assert p.n == 8
    assert p.difference.median == pytest.approx(np.median([5 + s % 3 for s in base]))
    # all 8 differences positive: exact two-sided signed-rank p = 2 / 2**8
    assert p.p_value == pytest.approx(2 / 2**8)
    same = paired_difference(dict(base), base)
    assert same.difference.median == 0 and same.p_value == 1.0
    # only seeds present in both count; None/NaN seeds are dropped
    part = paired_difference({1: 11.0, 2: None, 9: 1.0}, base)
    assert part.n == 1 and part.p_value is None
