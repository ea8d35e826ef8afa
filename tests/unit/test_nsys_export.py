"""profiles.nsys_export on the real nsys 2025.5.2 export (../shared) and on exports built here for each schema drift."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from profiles.errors import InputError, ParseError
from profiles.nsys_export import parse_nsys_sqlite, resolve_table
from tests.nsys_builders import PID, T0, TID, build_export

FIXTURE = "fixtures/nsys/nsys_2025.5_export_report1.sqlite"


def test_real_export_2025_5(shared: Path) -> None:
    t = parse_nsys_sqlite(shared / FIXTURE)
    assert (t.source_tool, t.tool_version, t.schema_version) == ("nsys", "2025.5.2", "3.24.0")
    assert t.meta["export_version"] == "2025.5.2.266"
    assert t.meta["tool_version_from"] == "TARGET_INFO_SYSTEM_ENV.TargetInstallDir"
    assert t.counts() == {"kernels": 1, "memcpy": 3, "memset": 0, "cuda_api_calls": 15, "nvtx_ranges": 0}
    # the earliest event is the cuModuleGetLoadingMode call (RUNTIME start 831972818)
    assert t.origin_ns == 831972818
    (k,) = t.kernels()
    # CUPTI_ACTIVITY_KIND_KERNEL: start 1143927944, end 1143966856, demangledName 742, grid 4096x1x1, block 256x1x1
    assert k.name == "kernVectorAdd(const float *, const float *, float *, int)"
    assert k.start_ns == 1143927944 - 831972818 and k.duration_ns == 1143966856 - 1143927944 == 38912
    assert (k.grid, k.block, k.registers_per_thread, k.shared_mem_bytes) == ([4096, 1, 1], [256, 1, 1], 16, 0)
    assert (k.device, k.stream, k.correlation_id) == (0, 7, 126)
    assert k.launch_ns == 1141768668 - 831972818  # cudaLaunchKernel_v7000, correlationId 126
    copies = [a for a in t.activities if a.kind == "memcpy"]
    assert [(a.bytes, a.copy_kind) for a in copies] == [(4194304, "HtoD"), (4194304, "HtoD"), (4194304, "DtoH")]
    assert copies[0].name == "Memcpy HtoD (Pageable -> Device)" and copies[0].duration_ns == 1140074569 - 1139398153
    names = [c.name for c in t.api_calls]
    assert names.count("cudaMalloc") == 3 and names.count("cudaMemcpy") == 3 and names.count("cudaFree") == 3
    assert "cudaLaunchKernel" in names and "cudaDeviceSynchronize" in names
    assert {c.name for c in t.api_calls if c.kind == "driver"} == {"cuModuleGetLoadingMode", "cuLibraryLoadData",
                                                                  "cuLibraryGetKernel", "cuKernelGetName"}
    assert {c.thread_id for c in t.api_calls} == {1246}
    assert t.devices[0]["name"] == "NVIDIA GeForce RTX 3060" and t.devices[0]["compute_capability"] == "8.6"
    assert any("no NVTX_EVENTS table" in n for n in t.notes), t.notes
    assert t.meta["cuda_driver_version"] == "13010"


def test_nvtx_ranges_iterations_domains(tmp_path: Path) -> None:
    t = parse_nsys_sqlite(build_export(tmp_path / "a.sqlite"))
    assert t.origin_ns == T0 + 50  # the "warmup" push/pop range starts first
    assert t.counts() == {"kernels": 4, "memcpy": 3, "memset": 1, "cuda_api_calls": 8, "nvtx_ranges": 4}
    texts = [(r.text, r.domain) for r in t.ranges]
    assert texts == [("warmup", None), ("iteration 0", None), ("iteration 1", None), ("inner", "my_domain")]
    assert t.ranges[1].start_ns == 100_000 - 50 and t.ranges[1].end_ns == 190_000 - 50
    assert {r.thread_id for r in t.ranges} == {TID}
    ks = t.kernels()
    assert [k.iteration for k in ks] == [0, 0, 1, 1]
    assert [a.iteration for a in t.activities if a.kind != "kernel"] == [None] * 4
    gemm = ks[0]
    assert gemm.name == "void gemm_kernel<float>(float const*, float*)" and gemm.duration_ns == 20_000
    assert gemm.shared_mem_bytes == 1024 + 2048 and gemm.grid == [64, 2, 1] and gemm.registers_per_thread == 128
    assert gemm.launch_ns == 101_000 - 50 and gemm.category == "gemm/conv"
    assert [c.kind for c in t.api_calls if c.correlation_id in (10, 11)] == ["runtime", "driver"]
    assert {c.name for c in t.api_calls} == {"cudaLaunchKernel", "cudaMemcpyAsync", "cuLaunchKernel"}
    assert [(a.copy_kind, a.bytes) for a in t.activities if a.kind == "memcpy"] == [("HtoD", 1 << 20), ("DtoD", 4096), ("PtoP", 8192)]
    (ms,) = [a for a in t.activities if a.kind == "memset"]
    assert (ms.bytes, ms.name) == (512, "Memset (Device)")
    assert any("NvtxMark x1" in n for n in t.notes) and any("1 range(s) without an end" in n for n in t.notes)
    assert t.devices == [{"id": 0, "gpu_id": 0, "name": "NVIDIA H200", "bus_location": "0000:19:00.0", "sm_count": 132,
                          "total_memory_bytes": 150_000_000_000, "compute_capability": "9.0"}]


def test_suffixed_tables_and_text_ids(tmp_path: Path) -> None:
    path = build_export(tmp_path / "v2.sqlite", kernel_table="CUPTI_ACTIVITY_KIND_KERNEL_V2", nvtx_table="NVTX_EVENTS_V2",
                        nvtx_text_via_id=True)
    t = parse_nsys_sqlite(path)
    assert t.meta["tables"]["NVTX_EVENTS"] == "NVTX_EVENTS_V2"
    assert t.meta["tables"]["CUPTI_ACTIVITY_KIND_KERNEL"] == "CUPTI_ACTIVITY_KIND_KERNEL_V2"
    assert [r.text for r in t.ranges] == ["warmup", "iteration 0", "iteration 1", "inner"]
    assert [k.iteration for k in t.kernels()] == [0, 0, 1, 1]
    assert resolve_table(["NVTX_EVENTS_V2", "NVTX_EVENTS_V3", "OTHER"], "NVTX_EVENTS") == "NVTX_EVENTS_V3"
    assert resolve_table(["nvtx_events", "NVTX_EVENTS_V3"], "NVTX_EVENTS") == "nvtx_events"
    assert resolve_table(["CUPTI_ACTIVITY_KIND_KERNEL_LAUNCH"], "CUPTI_ACTIVITY_KIND_KERNEL") is None


def test_no_kernel_table_and_no_nvtx_are_notes(tmp_path: Path) -> None:
    t = parse_nsys_sqlite(build_export(tmp_path / "nok.sqlite", kernel_table=None, nvtx_table=None))
    assert t.counts()["kernels"] == 0 and t.counts()["memcpy"] == 3 and t.ranges == []
    assert any(n.startswith("no CUPTI_ACTIVITY_KIND_KERNEL table") for n in t.notes)
    assert any(n.startswith("no NVTX_EVENTS table") for n in t.notes)


@pytest.mark.parametrize(("table", "column"), [("CUPTI_ACTIVITY_KIND_KERNEL", "end"),
                                               ("CUPTI_ACTIVITY_KIND_MEMCPY", "copyKind"),
                                               ("NVTX_EVENTS", "eventType"),
                                               ("CUPTI_ACTIVITY_KIND_RUNTIME", "nameId")])
def test_missing_required_column(tmp_path: Path, table: str, column: str) -> None:
    path = build_export(tmp_path / "bad.sqlite", drop={table: [column]})
    with pytest.raises(ParseError) as err:
        parse_nsys_sqlite(path)
    msg = str(err.value)
    assert str(path) in msg and f"table {table}" in msg and column in msg, msg


def test_kernel_names_missing_names_all_alternatives(tmp_path: Path) -> None:
    path = build_export(tmp_path / "names.sqlite", drop={"CUPTI_ACTIVITY_KIND_KERNEL": ["demangledName", "shortName", "mangledName"]})
    with pytest.raises(ParseError, match=r"table CUPTI_ACTIVITY_KIND_KERNEL has no column demangledName or shortName or name"):
        parse_nsys_sqlite(path)


def test_not_sqlite_and_not_nsys(tmp_path: Path) -> None:
    txt = tmp_path / "trace.sqlite"
    txt.write_text("not a database")
    with pytest.raises(ParseError, match="trace.sqlite: not an SQLite file"):
        parse_nsys_sqlite(txt)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(ParseError, match=r"other.db: an SQLite file that is not an Nsight Systems export"):
        parse_nsys_sqlite(other)
    with pytest.raises(InputError, match="missing.sqlite: no such file"):
        parse_nsys_sqlite(tmp_path / "missing.sqlite")


def test_older_schema(tmp_path: Path) -> None:
    """An older export: schema only as MAJOR/MINOR/MICRO rows, no ENUM tables (documented CUPTI and event-type
    numbers), no eventClass (driver calls told by their cu* names), no mangledName, NVTX text without textId, no
    TARGET_INFO_SYSTEM_ENV (the version falls back to the exporting nsys, with a note)."""
    path = build_export(tmp_path / "old.sqlite", schema="2.6.0", schema_parts_only=True, export_version="2021.3.1.54",
                        install_dir=None, enums=False, event_class=False, old_kernel_names=True,
                        drop={"NVTX_EVENTS": ["textId"]})
    t = parse_nsys_sqlite(path)
    assert (t.schema_version, t.tool_version) == ("2.6.0", "2021.3.1")
    assert any("capturing nsys version is not in the export" in n for n in t.notes)
    assert [(a.copy_kind, a.name) for a in t.activities if a.kind == "memcpy"] == [
        ("HtoD", "Memcpy HtoD (Pageable -> Device)"), ("DtoD", "Memcpy DtoD (Device -> Device)"),
        ("PtoP", "Memcpy PtoP (Device -> Device)")]  # CUPTI copyKind 1/8/10; nsys memory kinds 0 Pageable, 2 Device
    assert [c.kind for c in t.api_calls if c.correlation_id in (10, 11)] == ["runtime", "driver"]
    assert [r.text for r in t.ranges] == ["warmup", "iteration 0", "iteration 1", "inner"]
    assert [k.iteration for k in t.kernels()] == [0, 0, 1, 1]
    assert t.kernels()[1].name == "void elementwise_add(float*)"


def test_newer_schema_is_noted(tmp_path: Path) -> None:
    t = parse_nsys_sqlite(build_export(tmp_path / "new.sqlite", schema="4.1.0"))
    assert any("export schema 4.1.0 is newer" in n for n in t.notes)
    assert t.counts()["kernels"] == 4


def test_process_and_thread_from_global_tid(tmp_path: Path) -> None:
    from profiles.nsys_export import _pid, _tid
    from tests.nsys_builders import GLOBAL_PID, GLOBAL_TID

    assert (_pid(GLOBAL_TID), _tid(GLOBAL_TID), _pid(GLOBAL_PID)) == (PID, TID, PID)
