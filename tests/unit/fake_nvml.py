"""A scripted stand-in for nvidia-ml-py's ``pynvml`` module (the NVML boundary), for tests without a GPU."""

from __future__ import annotations

import types


def fake_pynvml(*, power_supported: bool = True, init_fails: bool = False, count: int = 1,
                energy_supported: bool = True, reasons: int = 0, processes: list[tuple[int, int]] | None = None,
                event_reasons_api: bool = True) -> types.ModuleType:
    """A stand-in for nvidia-ml-py's ``pynvml`` with its names, errors and units (power in mW, energy in mJ).

    ``m.state`` is mutable so a test can script readings between samples: ``energy_mj``, ``power_mw``,
    ``reasons``, ``processes`` (``[(pid, used_bytes)]``); ``energy_mj`` may be a callable (read at each
    sample); ``m.read_threads`` collects the thread names that read NVML, in order."""
    import threading

    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's spelling
        pass

    class NVMLError_FunctionNotFound(NVMLError):  # noqa: N801 - pynvml's spelling
        pass

    m.NVMLError, m.NVMLError_NotSupported = NVMLError, NVMLError_NotSupported
    m.NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    m.NVML_TEMPERATURE_GPU, m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM = 0, 1, 2
    m.calls = {"init": 0, "shutdown": 0}
    m.state = {"energy_mj": 1_000_000, "power_mw": 251_500, "reasons": reasons,
               "processes": list(processes or [])}
    m.read_threads = []

    def init() -> None:
        if init_fails:
            raise NVMLError("Driver Not Loaded")
        m.calls["init"] += 1

    def power(h: object) -> int:
        if not power_supported:
            raise NVMLError_NotSupported("Not Supported")
        return m.state["power_mw"]

    def energy(h: object) -> int:
        m.read_threads.append(threading.current_thread().name)
        if not energy_supported:
            raise NVMLError_NotSupported("Not Supported")
        e = m.state["energy_mj"]
        return int(e()) if callable(e) else e

    def event_reasons(h: object) -> int:
        if not event_reasons_api:
            raise NVMLError_FunctionNotFound("Function Not Found")
        return m.state["reasons"]

    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.__setitem__("shutdown", m.calls["shutdown"] + 1)
    m.nvmlDeviceGetCount = lambda: count
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87, memory=40)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=3 * 2**30, total=141 * 2**30, free=0)
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetTemperature = lambda h, sensor: 41
    m.nvmlDeviceGetClockInfo = lambda h, clock: {1: 1980, 2: 3201}[clock]
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetCurrentClocksEventReasons = event_reasons
    m.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: m.state["reasons"]
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [types.SimpleNamespace(pid=pid, usedGpuMemory=used)
                                                        for pid, used in m.state["processes"]]
    m.nvmlSystemGetProcessName = lambda pid: f"proc{pid}".encode()
    m.nvmlSystemGetDriverVersion = lambda: "580.95.05"
    m.nvmlSystemGetCudaDriverVersion = lambda: 13000
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h[1]:08d}"
    m.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)
    m.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000
    m.nvmlDeviceGetApplicationsClock = lambda h, clock: {1: 1755, 2: 3201}[clock]
    m.nvmlDeviceGetMaxClockInfo = lambda h, clock: {1: 1980, 2: 3201}[clock]
    return m
