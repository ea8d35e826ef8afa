"""Small ``nsys export --type sqlite``-shaped files the tests build themselves (no ../shared needed).

Column names and ids follow NVIDIA's documented export schema (as in the real 2025.5.2 / schema 3.24.0 export
in ../shared/fixtures/nsys); :func:`build_export` varies what drifts between nsys versions: table suffixes,
``textId`` vs ``text``, ENUM tables present or not, the schema version, absent tables and columns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: globalTid of pid 4242, tid 4243 (``pid << 24 | tid``, with the vmId bit nsys sets); globalPid = tid bits zero.
PID, TID = 4242, 4243
GLOBAL_TID = (1 << 48) | (PID << 24) | TID
GLOBAL_PID = (1 << 48) | (PID << 24)
T0 = 5_000_000_000  # absolute start of the first event, ns

STRINGS = {1: "cudaLaunchKernel_v7000", 2: "cudaMemcpyAsync_v3020", 3: "cuLaunchKernel",
           10: "void gemm_kernel<float>(float const*, float*)", 11: "gemm_kernel", 12: "_Z11gemm_kernelPKfPf",
           20: "void elementwise_add(float*)", 21: "elementwise_add", 22: "_Z15elementwise_addPf",
           30: "iteration 0", 31: "iteration 1", 32: "warmup", 33: "my_domain", 34: "inner"}


def _create(c: sqlite3.Connection, table: str, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    c.execute(f'CREATE TABLE "{table}" ({", ".join(cols)})')
    if rows:
        c.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(cols))})', rows)


def build_export(path: Path, *, schema: str | None = "3.24.0", schema_parts_only: bool = False,
                 export_version: str = "2025.5.2.266", install_dir: str | None = "/opt/nvidia/nsight-systems/2025.5.2/target-linux-x64",
                 kernel_table: str | None = "CUPTI_ACTIVITY_KIND_KERNEL", nvtx_table: str | None = "NVTX_EVENTS",
                 nvtx_text_via_id: bool = False, enums: bool = True, event_class: bool = True,
                 drop: dict[str, Sequence[str]] | None = None, memset: bool = True,
                 old_kernel_names: bool = False) -> Path:
    """Write a small export to ``path``.

    Contents (absolute ns; T0 = 5 s): two iterations, each ``cudaLaunchKernel`` (runtime) -> gemm kernel and
    ``cuLaunchKernel`` (driver) -> elementwise kernel; an HtoD memcpy (copyKind 1) before and a DtoD (8) and a
    PtoP (10) memcpy after; one memset. NVTX: ``warmup`` push/pop, ``iteration 0`` / ``iteration 1`` push/pop
    around the launches, a mark (skipped), a domain ``my_domain`` (created by a DomainCreate row) with a
    start/end range ``inner``, and a range left open (no end).

    Args:
        schema: ``EXPORT_SCHEMA_VERSION`` (None: no such row); ``schema_parts_only``: only MAJOR/MINOR/MICRO rows.
        install_dir: ``TARGET_INFO_SYSTEM_ENV.TargetInstallDir`` (None: no such table).
        kernel_table / nvtx_table: table names (None: table absent), e.g. ``NVTX_EVENTS_V2``.
        nvtx_text_via_id: range texts in ``textId`` (StringIds) with ``text`` NULL.
        enums: write the ENUM_* tables (else the parser must use the documented numbers).
        event_class: RUNTIME has ``eventClass`` (older exports: absent).
        drop: ``{table: [column, ...]}`` to leave out.
        old_kernel_names: the kernel table has only ``demangledName`` and ``shortName`` (no ``mangledName``).
    """
    drop = drop or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    c = sqlite3.connect(path)

    def table(name: str, cols: list[str], rows: list[list[Any]]) -> None:
        gone = set(drop.get(name, ()))
        keep = [i for i, col in enumerate(cols) if col not in gone]
        _create(c, name, [cols[i] for i in keep], [[r[i] for i in keep] for r in rows])

    _create(c, "StringIds", ["id INTEGER PRIMARY KEY", "value TEXT NOT NULL"], sorted(STRINGS.items()))
    meta = [("EXPORT_PRODUCT_NAME", "NVIDIA Nsight Systems"), ("EXPORT_PRODUCT_VERSION", export_version)]
    if schema is not None:
        major, minor, micro = (schema.split(".") + ["0", "0"])[:3]
        if not schema_parts_only:
            meta.append(("EXPORT_SCHEMA_VERSION", schema))
        meta += [("EXPORT_SCHEMA_VERSION_MAJOR", major), ("EXPORT_SCHEMA_VERSION_MINOR", minor),
                 ("EXPORT_SCHEMA_VERSION_MICRO", micro)]
    _create(c, "META_DATA_EXPORT", ["name TEXT", "value TEXT"], meta)
    _create(c, "META_DATA_CAPTURE", ["name TEXT", "value TEXT"],
            [("PROCESS_0:COMMAND", "python bench.py"), ("CAPTURE_EVENT_TYPE", "Cuda"), ("BANDWIDTH_VERSION", "0")])
    if install_dir is not None:
        _create(c, "TARGET_INFO_SYSTEM_ENV", ["globalVid", "devStateName", "name", "nameEnum", "value"],
                [(1, "Local", "TargetInstallDir", 170, install_dir), (1, "Local", "CudaDriverVersion", 611, "13000")])
    _create(c, "TARGET_INFO_GPU", ["vmId", "id", "name", "busLocation", "smCount", "totalMemory", "computeMajor", "computeMinor"],
            [(1, 0, "NVIDIA H200", "0000:19:00.0", 132, 150_000_000_000, 9, 0)])
    _create(c, "TARGET_INFO_CUDA_DEVICE", ["gpuId", "cudaId", "pid"], [(0, 0, PID)])
    if enums:
        _create(c, "ENUM_CUDA_MEMCPY_OPER", ["id", "name", "label"],
                [(0, "CUDA_MEMCPY_KIND_UNKNOWN", "Unknown"), (1, "CUDA_MEMCPY_KIND_HTOD", "Host-to-Device"),
                 (2, "CUDA_MEMCPY_KIND_DTOH", "Device-to-Host"), (8, "CUDA_MEMCPY_KIND_DTOD", "Device-to-Device"),
                 (10, "CUDA_MEMCPY_KIND_PTOP", "Peer-to-Peer")])
        _create(c, "ENUM_CUDA_MEM_KIND", ["id", "name", "label"],
                [(0, "CUDA_MEMOPR_MEMORY_KIND_PAGEABLE", "Pageable"), (1, "CUDA_MEMOPR_MEMORY_KIND_PINNED", "Pinned"),
                 (2, "CUDA_MEMOPR_MEMORY_KIND_DEVICE", "Device")])
        _create(c, "ENUM_NSYS_EVENT_CLASS", ["id", "name", "label"],
                [(0, "TRACE_PROCESS_EVENT_CUDA_RUNTIME", "CUDA runtime"), (1, "TRACE_PROCESS_EVENT_CUDA_DRIVER", "CUDA driver")])
        _create(c, "ENUM_NSYS_EVENT_TYPE", ["id", "name", "label"],
                [(34, "NvtxMark", "NvtxMark"), (59, "NvtxPushPopRange", "NvtxPushPopRange"),
                 (60, "NvtxStartEndRange", "NvtxStartEndRange"), (75, "NvtxDomainCreate", "NvtxDomainCreate")])

    # API calls: (start, end, eventClass, globalTid, correlationId, nameId)
    api = [[T0 + 1_000, T0 + 6_000, 0, GLOBAL_TID, 1, 2]]  # cudaMemcpyAsync (HtoD)
    kernels = []
    for it in range(2):
        base = T0 + 100_000 + it * 100_000
        api.append([base + 1_000, base + 5_000, 0, GLOBAL_TID, 10 + 2 * it, 1])     # cudaLaunchKernel
        api.append([base + 6_000, base + 8_000, 1, GLOBAL_TID, 11 + 2 * it, 3])     # cuLaunchKernel
        kernels.append([base + 10_000, base + 30_000, 0, 7, 10 + 2 * it, GLOBAL_PID, 10, 11, 12, 128, 64, 2, 1, 256, 1, 1, 1024, 2048])
        kernels.append([base + 31_000, base + 36_000, 0, 7, 11 + 2 * it, GLOBAL_PID, 20, 21, 22, 32, 1024, 1, 1, 128, 1, 1, 0, 0])
    api.append([T0 + 400_000, T0 + 401_000, 0, GLOBAL_TID, 30, 2])
    api.append([T0 + 402_000, T0 + 403_000, 0, GLOBAL_TID, 31, 2])
    api.append([T0 + 404_000, T0 + 405_000, 0, GLOBAL_TID, 32, 2])
    rt_cols = ["start", "end", "eventClass", "globalTid", "correlationId", "nameId"]
    if not event_class:
        api = [r[:2] + r[3:] for r in api]
        rt_cols = ["start", "end", "globalTid", "correlationId", "nameId"]
    table("CUPTI_ACTIVITY_KIND_RUNTIME", rt_cols, api)
    if kernel_table:
        kcols = ["start", "end", "deviceId", "streamId", "correlationId", "globalPid", "demangledName", "shortName",
                 "mangledName", "registersPerThread", "gridX", "gridY", "gridZ", "blockX", "blockY", "blockZ",
                 "staticSharedMemory", "dynamicSharedMemory"]
        if old_kernel_names:
            drop.setdefault(kernel_table, [])
            drop[kernel_table] = [*drop[kernel_table], "mangledName"]
        table(kernel_table, kcols, kernels)
    table("CUPTI_ACTIVITY_KIND_MEMCPY",
          ["start", "end", "deviceId", "streamId", "correlationId", "globalPid", "bytes", "copyKind", "srcKind", "dstKind"],
          [[T0 + 2_000, T0 + 52_000, 0, 7, 1, GLOBAL_PID, 1 << 20, 1, 0, 2],
           [T0 + 410_000, T0 + 420_000, 0, 7, 30, GLOBAL_PID, 4096, 8, 2, 2],
           [T0 + 421_000, T0 + 425_000, 0, 7, 31, GLOBAL_PID, 8192, 10, 2, 2]])
    if memset:
        table("CUPTI_ACTIVITY_KIND_MEMSET",
              ["start", "end", "deviceId", "streamId", "correlationId", "globalPid", "value", "bytes", "memKind"],
              [[T0 + 430_000, T0 + 431_000, 0, 7, 32, GLOBAL_PID, 0, 512, 2]])
    if nvtx_table:
        def nv(start: int, end: int | None, etype: int, text_id: int | None, domain: int = 0) -> list[Any]:
            text = None if (nvtx_text_via_id or text_id is None) else STRINGS[text_id]
            return [start, end, etype, text, GLOBAL_TID, text_id if nvtx_text_via_id else None, domain]
        rows = [nv(T0 + 50, T0 + 60_000, 59, 32),                        # warmup
                nv(T0 + 100_000, T0 + 190_000, 59, 30),                  # iteration 0
                nv(T0 + 200_000, T0 + 290_000, 59, 31),                  # iteration 1
                nv(T0 + 150_000, None, 34, 32),                          # a mark: skipped
                nv(T0 + 10, None, 75, 33, domain=5),                     # DomainCreate "my_domain"
                nv(T0 + 201_000, T0 + 202_000, 60, 34, domain=5),        # start/end range in my_domain
                nv(T0 + 300_000, None, 59, 34)]                          # still open at capture stop
        table(nvtx_table, ["start", "end", "eventType", "text", "globalTid", "textId", "domainId"], rows)
    c.commit()
    c.close()
    return path
