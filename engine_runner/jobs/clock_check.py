"""Job kind ``clock_check``: measure the host's monotonic clock (``time.perf_counter_ns``).

Every latency EngineScope reports is a difference of two ``perf_counter_ns`` readings, so the clock's
granularity and the cost of reading it bound what a latency can resolve. This job measures both, on
the machine and in the process layout (worker child) that real benchmarks use, and it doubles as the
diagnostic job for testing the worker without a model.

Method: over ``duration_s`` seconds it takes ``samples`` successive-read deltas in evenly spaced bursts
(every ~50 ms). In a burst the clock is read back to back from a Python list comprehension; each delta
``t[i+1] - t[i]`` (integer ns) is the cost of one read plus the interpreter's loop step, or 0 when the
clock did not advance between two reads (the clock's tick is coarser than a read). Stored:

- a ``runs`` row (``engine="host-clock"``, config = spec + ``time.get_clock_info("perf_counter")``),
- ``latency_samples``: every delta in ns, in order,
- ``summaries`` metric ``clock_delta_ns`` (unit ``ns``) from :func:`profiles.stats.summarize_ns`,
- ``run_metrics``: ``clock_resolution_reported_ns`` (what the OS reports), ``clock_min_step_ns``
  (smallest non-zero delta seen: the observed tick, an upper bound of the true resolution),
  ``clock_zero_step_fraction`` (share of deltas that were 0), ``clock_reads_per_s`` (1e9 / mean delta).
"""

from __future__ import annotations

import math
import os
import platform
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import insert

from db.models import LatencySample, Run, RunMetric, Summary, utcnow
from engine_runner.jobctx import JobContext
from profiles.errors import InputError

#: Seconds between the starts of two bursts.
BURST_PERIOD_S = 0.05
#: Seconds between two progress events.
PROGRESS_PERIOD_S = 0.25
#: Rows per INSERT transaction when storing samples.
INSERT_CHUNK = 50_000


class ClockCheckSpec(BaseModel):
    """Spec of a ``clock_check`` job.

    Attributes:
        duration_s: wall time over which the bursts are spread, seconds (0 < d <= 3600).
        samples: number of clock deltas to take in total (2 .. 2,000,000; default 20,000 — the bootstrap
            CI of the median in profiles.stats takes ~15 s for 100,000 samples on a 2-core machine).
    """

    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(1.0, gt=0, le=3600)
    samples: int = Field(20_000, ge=2, le=2_000_000)


def parse_spec(spec: dict[str, Any]) -> ClockCheckSpec:
    """Validate a ``clock_check`` spec.

    Raises:
        InputError: a field is missing, of the wrong type or out of range (the message names it).
    """
    try:
        return ClockCheckSpec.model_validate(spec)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"clock_check spec: {errs}") from None


def measure_bursts(n_bursts: int, per_burst: int, period_s: float, ctx: JobContext | None = None) -> list[int]:
    """Read ``perf_counter_ns`` in ``n_bursts`` bursts of ``per_burst + 1`` back-to-back reads, one
    burst every ``period_s`` seconds; return all within-burst deltas (integer ns, ``n_bursts *
    per_burst`` of them, in order). Between bursts it sleeps, checks cancellation and reports progress
    through ``ctx`` (when given)."""
    pc = time.perf_counter_ns
    deltas: list[int] = []
    t_start = time.monotonic()
    last_progress = t_start
    rng = range(per_burst + 1)
    for b in range(n_bursts):
        ts = [pc() for _ in rng]
        deltas.extend(ts[i + 1] - ts[i] for i in range(per_burst))
        if ctx is not None:
            ctx.check_cancelled()
            now = time.monotonic()
            if now - last_progress >= PROGRESS_PERIOD_S or b == n_bursts - 1:
                last_progress = now
                ctx.progress(0.9 * (b + 1) / n_bursts, f"burst {b + 1}/{n_bursts}: {len(deltas)} clock deltas",
                             deltas=len(deltas))
        next_start = t_start + (b + 1) * period_s
        pause = next_start - time.monotonic()
        if pause > 0 and b < n_bursts - 1:
            time.sleep(pause)
    return deltas


