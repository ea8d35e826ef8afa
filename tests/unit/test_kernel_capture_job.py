"""``--profile-kernels N`` through the model_bench job without a GPU: the engine seam (``capture_kernels``) is
filled by a test engine that returns the trace recorded on an H200 (tests/data/kernels), attributed to ONNX
Runtime's nodes as the real ONNX Runtime capture does; the ``cuda:0`` target is pointed at ONNX Runtime's CPU
provider, so the real job, storage, labels and bench JSON run. What is tested: the profiled run is its own run,
linked to the measured one, labelled, with the timeline rows and artifacts and no latency samples, and the
measured run's samples are untouched; a failed capture keeps the measured run; plan() refuses a CPU device.
The real capture runs in tests/gpu/test_kernel_capture.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from onnx_builders import linear_model, save_plain

DATA = Path(__file__).resolve().parent.parent / "data" / "kernels"


def _recorded_ort_trace(workdir: Path) -> tuple[Any, list[tuple[str, Path, dict[str, Any]]]]:
    from profiles.kineto_trace import attribute_ort_nodes, parse_kineto_trace, read_trace_json

    workdir.mkdir(parents=True, exist_ok=True)
    kineto = Path(shutil.copy(DATA / "h200_probe_ort_kineto.json.gz", workdir / "kineto_trace.json.gz"))
    prof = Path(shutil.copy(DATA / "h200_probe_ort_profile.json.gz", workdir / "ort_kernels.json.gz"))
    clock = json.loads((DATA / "h200_probe_ort_clock.json").read_text())
    trace = parse_kineto_trace(kineto)
    attribute_ort_nodes(trace, read_trace_json(prof), clock["ort_profiling_start_ns"])
    return trace, [("kineto_trace", kineto, {"iterations": 3}), ("ort_profile", prof, {})]


@pytest.fixture
def cuda_on_cpu(monkeypatch: pytest.MonkeyPatch) -> Any:
    """ONNX Runtime's ``cuda:N`` target is its CPU provider; telemetry samples in this process (no NVML here)."""
    from engine_runner.engines import onnxruntime as ortx
    import engine_runner.telemetry as telemetry

    real_target_for = ortx.target_for
    monkeypatch.setattr(ortx, "target_for", lambda device, cuda_graph=False: ortx.Target(
        real_target_for(device).device, ortx.CPU_PROVIDER, "cpu", 0))
    monkeypatch.setattr(telemetry, "OutOfProcessSampler",
                        lambda interval_s, device_index=None: telemetry.TelemetrySampler(interval_s, device_index))
    return ortx


def _engine_with_capture(ortx: Any, fail: bool = False) -> Any:
    from profiles.errors import EngineError

    class RecordedCapture(ortx.Engine):
        """ONNX Runtime whose kernel capture returns the recorded H200 trace (or fails)."""

        calls: list[dict[str, Any]] = []

        def capture_kernels(self, variant: Any, inputs: dict[str, np.ndarray], spec: Any, hooks: Any,
                            workdir: Path, iterations: int) -> Any:
            self.calls.append({"precision": variant.precision, "shapes": {k: v.shape for k, v in inputs.items()},
                               "iterations": iterations, "workdir": workdir})
            if fail:
                raise EngineError("CUPTI refused to start (test)")
            return _recorded_ort_trace(workdir)

    return RecordedCapture()


def _run_job(url: str, tmp_path: Path, eng: Any, monkeypatch: pytest.MonkeyPatch,
             **spec_extra: Any) -> tuple[int, list[tuple[str, str]]]:
    import engine_runner.jobs.model_bench as mb
    from db.jobs import start_inline_job
    from db.store import add_model
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute
    from profiles.specs import BenchSpec, validate_spec

    monkeypatch.setattr(mb, "get_engine_impl", lambda name: eng)
    model_id = int(add_model(save_plain(linear_model(0, in_features=8, out_features=5), tmp_path / "m.onnx")).id)
    spec = validate_spec(BenchSpec, {"model_id": model_id, "device": "cuda:0", "batch_sizes": [4], "iterations": 20,
                                     "min_duration_s": 0.0, "warmup_iterations": 2, "warmup_s": 0.0,
                                     "profile_layers": False, "kernel_iterations": 3, **spec_extra})
    mb.plan(spec, url, engine=eng)  # what the CLI does first
    data = spec.model_dump(mode="json")
    job_id = start_inline_job("model_bench", data, model_id=model_id, url=url)
    events: list[tuple[str, str]] = []
    ctx = JobContext(job_id=job_id, kind="model_bench", spec=data, db_url=url,
                     hooks=[lambda kind, msg, prog, d: events.append((kind, msg))])
    assert execute(ctx) == "succeeded"
    return job_id, events


