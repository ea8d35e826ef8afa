"""Client health during a load level: was the load generator itself able to run?

A streaming client stamps each token chunk when its event loop reads the socket. When the loop cannot
run, chunks pile up in the kernel's socket buffer and are read later in one go: they get one stamp, so
TTFT and E2E grow, the inter-token gaps collapse to 0 and TPOT shrinks. Nothing in the records shows
that this happened, so every level also measures its own client:

- **Loop lag**: a coroutine sleeps :data:`LAG_PERIOD_NS` and records how late it woke
  (``woke - (slept_at + period)``, integer ns). A lag of L ns means no callback of the loop, socket
  reads included, could have run for about L ns.
- **Run-queue wait** (Linux): ``/proc/thread-self/schedstat`` of the loop's thread gives the CPU time the
  thread used and the time it spent runnable but waiting for a CPU (the kernel's ``sched_info``
  counters, in ns). Wait that is a large share of the level's duration means the machine's other
  processes (the server under test, on a small host) kept the client off the CPU: the client did not
  do too much work, it was not scheduled.

:func:`assess` turns both into a verdict that the job stores with the level and prints as a warning.
The thresholds are :data:`LAG_P99_WARN_MS` and :data:`RUNQUEUE_WARN_FRACTION`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

#: Period of the loop-lag probe (10 ms: 100 wake-ups per second, about 1% of one core with uvloop).
LAG_PERIOD_NS = 10_000_000
#: Loop lag p99 above this (ms) is reported as a starved client.
LAG_P99_WARN_MS = 10.0
#: Run-queue wait above this fraction of the level's wall time is reported as a starved client.
RUNQUEUE_WARN_FRACTION = 0.05

_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def parse_cpu_list(text: str) -> set[int]:
    """CPU ids of a ``taskset``-style list (``"0-3,8,10-11"``).

    Raises:
        InputError: a part is not an integer or an ``a-b`` range with ``a <= b`` (names the text).
    """
    from profiles.errors import InputError

    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise InputError(f"CPU list {text!r}: {part!r} is not N or N-M") from None
        if a < 0 or b < a:
            raise InputError(f"CPU list {text!r}: {part!r} is not a range of CPU ids")
        cpus.update(range(a, b + 1))
    return cpus


def read_schedstat(path: Path = _SCHEDSTAT) -> tuple[int, int] | None:
    """``(cpu_ns, runqueue_wait_ns)`` of the calling thread from ``schedstat`` (Linux), else ``None``.

    The file holds three integers: time on the CPU (ns), time waiting on a run queue (ns), timeslices.
    """
    try:
        parts = path.read_text().split()
        return int(parts[0]), int(parts[1])
    except (OSError, ValueError, IndexError):
        return None


class LoopHealth:
    """Measures the event loop it runs on; start with :meth:`start` inside the loop, end with :meth:`stop`.

    Args:
        clock: integer-ns monotonic clock for the lag probe (``time.perf_counter_ns``; the probe always
            measures the real loop, so tests that script the load generator's clock leave this one real).
        period_ns: the probe's sleep.
        schedstat: the thread's schedstat file (tests pass a fake).
    """

    def __init__(self, clock: Any = time.perf_counter_ns, period_ns: int = LAG_PERIOD_NS,
                 schedstat: Path = _SCHEDSTAT) -> None:
        self.clock = clock
        self.period_ns = period_ns
        self.schedstat = schedstat
        self.lags_ns: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0
        self._s0: tuple[int, int] | None = None
        self.result: dict[str, Any] | None = None

    def start(self) -> LoopHealth:
        """Start the probe on the running loop and take the first schedstat reading."""
        self._t0 = self.clock()
        self._s0 = read_schedstat(self.schedstat)
        self._task = asyncio.get_running_loop().create_task(self._probe())
        return self

    async def _probe(self) -> None:
        period_s = self.period_ns / 1e9
        while True:
            t = self.clock()
            await asyncio.sleep(period_s)
            self.lags_ns.append(max(0, self.clock() - t - self.period_ns))

    def stop(self) -> dict[str, Any]:
        """Stop the probe; return (and keep in ``self.result``) the summary of :func:`assess`."""
        if self._task is not None:
            self._task.cancel()
        wall = max(self.clock() - self._t0, 1)
        s1 = read_schedstat(self.schedstat)
        cpu = wait = None
        if self._s0 is not None and s1 is not None:
            cpu, wait = s1[0] - self._s0[0], s1[1] - self._s0[1]
        self.result = assess(self.lags_ns, wall, cpu, wait)
        return self.result


def assess(lags_ns: list[int], wall_ns: int, cpu_ns: int | None, runqueue_wait_ns: int | None) -> dict[str, Any]:
    """Summary of a level's client health.

    Args:
        lags_ns: loop-lag samples (ns). wall_ns: the measured span (ns).
        cpu_ns / runqueue_wait_ns: the loop thread's CPU time and run-queue wait over the span (ns), or
            ``None`` where the OS does not expose them.

    Returns:
        ``{"loop_lag_ms": {"p50", "p99", "max", "count"}, "loop_blocked_s"`` (sum of lags above 10 ms),
        ``"loop_cpu_s", "runqueue_wait_s", "runqueue_wait_fraction", "wall_s", "starved": bool,
        "why": str | None}``. Percentiles by linear interpolation (numpy's default), as every
        EngineScope percentile.
    """
    import numpy as np

    out: dict[str, Any] = {"wall_s": wall_ns / 1e9}
    if lags_ns:
        a = np.asarray(lags_ns, dtype=np.float64) / 1e6
        out["loop_lag_ms"] = {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                              "max": float(a.max()), "count": int(a.size)}
        out["loop_blocked_s"] = float(a[a > 10.0].sum() / 1e3)
    else:
        out["loop_lag_ms"] = {"p50": None, "p99": None, "max": None, "count": 0}
        out["loop_blocked_s"] = None
    out["loop_cpu_s"] = cpu_ns / 1e9 if cpu_ns is not None else None
    out["runqueue_wait_s"] = runqueue_wait_ns / 1e9 if runqueue_wait_ns is not None else None
    frac = runqueue_wait_ns / wall_ns if runqueue_wait_ns is not None and wall_ns > 0 else None
    out["runqueue_wait_fraction"] = frac
    why = []
    p99 = out["loop_lag_ms"]["p99"]
    if p99 is not None and p99 > LAG_P99_WARN_MS:
        why.append(f"event-loop lag p99 {p99:.1f} ms (max {out['loop_lag_ms']['max']:.0f} ms; "
                   f"{out['loop_blocked_s']:.2f} s blocked in stalls > 10 ms)")
    if frac is not None and frac > RUNQUEUE_WARN_FRACTION:
        why.append(f"the client thread waited {out['runqueue_wait_s']:.2f} s of {out['wall_s']:.2f} s for a CPU "
                   f"while using {out['loop_cpu_s']:.2f} s of CPU (other processes held the cores)")
    out["starved"] = bool(why)
    out["why"] = "; ".join(why) or None
    return out
