"""GPU evidence over a measured window: energy, average power, clocks, throttling, other processes.

Input: telemetry samples (``ts_ns`` integer nanoseconds on the sampler's clock, NVML readings) taken by a
sampler thread beside a benchmark, and the measured window ``[start_ns, end_ns]`` on the same clock (the
engine's timed loop: first call's start to last call's end). Everything here is restricted to that
window: warm-up, session creation and profiling before or after it do not count.

Energy over the window (:func:`window_energy`):

1. ``energy_counter`` (preferred): NVML's ``nvmlDeviceGetTotalEnergyConsumption`` is a monotonic counter
   of millijoules since the driver loaded (Volta and newer). The counter is linearly interpolated at
   ``start_ns`` and at ``end_ns`` between the samples that bracket each instant, and
   ``energy_j = (E(end) - E(start)) / 1000``.
2. ``power_integration`` (fallback, when the counter is absent, does not bracket the window, goes
   backwards or does not advance while power is drawn): trapezoidal integration of the power samples
   (``nvmlDeviceGetPowerUsage``, W) over the window, with the power linearly interpolated at both ends,
   ``energy_j = sum((t[i+1] - t[i]) * (p[i] + p[i+1]) / 2)``. On Ampere and newer boards NVML's power
   reading is itself an average over about one second, so this lags short windows; the counter does not.

Then ``avg_power_w = energy_j / duration_s`` and ``energy_per_inference_j = energy_j / inferences``.
Both include the board's idle power and whatever else ran on the GPU in the window (nothing is
subtracted); the loop's own gaps between calls are inside the window, so the same energy is shared by
the ``inferences`` calls timed in it.

Throttle reasons: NVML's ``nvmlDeviceGetCurrentClocksEventReasons`` (formerly ``...ThrottleReasons``)
bit mask, names in :data:`THROTTLE_REASONS`. ``gpu_idle`` is not a slowdown and is ignored; every other
bit seen in a window sample becomes a warning naming it and the share of samples that carried it.

Other processes: a compute process (NVML ``nvmlDeviceGetComputeRunningProcesses``) whose pid is not one
of ``own_pids`` in any window sample is a warning (its pid, name when known and memory).

Pure: numpy only, no NVML, no DB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from profiles.errors import InputError

#: NVML clock event / throttle reason bits (nvml.h ``nvmlClocksEventReason*`` / ``nvmlClocksThrottleReason*``).
THROTTLE_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
GPU_IDLE = 0x1

#: Below this many samples inside the window, energy and clocks are flagged as resting on few readings.
MIN_WINDOW_SAMPLES = 5


def throttle_reason_names(mask: int) -> list[str]:
    """Names of the bits set in an NVML clock-event/throttle ``mask`` (unknown bits as ``bit_0x...``)."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    bit = 1
    while unknown >= bit:
        if unknown & bit:
            names.append(f"bit_{bit:#x}")
        bit <<= 1
    return names


@dataclass(frozen=True)
class WindowSample:
    """One telemetry reading (None = not read or not supported).

    Attributes:
        ts_ns: sampler clock, integer ns.
        energy_mj: NVML total energy counter, millijoules.
        power_w: board power, W.
        util_pct / mem_util_pct: NVML utilization rates (GPU, memory controller), percent.
        mem_used_bytes: device memory used (all processes), bytes.
        sm_clock_mhz / mem_clock_mhz: current SM and memory clocks, MHz.
        temp_c: GPU temperature, degrees C.
        throttle_reasons: NVML clock event reason bit mask.
        processes: ``((pid, used_bytes or None), ...)`` compute processes on the device.
    """

    ts_ns: int
    energy_mj: int | None = None
    power_w: float | None = None
    util_pct: float | None = None
    mem_util_pct: float | None = None
    mem_used_bytes: int | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temp_c: float | None = None
    throttle_reasons: int | None = None
    processes: tuple[tuple[int, int | None], ...] | None = None


@dataclass(frozen=True)
class EnergyResult:
    """Energy over a window: ``energy_j`` (None when neither method applies), ``method``
    (``energy_counter`` | ``power_integration`` | None) and ``notes`` saying why a method was not used."""

    energy_j: float | None
    method: str | None
    notes: tuple[str, ...] = ()


