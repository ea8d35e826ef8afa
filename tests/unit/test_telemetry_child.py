"""The out-of-process telemetry sampler: a real child process, the CPU backend (no GPU here), samples back in
the parent's clock domain, window marks and the in-process fallback."""

from __future__ import annotations

import time

from engine_runner.telemetry import OutOfProcessSampler, TelemetrySampler


def test_child_samples_arrive_on_the_parents_clock() -> None:
    before = time.perf_counter_ns()
    tel = OutOfProcessSampler(0.05).start()
    start = time.perf_counter_ns()
    time.sleep(0.3)  # the child samples meanwhile; nothing below depends on how many samples it took
    end = time.perf_counter_ns()
    tel.mark_window(start, end)
    pts = tel.stop()
    after = time.perf_counter_ns()
    assert len(pts) >= 2  # one on start, one on stop, at least
    assert all(p.device == "cpu" for p in pts)
    ts = [p.ts_ns for p in pts]
    assert ts == sorted(ts)
    # the child's t0 lies between the parent's readings around start(): one clock for both processes
    assert before <= tel._t0_ns <= start
    assert tel._t0_ns + ts[-1] <= after
    assert tel.window_ns == (start - tel._t0_ns, end - tel._t0_ns)
    assert "sampled out of process (python -m engine_runner.telemetry)" in tel.notes


def test_a_child_that_cannot_start_falls_back_to_the_thread(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    def refuse(*a: object, **k: object) -> None:
        raise OSError("no such interpreter")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    with OutOfProcessSampler(0.05) as tel:
        time.sleep(0.05)
    assert isinstance(tel, TelemetrySampler) and len(tel.samples) >= 2
    assert any("did not start" in n for n in tel.notes)
