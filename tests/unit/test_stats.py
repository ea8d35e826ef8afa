"""profiles.stats: percentiles, CI, ns conversion."""

import math

import numpy as np
import pytest

from profiles.errors import InputError
from profiles.stats import median_ci, percentile, summarize, summarize_ns


def test_percentiles_linear_interpolation_exact() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0], "ms")
    assert s.count == 4
    assert s.p50 == 2.5
    assert s.p90 == pytest.approx(3.7)  # 1 + 0.9*3 = 3.7 -> between 3 and 4
    assert s.p99 == pytest.approx(3.97)
    assert s.mean == 2.5 and s.min == 1.0 and s.max == 4.0
    assert s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_ns_conversion_once() -> None:
    s = summarize_ns([1_000_000, 3_000_000], "ms", with_ci=False)
    assert s.mean == 2.0 and s.unit == "ms"
    assert summarize_ns([1_500], "us", with_ci=False).p50 == 1.5


def test_median_ci_brackets_median_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 0.5, 500)
    lo, hi = median_ci(x)
    assert lo < float(np.median(x)) < hi
    assert median_ci(x) == (lo, hi)


def test_degenerate_inputs() -> None:
    assert summarize([], "ms").count == 0
    one = summarize([5.0])
    assert one.median_ci_low == one.median_ci_high == 5.0 and math.isnan(one.std)
    assert one.as_dict()["std"] is None
    with pytest.raises(InputError, match="NaN"):
        summarize([1.0, float("nan")])
    with pytest.raises(InputError, match="empty"):
        percentile([], 50)
    with pytest.raises(InputError, match="unit"):
        summarize_ns([1], "minutes")


def test_exact_median_ci_matches_resampling_bootstrap() -> None:
    """The closed-form CI agrees with scipy's Monte-Carlo percentile bootstrap up to resampling noise."""
    from scipy.stats import bootstrap

    x = np.random.default_rng(7).lognormal(0, 0.4, 401)
    lo, hi = median_ci(x)
    mc = bootstrap((x,), np.median, n_resamples=4000, method="percentile", rng=np.random.default_rng(3))
    width = hi - lo
    assert abs(lo - mc.confidence_interval.low) < 0.1 * width
    assert abs(hi - mc.confidence_interval.high) < 0.1 * width


def test_median_ci_large_sample_is_fast_enough_to_store() -> None:
    """1e6 samples: the interval is tight around the median (not a timing assertion)."""
    x = np.random.default_rng(2).normal(10.0, 1.0, 1_000_000)
    lo, hi = median_ci(x)
    assert lo < np.median(x) < hi and hi - lo < 0.01
