"""engine_runner.gpu with a fake NVML: snapshots, pre-flight refuse/warn, memory returned / device dirty."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from engine_runner import gpu

GIB = 2**30


class FakeNvml:
    """The subset of pynvml that engine_runner.gpu uses; ``used``/``procs`` per device are mutable."""

    def __init__(self, devices: list[dict[str, Any]], fail_init: bool = False) -> None:
        self.devices = devices
        self.fail_init = fail_init
        self.inits = self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"580.95"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        d = self.devices[h]
        return SimpleNamespace(used=d["used"], total=d["total"], free=d["total"] - d["used"])

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.devices[h].get("procs", [])]

    def nvmlSystemGetProcessName(self, pid: int) -> bytes:
        if pid == 999:
            raise RuntimeError("not found")
        return b"python3"

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h}"


def h200(used_gib: float = 0.5, procs: list[tuple[int, int | None]] | None = None) -> dict[str, Any]:
    return {"used": int(used_gib * GIB), "total": 140 * GIB, "procs": procs or []}


def test_snapshot_reads_memory_and_processes() -> None:
    nv = FakeNvml([h200(), h200(20, [(1234, 19 * GIB), (999, None)])])
    snaps = gpu.snapshot(None, nv)
    assert [s.index for s in snaps] == [0, 1]
    assert snaps[1].processes == (gpu.GpuProcess(1234, 19 * GIB, "python3"), gpu.GpuProcess(999, None, ""))
    assert snaps[1].free_bytes == 120 * GIB
    assert gpu.snapshot([1, 7], nv)[0].index == 1  # out-of-range index skipped
    assert nv.inits == nv.shutdowns == 2


def test_no_nvml_means_nothing_to_check() -> None:
    assert gpu.snapshot(None, FakeNvml([], fail_init=True)) == []
    ok, why = gpu.nvml_available(FakeNvml([], fail_init=True))
    assert not ok and "NVML unavailable" in why
    assert gpu.nvml_available(FakeNvml([h200()])) == (True, "580.95")


def test_preflight_refuses_when_free_memory_is_short_and_names_the_process() -> None:
    snaps = gpu.snapshot(None, FakeNvml([h200(30, [(4321, 29 * GIB)])]))
    res = gpu.preflight(snaps, requested_fraction=0.9)
    assert not res.ok
    assert "GPU 0" in res.refuse_reason and "gpu_memory_utilization 0.9" in res.refuse_reason
    assert any("pid 4321" in w for w in res.warnings)
    # the same GPU can take an engine asking for half of it: warning only
    res = gpu.preflight(snaps, requested_fraction=0.5)
    assert res.ok and res.warnings
    # an explicit KV-cache size (no fraction): warn only
    assert gpu.preflight(snaps, requested_fraction=None).ok


def test_preflight_clean_gpu_and_invisible_usage() -> None:
    assert gpu.preflight(gpu.snapshot(None, FakeNvml([h200(0.4)])), requested_fraction=0.9) == gpu.PreflightResult(ok=True)
    res = gpu.preflight(gpu.snapshot(None, FakeNvml([h200(5.0)])), requested_fraction=0.9)
    assert res.ok and "not visible" in res.warnings[0]
    res = gpu.preflight(gpu.snapshot(None, FakeNvml([h200(5.0, [(42, 4 * GIB)])])), own_pids={42})
    assert res.warnings == []


def test_memory_returned_and_dirty() -> None:
    nv = FakeNvml([h200(0.5), h200(0.5)])
    before = gpu.snapshot(None, nv)
    nv.devices[0]["used"] = int(0.6 * GIB)  # +100 MiB: within the 256 MiB tolerance
    nv.devices[1]["used"] = int(2.5 * GIB)  # +2 GiB left behind
    chk = gpu.memory_check(before, gpu.snapshot(None, nv))
    assert chk.dirty
    assert [d["index"] for d in chk.per_device if d["delta_bytes"] > chk.tolerance_bytes] == [1]
    assert "GPU 1: 2048 MiB more" in chk.message() and "GPU 0" not in chk.message()
    nv.devices[1]["used"] = int(0.5 * GIB)
    chk = gpu.memory_check(before, gpu.snapshot(None, nv))
    assert not chk.dirty and "returned" in chk.message()


def test_visible_indices() -> None:
    assert gpu.visible_indices({"CUDA_VISIBLE_DEVICES": "2,3"}) == [2, 3]
    assert gpu.visible_indices({"CUDA_VISIBLE_DEVICES": "GPU-abc"}) is None
    assert gpu.visible_indices({}) is None
