"""Summary statistics of raw samples: the one place percentiles and confidence intervals are computed.

Conventions (see docs/metrics.md):
- Percentiles use linear interpolation between order statistics (numpy's default ``method="linear"``,
  i.e. Hyndman & Fan definition 7), always reported with the sample count.
- The median carries a 95% bootstrap confidence interval (percentile method, ``scipy.stats.bootstrap``,
  fixed seed so a stored summary can be recomputed exactly).
- Standard deviation is the sample standard deviation (``ddof=1``); it is ``nan`` for one sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from profiles.errors import InputError

#: Percentiles reported everywhere, in percent.
PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)

#: Bootstrap resamples for the median CI. 2,000 keeps a 100k-sample summary under a second.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261130

#: Nanoseconds per unit, for converting integer-ns samples once, at summary time.
NS_PER_UNIT: dict[str, float] = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


@dataclass(frozen=True)
class Summary:
    """Summary of one metric's samples.

    All values are in ``unit``. ``p50 == median``. ``median_ci_low``/``median_ci_high`` bound the
    95% bootstrap CI of the median (equal to the median when ``count == 1``). Fields are ``None`` when
    ``count == 0``.
    """

    unit: str
    count: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    median_ci_low: float | None = None
    median_ci_high: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-safe; ``nan`` std becomes ``None``)."""
        d = asdict(self)
        if d["std"] is not None and not np.isfinite(d["std"]):
            d["std"] = None
        return d


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` with linear interpolation (numpy default).

    Raises:
        InputError: ``values`` is empty or ``q`` is outside [0, 100].
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise InputError("percentile of an empty sample set is undefined")
    if not 0.0 <= q <= 100.0:
        raise InputError(f"percentile q={q} is outside [0, 100]")
    return float(np.percentile(arr, q))


def median_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap confidence interval of the median (percentile method, seeded; ``scipy.stats.bootstrap``).

    Returns ``(low, high)`` in the unit of ``values``. With fewer than 3 samples, or identical
    samples, the interval collapses to the median.
    """
    arr = np.asarray(values, dtype=np.float64)
    med = float(np.median(arr))
    if arr.size < 3 or float(arr.min()) == float(arr.max()):
        return med, med
    from scipy.stats import bootstrap

    res = bootstrap(
        (arr,),
        np.median,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(values: Sequence[float] | np.ndarray, unit: str = "ms", *, with_ci: bool = True) -> Summary:
    """Summarise samples already in ``unit``.

    Args:
        values: 1-D samples (any real dtype). Non-finite values raise.
        unit: label carried into the result (e.g. ``"ms"``).
        with_ci: compute the bootstrap CI of the median.

    Raises:
        InputError: a value is NaN or infinite (failed samples must be excluded by the caller).
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        return Summary(unit=unit, count=0)
    if not np.all(np.isfinite(arr)):
        raise InputError("samples contain NaN or Inf; exclude failed samples before summarising")
    pct = np.percentile(arr, PERCENTILES)
    lo, hi = median_ci(arr) if with_ci else (None, None)
    return Summary(
        unit=unit,
        count=int(arr.size),
        mean=float(arr.mean()),
        std=float(arr.std(ddof=1)) if arr.size > 1 else float("nan"),
        min=float(arr.min()),
        max=float(arr.max()),
        p50=float(pct[0]),
        p90=float(pct[1]),
        p95=float(pct[2]),
        p99=float(pct[3]),
        median_ci_low=lo,
        median_ci_high=hi,
    )


def summarize_ns(samples_ns: Sequence[int] | np.ndarray, unit: str = "ms", *, with_ci: bool = True) -> Summary:
    """Summarise integer-nanosecond samples, converted once to ``unit`` (``ns``, ``us``, ``ms`` or ``s``).

    Raises:
        InputError: unknown ``unit``.
    """
    if unit not in NS_PER_UNIT:
        raise InputError(f"unknown time unit {unit!r}; expected one of {sorted(NS_PER_UNIT)}")
    arr = np.asarray(samples_ns, dtype=np.float64) / NS_PER_UNIT[unit]
    return summarize(arr, unit, with_ci=with_ci)
