import math
import statistics

import pytest

from d2lora_exp import stats


def test_t_interval_matches_the_t_table():
    mean, half = stats.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(3.182 * statistics.stdev([1, 2, 3, 4]) / 2)
    assert math.isnan(stats.mean_ci([5.0])[1])
    assert stats.t975(100) == pytest.approx(1.96, abs=1e-3)


def test_paired_difference_uses_common_seeds_only():
    mean, half, n = stats.paired_difference({0: 1.0, 1: 2.0, 2: 9.0}, {0: 2.0, 1: 4.0, 5: 0.0})
    assert (mean, n) == (1.5, 2) and half == pytest.approx(12.706 * statistics.stdev([1, 2]) / 2**0.5)


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = [float(i % 7) for i in range(100)]
    lo, hi = stats.bootstrap_ci(values, seed=1)
    assert lo < statistics.fmean(values) < hi and hi - lo < 1.5
    assert stats.bootstrap_ci(values, seed=1) == (lo, hi)
    assert stats.bootstrap_ci([3.0] * 10) == (3.0, 3.0)
