"""``--nsys`` through the model_bench job without a GPU or nsys: ONNX Runtime's ``cuda:0`` target is its CPU provider
(as in test_kernel_capture_job) and ``nsys`` is a stand-in script: ``profile`` writes a report (or, like the H200
image's nsys without its importer, only a ``.qdstrm``), ``export --type sqlite`` copies an export built by
tests.nsys_builders (the parser is tested on the real 2025.5.2 export and the built ones in test_nsys_export.py).
What is tested: the command EngineScope runs, the nsys run as its own profiled run with the imported rows and both
files as artifacts, the measured run untouched, a report-less nsys failing with the reason, plan refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from onnx_builders import linear_model, save_plain
from test_kernel_capture_job import _run_job, cuda_on_cpu, no_nvml  # noqa: F401 - fixtures
from tests.nsys_builders import build_export

FAKE = """#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_NSYS_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if args == ["--version"]:
    print("NVIDIA Nsight Systems version 2025.5.2.266-255336380738v0"); sys.exit(0)
if args[:1] == ["profile"]:
    base = args[args.index("-o") + 1]
    if os.environ.get("FAKE_NSYS_QDSTRM"):
        open(base + ".qdstrm", "wb").write(b"raw")
        print("Importer error status: The importer binary and its dependencies were not found.")
        print("Generated:\\n    " + base + ".qdstrm"); sys.exit(0)
    open(base + ".nsys-rep", "wb").write(b"\\x00NSYS-REPORT")
    print("Generated:\\n    " + base + ".nsys-rep"); sys.exit(0)
if args[:3] == ["export", "--type", "sqlite"]:
    shutil.copyfile(os.environ["FAKE_NSYS_SOURCE"], args[4]); sys.exit(0)
sys.exit(2)
"""


@pytest.fixture
def fake_nsys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "bin" / "nsys"
    exe.parent.mkdir()
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    log = tmp_path / "nsys_calls.jsonl"
    monkeypatch.setenv("ENGINESCOPE_NSYS", str(exe))
    monkeypatch.setenv("FAKE_NSYS_LOG", str(log))
    monkeypatch.setenv("FAKE_NSYS_SOURCE", str(build_export(tmp_path / "src" / "export.sqlite")))
    return log


def test_nsys_capture_is_its_own_profiled_run(es_env: str, tmp_path: Path, no_nvml: None, cuda_on_cpu: Any,
                                              fake_nsys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from db.kernels import load_trace, profiled_label
    from db.models import Artifact, LatencySample, Run
    from db.session import session_scope
    from engine_runner.commands.bench import collect_results
    from profiles.nsys_export import parse_nsys_sqlite

    job_id, events = _run_job(es_env, tmp_path, cuda_on_cpu.Engine(), monkeypatch, kernel_iterations=0, nsys=True)
    calls = [json.loads(line) for line in fake_nsys.read_text().splitlines()]
    prof_call = next(c for c in calls if c[0] == "profile")
    assert prof_call[1:6] == ["-t", "cuda,nvtx,osrt", "--capture-range=cudaProfilerApi", "--capture-range-end=stop",
                              "--cuda-graph-trace=node"]
    assert prof_call[-3:-1] == ["-m", "engine_runner.profile_child"]
    assert any(c[:3] == ["export", "--type", "sqlite"] for c in calls)
    with session_scope(es_env) as s:
        measured, nsys_run = list(s.execute(select(Run).where(Run.job_id == job_id).order_by(Run.id)).scalars())
        arts = sorted(a.kind for a in s.execute(select(Artifact).where(Artifact.run_id == nsys_run.id)).scalars())
        n = {r.id: s.execute(select(func.count()).select_from(LatencySample).where(LatencySample.run_id == r.id))
             .scalar_one() for r in (measured, nsys_run)}
        assert nsys_run.status == measured.status == "succeeded"
        assert nsys_run.label == profiled_label(measured.label, "nsys")
        m_cfg, n_cfg = dict(measured.config), dict(nsys_run.config)
    assert arts == ["nsys_report", "nsys_sqlite"]
    assert n[nsys_run.id] == 0 and n[measured.id] >= 20
    prof = n_cfg["profiler"]
    assert prof["tool"] == "nsys" and prof["of_run_id"] == measured.id and prof["iterations"] == 5
    assert prof["version"] == "2025.5.2" and prof["schema_version"] == "3.24.0"
    expected = parse_nsys_sqlite(Path(__import__("os").environ["FAKE_NSYS_SOURCE"]))
    stored = load_trace(nsys_run.id, es_env)
    assert stored is not None and stored.counts() == expected.counts()
    assert {a.iteration for a in stored.kernels()} == {0, 1}
    assert m_cfg["nsys_capture"] == {"nsys_run_id": nsys_run.id, "kernels": expected.counts()["kernels"]}
    doc = collect_results(job_id, es_env)
    assert [r["run_id"] for r in doc["runs"]] == [measured.id]
    assert [(p["run_id"], p["tool"]) for p in doc["profiled_runs"]] == [(nsys_run.id, "nsys")]
    assert any(k == "info" and f"nsys capture stored as run {nsys_run.id}" in m for k, m in events)


def test_nsys_without_importer_fails_the_capture_not_the_measured_run(
        es_env: str, tmp_path: Path, no_nvml: None, cuda_on_cpu: Any, fake_nsys: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from db.models import Run
    from db.session import session_scope

    monkeypatch.setenv("FAKE_NSYS_QDSTRM", "1")
    job_id, events = _run_job(es_env, tmp_path, cuda_on_cpu.Engine(), monkeypatch, kernel_iterations=0, nsys=True)
    with session_scope(es_env) as s:
        (run,) = list(s.execute(select(Run).where(Run.job_id == job_id)).scalars())
        assert run.status == "succeeded"
        err = run.config["nsys_error"]
    assert "nsys wrote only capture.qdstrm" in err and "no QdstrmImporter" in err
    assert any(k == "warning" and "measured run is kept" in m for k, m in events)


def test_plan_refuses_nsys_on_cpu_and_without_nsys(es_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine_runner.engines.onnxruntime as ortx
    from db.store import add_model
    from engine_runner.jobs.model_bench import plan
    from profiles.errors import InputError
    from profiles.specs import BenchSpec, validate_spec

    model_id = int(add_model(save_plain(linear_model(0), tmp_path / "m.onnx")).id)
    with pytest.raises(InputError, match=r"--nsys: .*CUDA kernels \(got --device cpu"):
        plan(validate_spec(BenchSpec, {"model_id": model_id, "nsys": True}), es_env)
    monkeypatch.delenv("ENGINESCOPE_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(ortx.Engine, "check_device", lambda self, device, cuda_graph=False, model_path=None: None)
    with pytest.raises(InputError, match=r"--nsys: Nsight Systems \(nsys\) is not installed on this machine"):
        plan(validate_spec(BenchSpec, {"model_id": model_id, "device": "cuda:0", "nsys": True}), es_env)
