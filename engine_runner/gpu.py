"""NVML (nvidia-ml-py) pre-flight and device-memory checks around a GPU engine such as a vLLM server.

- :func:`snapshot` reads, per GPU, the memory used/total and the compute processes with their memory.
- :func:`preflight` decides before a launch: refuse when another process's memory leaves less free
  memory than the engine will ask for (vLLM refuses too, later and less clearly: it requires
  ``gpu_memory_utilization x total`` to be free at start-up); warn when foreign processes are present.
- :func:`memory_check` compares memory before launch and after stop: the device is *dirty* when used
  memory did not come back to within ``tolerance_bytes`` of the value before launch (a leaked
  process or a driver that has not yet released the context).

Every function takes the NVML module as an argument (default: ``pynvml`` from nvidia-ml-py, imported
lazily) so unit tests pass a fake. On a machine without a GPU or driver, :func:`snapshot` returns
``[]`` (nothing to check) and :func:`nvml_available` says why.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

#: Default tolerance for "memory returned": 256 MiB (CUDA context remnants of other tools stay below).
DEFAULT_TOLERANCE_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class GpuProcess:
    """A compute process on a GPU: ``pid``, ``used_bytes`` (``None`` when NVML cannot say, e.g. in a
    container without the host's PID namespace), process ``name``."""

    pid: int
    used_bytes: int | None
    name: str = ""


@dataclass(frozen=True)
class GpuSnapshot:
    """One GPU's memory at one instant: ``index``, ``name``, ``uuid``, ``used_bytes``/``total_bytes``
    (NVML ``nvmlDeviceGetMemoryInfo``), compute ``processes``."""

    index: int
    name: str
    uuid: str
    used_bytes: int
    total_bytes: int
    processes: tuple[GpuProcess, ...] = field(default_factory=tuple)

    @property
    def free_bytes(self) -> int:
        """``total_bytes - used_bytes``."""
        return self.total_bytes - self.used_bytes

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (processes as dicts)."""
        d = asdict(self)
        d["processes"] = [asdict(p) for p in self.processes]
        return d


@dataclass
class PreflightResult:
    """Outcome of :func:`preflight`: ``ok`` False means refuse with ``refuse_reason``; ``warnings`` are
    shown either way."""

    ok: bool
    warnings: list[str] = field(default_factory=list)
    refuse_reason: str | None = None


@dataclass
class MemoryCheck:
    """Outcome of :func:`memory_check`: ``dirty`` when any device's used memory after stop exceeds
    before + tolerance; ``per_device`` lists ``{index, before_bytes, after_bytes, delta_bytes}``."""

    dirty: bool
    tolerance_bytes: int
    per_device: list[dict[str, Any]] = field(default_factory=list)

    def message(self) -> str:
        """One line naming each device whose memory did not come back."""
        bad = [d for d in self.per_device if d["delta_bytes"] > self.tolerance_bytes]
        if not bad:
            return "GPU memory returned to its level before launch"
        return "; ".join(
            f"GPU {d['index']}: {d['delta_bytes'] / 2**20:.0f} MiB more in use after stop than before launch "
            f"(tolerance {self.tolerance_bytes / 2**20:.0f} MiB)" for d in bad
        )


def _nvml(nvml: Any | None) -> Any:
    if nvml is not None:
        return nvml
    import pynvml  # nvidia-ml-py

    return pynvml


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def nvml_available(nvml: Any | None = None) -> tuple[bool, str]:
    """(True, driver version) when NVML initialises, else (False, why)."""
    try:
        mod = _nvml(nvml)
    except ImportError:
        return False, "nvidia-ml-py is not installed"
    try:
        mod.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError subclasses differ per failure; all mean "no GPU"
        return False, f"NVML unavailable: {exc}"
    try:
        return True, _text(mod.nvmlSystemGetDriverVersion())
    finally:
        mod.nvmlShutdown()


def visible_indices(env: dict[str, str] | None = None) -> list[int] | None:
    """GPU indices named by ``CUDA_VISIBLE_DEVICES`` (integers only), ``None`` when unset or not
    integers (UUIDs: all devices are checked)."""
    value = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if value is None or value.strip() == "":
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        return None


def snapshot(indices: list[int] | None = None, nvml: Any | None = None) -> list[GpuSnapshot]:
    """Memory and compute processes of the GPUs ``indices`` (all when ``None``); ``[]`` without NVML."""
    try:
        mod = _nvml(nvml)
        mod.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver / no library: nothing to check
        return []
    try:
        count = int(mod.nvmlDeviceGetCount())
        out = []
        for i in (indices if indices is not None else range(count)):
            if not 0 <= i < count:
                continue
            h = mod.nvmlDeviceGetHandleByIndex(i)
            mem = mod.nvmlDeviceGetMemoryInfo(h)
            procs = []
            for p in mod.nvmlDeviceGetComputeRunningProcesses(h):
                used = getattr(p, "usedGpuMemory", None)
                try:
                    name = _text(mod.nvmlSystemGetProcessName(p.pid))
                except Exception:  # noqa: BLE001 - process gone or not visible from this namespace
                    name = ""
                procs.append(GpuProcess(int(p.pid), int(used) if used is not None else None, name))
            out.append(GpuSnapshot(i, _text(mod.nvmlDeviceGetName(h)), _text(mod.nvmlDeviceGetUUID(h)),
                                   int(mem.used), int(mem.total), tuple(procs)))
        return out
    finally:
        mod.nvmlShutdown()


def preflight(
    snaps: list[GpuSnapshot],
    *,
    requested_fraction: float | None = 0.9,
    own_pids: set[int] | None = None,
    warn_foreign_bytes: int = 2**30,
) -> PreflightResult:
    """Decide whether an engine asking for ``requested_fraction`` of each GPU's memory can start.

    Refuse when ``free_bytes < requested_fraction x total_bytes`` on any device (vLLM's own start-up
    condition for ``gpu_memory_utilization``); the reason names the device, the memory in use and the
    processes holding it. Warn when processes other than ``own_pids`` hold memory, or when more than
    ``warn_foreign_bytes`` (default 1 GiB: an idle H200 reports ~0.5 GiB used) is in use with no process
    listed (another container).
    ``requested_fraction=None`` (e.g. an explicit KV-cache size) only warns.
    """
    res = PreflightResult(ok=True)
    own = own_pids or set()
    for s in snaps:
        foreign = [p for p in s.processes if p.pid not in own]
        if foreign:
            listed = ", ".join(
                f"pid {p.pid} {p.name or '?'} ({(p.used_bytes or 0) / 2**30:.1f} GiB)" for p in foreign)
            res.warnings.append(f"GPU {s.index} ({s.name}) already runs {len(foreign)} process(es): {listed}")
        unexplained = s.used_bytes - sum(p.used_bytes or 0 for p in s.processes)
        if not foreign and unexplained > warn_foreign_bytes:
            res.warnings.append(f"GPU {s.index} ({s.name}) has {unexplained / 2**30:.1f} GiB in use by processes "
                                f"not visible here (another container?)")
        if requested_fraction is not None and s.free_bytes < requested_fraction * s.total_bytes:
            res.ok = False
            res.refuse_reason = (
                f"GPU {s.index} ({s.name}): {s.free_bytes / 2**30:.1f} GiB free of {s.total_bytes / 2**30:.1f} GiB, "
                f"but gpu_memory_utilization {requested_fraction} needs {requested_fraction * s.total_bytes / 2**30:.1f}"
                f" GiB free; free the GPU or lower gpu_memory_utilization"
            )
    return res


def memory_check(before: list[GpuSnapshot], after: list[GpuSnapshot],
                 tolerance_bytes: int = DEFAULT_TOLERANCE_BYTES) -> MemoryCheck:
    """Compare used memory per device index before launch and after stop (see :class:`MemoryCheck`)."""
    after_by = {s.index: s for s in after}
    per: list[dict[str, Any]] = []
    dirty = False
    for b in before:
        a = after_by.get(b.index)
        if a is None:
            continue
        delta = a.used_bytes - b.used_bytes
        per.append({"index": b.index, "before_bytes": b.used_bytes, "after_bytes": a.used_bytes, "delta_bytes": delta})
        dirty = dirty or delta > tolerance_bytes
    return MemoryCheck(dirty, tolerance_bytes, per)