def test_a_capture_becomes_its_own_profiled_run(es_env: str, tmp_path: Path, no_nvml: None,
                                                cuda_on_cpu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from db.kernels import load_trace, profiled_label, profiled_runs
    from db.models import Artifact, GpuActivityRow, LatencySample, Run, RunMetric, Summary
    from db.session import session_scope
    from engine_runner.commands.bench import collect_results

    eng = _engine_with_capture(cuda_on_cpu)
    job_id, events = _run_job(es_env, tmp_path, eng, monkeypatch)
    assert len(eng.calls) == 1
    call = eng.calls[0]
    assert call["iterations"] == 3 and call["precision"] == "fp32" and call["shapes"] == {"X": (4, 8)}
    expected, _ = _recorded_ort_trace(tmp_path / "expected")

    with session_scope(es_env) as s:
        runs = list(s.execute(select(Run).where(Run.job_id == job_id).order_by(Run.id)).scalars())
        assert len(runs) == 2
        measured, profiled = runs
        n_samples = {r.id: s.execute(select(func.count()).select_from(LatencySample)
                                     .where(LatencySample.run_id == r.id)).scalar_one() for r in runs}
        summaries = {r.id: s.execute(select(func.count()).select_from(Summary).where(Summary.run_id == r.id)).scalar_one()
                     for r in runs}
        metrics = s.execute(select(func.count()).select_from(RunMetric).where(RunMetric.run_id == profiled.id)).scalar_one()
        lat = s.execute(select(Summary).where(Summary.run_id == measured.id, Summary.metric == "latency_ms")).scalar_one()
        arts = {a.kind: a for a in s.execute(select(Artifact).where(Artifact.run_id == profiled.id)).scalars()}
        rows = s.execute(select(func.count()).select_from(GpuActivityRow)
                         .where(GpuActivityRow.run_id == measured.id)).scalar_one()
        m_cfg, p_cfg = dict(measured.config), dict(profiled.config)
        m_label = measured.label
        assert measured.status == profiled.status == "succeeded"
        assert (profiled.engine, profiled.precision, profiled.batch_size, profiled.model_id, profiled.shapes) == \
            (measured.engine, measured.precision, measured.batch_size, measured.model_id, measured.shapes)
        assert profiled.label == profiled_label(m_label, "onnxruntime+kineto")
        assert profiled.label.endswith("[profiled: onnxruntime+kineto]") and not m_label.endswith("]")

    # the profiled run: linked, labelled, its own timeline rows, no latency of its own, nothing in the measured run
    prof = p_cfg["profiler"]
    assert prof["of_run_id"] == measured.id and prof["iterations"] == 3 and prof["profiled"] is True
    assert prof["tool"] == "onnxruntime+kineto" and p_cfg["device"] == "cuda:0"
    assert n_samples[profiled.id] == 0 and summaries[profiled.id] == 0 and metrics == 0
    assert n_samples[measured.id] == lat.count >= 20 and rows == 0
    assert "profiler" not in m_cfg and "kernel_trace" not in m_cfg
    assert m_cfg["kernel_capture"]["profiled_run_id"] == profiled.id
    assert m_cfg["kernel_capture"]["kernels"] == len(expected.kernels())
    assert set(arts) == {"kineto_trace", "ort_profile"} and arts["kineto_trace"].size_bytes > 0
    stored = load_trace(profiled.id, es_env)
    assert stored is not None and stored.counts() == expected.counts()
    assert [a.op for a in stored.activities] == [a.op for a in expected.activities]
    assert sum(1 for a in stored.kernels() if a.op) == expected.meta["ort_attribution"]["kernels_attributed"]
    assert p_cfg["kernel_summary"]["iterations"] == 3
    listed = profiled_runs(es_env, of_run_id=measured.id)
    assert [r["run_id"] for r in listed] == [profiled.id] and listed[0]["kernels"] == len(expected.kernels())
    assert any(k == "info" and f"kernel timeline stored as run {profiled.id}" in m for k, m in events)

    # bench --json: the measured run in runs (with its profiled run's id), the profiled one in profiled_runs
    doc = collect_results(job_id, es_env)
    assert [r["run_id"] for r in doc["runs"]] == [measured.id]
    assert doc["runs"][0]["profiled_run_id"] == profiled.id and doc["runs"][0]["samples"] == lat.count
    (pr,) = doc["profiled_runs"]
    assert pr["run_id"] == profiled.id and pr["of_run_id"] == measured.id and pr["iterations"] == 3
    assert pr["kernels"] == len(expected.kernels()) and pr["memcpy"] == expected.counts()["memcpy"]
    assert pr["kernels_attributed"] == expected.meta["ort_attribution"]["kernels_attributed"]
    assert pr["tool"] == "onnxruntime+kineto" and pr["status"] == "succeeded"


def test_a_failed_capture_keeps_the_measured_run(es_env: str, tmp_path: Path, no_nvml: None,
                                                 cuda_on_cpu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from db.models import LatencySample, Run
    from db.session import session_scope
    from engine_runner.commands.bench import collect_results

    eng = _engine_with_capture(cuda_on_cpu, fail=True)
    job_id, events = _run_job(es_env, tmp_path, eng, monkeypatch)
    with session_scope(es_env) as s:
        runs = list(s.execute(select(Run).where(Run.job_id == job_id)).scalars())
        assert len(runs) == 1 and runs[0].status == "succeeded"
        n = s.execute(select(func.count()).select_from(LatencySample).where(LatencySample.run_id == runs[0].id)).scalar_one()
        cfg = dict(runs[0].config)
    assert n >= 20
    assert cfg["kernel_capture_error"] == "kernel capture failed: EngineError: CUPTI refused to start (test)"
    assert any(k == "warning" and "CUPTI refused to start" in m and "measured run is kept" in m for k, m in events)
    doc = collect_results(job_id, es_env)
    assert doc["profiled_runs"] == [] and doc["runs"][0]["status"] == "succeeded"
    assert any("no kernel timeline: kernel capture failed" in w for w in doc["runs"][0]["warnings"])


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real GPU telemetry from a GPU that might be present: NVML index lookup says none."""
    import engine_runner.telemetry as telemetry

    monkeypatch.setattr(telemetry, "nvml_index_for", lambda device: None)


def test_plan_refuses_profile_kernels_on_a_cpu_device(es_env: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from db.models import Job
    from db.session import session_scope
    from db.store import add_model
    from engine_runner.cli import app
    from engine_runner.jobs.model_bench import plan
    from profiles.errors import InputError
    from profiles.specs import BenchSpec, validate_spec

    path = save_plain(linear_model(0), tmp_path / "m.onnx")
    model_id = int(add_model(path).id)
    spec = validate_spec(BenchSpec, {"model_id": model_id, "device": "cpu", "kernel_iterations": 3})
    with pytest.raises(InputError, match=r"^--profile-kernels 3: kernel timelines need a CUDA device: CUPTI records "
                                         r"GPU kernels \(got --device cpu"):
        plan(spec, es_env)
    with pytest.raises(InputError, match="--profile-kernels 3: kernel timelines need a CUDA device"):
        plan(spec, es_env, devices_here=False)  # the dashboard's planning refuses it too
    res = CliRunner().invoke(app, ["bench", str(path), "--profile-kernels", "3", "--json"])
    assert res.exit_code == 2, res.output
    assert "--profile-kernels 3: kernel timelines need a CUDA device" in res.output
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Job)).scalar_one() == 0
    with pytest.raises(InputError, match="--profile-kernels"):
        validate_spec(BenchSpec, {"model_id": model_id, "device": "cpu", "kernel_iterations": 101})
    # 0 (the default) is off: nothing to refuse
    plan(validate_spec(BenchSpec, {"model_id": model_id, "device": "cpu"}), es_env)


def test_plan_refuses_an_engine_without_kernel_capture(es_env: str, tmp_path: Path) -> None:
    from db.store import add_model
    from engine_runner.engines.base import KernelCaptureEngine
    from engine_runner.engines.onnxruntime import Engine as OrtEngine
    from engine_runner.engines.torch_engine import Engine as TorchEngine
    from engine_runner.jobs.model_bench import plan
    from profiles.errors import InputError
    from profiles.specs import BenchSpec, validate_spec

    assert isinstance(OrtEngine(), KernelCaptureEngine) and isinstance(TorchEngine(), KernelCaptureEngine)
    model_id = int(add_model(save_plain(linear_model(0), tmp_path / "m.onnx")).id)
    spec = validate_spec(BenchSpec, {"model_id": model_id, "engine": "tensorrt", "device": "cuda:0",
                                     "kernel_iterations": 2})
    with pytest.raises(InputError, match="--profile-kernels: --engine tensorrt has no kernel capture"):
        plan(spec, es_env, devices_here=False)


def test_kineto_capture_refuses_a_machine_without_cuda(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: tests/gpu/test_kernel_capture.py runs the capture")
    from engine_runner.kernel_capture import kineto_capture
    from profiles.errors import EngineError, EngineUnavailableError

    with pytest.raises(EngineUnavailableError, match="--profile-kernels: torch .* sees no CUDA device here; kernel "
                                                     "timelines need a CUDA device"):
        kineto_capture(lambda: None, device="cuda:0", iterations=3, workdir=tmp_path)
    with pytest.raises(EngineError, match="iterations must be >= 1"):
        kineto_capture(lambda: None, device="cuda:0", iterations=0, workdir=tmp_path)
