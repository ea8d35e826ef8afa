"""Failure diagnosis on the real failed-build excerpts in shared/fixtures/trtexec/issue_excerpts."""

from __future__ import annotations

from profiles.trtexec import diagnose
from profiles.trtexec.diagnose import ORT_SUGGESTION


def _d(shared, rel):
    return diagnose((shared / rel).read_text())


def test_unsupported_op_headline_is_the_real_error(shared):
    d = _d(shared, "fixtures/trtexec/issue_excerpts/onnx-tensorrt_800_trt8.0.3_unsupported_op_FAILED.log")
    assert d.failed and d.trt_version == "8.0.3"
    assert "importFallbackPluginImporter" in d.headline and "Plugin not found" in d.headline
    assert "Failed to parse onnx file" not in d.headline and d.headline.endswith("[TensorRT 8.0.3]")
    assert d.suggestion == ORT_SUGGESTION
    assert any("Engine creation failed" in e.text for e in d.errors)  # still listed, just not the headline


def test_myelin_build_error(shared):
    d = _d(shared, "fixtures/trtexec/issue_excerpts/TensorRT_2486_trt8.2_dynamic_shapes_build_error.log")
    assert d.failed
    assert "Error Code 2" in d.headline and "/encoder/embed/Slice" in d.headline
    assert "enginePtr" not in d.headline


def test_shape_outside_profile(shared):
    d = _d(shared, "fixtures/trtexec/issue_excerpts/TensorRT_2739_runtime_shape_outside_profile.log")
    assert d.shape_error == {"binding": 0, "dim": 0, "supplied": 10, "min": 1, "max": 1, "shape": [10, 3, 128, 64]}
    assert "dim 0 = 10" in d.headline and "1..1" in d.headline
    assert len(d.errors) == 1 and d.errors[0].count == 2  # 10 and 9: same message up to numbers


def test_polygraphy_capability_names_node(shared):
    d = _d(shared, "fixtures/polygraphy/hackathon_polygraphy_inspect_capability_unsupported_ops.log")
    assert d.operator == "UnknownNode1" and d.node_name == "UnknownModel-N-1-UnknownNode1" and d.node_index == 1
    assert "operator UnknownNode1" in d.headline and "node index 1" in d.headline


def test_passed_logs_have_no_headline(shared):
    for name in ("hackathon_trt8.6.0_loadengine_shapes_verbose.log", "hackathon_trt10.16_build_dynamic_fp16_verbose.log"):
        d = _d(shared, f"fixtures/trtexec/logs/{name}")
        assert not d.failed and d.headline is None


def test_repeated_warnings_collapsed(shared):
    d = _d(shared, "fixtures/trtexec/logs/hackathon_trt10.16_build_dynamic_fp16_verbose.log")
    tactic = [w for w in d.warnings if w.text.startswith("UNSUPPORTED_STATE: Skipping tactic 0")]
    assert len(tactic) == 1 and tactic[0].count == 4  # 2688 x2, 206080, 103552 in the file


def test_int64_cast_down_warning_counted():
    line = ("[03/01/2024-10:00:00] [W] [TRT] onnx2trt_utils.cpp:374: Your ONNX model has been generated with INT64 weights, "
            "while TensorRT does not natively support INT64. Attempting to cast down to INT32.\n")
    d = diagnose(line * 57 + "&&&& PASSED TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=m.onnx\n")
    assert not d.failed and d.trt_version == "8.6.1"
    assert len(d.warnings) == 1 and d.warnings[0].count == 57
