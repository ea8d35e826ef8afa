"""The ONNX Runtime engine's CUDA code paths that run on a CPU machine: the provider checks (a missing
CUDAExecutionProvider, a session that fell back to the CPU), io_binding (:class:`BoundIO` on the CPU
provider, the same code the CUDA path uses), the full measure loop through io_binding with its window
marks, the --cuda-graph refusals and device parsing. Real onnxruntime on graphs built here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engine_runner.engines import onnxruntime as ortx
from engine_runner.engines.base import MeasureHooks
from onnx_builders import linear_model, save_plain
from profiles.errors import EngineError, EngineUnavailableError, InputError
from profiles.specs import BenchSpec

ort = pytest.importorskip("onnxruntime")
CPU_ONLY = "CUDAExecutionProvider" not in ort.get_available_providers()


def _model(tmp_path: Path) -> Path:
    return save_plain(linear_model(0, in_features=8, out_features=5), tmp_path / "linear.onnx")


def _inputs(batch: int = 4) -> dict[str, np.ndarray]:
    return {"X": np.random.default_rng(1).standard_normal((batch, 8)).astype(np.float32)}


def _hooks(marks: list[tuple[int, int]] | None = None) -> MeasureHooks:
    h = MeasureHooks(check_cancelled=lambda: None, progress=lambda m, f: None, stage=lambda m: None)
    if marks is not None:
        h.mark_window = lambda a, b: marks.append((a, b))
    return h


FAST = {"iterations": 30, "min_duration_s": 0, "warmup_iterations": 3, "warmup_s": 0}


# ------------------------------------------------------------------------------------------ providers


@pytest.mark.skipif(not CPU_ONLY, reason="this onnxruntime has CUDAExecutionProvider (checks the CPU-only build)")
def test_cuda_device_on_a_cpu_build_names_the_provider_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError) as err:
        ortx.check_provider(ort, "CUDAExecutionProvider")
    msg = str(err.value)
    assert "CUDAExecutionProvider is not available" in msg and "pip install onnxruntime-gpu" in msg
    assert "does not fall back to the CPU" in msg and "CPUExecutionProvider" in msg  # lists what there is
    spec = BenchSpec(model_id=1, device="cuda:0")
    with pytest.raises(EngineUnavailableError, match="CUDAExecutionProvider"):
        ortx.Engine().prepare(_model(tmp_path), "fp32", {1: {"X": [1, 8]}}, spec, tmp_path)
    with pytest.raises(EngineUnavailableError, match=r"^--device cuda:0: CUDAExecutionProvider .*onnxruntime-gpu"):
        ortx.Engine().check_device("cuda:0")  # names the flag first
    ortx.Engine().check_device("cpu")  # the CPU provider is always there


def test_a_session_that_fell_back_to_the_cpu_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime, asked for CUDA it cannot load, warns and builds a CPU session. Simulate 'listed but not
    loadable' by skipping the availability check: the session check must still refuse it."""
    monkeypatch.setattr(ortx, "check_provider", lambda o, p: None)
    monkeypatch.setattr(ortx, "preload_cuda_libraries", lambda o: "skipped in test")
    target = ortx.target_for("cuda:0")
    so, _ = ortx._session_options(None, target=target)
    if not CPU_ONLY:
        pytest.skip("this onnxruntime has a CUDA provider: the fallback cannot be provoked here")
    with pytest.warns(UserWarning):  # onnxruntime's own "Specified provider ... is not in available provider names"
        with pytest.raises(EngineError) as err:
            ortx._new_session(_model(tmp_path), so, "the fp32 variant", target)
    msg = str(err.value)
    assert "['CPUExecutionProvider'] instead of CUDAExecutionProvider" in msg and "does not time a CPU fallback" in msg


def test_check_session_provider_order() -> None:
    class S:
        def __init__(self, provs: list[str]) -> None:
            self.provs = provs

        def get_providers(self) -> list[str]:
            return self.provs

    ortx.check_session_provider(S(["CUDAExecutionProvider", "CPUExecutionProvider"]), "CUDAExecutionProvider", "x")
    with pytest.raises(EngineError, match="on \\[\\] instead of CUDAExecutionProvider"):
        ortx.check_session_provider(S([]), "CUDAExecutionProvider", "x")
    with pytest.raises(EngineError, match="instead of CPUExecutionProvider"):
        ortx.check_session_provider(S(["CUDAExecutionProvider"]), "CPUExecutionProvider", "x")


