"""engine_runner.timing with a scripted clock: no real time passes, every sample is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from engine_runner.timing import NS_PER_S, TimingPolicy, time_calls
from profiles.errors import InputError, JobCancelled


class ScriptedClock:
    """A clock that only moves when the fake engine call runs: call k takes ``durations[k]`` ns
    (the last duration repeats)."""

    def __init__(self, durations_ns: list[int], overhead_ns: int = 0) -> None:
        self.t = 1_000
        self.durations = durations_ns
        self.calls = 0
        self.overhead_ns = overhead_ns

    def __call__(self) -> int:
        self.t += self.overhead_ns
        return self.t

    def fn(self) -> None:
        d = self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1
        self.t += d


def test_count_bound_when_duration_is_short() -> None:
    clk = ScriptedClock([5_000_000] * 3 + [1_000_000, 2_000_000, 3_000_000, 4_000_000])
    res = time_calls(clk.fn, TimingPolicy(warmup_iterations=3, warmup_s=0, iterations=4, min_duration_s=0),
                     clock=clk)
    assert res.warmup_iterations == 3
    assert res.warmup_ns == 15_000_000
    assert res.samples_ns.dtype == np.int64
    assert res.samples_ns.tolist() == [1_000_000, 2_000_000, 3_000_000, 4_000_000]
    assert res.stop_reason == "minimums_reached"


def test_duration_bound_keeps_iterating_past_count() -> None:
    # 10 ms per call, min 4 iterations but 0.1 s of summed time -> 10 samples
    clk = ScriptedClock([10_000_000])
    res = time_calls(clk.fn, TimingPolicy(warmup_iterations=0, warmup_s=0, iterations=4, min_duration_s=0.1),
                     clock=clk)
    assert res.samples_ns.size == 10
    assert int(res.samples_ns.sum()) == 100_000_000


def test_warmup_needs_both_count_and_time() -> None:
    clk = ScriptedClock([100_000_000])  # 0.1 s per call
    res = time_calls(clk.fn, TimingPolicy(warmup_iterations=2, warmup_s=0.5, iterations=1, min_duration_s=0),
                     clock=clk)
    assert res.warmup_iterations == 5  # time bound dominates
    clk2 = ScriptedClock([100_000_000])
    res2 = time_calls(clk2.fn, TimingPolicy(warmup_iterations=7, warmup_s=0.1, iterations=1, min_duration_s=0),
                      clock=clk2)
    assert res2.warmup_iterations == 7  # count bound dominates


def test_max_duration_caps_both_phases() -> None:
    clk = ScriptedClock([NS_PER_S])  # 1 s per call
    res = time_calls(clk.fn, TimingPolicy(warmup_iterations=100, warmup_s=0, iterations=1000,
                                          min_duration_s=0, max_duration_s=3), clock=clk)
    assert res.warmup_stop_reason == "max_duration"
    assert res.warmup_iterations == 3
    assert res.stop_reason == "max_duration"
    assert res.samples_ns.size == 3
    assert res.as_config()["iterations_done"] == 3


def test_loop_overhead_is_outside_samples() -> None:
    clk = ScriptedClock([1_000], overhead_ns=7)
    res = time_calls(clk.fn, TimingPolicy(warmup_iterations=0, warmup_s=0, iterations=3, min_duration_s=0),
                     clock=clk)
    # each sample = call duration + one clock read's overhead, not the gaps between iterations
    assert res.samples_ns.tolist() == [1_007, 1_007, 1_007]
    assert res.timed_wall_ns > int(res.samples_ns.sum())


def test_cancellation_between_iterations() -> None:
    clk = ScriptedClock([1_000])
    checks = {"n": 0}

    def check() -> None:
        checks["n"] += 1
        if checks["n"] > 5:
            raise JobCancelled("job 1 cancelled by the user")

    with pytest.raises(JobCancelled):
        time_calls(clk.fn, TimingPolicy(warmup_iterations=2, warmup_s=0, iterations=100, min_duration_s=0),
                   clock=clk, check_cancelled=check)
    assert clk.calls == 5


def test_progress_is_throttled_and_final() -> None:
    clk = ScriptedClock([100_000_000])  # 0.1 s
    events: list[tuple[str, int, int, int]] = []
    time_calls(clk.fn, TimingPolicy(warmup_iterations=0, warmup_s=0, iterations=20, min_duration_s=0),
               clock=clk, progress=lambda *a: events.append(a), progress_interval_ns=NS_PER_S // 2)
    timing = [e for e in events if e[0] == "timing"]
    assert timing[-1][1] == 20
    assert 3 <= len(timing) <= 6  # about every 5 calls, not every call


def test_policy_bounds_are_checked() -> None:
    with pytest.raises(InputError, match="iterations"):
        TimingPolicy(iterations=0)
    with pytest.raises(InputError, match="max_duration_s"):
        TimingPolicy(max_duration_s=0)


def test_capped_loop_is_reported_in_config() -> None:
    clk = ScriptedClock([NS_PER_S])  # 1 s per call
    res = time_calls(clk.fn, TimingPolicy(warmup_iterations=0, warmup_s=0, iterations=1000,
                                          min_duration_s=0, max_duration_s=3), clock=clk)
    cfg = res.as_config()
    assert cfg["timing_stop_reason"] == "max_duration"
    assert cfg["timing_stop_note"] == ("timed loop capped by max_duration_s=3: 3 of 1000 requested iterations, "
                                       "3 s of min_duration_s=0 s")
    clk2 = ScriptedClock([1_000_000])
    done = time_calls(clk2.fn, TimingPolicy(warmup_iterations=0, warmup_s=0, iterations=5, min_duration_s=0),
                      clock=clk2)
    assert done.capped_note() is None
    assert done.as_config()["timing_stop_reason"] == "minimums_reached" and "timing_stop_note" not in done.as_config()
