"""profiles.ort_profile: per-node timings from ONNX Runtime profiler traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from profiles.errors import ParseError
from profiles.ort_profile import load_ort_trace, parse_ort_trace


def _run(ts: float, dur: float) -> dict:
    return {"cat": "Session", "ph": "X", "name": "model_run", "ts": ts, "dur": dur, "args": {}}


def _node(name: str, op: str, ts: float, dur: float, shape=(1, 8)) -> dict:
    return {"cat": "Node", "ph": "X", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
            "args": {"op_name": op, "provider": "CPUExecutionProvider",
                     "input_type_shape": [{"float": list(shape)}, {"float": [8]}],
                     "output_type_shape": [{"float16": list(shape)}]}}


def _trace() -> list[dict]:
    # 3 runs; run 0 is warm-up (slow); in run 2 "conv" is launched twice (e.g. inside a Loop)
    ev = [{"cat": "Session", "ph": "X", "name": "session_initialization", "ts": 0, "dur": 50, "args": {}}]
    ev += [_run(100, 100), _node("conv", "Conv", 101, 80), _node("relu", "Relu", 182, 10)]
    ev += [_run(300, 50), _node("conv", "Conv", 301, 20), _node("relu", "Relu", 322, 4),
           {"cat": "Node", "ph": "X", "name": "conv_fence_before", "ts": 300.5, "dur": 1, "args": {}}]
    ev += [_run(400, 60), _node("conv", "Conv", 401, 10), _node("conv", "Conv", 412, 20), _node("relu", "Relu", 433, 6)]
    return ev


def test_per_node_stats_skip_warmup_run() -> None:
    prof = parse_ort_trace(_trace(), skip_runs=1)
    assert prof.inferences == 2 and prof.skipped_runs == 1
    assert prof.run_ms == pytest.approx([0.05, 0.06])
    conv, relu = prof.nodes
    assert (conv.name, conv.op_type, conv.provider) == ("conv", "Conv", "CPUExecutionProvider")
    assert conv.count == 3
    assert conv.total_ms == pytest.approx(0.050)   # 20 + 10 + 20 us
    assert conv.avg_ms == pytest.approx(0.025)     # per inference
    assert conv.median_ms == pytest.approx(0.025)  # median of [20, 30] us
    assert relu.total_ms == pytest.approx(0.010)
    assert conv.percentage + relu.percentage == pytest.approx(100.0)
    assert conv.percentage == pytest.approx(100 * 50 / 60)
    assert conv.input_shapes == [[1, 8], [8]] and conv.output_dtypes == ["float16"]
    assert [n.idx for n in prof.nodes] == [0, 1]


def test_no_skip_counts_warmup() -> None:
    prof = parse_ort_trace(_trace())
    assert prof.inferences == 3
    assert prof.nodes[0].total_ms == pytest.approx(0.130)


def test_trace_without_model_run_counts_each_kernel() -> None:
    prof = parse_ort_trace([_node("a", "Add", 0, 5), _node("a", "Add", 10, 7)])
    assert prof.inferences == 2
    assert prof.nodes[0].avg_ms == pytest.approx(0.006)


def test_bad_traces_raise_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="list of trace events"):
        parse_ort_trace("nope")  # type: ignore[arg-type]
    with pytest.raises(ParseError, match="relu"):
        parse_ort_trace([{"cat": "Node", "name": "relu_kernel_time", "ts": "x"}])
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(ParseError, match="p.json"):
        load_ort_trace(bad)
    with pytest.raises(ParseError, match="not found"):
        load_ort_trace(tmp_path / "missing.json")


def test_real_onnxruntime_trace(tmp_path: Path) -> None:
    """A trace onnxruntime writes itself for a two-node graph (MatMul -> Relu)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"], name="mm"), helper.make_node("Relu", ["Y"], ["Z"], name="act")],
        "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["N", 16])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "prof")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.ones((4, 16), np.float32)
    for _ in range(4):
        sess.run(None, {"X": x})
    trace = sess.end_profiling()
    prof = load_ort_trace(trace, skip_runs=1)
    assert prof.inferences == 3
    names = {n.name: n for n in prof.nodes}
    assert set(names) == {"mm", "act"}
    assert names["mm"].op_type == "MatMul" and names["act"].op_type == "Relu"
    assert names["mm"].count == 3 and names["mm"].total_ms > 0
    assert names["mm"].input_shapes[0] == [4, 16]
    json.loads(Path(trace).read_text())  # the file is what we parsed


def test_provider_placement_counts_nodes_and_names_fallbacks() -> None:
    from profiles.ort_profile import provider_placement

    def node(name: str, op: str, ts: float, provider: str) -> dict:
        ev = _node(name, op, ts, 5)
        ev["args"]["provider"] = provider
        return ev

    cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"
    ev = [_run(0, 100), node("conv", "Conv", 1, cuda), node("shape", "Shape", 10, cpu),
          node("Memcpy_token_1", "MemcpyToHost", 20, cuda), node("nms", "NonMaxSuppression", 30, cpu),
          _run(200, 100), node("conv", "Conv", 201, cuda), node("shape", "Shape", 210, cpu),
          node("Memcpy_token_1", "MemcpyToHost", 220, cuda), node("nms", "NonMaxSuppression", 230, cpu)]
    pl = provider_placement(parse_ort_trace(ev), cuda)
    assert pl.counts == {cuda: 2, cpu: 2}
    assert pl.fallback_nodes == [("shape", "Shape", cpu), ("nms", "NonMaxSuppression", cpu)]
    assert pl.copy_nodes == ["Memcpy_token_1"]
    w = pl.warning()
    assert w.startswith("2 of 4 node(s) did not run on CUDAExecutionProvider: shape (Shape on CPUExecutionProvider)")
    assert "1 host-device copy node(s)" in w
    assert pl.as_dict()["nodes_per_provider"] == {cuda: 2, cpu: 2}
    all_cuda = provider_placement(parse_ort_trace([_run(0, 10), node("conv", "Conv", 1, cuda)]), cuda)
    assert all_cuda.warning() is None and all_cuda.fallback_nodes == []
