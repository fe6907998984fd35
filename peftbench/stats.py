"""The statistics of repeated runs, named and defined once. No torch import; scipy.stats does the distributions.

Three sources of noise, three methods (README, "How sure is a number"):

- Over seeds (`t_interval`): the mean of a figure over the seeds of one run, with a Student-t interval
  (mean ± t_{(1+level)/2, n-1} · s / √n), the textbook interval for a handful of roughly normal repeats. One seed
  has no interval.
- Between two runs, or one run in two results folders (`paired_t`, `paired_bootstrap`, `correct`): the
  difference paired by seed (same seed: same data order and, for methods whose adapters have the same shapes,
  the same initial draws) with its paired-t p-value and interval; with a single seed, paired over the evaluation
  rows instead (both scored on the same bootstrap resamples). Then the Benjamini-Hochberg false-discovery-rate
  procedure across the family of comparisons (scipy's `false_discovery_control`); the intervals use the level
  Benjamini & Yekutieli (2005) give for intervals after BH selection, 1 - R·q/m (R of m comparisons selected at
  FDR q; R = 1 when none is), so that "beyond the noise" and "the interval leaves out 0" are the same statement
  (exactly for the t test; up to resampling error for the bootstrap).
- Figures that repeat exactly (trainable parameters, the CPU tensor peak, sizes: Measure.exact) are not tested:
  any change is real. Nor are pairs equal on every seed (CPU training repeats to the bit): "same", and outside
  the family that Benjamini-Hochberg corrects for.
- Over evaluation rows (`bootstrap_rows`): for one seed, the percentile bootstrap of a score over the rows the
  evaluation saw (scipy's `bootstrap`, resampling rows with replacement, fixed generator so the numbers repeat).

scipy has the distributions and both procedures, but not the bookkeeping around them (few values, zero spread,
seeds that only one run has), which is what this module adds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LEVEL = 0.95  # of every interval peftbench prints
FDR = 0.05  # the false discovery rate q of the Benjamini-Hochberg procedure
RESAMPLES = 2000  # bootstrap resamples; the interval's ends move by about 0.005 of a share between generators


@dataclass(frozen=True)
class Interval:
    """A mean and its interval (None without one: a single value, or values that are not all finite)."""

    mean: float
    lo: float | None
    hi: float | None
    n: int  # values it was computed from
    method: str  # "t": Student t over seeds; "bootstrap": percentile bootstrap over evaluation rows

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None or self.hi is None else (self.hi - self.lo) / 2

    def contains(self, x: float) -> bool | None:
        return None if self.lo is None or self.hi is None else self.lo <= x <= self.hi


def _no_spread(values: list[float]) -> bool:
    """All equal up to float rounding (0.9 - 0.825 and 0.975 - 0.9 differ in the 17th digit)."""
    return all(math.isclose(v, values[0], rel_tol=1e-12, abs_tol=1e-15) for v in values)


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval | None:
    """The mean of `values` with its Student-t interval at `level` (None for no values)."""
    from scipy import stats

    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    n = len(vals)
    mean = math.fsum(vals) / n
    if n == 1 or not all(math.isfinite(v) for v in vals):
        return Interval(mean, None, None, n, "t")
    if _no_spread(vals):  # every seed gave the same value (a count, or a deterministic measurement)
        return Interval(mean, mean, mean, n, "t")
    sem = stats.sem(vals)
    lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return Interval(mean, float(lo), float(hi), n, "t")


def clip(iv: Interval, lo: float | None, hi: float | None) -> Interval:
    """The interval cut to the values the figure can take (a share to [0, 1], a time to >= 0): the t interval of
    three accuracies near 1 reaches past 1. Cutting keeps the interval's coverage, since the true value is inside
    the bounds."""
    if iv.lo is None or iv.hi is None:
        return iv
    new_lo = iv.lo if lo is None else max(iv.lo, lo)
    new_hi = iv.hi if hi is None else min(iv.hi, hi)
    return Interval(iv.mean, new_lo, new_hi, iv.n, iv.method)


@dataclass(frozen=True)
class Paired:
    """A paired difference (a - b) before the correction for many comparisons: its mean, a two-sided p-value of
    "no difference", and how to get its interval at any level."""

    mean: float
    n: int  # pairs: common seeds, or evaluation rows
    # "t": paired t over seeds; "bootstrap": paired bootstrap over evaluation rows; "exact": a figure that repeats
    # exactly (not tested); "identical": the same value on every pair (nothing to test, left out of the family)
    method: str
    p: float | None  # None: nothing can be said (fewer than two seeds)
    interval: Callable[[float], tuple[float, float]] | None = None
    differs: bool = False  # "exact": some pair differs (changes of +1 and -1 still count)


@dataclass(frozen=True)
class Difference:
    """A paired difference after the Benjamini-Hochberg correction across its family of comparisons."""

    mean: float
    lo: float | None  # the interval at `level` (Benjamini-Yekutieli: 1 - max(R, 1)·q/m)
    hi: float | None
    n: int
    method: str
    level: float | None
    p: float | None
    p_adjusted: float | None  # Benjamini-Hochberg over the family
    beyond_noise: bool | None  # None: fewer than two seeds and no evaluation rows to resample: cannot tell
    differs: bool = False

    @property
    def verdict(self) -> str:
        if self.method == "exact":
            return "changed" if self.differs else "same"
        if self.method == "identical":
            return "same"
        if self.beyond_noise is None:
            unit = "row" if self.method == "bootstrap" else "seed"
            return f"cannot tell ({self.n} {unit}{'s' if self.n != 1 else ''})"
        return "beyond noise" if self.beyond_noise else "within noise"


def paired_t(diffs: Sequence[float]) -> Paired:
    """The paired t test and interval of per-seed differences (a[seed] - b[seed]). p is None (nothing can be said
    from the seeds) for fewer than two pairs, for a value that is not finite, and for differences without spread:
    a score is a count of rows, so two seeds that each gain one row give equal differences by chance, and the t
    statistic is undefined; the caller can then resample the evaluation rows instead."""
    from scipy import stats

    d = [float(x) for x in diffs]
    n = len(d)
    if not all(math.isfinite(x) for x in d):
        return Paired(math.nan, n, "t", None)
    mean = math.fsum(d) / n if n else math.nan
    if n >= 2 and all(math.isclose(x, 0.0, abs_tol=1e-12) for x in d):  # equal on every seed: nothing to test
        return Paired(0.0, n, "identical", None)
    if n < 2 or _no_spread(d):
        return Paired(mean, n, "t", None)
    sem = stats.sem(d)

    def interval(level: float) -> tuple[float, float]:
        lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sem)
        return float(lo), float(hi)

    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return Paired(mean, n, "t", p if math.isfinite(p) else None, interval)


def exact_change(a: Sequence[float], b: Sequence[float]) -> Paired:
    """A figure that repeats exactly (Measure.exact): any change between paired values is real, not noise."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = math.fsum(d) / len(d) if d else math.nan
    return Paired(mean, len(d), "exact", None, differs=any(x != 0 for x in d))


