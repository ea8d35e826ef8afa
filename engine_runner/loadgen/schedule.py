"""Arrival schedules for open-loop request-rate load.

Inter-arrival gaps follow vLLM's benchmark (``benchmarks/serve.py``, ``get_request``): gamma-distributed
with shape ``burstiness`` and scale ``1 / (rate * burstiness)``, so the mean gap is ``1 / rate`` for any
burstiness; ``burstiness == 1`` is a Poisson process (exponential gaps). ``constant`` gives equal gaps.
An infinite rate schedules every request at 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from profiles.errors import InputError

ARRIVALS = ("poisson", "gamma", "constant")


def validate_rate(rate: float, arrival: str, burstiness: float) -> None:
    """Check a rate-mode level's fields.

    Raises:
        InputError: ``rate`` not > 0 (``inf`` allowed), unknown ``arrival``, ``burstiness`` not > 0.
    """
    if not (rate > 0):
        raise InputError(f"request rate must be > 0 requests/s (or inf), got {rate!r} (field value)")
    if arrival not in ARRIVALS:
        raise InputError(f"unknown arrival {arrival!r} (field arrival); expected one of {list(ARRIVALS)}")
    if not (burstiness > 0) or math.isinf(burstiness):
        raise InputError(f"burstiness must be a finite number > 0, got {burstiness!r} (field burstiness)")


def interarrival_s(n: int, rate: float, arrival: str = "poisson", burstiness: float = 1.0, seed: int = 0) -> np.ndarray:
    """``n`` inter-arrival gaps in seconds (float64 array of shape ``(n,)``), seeded.

    Poisson: exponential with mean ``1/rate``. Gamma: shape ``burstiness``, scale ``1/(rate*burstiness)``.
    Constant: all ``1/rate``. Infinite rate: all 0.

    Raises:
        InputError: see :func:`validate_rate`; ``n`` < 0.
    """
    validate_rate(rate, arrival, burstiness)
    if n < 0:
        raise InputError(f"number of arrivals must be >= 0, got {n}")
    if math.isinf(rate):
        return np.zeros(n)
    if arrival == "constant":
        return np.full(n, 1.0 / rate)
    shape = 1.0 if arrival == "poisson" else burstiness
    rng = np.random.default_rng(seed)
    return rng.gamma(shape, 1.0 / (rate * shape), size=n)


def arrival_offsets_ns(
    rate: float, arrival: str = "poisson", burstiness: float = 1.0, seed: int = 0, *, batch: int = 4096
) -> Iterator[int]:
    """Endless iterator of scheduled send offsets in integer ns from t0 (first request at 0).

    Offsets are cumulative sums of :func:`interarrival_s` drawn in batches from one seeded generator,
    so a duration-bounded level needs no request count up front.
    """
    validate_rate(rate, arrival, burstiness)
    if math.isinf(rate):
        while True:
            yield 0
    rng = np.random.default_rng(seed)
    shape = 1.0 if arrival == "poisson" else burstiness
    t = 0.0
    yield 0
    while True:
        if arrival == "constant":
            gaps = np.full(batch, 1.0 / rate)
        else:
            gaps = rng.gamma(shape, 1.0 / (rate * shape), size=batch)
        for g in gaps.tolist():
            t += g
            yield int(round(t * 1e9))
