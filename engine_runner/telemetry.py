"""GPU (NVML) or CPU (psutil) telemetry sampled in a background thread during a run.

GPU fields, per sample, from NVML (``pynvml``, package ``nvidia-ml-py``) on device ``device_index``:
- ``util_pct``: ``nvmlDeviceGetUtilizationRates().gpu``, percent of the driver's last sample period
  (1/6 s to 1 s) in which a kernel ran;
- ``mem_used_bytes``: ``nvmlDeviceGetMemoryInfo().used`` (whole device, all processes);
- ``power_w``: ``nvmlDeviceGetPowerUsage()`` (milliwatts) / 1000;
- ``temp_c``: ``nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)``;
- ``sm_clock_mhz``: ``nvmlDeviceGetClockInfo(NVML_CLOCK_SM)``.
A field the device does not support (``NVMLError_NotSupported``, e.g. power on some boards or MIG
instances) is None in every sample and named once in ``TelemetrySampler.notes``.

CPU fields (``device == "cpu"``), for the process tree of ``pid`` (default: this process and its
children, so a server started as a child process counts):
- ``util_pct``: sum of ``psutil.Process.cpu_percent()`` over the tree divided by the logical core count
  (0..100 = share of the whole machine);
- ``mem_used_bytes``: sum of the tree's resident set sizes (RSS);
- ``power_w``, ``temp_c``, ``sm_clock_mhz``: None.

``ts_ns`` is ``time.perf_counter_ns()`` minus the sampler's start, integer nanoseconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from profiles.errors import InputError


@dataclass(frozen=True)
class TelemetryPoint:
    """One telemetry sample (units in the names; None = not available)."""

    ts_ns: int
    device: str
    util_pct: float | None = None
    mem_used_bytes: int | None = None
    power_w: float | None = None
    temp_c: float | None = None
    sm_clock_mhz: float | None = None


class _NvmlBackend:
    """Reads one device through NVML; unsupported fields are remembered and skipped."""

    def __init__(self, index: int) -> None:
        import pynvml

        self.nv = pynvml
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            if index >= count:
                raise InputError(f"device_index {index}: NVML sees {count} GPU(s) (indices 0..{count - 1})")
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except BaseException:
            pynvml.nvmlShutdown()
            raise
        self.device = f"cuda:{index}"
        self.unsupported: set[str] = set()
        self.notes: list[str] = []

    def _field(self, name: str, fn: Any) -> Any:
        if name in self.unsupported:
            return None
        try:
            return fn()
        except self.nv.NVMLError_NotSupported:
            self.unsupported.add(name)
            self.notes.append(f"{self.device}: {name} not supported by this device (NVML)")
        except self.nv.NVMLError as exc:
            self.unsupported.add(name)
            self.notes.append(f"{self.device}: {name} unavailable: {exc}")
        return None

    def read(self) -> dict[str, Any]:
        nv, h = self.nv, self.handle
        util = self._field("util_pct", lambda: float(nv.nvmlDeviceGetUtilizationRates(h).gpu))
        mem = self._field("mem_used_bytes", lambda: int(nv.nvmlDeviceGetMemoryInfo(h).used))
        power = self._field("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
        temp = self._field("temp_c", lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
        clock = self._field("sm_clock_mhz", lambda: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)))
        return {"util_pct": util, "mem_used_bytes": mem, "power_w": power, "temp_c": temp, "sm_clock_mhz": clock}

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            pass


class _CpuBackend:
    """CPU share and RSS of a process tree via psutil."""

    device = "cpu"

    def __init__(self, pid: int | None) -> None:
        import psutil

        self.ps = psutil
        try:
            self.root = psutil.Process(pid or os.getpid())
        except psutil.NoSuchProcess:
            raise InputError(f"pid {pid}: no such process") from None
        self.cores = psutil.cpu_count(logical=True) or 1
        self.procs: dict[int, Any] = {}
        self.notes: list[str] = []
        self._tree()  # prime cpu_percent baselines

    def _tree(self) -> list[Any]:
        try:
            current = [self.root, *self.root.children(recursive=True)]
        except self.ps.NoSuchProcess:
            current = []
        alive = []
        for p in current:
            known = self.procs.get(p.pid)
            if known is None:
                known = self.procs[p.pid] = p
                try:
                    known.cpu_percent(None)  # baseline: the first call always returns 0.0
                except (self.ps.NoSuchProcess, self.ps.AccessDenied):
                    continue
            alive.append(known)
        return alive

    def read(self) -> dict[str, Any]:
        cpu, rss = 0.0, 0
        for p in self._tree():
            try:
                with p.oneshot():
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
            except (self.ps.NoSuchProcess, self.ps.AccessDenied):
                continue
        return {"util_pct": min(100.0, cpu / self.cores), "mem_used_bytes": int(rss)}

    def close(self) -> None:
        pass


class TelemetrySampler:
    """Context manager sampling telemetry every ``interval_s`` seconds in a daemon thread.

    ``device_index`` None samples the CPU (process tree of ``pid``); an int samples that NVIDIA GPU
    through NVML. When NVML is missing or fails for a GPU, the sampler falls back to the CPU and says
    so in ``notes`` (telemetry never fails a run; ``samples[i].device`` tells which one was read).

    One sample is taken on entry, one every ``interval_s`` on a fixed schedule (no drift), and one on
    exit. Usage::

        with TelemetrySampler(0.5, device_index=0) as tel:
            run_benchmark()
        store_telemetry(session, run_id, tel.samples)

    Attributes:
        samples: list of :class:`TelemetryPoint` in time order.
        device: ``"cuda:<index>"`` or ``"cpu"``.
        notes: unsupported fields, fallback reasons.

    Raises:
        InputError: ``interval_s`` outside (0, 3600], a negative ``device_index``, or an index beyond
            the GPUs NVML reports.
    """

    def __init__(self, interval_s: float = 0.5, device_index: int | None = None, *, pid: int | None = None) -> None:
        if not 0 < interval_s <= 3600:
            raise InputError(f"interval_s={interval_s}: must be in (0, 3600] seconds")
        if device_index is not None and device_index < 0:
            raise InputError(f"device_index={device_index}: must be >= 0")
        self.interval_s = float(interval_s)
        self.device_index = device_index
        self.pid = pid
        self.samples: list[TelemetryPoint] = []
        self.notes: list[str] = []
        self.device = "cpu"
        self._backend: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._t0_ns = 0

    def _open_backend(self) -> Any:
        if self.device_index is not None:
            try:
                import pynvml
            except ImportError:
                self.notes.append("nvidia-ml-py (pynvml) is not installed: sampling the CPU instead")
            else:
                try:
                    return _NvmlBackend(self.device_index)
                except pynvml.NVMLError as exc:  # no driver, no library, GPU lost...
                    self.notes.append(f"NVML unavailable ({exc}): sampling the CPU instead")
        return _CpuBackend(self.pid)

    def _sample(self) -> None:
        fields = self._backend.read()
        point = TelemetryPoint(ts_ns=time.perf_counter_ns() - self._t0_ns, device=self._backend.device, **fields)
        with self._lock:
            self.samples.append(point)

    def _loop(self) -> None:
        k = 1
        interval_ns = int(self.interval_s * 1e9)
        while True:
            delay_s = (self._t0_ns + k * interval_ns - time.perf_counter_ns()) / 1e9
            if self._stop.wait(max(0.0, delay_s)):
                return
            self._sample()
            k += 1
            # skip ticks missed while the machine was overloaded rather than bursting to catch up
            behind = (time.perf_counter_ns() - self._t0_ns) // interval_ns
            k = max(k, int(behind) + 1)

    def start(self) -> TelemetrySampler:
        """Open the backend, take the first sample, start the thread."""
        if self._thread is not None:
            raise InputError("TelemetrySampler: already started")
        self._backend = self._open_backend()
        self.device = self._backend.device
        self._t0_ns = time.perf_counter_ns()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="enginescope-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[TelemetryPoint]:
        """Stop the thread, take the last sample, close the backend; return the samples."""
        if self._thread is None:
            return self.samples
        self._stop.set()
        self._thread.join()
        self._sample()
        self.notes.extend(self._backend.notes)
        self._backend.close()
        self._thread = None
        return self.samples

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def store_telemetry(session: Any, run_id: int, samples: Iterable[TelemetryPoint]) -> int:
    """Insert ``samples`` as ``telemetry_samples`` rows of run ``run_id`` in ``session`` (the caller
    commits, e.g. inside ``JobContext.session()``). Returns the number of rows inserted."""
    from sqlalchemy import insert

    from db.models import TelemetrySample

    rows = [{"run_id": run_id, **asdict(s)} for s in samples]
    if rows:
        session.execute(insert(TelemetrySample), rows)
    return len(rows)
