"""Generic timing loop: warm-up, then timed iterations of one synchronous call, in integer nanoseconds.

Used by every engine (ONNX Runtime here; TensorRT/torch wrap their call so that it returns only when the
work is done, e.g. after a CUDA synchronize). The loop:

1. **Warm-up** until *both* ``warmup_iterations`` calls and ``warmup_s`` seconds are done (capped by
   ``max_duration_s``). Warm-up calls are not recorded.
2. **Timed** iterations until *both* ``iterations`` samples and ``min_duration_s`` seconds of timed
   work are reached, or ``max_duration_s`` seconds have passed since the timed phase began (at least
   one sample is always taken).

Each sample is ``clock()`` after the call minus ``clock()`` before it (``time.perf_counter_ns`` by
default, integer ns), or, when the caller passes ``timed``, the integer ns that ``timed()`` returns for one
call it makes itself (the PyTorch engine on CUDA: a ``torch.cuda.Event`` pair around the call, read after
the stop event completed). The loop's wall-time bounds always use ``clock``. The clock and the cancellation check are injected so that the loop is testable
with a scripted clock. Cancellation is checked between iterations (the caller's check must be cheap;
``JobContext.check_cancelled`` reads the DB at most every 0.5 s); progress is reported at most every
``progress_interval_ns`` of clock time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.errors import InputError

NS_PER_S = 1_000_000_000

#: ``(phase, done, target, elapsed_ns)``: phase is ``"warmup"`` or ``"timing"``; ``target`` is the
#: minimum iteration count of the phase.
ProgressFn = Callable[[str, int, int, int], None]


@dataclass(frozen=True)
class TimingPolicy:
    """How long to warm up and to measure.

    Attributes:
        warmup_iterations: minimum warm-up calls (>= 0).
        warmup_s: minimum warm-up time, seconds (>= 0).
        iterations: minimum timed samples (>= 1).
        min_duration_s: minimum summed time of the timed phase, seconds (>= 0).
        max_duration_s: cap on each phase's wall time, seconds (> 0); reaching it stops that phase
            even if the minimums are not met (``TimingResult.stop_reason`` says so).
    """

    warmup_iterations: int = 10
    warmup_s: float = 0.5
    iterations: int = 100
    min_duration_s: float = 1.0
    max_duration_s: float = 300.0

    def __post_init__(self) -> None:
        if self.warmup_iterations < 0:
            raise InputError(f"warmup_iterations must be >= 0, got {self.warmup_iterations}")
        if self.warmup_s < 0:
            raise InputError(f"warmup_s must be >= 0, got {self.warmup_s}")
        if self.iterations < 1:
            raise InputError(f"iterations must be >= 1, got {self.iterations}")
        if self.min_duration_s < 0:
            raise InputError(f"min_duration_s must be >= 0, got {self.min_duration_s}")
        if self.max_duration_s <= 0:
            raise InputError(f"max_duration_s must be > 0, got {self.max_duration_s}")


@dataclass(frozen=True)
class TimingResult:
    """Outcome of :func:`time_calls`.

    Attributes:
        samples_ns: int64 array, shape ``[n]``: per-iteration latency in ns, in call order.
        warmup_iterations: warm-up calls made.
        warmup_ns: wall time of the warm-up phase, ns.
        timed_wall_ns: wall time of the timed phase (first call start to last call end), ns; includes
            the loop's own overhead between calls, unlike ``samples_ns.sum()``.
        stop_reason: ``"minimums_reached"`` or ``"max_duration"``.
        warmup_stop_reason: ``"minimums_reached"`` or ``"max_duration"``.
        policy: the policy the loop ran under (for :meth:`capped_note`), None when unknown.
        timed_start_ns / timed_end_ns: the clock's readings at the start of the first timed call and at
            the end of the last one (absolute values of ``clock``, e.g. ``time.perf_counter_ns()``): the
            measured window a telemetry sampler on the same clock restricts energy and clocks to.
    """

    samples_ns: np.ndarray
    warmup_iterations: int
    warmup_ns: int
    timed_wall_ns: int
    stop_reason: str
    warmup_stop_reason: str
    policy: TimingPolicy | None = None
    timed_start_ns: int | None = None
    timed_end_ns: int | None = None

    def capped_note(self) -> str | None:
        """A user-facing sentence when ``max_duration_s`` stopped the timed loop before the requested
        ``iterations`` / ``min_duration_s`` were reached (``stop_reason == "max_duration"``); else None."""
        if self.stop_reason != "max_duration":
            return None
        summed_s = float(self.samples_ns.sum()) / NS_PER_S
        if self.policy is None:
            return f"timed loop stopped at max_duration_s after {self.samples_ns.size} iterations ({summed_s:.3g} s)"
        p = self.policy
        return (f"timed loop capped by max_duration_s={p.max_duration_s:g}: {self.samples_ns.size} of "
                f"{p.iterations} requested iterations, {summed_s:.3g} s of min_duration_s={p.min_duration_s:g} s")

    def as_config(self) -> dict[str, Any]:
        """JSON-safe description for ``runs.config`` (counts and seconds actually used).

        ``timing_stop_reason`` repeats ``stop_reason``; ``timing_stop_note`` (:meth:`capped_note`) is present
        only when the loop was capped by ``max_duration_s``."""
        note = self.capped_note()
        return {
            "timing_stop_reason": self.stop_reason,
            **({"timing_stop_note": note} if note else {}),
            "warmup_iterations_done": self.warmup_iterations,
            "warmup_s_done": self.warmup_ns / NS_PER_S,
            "iterations_done": int(self.samples_ns.size),
            "timed_wall_s": self.timed_wall_ns / NS_PER_S,
            "stop_reason": self.stop_reason,
            "warmup_stop_reason": self.warmup_stop_reason,
        }


def time_calls(
    fn: Callable[[], Any],
    policy: TimingPolicy,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
    check_cancelled: Callable[[], None] | None = None,
    progress: ProgressFn | None = None,
    progress_interval_ns: int = NS_PER_S // 2,
    timed: Callable[[], int] | None = None,
) -> TimingResult:
    """Warm up and time ``fn()`` per :class:`TimingPolicy`.

    Args:
        fn: the synchronous call to time (its return value is discarded). It must not return before the
            work it starts is finished; an asynchronous engine synchronises inside ``fn``.
        policy: warm-up and measurement bounds.
        clock: integer-ns monotonic clock (injectable for tests).
        check_cancelled: called between iterations; raises (e.g. ``JobCancelled``) to stop.
        progress: called as ``progress(phase, done, target, elapsed_ns)`` at most every
            ``progress_interval_ns`` and once at the end of each phase.
        timed: when given, each timed iteration calls ``timed()`` instead of ``fn()``; it makes one call and
            returns that call's duration in integer ns as the sample (e.g. from device events). Warm-up
            still calls ``fn``.

    Returns:
        :class:`TimingResult` with ``samples_ns`` (int64, ns).

    Raises:
        Whatever ``fn`` or ``check_cancelled`` raise.
    """
    max_ns = int(policy.max_duration_s * NS_PER_S)

    # -- warm-up: count AND time, capped by max_duration_s
    warm_target_ns = int(policy.warmup_s * NS_PER_S)
    w0 = clock()
    now = w0
    n_warm = 0
    last_report = w0
    warm_reason = "minimums_reached"
    while n_warm < policy.warmup_iterations or now - w0 < warm_target_ns:
        if now - w0 >= max_ns:
            warm_reason = "max_duration"
            break
        if check_cancelled is not None:
            check_cancelled()
        fn()
        n_warm += 1
        now = clock()
        if progress is not None and now - last_report >= progress_interval_ns:
            progress("warmup", n_warm, policy.warmup_iterations, now - w0)
            last_report = now
    warmup_ns = now - w0
    if progress is not None:
        progress("warmup", n_warm, policy.warmup_iterations, warmup_ns)

    # -- timed phase: count AND summed duration, capped by max_duration_s of wall time
    min_ns = int(policy.min_duration_s * NS_PER_S)
    samples: list[int] = []
    summed_ns = 0
    t_start = clock()
    last_report = t_start
    end = t_start
    first_begin: int | None = None
    reason = "minimums_reached"
    while len(samples) < policy.iterations or summed_ns < min_ns:
        if samples and end - t_start >= max_ns:
            reason = "max_duration"
            break
        if check_cancelled is not None:
            check_cancelled()
        if timed is None:
            begin = clock()
            fn()
            end = clock()
            dt_ns = end - begin
        else:
            begin = clock()
            dt_ns = int(timed())
            end = clock()
        if first_begin is None:
            first_begin = begin
        samples.append(dt_ns)
        summed_ns += dt_ns
        if progress is not None and end - last_report >= progress_interval_ns:
            progress("timing", len(samples), policy.iterations, end - t_start)
            last_report = end
    if progress is not None:
        progress("timing", len(samples), policy.iterations, end - t_start)
    return TimingResult(
        samples_ns=np.asarray(samples, dtype=np.int64),
        warmup_iterations=n_warm,
        warmup_ns=int(warmup_ns),
        timed_wall_ns=int(end - t_start),
        stop_reason=reason,
        warmup_stop_reason=warm_reason,
        policy=policy,
        timed_start_ns=int(first_begin) if first_begin is not None else int(t_start),
        timed_end_ns=int(end),
    )
