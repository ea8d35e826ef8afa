"""ONNX Runtime on CUDA and the NVML evidence around it, on a real NVIDIA GPU with onnxruntime-gpu (the H200:
benchmarks/h200/gpu_engines.sh runs these). Every model is built here; nothing from ../shared is needed.
They skip on machines without a GPU or without CUDAExecutionProvider."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REASON = "needs an NVIDIA GPU and onnxruntime-gpu"


def _cuda_ready() -> bool:
    try:
        import onnxruntime as ort
        import pynvml

        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return False
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount()) > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no package, no driver, no library: not a GPU machine
        return False


pytestmark = pytest.mark.skipif(not _cuda_ready(), reason=REASON)
FAST = {"iterations": 50, "min_duration_s": 0.3, "warmup_iterations": 5, "warmup_s": 0.1}


def build_cnn(path: Path, channels: int = 16) -> Path:
    """Conv(3->C, 3x3) -> Relu -> Conv(C->C) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(C->10): x float32
    [N, 3, 32, 32] (dynamic N) -> y [N, 10]; random weights, seed 0."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    def w(name: str, *shape: int) -> Any:
        return numpy_helper.from_array((0.2 * rng.standard_normal(shape)).astype(np.float32), name)

    w1, w2, w3 = w("w1", channels, 3, 3, 3), w("w2", channels, channels, 3, 3), w("w3", 10, channels)
    nodes = [helper.make_node("Conv", ["x", w1.name], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", w2.name], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", w3.name], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [w1, w2, w3])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def build_with_cpu_only_op(path: Path) -> Path:
    """x [N, 4] -> ai.onnx.ml Scaler (CPU-only in ONNX Runtime) -> Relu -> y: one node must fall back."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Scaler", ["x"], ["s"], name="ml_scaler", domain="ai.onnx.ml", offset=[0.5] * 4,
                              scale=[2.0] * 4),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _hooks(marks: list[tuple[int, int]]) -> Any:
    from engine_runner.engines.base import MeasureHooks

    return MeasureHooks(check_cancelled=lambda: None, progress=lambda m, f: None, stage=lambda m: None,
                        mark_window=lambda a, b: marks.append((a, b)))


def _x(batch: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((batch, 3, 32, 32)).astype(np.float32)}


def test_cuda_session_io_binding_outputs_and_per_node_rows(tmp_path: Path) -> None:
    from engine_runner.engines.onnxruntime import Engine, reference_outputs
    from profiles.specs import BenchSpec

    model = build_cnn(tmp_path / "cnn.onnx")
    spec = BenchSpec(model_id=1, device="cuda:0", **FAST)
    eng = Engine()
    prepared = eng.prepare(model, "fp32", {8: {"x": [8, 3, 32, 32]}}, spec, tmp_path)
    assert prepared.handle.session.get_providers()[0] == "CUDAExecutionProvider"
    assert prepared.config["provider_options"]["device_id"] == "0" and prepared.config["io_binding"] is True
    marks: list[tuple[int, int]] = []
    m = eng.measure(prepared, _x(8), spec, _hooks(marks), tmp_path / "w")
    assert m.timing_window.startswith("GPU work + launch, I/O resident on device, no host copies")
    assert m.samples_ns.size >= 50 and np.all(m.samples_ns > 0) and len(marks) == 1
    ref = reference_outputs(model, _x(8))["y"]
    np.testing.assert_allclose(m.outputs["y"], ref, rtol=1e-3, atol=1e-3)  # TF32/cuDNN vs CPU fp32
    placement = m.config["placement"]
    assert placement["requested"] == "CUDAExecutionProvider" and placement["fallback_nodes"] == []
    assert placement["nodes_per_provider"].get("CUDAExecutionProvider", 0) >= 3
    assert m.layers and all(r.details["provider"] == "CUDAExecutionProvider" for r in m.layers)
    assert all("host-side enqueue" in r.details["time_basis"] for r in m.layers)
    assert "engine_warnings" not in m.config


def test_cuda_graph_replays_the_same_outputs(tmp_path: Path) -> None:
    from engine_runner.engines.onnxruntime import Engine
    from profiles.specs import BenchSpec

    model = build_cnn(tmp_path / "cnn.onnx")
    spec = BenchSpec(model_id=1, device="cuda:0", cuda_graph=True, **FAST)
    eng = Engine()
    prepared = eng.prepare(model, "fp32", {1: {"x": [1, 3, 32, 32]}, 4: {"x": [4, 3, 32, 32]}}, spec, tmp_path)
    for batch in (1, 4):  # one graph session per batch size
        m = eng.measure(prepared, _x(batch), spec, _hooks([]), tmp_path / f"w{batch}")
        assert "replays this batch size's CUDA graph" in m.timing_window
        assert m.config["cuda_graph_check"]["match"] is True, m.config["cuda_graph_check"]
        assert m.outputs["y"].shape == (batch, 10)
        np.testing.assert_allclose(m.outputs["y"], eng.infer(prepared, _x(batch))["y"], rtol=1e-3, atol=1e-3)


def test_cpu_fallback_is_a_warning_naming_the_node(tmp_path: Path) -> None:
    from engine_runner.engines.onnxruntime import Engine
    from profiles.specs import BenchSpec

    model = build_with_cpu_only_op(tmp_path / "scaler.onnx")
    spec = BenchSpec(model_id=1, device="cuda:0", profile_layers=False, **FAST)  # placement checked anyway
    eng = Engine()
    prepared = eng.prepare(model, "fp32", {2: {"x": [2, 4]}}, spec, tmp_path)
    m = eng.measure(prepared, {"x": np.ones((2, 4), np.float32)}, spec, _hooks([]), tmp_path / "w")
    fallback = m.config["placement"]["fallback_nodes"]
    assert [f["op_type"] for f in fallback] == ["Scaler"] and fallback[0]["provider"] == "CPUExecutionProvider"
    assert any("ml_scaler (Scaler on CPUExecutionProvider)" in w for w in m.config["engine_warnings"])
    assert m.layers == []  # --no-layers: the placement run stores no rows
    np.testing.assert_allclose(m.outputs["y"], np.full((2, 4), 1.0, np.float32))  # relu((1 - 0.5) * 2)


def test_nvml_window_energy_while_the_gpu_works(tmp_path: Path) -> None:
    import onnxruntime as ort

    from engine_runner.engines.onnxruntime import BoundIO, target_for
    from engine_runner.telemetry import GPU_INTERVAL_S, TelemetrySampler

    model = build_cnn(tmp_path / "cnn.onnx", channels=64)
    target = target_for("cuda:0")
    sess = ort.InferenceSession(str(model), providers=target.providers())
    bound = BoundIO(sess, _x(64), target, "cnn")
    with TelemetrySampler(GPU_INTERVAL_S, device_index=0) as tel:
        t0 = time.perf_counter_ns()
        n = 0
        while time.perf_counter_ns() - t0 < 1_500_000_000:  # a fixed amount of wall time, not a timed assertion
            bound.run()
            n += 1
        tel.mark_window(t0, time.perf_counter_ns())
    rep = tel.window_report(inferences=n)
    assert tel.device == "cuda:0" and rep.samples_in_window >= 5
    assert rep.energy_method in ("energy_counter", "power_integration") and rep.energy_j > 0
    assert rep.avg_power_w > 0 and rep.energy_per_inference_j == pytest.approx(rep.energy_j / n)
    assert rep.stats["sm_clock_mhz"]["median"] > 0 and rep.stats["mem_clock_mhz"]["median"] > 0
    pts = [p for p in tel.samples if p.energy_mj is not None]
    assert all(b.energy_mj >= a.energy_mj for a, b in zip(pts, pts[1:]))  # the counter is monotonic


def test_bench_job_on_cuda_stores_energy_placement_and_accuracy(es_env: str, tmp_path: Path) -> None:
    from sqlalchemy import select

    from db.jobs import start_inline_job
    from db.models import AccuracyResult, Run, RunMetric, TelemetrySample
    from db.session import session_scope
    from db.store import add_model
    from engine_runner.commands.bench import collect_results
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute
    from profiles.specs import BenchSpec, validate_spec

    model_id = int(add_model(build_cnn(tmp_path / "cnn.onnx", channels=32)).id)
    spec = validate_spec(BenchSpec, {"model_id": model_id, "device": "cuda:0", "precisions": ["fp32", "fp16", "int8"],
                                     "batch_sizes": [1, 8], **FAST, "min_duration_s": 1.0}).model_dump(mode="json")
    job_id = start_inline_job("model_bench", spec, model_id=model_id, url=es_env)
    assert execute(JobContext(job_id=job_id, kind="model_bench", spec=spec, db_url=es_env, hooks=[])) == "succeeded"
    doc = collect_results(job_id, es_env)
    assert [(r["precision"], r["batch_size"]) for r in doc["runs"]] == [
        ("fp32", 1), ("fp32", 8), ("fp16", 1), ("fp16", 8), ("int8-qdq", 1), ("int8-qdq", 8)]
    for r in doc["runs"]:
        assert r["status"] == "succeeded", r["error"]
        assert r["device"] == "cuda:0" and "I/O resident on device" in r["timing_window"]
        assert r["energy_per_inference_j"] > 0 and r["avg_power_w"] > 0
        assert r["gpu"]["energy_method"] in ("energy_counter", "power_integration")
        assert r["gpu"]["sm_clock_median_mhz"] > 0 and r["gpu"]["samples_in_window"] >= 1
        assert r["placement"]["requested"] == "CUDAExecutionProvider"
        if r["precision"] == "fp16":
            assert r["accuracy"]["cosine"] > 0.999
    with session_scope(es_env) as s:
        runs = list(s.execute(select(Run).where(Run.job_id == job_id)).scalars())
        tel = s.execute(select(TelemetrySample).where(TelemetrySample.run_id == runs[0].id)).scalars().all()
        units = dict(s.execute(select(RunMetric.name, RunMetric.unit).where(RunMetric.run_id == runs[0].id)).all())
        acc = s.execute(select(AccuracyResult).where(AccuracyResult.run_id == runs[-1].id)).scalars().all()
    assert all(t.device == "cuda:0" for t in tel) and any(t.energy_mj for t in tel)
    assert units["energy_per_inference_j"] == "J" and units["avg_power_w"] == "W"
    assert runs[-1].config["engine_notes"][0].startswith("int8-qdq on CUDAExecutionProvider")
    assert acc  # int8-qdq compared with fp32