def test_targets_and_provider_options() -> None:
    t = ortx.target_for("cuda:1", cuda_graph=True)
    assert (t.device, t.provider, t.device_type, t.device_id) == ("cuda:1", "CUDAExecutionProvider", "cuda", 1)
    assert t.providers() == [("CUDAExecutionProvider", {"device_id": "1", "enable_cuda_graph": "1"}),
                             "CPUExecutionProvider"]
    assert t.without_graph().providers()[0] == ("CUDAExecutionProvider", {"device_id": "1"})
    assert ortx.target_for("CUDA").device == "cuda:0" and ortx.target_for("cpu").providers() == ["CPUExecutionProvider"]
    with pytest.raises(InputError, match="--cuda-graph"):
        ortx.target_for("cpu", cuda_graph=True)
    with pytest.raises(InputError, match="--device"):
        ortx.target_for("gpu:0")
    assert "GPU work + launch, I/O resident on device, no host copies" in ortx.timing_window(t, True)
    assert "replays this batch size's CUDA graph" in ortx.timing_window(t, True)
    assert "no CUDA graph" in ortx.timing_window(t.without_graph(), True)


# ------------------------------------------------------------------------------------------ io_binding


def test_bound_io_on_the_cpu_provider_matches_session_run(tmp_path: Path) -> None:
    path = _model(tmp_path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _inputs(6)
    bound = ortx.BoundIO(sess, x, ortx.target_for("cpu"), "the fp32 variant")
    assert bound.shapes() == {"Y": [6, 5]}
    first = bound.outputs()["Y"]
    np.testing.assert_allclose(first, sess.run(None, x)[0], rtol=1e-6)
    # later runs write into the same pre-bound output buffer
    ptr = bound.output_values[0].data_ptr()
    bound.run()
    bound.call()()
    assert bound.binding.get_outputs()[0].data_ptr() == ptr
    np.testing.assert_allclose(bound.outputs()["Y"], first, rtol=1e-6)


def test_bound_io_refuses_non_tensor_outputs(tmp_path: Path) -> None:
    node = helper.make_node("SequenceConstruct", ["X"], ["S"], name="seq")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_sequence_value_info("S", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "seq.onnx"
    onnx.save(m, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(EngineError, match=r"output\(s\) \['S'\] are not tensors.*binds tensors only"):
        ortx.BoundIO(sess, {"X": np.ones(2, np.float32)}, ortx.target_for("cpu"), "the fp32 variant")


def test_measure_through_io_binding_on_the_cpu(tmp_path: Path) -> None:
    """The CUDA measure path (BoundIO, run_with_iobinding, window marks, placement from the profiler) on the
    CPU provider: ``Engine(io_binding=True)``."""
    path = _model(tmp_path)
    spec = BenchSpec(model_id=1, **FAST)
    eng = ortx.Engine(io_binding=True)
    prepared = eng.prepare(path, "fp32", {4: {"X": [4, 8]}}, spec, tmp_path)
    assert prepared.config["io_binding"] is True and prepared.config["providers"] == ["CPUExecutionProvider"]
    marks: list[tuple[int, int]] = []
    x = _inputs(4)
    m = eng.measure(prepared, x, spec, _hooks(marks), tmp_path / "w")
    assert m.samples_ns.size >= 30 and np.all(m.samples_ns > 0)
    assert "run_with_iobinding" in m.timing_window and "pre-bound host OrtValues" in m.timing_window
    np.testing.assert_allclose(m.outputs["Y"], eng.infer(prepared, x)["Y"], rtol=1e-6)
    (start, end), = marks
    assert end - start >= int(m.samples_ns.sum())  # the window holds every timed call
    assert m.config["output_shapes"] == {"Y": [4, 5]}
    assert m.config["placement"]["nodes_per_provider"] == {"CPUExecutionProvider": len(m.layers)}
    assert m.layers and all(r.details["time_basis"].startswith("host: the node's execution on the CPU") for r in m.layers)
    assert "engine_warnings" not in m.config
    eng.release(prepared)


def test_measure_without_binding_marks_the_window_too(tmp_path: Path) -> None:
    spec = BenchSpec(model_id=1, profile_layers=False, **FAST)
    eng = ortx.Engine()
    prepared = eng.prepare(_model(tmp_path), "fp32", {4: {"X": [4, 8]}}, spec, tmp_path)
    marks: list[tuple[int, int]] = []
    m = eng.measure(prepared, _inputs(4), spec, _hooks(marks), tmp_path / "w")
    assert m.timing_window == ortx.TIMING_WINDOW and len(marks) == 1 and m.layers == []
    assert "placement" not in m.config  # CPU with --no-layers: no profiled run at all


# ------------------------------------------------------------------------------------------ --cuda-graph


def _with_node(tmp_path: Path, op: str, in_loop: bool = False) -> Path:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("Y", TensorProto.INT64, None)
    if not in_loop:
        g = helper.make_graph([helper.make_node(op, ["X"], ["Y"], name="where_nonzero")], "g", [x], [y])
    else:
        body = helper.make_graph(
            [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="id"),
             helper.make_node("NonZero", ["X"], ["nz"], name="inner_nonzero")], "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("nz", TensorProto.INT64, None)])
        g = helper.make_graph([helper.make_node("Loop", ["", ""], ["Y"], name="loop", body=body)], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{op}_{in_loop}.onnx"
    onnx.save(m, path)
    return path


def test_cuda_graph_refuses_data_dependent_shapes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--cuda-graph: node 'where_nonzero' \(NonZero\).*fixed shapes"):
        ortx.check_cuda_graph_model(_with_node(tmp_path, "NonZero"))
    with pytest.raises(InputError, match=r"node 'loop' \(Loop\)"):
        ortx.check_cuda_graph_model(_with_node(tmp_path, "NonZero", in_loop=True))
    ortx.check_cuda_graph_model(_model(tmp_path))  # a plain MatMul/Add/Relu graph is fine
    spec = BenchSpec(model_id=1, device="cuda:0", cuda_graph=True)
    with pytest.raises(InputError, match="NonZero"):  # refused before any session is made
        ortx.Engine().prepare(_with_node(tmp_path, "NonZero"), "fp32", {1: {"X": [4]}}, spec, tmp_path)


def test_graph_check_compares_replay_with_plain_run() -> None:
    a = {"Y": np.arange(10, dtype=np.float32)}
    assert ortx._graph_matches_plain(a, {"Y": a["Y"] + 1e-6})["match"] is True
    assert ortx._graph_matches_plain({"Y": np.zeros(10, np.float32)}, a)["match"] is False


def test_bound_io_preallocated_outputs_need_no_run(tmp_path: Path) -> None:
    """The CUDA-graph path: output buffers pre-allocated from a plain run's shapes/dtypes, no discovery run."""
    path = _model(tmp_path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _inputs(3)
    like = {"Y": sess.run(None, x)[0]}
    bound = ortx.BoundIO(sess, x, ortx.target_for("cpu"), "v", outputs_like=like)
    assert bound.shapes() == {"Y": [3, 5]}
    bound.run()
    np.testing.assert_allclose(bound.outputs()["Y"], like["Y"], rtol=1e-6)
    with pytest.raises(EngineError, match=r"no shape/dtype for output\(s\) \['Y'\]"):
        ortx.BoundIO(sess, x, ortx.target_for("cpu"), "v", outputs_like={})


def test_cuda_graph_session_refused_for_nodes_off_the_provider_says_why(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime refuses graph capture when any node is not on the CUDA provider (BERT's shape subgraph of
    symbolic dims, seen on the H200): the error keeps ORT's message and adds the cause and the two ways out."""
    import dataclasses

    spec = BenchSpec(model_id=1, profile_layers=False, **FAST)
    eng = ortx.Engine(io_binding=True)
    prepared = eng.prepare(_model(tmp_path), "fp32", {4: {"X": [4, 8]}}, spec, tmp_path)
    prepared.handle.target = dataclasses.replace(prepared.handle.target, cuda_graph=True)
    ort_msg = ("[ONNXRuntimeError] : 1 : FAIL : This session cannot use the graph capture feature as requested by "
               "the user  as all compute graph nodes have not been partitioned to the CUDAExecutionProvider")

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise EngineError(f"onnxruntime could not load the fp32 variant (CUDA graph session): Fail: {ort_msg}")

    monkeypatch.setattr(ortx, "_new_session", refuse)
    with pytest.raises(EngineError) as err:
        eng.measure(prepared, _inputs(4), spec, _hooks(), tmp_path / "w")
    msg = str(err.value)
    assert ort_msg in msg and "--cuda-graph" in msg and "every node" in msg and "without --cuda-graph" in msg

    def other(*_a: Any, **_k: Any) -> Any:
        raise EngineError("onnxruntime could not load the fp32 variant: out of memory")

    monkeypatch.setattr(ortx, "_new_session", other)
    with pytest.raises(EngineError) as err:
        eng.measure(prepared, _inputs(4), spec, _hooks(), tmp_path / "w")
    assert str(err.value) == "onnxruntime could not load the fp32 variant: out of memory"  # passed through as is
    eng.release(prepared)
