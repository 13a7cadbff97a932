"""Small, dependency-free statistics for the report: t intervals over seeds, paired differences, bootstrap.

With 3 seeds a normal interval would be far too narrow, so the t quantile is used (exact table up to
30 degrees of freedom, the normal quantile beyond).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

# two-sided 95%: t_{0.975, df}
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t975(df: int) -> float:
    if df < 1:
        return float("nan")
    return _T975[df - 1] if df <= len(_T975) else statistics.NormalDist().inv_cdf(0.975)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval (nan with a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, t975(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5


def paired_difference(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """Mean of b - a over the seeds both have, its 95% half-width, and the number of pairs."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return float("nan"), float("nan"), 0
    mean, half = mean_ci([b[s] - a[s] for s in seeds])
    return mean, half, len(seeds)


def bootstrap_ci(values: Sequence[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the mean, resampling examples (e.g. ROUGE over the held-out pairs)."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