def run(ctx: JobContext) -> None:
    """Job function of ``clock_check`` (see module doc). Honours cancellation between bursts.

    Raises:
        InputError: invalid spec.
        JobCancelled: the user cancelled the job.
    """
    spec = parse_spec(ctx.spec)
    n_bursts = max(1, min(spec.samples // 2, math.ceil(spec.duration_s / BURST_PERIOD_S)))
    per_burst = math.ceil(spec.samples / n_bursts)
    period_s = spec.duration_s / n_bursts
    info = time.get_clock_info("perf_counter")
    clock = {"name": "perf_counter", "implementation": info.implementation, "monotonic": info.monotonic,
             "adjustable": info.adjustable, "resolution_s": info.resolution}
    with ctx.session() as s:
        r = Run(job_id=ctx.job_id, engine="host-clock", engine_version=f"{info.implementation}; CPython {platform.python_version()}",
                status="running", source="measured", label=f"host clock {platform.node()}",
                config={**spec.model_dump(), "bursts": n_bursts, "reads_per_burst": per_burst + 1,
                        "burst_period_s": period_s, "clock": clock},
                environment={"platform": platform.platform(), "machine": platform.machine(),
                             "processor": platform.processor(), "cpu_count": os.cpu_count(),
                             "python": platform.python_version(), "pid": os.getpid()},
                timing_window="successive time.perf_counter_ns() reads, back to back in a Python list "
                              "comprehension (each delta = one read + one interpreter loop step)")
        s.add(r)
        s.flush()
        run_id = int(r.id)
    ctx.event("stage", f"measuring perf_counter_ns ({info.implementation}, reported resolution {info.resolution * 1e9:g} ns): "
                       f"{n_bursts} bursts x {per_burst} deltas over {spec.duration_s:g} s", run_id=run_id)

    deltas = measure_bursts(n_bursts, per_burst, period_s, ctx)

    import numpy as np

    from profiles.stats import summarize_ns

    arr = np.asarray(deltas, dtype=np.int64)
    nonzero = arr[arr > 0]
    summ = summarize_ns(arr, "ns")
    metrics = {
        "clock_resolution_reported_ns": (info.resolution * 1e9, "ns"),
        "clock_min_step_ns": (float(nonzero.min()) if nonzero.size else None, "ns"),
        "clock_zero_step_fraction": (float((arr == 0).mean()), "fraction"),
        "clock_reads_per_s": (1e9 / float(arr.mean()) if arr.mean() > 0 else None, "1/s"),
    }
    ctx.event("stage", f"storing {arr.size} samples", 0.92)
    for start in range(0, arr.size, INSERT_CHUNK):
        ctx.check_cancelled()
        chunk = arr[start:start + INSERT_CHUNK]
        with ctx.session() as s:
            s.execute(insert(LatencySample),
                      [{"run_id": run_id, "seq": start + i, "latency_ns": int(v)} for i, v in enumerate(chunk.tolist())])
    with ctx.session() as s:
        s.add(Summary(run_id=run_id, metric="clock_delta_ns", source="computed", **summ.as_dict()))
        for name, (value, unit) in metrics.items():
            s.add(RunMetric(run_id=run_id, name=name, value=value, unit=unit))
        s.get(Run, run_id).status = "succeeded"  # type: ignore[union-attr]
        s.get(Run, run_id).finished_at = utcnow()  # type: ignore[union-attr]
    ctx.progress(1.0, f"clock delta p50 {summ.p50:g} ns, p99 {summ.p99:g} ns, min step "
                      f"{metrics['clock_min_step_ns'][0]} ns, {metrics['clock_zero_step_fraction'][0]:.1%} zero steps",
                 run_id=run_id)