def paired_bootstrap(a: Callable[[list[int]], float], b: Callable[[list[int]], float], n_rows: int,
                     resamples: int = RESAMPLES, seed: int = 0) -> Paired | None:
    """a - b on the same evaluation rows: both scored on the same resampled rows, percentile intervals, and the
    two-sided bootstrap p-value 2·min(share of replicates <= 0, share >= 0), with the (k+1)/(B+1) correction that
    keeps it above 0. Drawn with numpy instead of scipy's `bootstrap` because both sides must see the same
    resamples. None for fewer than two rows."""
    import numpy as np

    if n_rows < 2:
        return None
    full = a(list(range(n_rows))) - b(list(range(n_rows)))
    idx = np.random.default_rng(seed).integers(0, n_rows, size=(resamples, n_rows))
    reps = np.array([a(rows) - b(rows) for rows in idx.tolist()])
    if not (math.isfinite(full) and np.isfinite(reps).all()):
        return Paired(full, n_rows, "bootstrap", None)
    if full == 0 and not reps.any():  # the same score on every resample: the rows agree, nothing to test
        return Paired(0.0, n_rows, "identical", None)
    below, above = (np.sum(reps <= 0) + 1) / (resamples + 1), (np.sum(reps >= 0) + 1) / (resamples + 1)
    p = float(min(1.0, 2 * min(below, above)))

    def interval(level: float) -> tuple[float, float]:
        lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    return Paired(full, n_rows, "bootstrap", p, interval)


