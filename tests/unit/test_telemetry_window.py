"""profiles.telemetry_window: energy over the measured window only (counter, then power integration),
window clipping, throttle names, other processes. Scripted samples, no NVML."""

from __future__ import annotations

import pytest

from profiles.errors import InputError
from profiles.telemetry_window import (
    WindowSample,
    integrate_power,
    summarize_window,
    throttle_reason_names,
    window_energy,
)

MS = 1_000_000


def ramp(power_w: float, n: int = 21, step_ms: int = 100, e0_mj: int = 5_000) -> list[WindowSample]:
    """n samples every step_ms at a constant power, with the energy counter advancing accordingly."""
    return [WindowSample(ts_ns=i * step_ms * MS, power_w=power_w, energy_mj=e0_mj + int(power_w * i * step_ms))
            for i in range(n)]


def test_counter_is_interpolated_at_the_window_edges() -> None:
    s = ramp(200.0)  # 0 .. 2 s, 200 W: 200 mJ per ms
    r = window_energy(s, 250 * MS, 1_250 * MS)  # edges between samples
    assert r.method == "energy_counter" and r.energy_j == pytest.approx(200.0)
    rep = summarize_window(s, 250 * MS, 1_250 * MS, inferences=50)
    assert rep.energy_per_inference_j == pytest.approx(4.0) and rep.avg_power_w == pytest.approx(200.0)
    assert rep.samples_in_window == 10 and rep.sample_rate_hz == pytest.approx(10.0)


def test_energy_outside_the_window_does_not_count() -> None:
    """1 kW before and after the window, 100 W inside: only the inside counts."""
    s, e = [], 0
    for i in range(31):
        t = i * 100
        p = 100.0 if 1_000 <= t <= 2_000 else 1_000.0
        if i:
            e += int((s[-1].power_w + p) / 2 * 100)  # the counter integrates the power
        s.append(WindowSample(ts_ns=t * MS, power_w=p, energy_mj=e))
    r = window_energy(s, 1_100 * MS, 1_900 * MS)
    assert r.method == "energy_counter" and r.energy_j == pytest.approx(80.0)
    assert integrate_power(*_arrays(s), 1_100 * MS, 1_900 * MS) == pytest.approx(80.0)


def _arrays(s: list[WindowSample]):  # noqa: ANN202 - test helper
    import numpy as np

    return np.array([x.ts_ns for x in s]), np.array([x.power_w for x in s])


def test_power_integration_fallbacks() -> None:
    no_counter = [WindowSample(ts_ns=x.ts_ns, power_w=x.power_w) for x in ramp(300.0)]
    r = window_energy(no_counter, 0, 1_000 * MS)
    assert r.method == "power_integration" and r.energy_j == pytest.approx(300.0)
    assert "not available" in r.notes[0]

    backwards = ramp(300.0)
    backwards[5] = WindowSample(ts_ns=backwards[5].ts_ns, power_w=300.0, energy_mj=0)
    r = window_energy(backwards, 0, 1_000 * MS)
    assert r.method == "power_integration" and "went backwards" in r.notes[0]

    stuck = [WindowSample(ts_ns=x.ts_ns, power_w=300.0, energy_mj=7) for x in ramp(300.0)]
    r = window_energy(stuck, 0, 1_000 * MS)
    assert r.method == "power_integration" and "did not advance" in r.notes[0]

    # a trapezoid, not a rectangle: power rising 100 -> 300 W over 1 s is 200 J
    rising = [WindowSample(ts_ns=i * 100 * MS, power_w=100.0 + 20.0 * i) for i in range(11)]
    assert window_energy(rising, 0, 1_000 * MS).energy_j == pytest.approx(200.0)


def test_window_not_bracketed_gives_no_energy() -> None:
    s = ramp(100.0, n=5)  # 0 .. 0.4 s
    r = window_energy(s, 100 * MS, 900 * MS)
    assert r.energy_j is None and r.method is None
    assert "do not bracket" in r.notes[0] and "no energy" in r.notes[-1]
    rep = summarize_window(s, 100 * MS, 900 * MS, inferences=3)
    assert rep.energy_per_inference_j is None and rep.avg_power_w is None
    assert any("telemetry sample(s) fell inside" in w for w in rep.warnings)  # 4 < 5 samples


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="before it starts"):
        window_energy(ramp(1.0), 10, 5)
    with pytest.raises(InputError, match="inferences=0"):
        summarize_window(ramp(1.0), 0, 10, inferences=0)
    with pytest.raises(InputError, match="bracket"):
        integrate_power(*_arrays(ramp(1.0, n=1)), 0, 10)


def test_throttle_reason_names() -> None:
    assert throttle_reason_names(0) == []
    assert throttle_reason_names(0x1 | 0x4 | 0x40) == ["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]
    assert throttle_reason_names(0x800) == ["bit_0x800"]


def test_idle_is_not_throttling_and_own_processes_are_not_others() -> None:
    s = [WindowSample(ts_ns=i * 100 * MS, throttle_reasons=0x1, processes=((10, 2**20),)) for i in range(11)]
    rep = summarize_window(s, 0, 1_000 * MS, inferences=1, own_pids={10})
    assert rep.warnings == [] and rep.throttle == {"gpu_idle": 1.0} and rep.other_processes == []
    # NVML lists only a pid we do not know: warned, with the PID-namespace caveat noted
    rep = summarize_window(s, 0, 1_000 * MS, inferences=1, own_pids={99}, process_names={10: "python3"})
    assert "pid 10 python3 (11 of 11 samples, 1 MiB)" in rep.warnings[0]
    assert any("PID namespaces" in n for n in rep.notes)