@dataclass
class WindowReport:
    """Everything :func:`summarize_window` found in one measured window (JSON-safe via :meth:`as_dict`).

    Attributes:
        start_ns / end_ns: the window on the sampler clock; ``duration_s`` its length.
        samples_in_window: readings with ``start_ns <= ts_ns <= end_ns``; ``sample_rate_hz`` =
            (samples_in_window - 1) / span of their timestamps (None with fewer than 2).
        inferences: calls timed in the window.
        energy_j / energy_method / avg_power_w / energy_per_inference_j: see the module doc.
        sm_clock_mhz / mem_clock_mhz / temp_c / util_pct / mem_util_pct / power_w: ``{"min", "median",
            "max", "mean"}`` of the window's readings (absent when never read).
        mem_used_bytes_max: peak device memory used in the window.
        throttle: ``{reason name: share of window samples with that bit}`` (``gpu_idle`` included).
        other_processes: ``[{"pid", "max_used_bytes", "samples", "name"}]`` not in ``own_pids``.
        warnings: user-facing warnings (throttling, other processes, too few samples).
        notes: how energy was obtained and what was missing.
    """

    start_ns: int
    end_ns: int
    duration_s: float
    samples_in_window: int
    sample_rate_hz: float | None
    inferences: int
    energy_j: float | None = None
    energy_method: str | None = None
    avg_power_w: float | None = None
    energy_per_inference_j: float | None = None
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    mem_used_bytes_max: int | None = None
    throttle: dict[str, float] = field(default_factory=dict)
    other_processes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return asdict(self)


def _bracketed(ts: np.ndarray, t: int) -> bool:
    return bool(ts.size) and ts[0] <= t <= ts[-1]


def _interp(ts: np.ndarray, vals: np.ndarray, t: int) -> float:
    return float(np.interp(float(t), ts.astype(np.float64), vals.astype(np.float64)))


def _series(samples: Sequence[WindowSample], attr: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(s.ts_ns, getattr(s, attr)) for s in samples if getattr(s, attr) is not None]
    pts.sort(key=lambda p: p[0])
    return (np.array([p[0] for p in pts], dtype=np.int64), np.array([p[1] for p in pts], dtype=np.float64))


def integrate_power(ts_ns: np.ndarray, power_w: np.ndarray, start_ns: int, end_ns: int) -> float:
    """Trapezoidal integral (J) of power samples over ``[start_ns, end_ns]``, power interpolated linearly at
    both ends (formula in the module doc).

    Args:
        ts_ns: int64 ``[n]`` sample times, ns, ascending; must bracket the window.
        power_w: float ``[n]`` power, W.

    Raises:
        InputError: fewer than 2 samples, or the samples do not bracket the window.
    """
    if ts_ns.size < 2 or not (_bracketed(ts_ns, start_ns) and _bracketed(ts_ns, end_ns)):
        raise InputError("power samples do not bracket the measured window")
    inside = (ts_ns > start_ns) & (ts_ns < end_ns)
    t = np.concatenate([[start_ns], ts_ns[inside], [end_ns]]).astype(np.float64)
    p = np.concatenate([[_interp(ts_ns, power_w, start_ns)], power_w[inside], [_interp(ts_ns, power_w, end_ns)]])
    return float(np.sum(np.diff(t) * (p[1:] + p[:-1]) / 2.0) / 1e9)


def window_energy(samples: Sequence[WindowSample], start_ns: int, end_ns: int) -> EnergyResult:
    """Energy (J) over ``[start_ns, end_ns]``: the energy counter, else power integration (module doc).

    Raises:
        InputError: ``end_ns < start_ns``.
    """
    if end_ns < start_ns:
        raise InputError(f"measured window ends ({end_ns} ns) before it starts ({start_ns} ns)")
    notes: list[str] = []
    ts, e_mj = _series(samples, "energy_mj")
    pts, pw = _series(samples, "power_w")
    if ts.size == 0:
        notes.append("energy counter (nvmlDeviceGetTotalEnergyConsumption) not available")
    elif not (_bracketed(ts, start_ns) and _bracketed(ts, end_ns)):
        notes.append("energy counter readings do not bracket the measured window")
    elif np.any(np.diff(e_mj) < 0):
        notes.append("energy counter went backwards (driver reload or wrap) during the run")
    else:
        joules = (_interp(ts, e_mj, end_ns) - _interp(ts, e_mj, start_ns)) / 1000.0
        drawing = pts.size > 0 and float(np.max(pw)) > 0.0
        if joules > 0 or (end_ns == start_ns) or not drawing:
            return EnergyResult(joules, "energy_counter", tuple(notes))
        notes.append("energy counter did not advance over the window while power was drawn")
    if pts.size >= 2 and _bracketed(pts, start_ns) and _bracketed(pts, end_ns):
        notes.append("energy by trapezoidal integration of nvmlDeviceGetPowerUsage samples (about 1 s "
                     "averaged on Ampere and newer: lags short windows)")
        return EnergyResult(integrate_power(pts, pw, start_ns, end_ns), "power_integration", tuple(notes))
    notes.append("power samples do not bracket the measured window: no energy")
    return EnergyResult(None, None, tuple(notes))


def _stats(vals: np.ndarray) -> dict[str, float]:
    return {"min": float(vals.min()), "median": float(np.median(vals)), "max": float(vals.max()),
            "mean": float(vals.mean())}


