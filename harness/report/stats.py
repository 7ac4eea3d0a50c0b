"""Statistics across seeds: a median with a 95 % confidence interval, and a technique's
paired difference from the baseline of the same seeds.

With a handful of seeds, distribution-free methods: a percentile bootstrap of the
median (seeded, so a report is reproducible) and the Wilcoxon signed-rank test on
the per-seed differences (exact for small n; with 5 seeds the smallest two-sided
p-value it can give is 0.0625, which the report states rather than hides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 2000


@dataclass(frozen=True)
class Estimate:
    median: float | None
    low: float | None
    high: float | None
    n: int

    def text(self, digits: int = 4) -> str:
        if self.median is None:
            return "-"
        if self.n < 2:
            return f"{self.median:.{digits}g} (n={self.n})"
        return f"{self.median:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def _clean(values) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None and not _isnan(v)], dtype=float)
    return arr


def _isnan(v) -> bool:
    try:
        return math.isnan(v)
    except TypeError:
        return False


def median(values) -> float | None:
    """The median of the values that are numbers (None and NaN left out); None when
    there are none."""
    x = _clean(values)
    return float(np.median(x)) if len(x) else None


def median_ci(values, level: float = 0.95, seed: int = 0) -> Estimate:
    """Median and its percentile-bootstrap CI (the interval is the median itself for
    n = 1, and as wide as the data allow for small n)."""
    x = _clean(values)
    if len(x) == 0:
        return Estimate(None, None, None, 0)
    med = median(x)
    if len(x) == 1 or np.all(x == x[0]):
        return Estimate(med, med, med, len(x))
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(x, size=(BOOTSTRAP, len(x)), replace=True), axis=1)
    a = (1 - level) / 2
    return Estimate(med, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)),
                    len(x))


@dataclass(frozen=True)
class Paired:
    difference: Estimate  # of (technique - baseline), per seed
    p_value: float | None  # Wilcoxon signed-rank, two-sided; None when it cannot be computed
    n: int


def paired_difference(technique: dict[int, float], baseline: dict[int, float],
                      seed: int = 0) -> Paired:
    """Per-seed differences on the seeds both have (a paired design: same requests,
    same fault instants), their median with a CI and the signed-rank p-value."""
    seeds = sorted(s for s in technique if s in baseline
                   and not _isnan(technique[s]) and not _isnan(baseline[s])
                   and technique[s] is not None and baseline[s] is not None)
    d = np.asarray([technique[s] - baseline[s] for s in seeds], dtype=float)
    est = median_ci(d, seed=seed)
    if len(d) < 2 or np.all(d == 0):
        return Paired(est, None if len(d) < 2 else 1.0, len(d))
    from scipy.stats import wilcoxon

    return Paired(est, float(wilcoxon(d, zero_method="zsplit", alternative="two-sided").pvalue),
                  len(d))