def correct(family: dict[str, Paired], q: float = FDR) -> dict[str, Difference]:
    """Benjamini-Hochberg at false discovery rate q across the family's testable comparisons (scipy's
    `false_discovery_control`); each interval at the Benjamini-Yekutieli level 1 - max(R, 1)·q/m for R of m
    selected, so that a difference is "beyond noise" when its interval leaves out 0."""
    from scipy import stats

    testable = {k: d for k, d in family.items()
                if d.p is not None and math.isfinite(d.p) and d.method not in ("exact", "identical")}
    adjusted = {}
    if testable:
        ps = stats.false_discovery_control([d.p for d in testable.values()], method="bh")
        adjusted = dict(zip(testable, (float(x) for x in ps), strict=True))
    m = len(testable)
    selected = sum(a <= q for a in adjusted.values())
    level = 1 - max(selected, 1) * q / m if m else None
    out = {}
    for key, d in family.items():
        if key not in testable:
            out[key] = Difference(d.mean, None, None, d.n, d.method, None, d.p, None, None, d.differs)
            continue
        lo, hi = d.interval(level) if d.interval is not None else (None, None)
        out[key] = Difference(d.mean, lo, hi, d.n, d.method, level, d.p, adjusted[key], adjusted[key] <= q)
    return out


def _paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return [a[s] - b[s] for s in sorted(a.keys() & b.keys()) if a[s] is not None and b[s] is not None]


def compare_runs(by_run: dict[str, dict[int, float]], against: str, q: float = FDR) -> dict[str, Difference]:
    """Every run of `by_run` (run -> seed -> value) but `against`, minus `against`, paired by seed (paired t),
    corrected across those comparisons."""
    return correct({run: paired_t(_paired(values, by_run[against]))
                    for run, values in by_run.items() if run != against}, q)


def bootstrap_rows(score: Callable[[list[int]], float], n_rows: int, level: float = LEVEL,
                   resamples: int = RESAMPLES, seed: int = 0) -> Interval | None:
    """`score(all rows)` with the percentile bootstrap interval of `score(rows resampled with replacement)`."""
    return bootstrap_rows_many(lambda rows: {"score": score(rows)}, n_rows, level, resamples, seed).get("score")


def bootstrap_rows_many(scores: Callable[[list[int]], dict[str, float]], n_rows: int, level: float = LEVEL,
                        resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Interval]:
    """bootstrap_rows of every score that `scores(rows)` returns, all from the same resamples: one pass over them
    instead of one per score (a task kind's score_rows computes all its metrics at once)."""
    import numpy as np
    from scipy import stats

    if n_rows < 2:
        return {}
    full = scores(list(range(n_rows)))
    names = [k for k, v in full.items() if math.isfinite(v)]
    out = {k: Interval(v, None, None, n_rows, "bootstrap") for k, v in full.items() if k not in names}
    if not names:
        return out
    res = stats.bootstrap((np.arange(n_rows),), lambda idx: np.array([scores(idx.tolist())[k] for k in names]),
                          vectorized=False, n_resamples=resamples, confidence_level=level, method="percentile",
                          rng=np.random.default_rng(seed))
    for k, lo, hi in zip(names, np.atleast_1d(res.confidence_interval.low),
                         np.atleast_1d(res.confidence_interval.high), strict=True):
        ok = math.isfinite(lo) and math.isfinite(hi)
        out[k] = Interval(full[k], float(lo) if ok else None, float(hi) if ok else None, n_rows, "bootstrap")
    return out