def summarize_window(samples: Iterable[WindowSample], start_ns: int, end_ns: int, *, inferences: int,
                     own_pids: Iterable[int] = (), process_names: dict[int, str] | None = None) -> WindowReport:
    """Energy, power, clocks, throttling and other processes over the measured window.

    Args:
        samples: readings in any order (sorted here); those outside the window serve only to interpolate
            the energy counter / power at the window's ends.
        start_ns / end_ns: the window, sampler clock, ns.
        inferences: calls timed in the window (>= 1), the divisor of ``energy_per_inference_j``.
        own_pids: pids of the benchmarking process (and its children): not "other processes".
        process_names: ``{pid: name}`` where known.

    Raises:
        InputError: ``end_ns < start_ns`` or ``inferences < 1``.
    """
    if inferences < 1:
        raise InputError(f"inferences={inferences}: must be >= 1")
    if end_ns < start_ns:
        raise InputError(f"measured window ends ({end_ns} ns) before it starts ({start_ns} ns)")
    alls = sorted(samples, key=lambda s: s.ts_ns)
    inside = [s for s in alls if start_ns <= s.ts_ns <= end_ns]
    duration_s = (end_ns - start_ns) / 1e9
    rate = None
    if len(inside) >= 2 and inside[-1].ts_ns > inside[0].ts_ns:
        rate = (len(inside) - 1) / ((inside[-1].ts_ns - inside[0].ts_ns) / 1e9)
    rep = WindowReport(start_ns=start_ns, end_ns=end_ns, duration_s=duration_s, samples_in_window=len(inside),
                       sample_rate_hz=rate, inferences=inferences)

    energy = window_energy(alls, start_ns, end_ns)
    rep.notes.extend(energy.notes)
    if energy.energy_j is not None:
        rep.energy_j, rep.energy_method = energy.energy_j, energy.method
        rep.energy_per_inference_j = energy.energy_j / inferences
        rep.avg_power_w = energy.energy_j / duration_s if duration_s > 0 else None
        rep.notes.append(f"energy from {energy.method} over the measured window only ({duration_s:.3f} s, "
                         f"{inferences} inferences); idle power not subtracted")
    if len(inside) < MIN_WINDOW_SAMPLES:
        rep.warnings.append(f"only {len(inside)} telemetry sample(s) fell inside the {duration_s:.3f} s measured "
                            f"window: energy, power and clocks rest on few readings (lengthen --min-duration)")

    for attr in ("sm_clock_mhz", "mem_clock_mhz", "temp_c", "util_pct", "mem_util_pct", "power_w"):
        vals = np.array([getattr(s, attr) for s in inside if getattr(s, attr) is not None], dtype=np.float64)
        if vals.size:
            rep.stats[attr] = _stats(vals)
    mem = [s.mem_used_bytes for s in inside if s.mem_used_bytes is not None]
    rep.mem_used_bytes_max = max(mem) if mem else None

    masks = [s.throttle_reasons for s in inside if s.throttle_reasons is not None]
    if masks:
        counts: dict[str, int] = {}
        for m in masks:
            for name in throttle_reason_names(m):
                counts[name] = counts.get(name, 0) + 1
        rep.throttle = {k: v / len(masks) for k, v in counts.items()}
        slow = {k: v for k, v in rep.throttle.items() if k != THROTTLE_REASONS[GPU_IDLE]}
        if slow:
            listed = ", ".join(f"{k} in {v:.0%} of samples" for k, v in sorted(slow.items(), key=lambda kv: -kv[1]))
            rep.warnings.append(f"GPU clocks were limited during the measured window ({listed}; NVML clock event "
                                f"reasons): latency and energy reflect throttled clocks")

    own = set(own_pids)
    names = process_names or {}
    seen: dict[int, dict[str, Any]] = {}
    listed_any = False
    for s in inside:
        for pid, used in s.processes or ():
            listed_any = True
            if pid in own:
                continue
            rec = seen.setdefault(pid, {"pid": pid, "max_used_bytes": None, "samples": 0, "name": names.get(pid, "")})
            rec["samples"] += 1
            if used is not None:
                rec["max_used_bytes"] = max(used, rec["max_used_bytes"] or 0)
    rep.other_processes = sorted(seen.values(), key=lambda r: r["pid"])
    if rep.other_processes:
        listed = "; ".join(
            f"pid {r['pid']}{' ' + r['name'] if r['name'] else ''} ({r['samples']} of {len(inside)} samples"
            + (f", {r['max_used_bytes'] / 2**20:.0f} MiB" if r["max_used_bytes"] is not None else "") + ")"
            for r in rep.other_processes)
        rep.warnings.append(f"another process used the GPU during the measured window: {listed}; its work shares "
                            f"the device, so latency and energy are not this model's alone")
        if own and not any(pid in own for s in inside for pid, _ in (s.processes or ())):
            rep.notes.append(f"NVML never listed this process (pid {sorted(own)}) among the GPU's processes: PID "
                             f"namespaces may differ (container), so the processes above may include this one")
    elif not listed_any and inside and any(s.processes is not None for s in inside):
        rep.notes.append("NVML listed no compute process on the GPU in the window (not even this one): "
                         "other processes cannot be ruled out from here (PID namespace)")
    return rep
