"""The statistics of repeated runs against values computed by hand (peftbench/stats.py). No torch."""

from __future__ import annotations

import math
import random

import pytest

from peftbench import stats

T_975_DF2 = 4.302652729749464  # Student t, 0.975 quantile, 2 degrees of freedom (printed tables: 4.303)


def test_t_interval_of_three_values():
    iv = stats.t_interval([1.0, 2.0, 3.0])
    # mean 2, s = 1, sem = 1/sqrt(3): half-width = t_{.975,2} / sqrt(3)
    assert iv.mean == 2.0 and iv.n == 3 and iv.method == "t"
    assert iv.half_width == pytest.approx(T_975_DF2 / math.sqrt(3), rel=1e-12)
    assert iv.contains(2.0) and not iv.contains(4.5)


def test_t_interval_of_one_value_and_of_equal_values():
    one = stats.t_interval([0.7])
    assert one.mean == 0.7 and one.lo is None and one.half_width is None and one.contains(0.7) is None
    same = stats.t_interval([5.0, 5.0, 5.0])
    assert (same.lo, same.hi) == (5.0, 5.0)
    assert stats.t_interval([]) is None


def test_paired_t_against_the_closed_form_for_two_degrees_of_freedom():
    d = [0.5, 0.1, 0.9]  # mean 0.5, s = 0.4, sem = 0.4/sqrt(3)
    t = 0.5 / (0.4 / math.sqrt(3))
    p_by_hand = 1 - t / math.sqrt(t * t + 2)  # two-sided p of Student t with 2 df: 1 - t/sqrt(t^2 + 2)
    paired = stats.paired_t(d)
    assert paired.mean == pytest.approx(0.5) and paired.n == 3
    assert paired.p == pytest.approx(p_by_hand, rel=1e-9)
    lo, hi = paired.interval(0.95)
    assert (hi - lo) / 2 == pytest.approx(T_975_DF2 * 0.4 / math.sqrt(3), rel=1e-9)


def test_paired_t_without_spread_or_with_one_pair():
    # the same gain on every seed (one row of 40 each time): no spread, the t statistic is undefined, not p = 0
    assert stats.paired_t([0.025, 0.025]).p is None
    assert stats.paired_t([1e-16, 0.0, 0.0]).method == "identical"  # float rounding is no difference
    same = stats.paired_t([0.0, 0.0])  # equal on every seed: nothing to test, and left out of the family
    assert same.method == "identical" and same.p is None
    assert stats.correct({"s": same, "t": stats.paired_t([0.1, 0.3])})["s"].verdict == "same"
    assert stats.paired_t([0.3]).p is None and stats.paired_t([0.0]).method == "t"  # one seed says nothing
    assert stats.paired_t([float("inf"), 0.2]).p is None


def test_an_exact_figure_that_moves_both_ways_has_changed():
    assert stats.correct({"c": stats.exact_change([401.0, 399.0], [400.0, 400.0])})["c"].verdict == "changed"


def _fixed(p: float, levels: list) -> stats.Paired:
    def interval(level):
        levels.append(level)
        return (-1.0, 1.0)
    return stats.Paired(0.0, 3, "t", p, interval)


def test_benjamini_hochberg_and_the_interval_level_by_hand():
    levels: list[float] = []
    family = {k: _fixed(p, levels) for k, p in {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5}.items()}
    out = stats.correct(family, q=0.05)
    # sorted p 0.01, 0.03, 0.04, 0.5; p*m/rank = 0.04, 0.06, 0.0533, 0.5; running minimum from the top
    assert out["a"].p_adjusted == pytest.approx(0.04)
    assert out["c"].p_adjusted == pytest.approx(0.16 / 3)
    assert out["b"].p_adjusted == pytest.approx(0.16 / 3)
    assert out["d"].p_adjusted == pytest.approx(0.5)
    assert [k for k, d in out.items() if d.beyond_noise] == ["a"]
    # one of four selected: Benjamini-Yekutieli level 1 - 1 * 0.05 / 4
    assert levels == [pytest.approx(0.9875)] * 4 and out["a"].level == pytest.approx(0.9875)


def test_untestable_and_exact_comparisons_stay_out_of_the_family():
    levels: list[float] = []
    out = stats.correct({"a": _fixed(0.01, levels), "one-seed": stats.paired_t([0.4]),
                         "count": stats.exact_change([10.0], [12.0])})
    assert out["a"].p_adjusted == pytest.approx(0.01)  # m = 1
    assert out["one-seed"].beyond_noise is None and out["one-seed"].verdict == "cannot tell (1 seed)"
    assert out["count"].verdict == "changed" and stats.correct(
        {"c": stats.exact_change([3.0], [3.0])})["c"].verdict == "same"


@pytest.mark.parametrize("seed", range(5))
def test_beyond_noise_is_the_interval_leaving_out_zero(seed):
    rng = random.Random(seed)
    by_run = {f"r{i}": {s: rng.gauss(0.05 * i, 0.03) for s in range(4)} for i in range(6)}
    out = stats.compare_runs(by_run, "r0")
    assert len(out) == 5
    for d in out.values():
        assert d.beyond_noise == (not (d.lo <= 0 <= d.hi)), d


def test_bootstrap_over_rows_is_near_the_normal_approximation_and_repeats():
    ones = [1] * 60 + [0] * 40

    def share(rows):
        return sum(ones[i] for i in rows) / len(rows)

    iv = stats.bootstrap_rows(share, len(ones))
    half = 1.96 * math.sqrt(0.6 * 0.4 / 100)  # the normal approximation of a share's interval: 0.096
    assert iv.mean == 0.6 and iv.method == "bootstrap" and iv.n == 100
    assert iv.lo == pytest.approx(0.6 - half, abs=0.02) and iv.hi == pytest.approx(0.6 + half, abs=0.02)
    assert stats.bootstrap_rows(share, len(ones)) == iv  # a fixed generator: the same numbers every time
    assert stats.bootstrap_rows(share, 1) is None


def test_paired_bootstrap_over_the_same_rows():
    a = [1] * 70 + [0] * 30
    b = a[:60] + [0] * 10 + a[70:]  # b misses 10 of a's hits, on the same rows

    def score(v):
        return lambda rows: sum(v[i] for i in rows) / len(rows)

    diff = stats.paired_bootstrap(score(a), score(b), 100)
    assert diff.mean == pytest.approx(0.1) and diff.method == "bootstrap"
    lo, hi = diff.interval(0.95)
    assert 0 < lo < 0.1 < hi  # every resample has a >= b: clearly beyond noise
    assert diff.p < 0.01
    same = stats.paired_bootstrap(score(a), score(a), 100)
    assert same.mean == 0 and same.method == "identical"
    c = b[:]
    c[0], c[99] = 0, 1  # the same score on all rows, from different rows: the resamples tell them apart
    moved = stats.paired_bootstrap(score(b), score(c), 100)
    assert moved.mean == 0 and moved.method == "bootstrap" and moved.p == 1.0
