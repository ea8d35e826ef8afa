"""`enginescope import` of Nsight Systems exports: --json shape and values, the rows stored, artifacts,
re-import deduplication, a mixed call with trtexec files, and bad input leaving the database unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from db.kernels import load_trace, profiled_runs
from db.models import Artifact, CudaApiCallRow, GpuActivityRow, Run, TraceRangeRow
from db.session import session_scope
from engine_runner.cli import app
from tests.nsys_builders import build_export

FIXTURE = "fixtures/nsys/nsys_2025.5_export_report1.sqlite"
KEYS = {"run_id", "source", "source_tool", "label", "file", "nsys_version", "export_version", "schema_version",
        "kernels", "cuda_api_calls", "memcpy", "memset", "nvtx_ranges", "notes", "existing"}


def _import(*paths: Path, code: int = 0) -> list[dict]:
    res = CliRunner().invoke(app, ["import", "--json", *map(str, paths)])
    assert res.exit_code == code, res.output
    return json.loads(res.output)["runs"] if code == 0 else []


def _count(url: str, table: type) -> int:
    with session_scope(url) as s:
        return s.execute(select(func.count()).select_from(table)).scalar_one()


def test_real_export_json_and_rows(es_env: str, shared: Path) -> None:
    (r,) = _import(shared / FIXTURE)
    assert set(r) == KEYS
    assert (r["source_tool"], r["nsys_version"], r["export_version"], r["schema_version"]) == ("nsys", "2025.5.2", "2025.5.2.266", "3.24.0")
    assert (r["kernels"], r["cuda_api_calls"], r["memcpy"], r["memset"], r["nvtx_ranges"]) == (1, 15, 3, 0, 0)
    assert r["label"] == "nsys_2025.5_export_report1 [profiled: nsys]" and r["existing"] is False
    assert any("no NVTX_EVENTS table" in n for n in r["notes"])
    with session_scope(es_env) as s:
        run = s.get(Run, r["run_id"])
        assert (run.engine, run.engine_version, run.source, run.status) == ("nsys", "2025.5.2", "import:nsys", "succeeded")
        assert run.config["profiler"]["tool"] == "nsys" and run.config["profiler"]["profiled"] is True
        assert run.config["profiler"]["schema_version"] == "3.24.0" and run.environment["gpu"] == "NVIDIA GeForce RTX 3060"
        art = s.execute(select(Artifact).where(Artifact.run_id == run.id)).scalar_one()
        assert art.kind == "nsys_sqlite" and art.path == f"artifacts/imports/run_{run.id}/nsys_2025.5_export_report1.sqlite"
        assert art.size_bytes == (shared / FIXTURE).stat().st_size
    trace = load_trace(r["run_id"], url=es_env)
    (k,) = trace.kernels()
    assert k.name == "kernVectorAdd(const float *, const float *, float *, int)" and k.duration_ns == 38912
    assert (k.grid, k.block) == ([4096, 1, 1], [256, 1, 1])
    assert trace.origin_ns == 831972818 and len(trace.api_calls) == 15
    assert [p["run_id"] for p in profiled_runs(url=es_env)] == [r["run_id"]]
    res = CliRunner().invoke(app, ["import", str(shared / FIXTURE)])  # text output: one line per run
    assert res.exit_code == 0 and res.output.count("\n") == 1, res.output
    assert "nsys 2025.5.2 (schema 3.24.0): 1 kernels, 3 memcpy, 0 memset, 15 CUDA API calls" in res.output
    assert "(already imported)" in res.output


def test_mixed_call_with_trtexec(es_env: str, shared: Path) -> None:
    runs = _import(shared / "fixtures/trtexec/trex_resnet18_a100_fp16.graph.json", shared / FIXTURE,
                   shared / "fixtures/trtexec/trex_resnet18_a100_fp16.profile.json")
    by_source = {r["source"]: r for r in runs}
    assert len(runs) == 2 and set(by_source) == {"import:trtexec", "import:nsys"}
    assert by_source["import:trtexec"]["layers"] == 36 and by_source["import:nsys"]["kernels"] == 1
    assert by_source["import:trtexec"]["label"] == "trex_resnet18_a100_fp16"


def test_built_export_iterations_stored(es_env: str, tmp_path: Path) -> None:
    (r,) = _import(build_export(tmp_path / "resnet_fp16.sqlite"))
    assert (r["kernels"], r["memcpy"], r["memset"], r["cuda_api_calls"], r["nvtx_ranges"]) == (4, 3, 1, 8, 4)
    with session_scope(es_env) as s:
        iters = s.execute(select(GpuActivityRow.iteration).where(GpuActivityRow.kind == "kernel")
                          .order_by(GpuActivityRow.seq)).scalars().all()
        run = s.get(Run, r["run_id"])
        assert run.config["kernel_summary"]["iterations"] == 2
        domains = s.execute(select(TraceRangeRow.domain).order_by(TraceRangeRow.start_ns)).scalars().all()
    assert iters == [0, 0, 1, 1] and domains == [None, None, None, "my_domain"]


def test_reimport_returns_existing_run(es_env: str, tmp_path: Path) -> None:
    path = build_export(tmp_path / "cap.sqlite")
    (first,) = _import(path)
    copy = tmp_path / "other_name.sqlite"
    copy.write_bytes(path.read_bytes())
    again = _import(path, copy)
    assert [r["run_id"] for r in again] == [first["run_id"]] * 2 and all(r["existing"] for r in again)
    assert again[0]["kernels"] == 4 and again[0]["notes"] == first["notes"]
    assert _count(es_env, Run) == 1 and _count(es_env, GpuActivityRow) == 8 and _count(es_env, Artifact) == 1
    # the same file twice in one fresh call: one run
    other = build_export(tmp_path / "x" / "cap2.sqlite", schema="3.23.0")
    twice = _import(other, other)
    assert twice[0]["run_id"] == twice[1]["run_id"] and [r["existing"] for r in twice] == [False, True]


def test_bad_file_exit_2_nothing_stored(es_env: str, tmp_path: Path) -> None:
    good = build_export(tmp_path / "good.sqlite")
    bad = build_export(tmp_path / "bad.sqlite", drop={"CUPTI_ACTIVITY_KIND_MEMCPY": ["bytes"]})
    trt = tmp_path / "results.json"
    trt.write_text('{"hello": 1}')
    for args in ([good, bad], [bad], [good, trt]):
        res = CliRunner().invoke(app, ["import", "--json", *map(str, args)])
        assert res.exit_code == 2, res.output
        line = res.output.strip()
        assert "\n" not in line and line.startswith("error: ")
        assert ("bad.sqlite" in line and "CUPTI_ACTIVITY_KIND_MEMCPY" in line and "bytes" in line) or "results.json" in line
    notdb = tmp_path / "report.sqlite"
    notdb.write_text("hello")  # not SQLite: refused as such, not read as a trtexec log
    res = CliRunner().invoke(app, ["import", str(notdb)])
    assert res.exit_code == 2 and "report.sqlite: not an SQLite file" in res.output, res.output
    res = CliRunner().invoke(app, ["import", str(tmp_path / "missing.nsys-rep")])
    assert res.exit_code == 2 and "missing.nsys-rep: no such file" in res.output
    assert _count(es_env, Run) == 0 and _count(es_env, CudaApiCallRow) == 0
