"""trtexec command construction per TensorRT version (8.0, 8.6, 10, 11), profiles and cache keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_runner.trt_build import (
    check_shapes_in_profile,
    default_profile,
    engine_cache_key,
    flag_supported,
    precision_plan,
    shape_arg,
    timing_cache_path,
    trtexec_commands,
)
from profiles.errors import InputError
from profiles.trt_spec import MIB, ShapeRange, TensorRTOptions, detect_tensorrt, parse_tensorrt_options
from profiles.trtexec import TrtVersion

PROF = {"x": ShapeRange(min=[1, 3, 8, 8], opt=[4, 3, 8, 8], max=[16, 3, 8, 8])}


def _cmds(version: str, precision: str = "fp16", **opts):
    o = TensorRTOptions(workspace_bytes=2048 * MIB, infer_streams=2, **opts)
    return trtexec_commands("trtexec", TrtVersion.parse(version), Path("m.onnx"), Path("m.plan"), precision, o,
                            profile=PROF, run_shapes={"x": [4, 3, 8, 8]}, timing_cache=Path("tc.cache"), export_prefix=Path("o/r"))


def _flags(argv):
    return {a[2:].split("=")[0] for a in argv if a.startswith("--")}


def test_trt80_uses_old_flags():
    c = _cmds("8.0.3")
    b = _flags(c.build)
    assert {"workspace", "buildOnly", "nvtxMode", "fp16"} <= b
    assert not b & {"memPoolSize", "skipInference", "builderOptimizationLevel", "profilingVerbosity"}
    assert "--workspace=2048" in c.build
    assert "--streams=2" in c.run and "--percentile=99" in c.run
    assert "exportLayerInfo" not in _flags(c.profile)


def test_trt86_renamed_flags():
    c = _cmds("8.6.1")
    b = _flags(c.build)
    assert {"memPoolSize", "skipInference", "builderOptimizationLevel", "profilingVerbosity", "fp16"} <= b
    assert not b & {"workspace", "buildOnly", "explicitBatch", "nvtxMode"}
    assert "--memPoolSize=workspace:2048" in c.build and "--infStreams=2" in c.run
    assert "--percentile=90,95,99" in c.run


def test_trt10_removed_flags_never_passed():
    c = _cmds("10.16.1", precision="int8-qdq")
    allf = _flags(c.build) | _flags(c.run) | _flags(c.profile)
    assert not allf & {"workspace", "buildOnly", "explicitBatch", "streams", "nvtxMode", "minTiming"}
    assert "--int8" in c.build
    assert {"dumpProfile", "separateProfileRun", "exportProfile", "exportLayerInfo"} <= _flags(c.profile)
    assert "--minShapes=x:1x3x8x8" in c.build and "--maxShapes=x:16x3x8x8" in c.build
    assert "--shapes=x:4x3x8x8" in c.run and "--exportTimes=o/r.times.json" in c.run
    assert "--timingCacheFile=tc.cache" in c.build


def test_trt11_no_precision_flags():
    for prec in ("fp16", "bf16", "int8-qdq", "fp8"):
        c = _cmds("11.0.0", precision=prec)
        assert not _flags(c.build) & {"fp16", "bf16", "int8", "fp8", "best", "stronglyTyped", "calib"}
    assert precision_plan("fp16", TrtVersion(11, 0)) == {"onnx_variant": "fp16", "flags": [], "strongly_typed": True}
    assert precision_plan("int8-qdq", TrtVersion(10, 3))["onnx_variant"] == "int8-qdq"
    with pytest.raises(InputError, match="best"):
        precision_plan("best", TrtVersion(11, 0))
    with pytest.raises(InputError, match="--bf16"):
        precision_plan("bf16", TrtVersion(8, 6))


def test_flag_table():
    assert flag_supported("explicitBatch", TrtVersion(7, 2)) and not flag_supported("explicitBatch", TrtVersion(10, 0))
    assert flag_supported("fp16", TrtVersion(10, 16)) and not flag_supported("fp16", TrtVersion(11, 0))


def test_names_with_colons_are_quoted():
    assert shape_arg({"input:0": [1, 3], "y": [2]}) == "'input:0':1x3,y:2"


def test_default_profile_and_out_of_range():
    inputs = [{"name": "x", "shape": ["N", 3, "H", 8]}, {"name": "s", "shape": [1, 2]}]
    prof = default_profile(inputs, batch_size=4, dim_values={"H": 16})
    assert set(prof) == {"x"}
    assert (prof["x"].min, prof["x"].opt, prof["x"].max) == ([1, 3, 16, 8], [4, 3, 16, 8], [4, 3, 16, 8])
    check_shapes_in_profile({"x": [2, 3, 16, 8]}, prof)
    with pytest.raises(InputError, match=r"input 'x' dim 0 = 8 is outside the optimization profile range 1\.\.4"):
        check_shapes_in_profile({"x": [8, 3, 16, 8]}, prof)


def test_cache_key_changes_with_inputs(tmp_path):
    o = TensorRTOptions()
    k = engine_cache_key("abc", "fp16", o, "NVIDIA H200", TrtVersion(10, 3))
    assert k == engine_cache_key("abc", "fp16", o, "NVIDIA H200", TrtVersion(10, 3))
    assert k != engine_cache_key("abc", "fp16", o, "NVIDIA H200", TrtVersion(10, 4))
    assert k != engine_cache_key("abc", "fp16", TensorRTOptions(builder_optimization_level=5), "NVIDIA H200", TrtVersion(10, 3))
    assert k == engine_cache_key("abc", "fp16", TensorRTOptions(use_cuda_graph=True), "NVIDIA H200", TrtVersion(10, 3))
    p = timing_cache_path(tmp_path, "NVIDIA H200 NVL", TrtVersion(10, 3))
    assert p.parent == tmp_path / "artifacts" / "trt_timing_cache" and p.name == "NVIDIA_H200_NVL__trt10.3.0.cache"


def test_options_validation_names_field():
    with pytest.raises(InputError, match="builder_optimization_level"):
        parse_tensorrt_options({"builder_optimization_level": 7})
    with pytest.raises(InputError, match="profiles.x"):
        parse_tensorrt_options({"profiles": {"x": {"min": [4], "opt": [2], "max": [8]}}})


def test_detect_routes(tmp_path):
    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert detect_tensorrt({"ENGINESCOPE_TRTEXEC": str(exe)}).route == "trtexec"
    assert detect_tensorrt({"PATH": str(tmp_path)}).trtexec_path == str(exe)
    none = detect_tensorrt({"PATH": str(tmp_path / "empty")})
    assert none.route is None and "pip install tensorrt" in none.install_hint  # tensorrt-stubs alone is no route
    with pytest.raises(InputError, match="ENGINESCOPE_TRTEXEC"):
        detect_tensorrt({"ENGINESCOPE_TRTEXEC": str(tmp_path / "missing")})


def test_precision_table_is_the_catalogues():
    """trt_build's precision table and profiles.catalog agree (one vocabulary), and int8-dynamic is refused."""
    from engine_runner.engines.tensorrt import Engine
    from engine_runner.trt_build import PRECISION_FLAGS, precision_plan
    from profiles import catalog

    assert list(PRECISION_FLAGS) == catalog.precisions("tensorrt")
    with pytest.raises(InputError, match=r"^--precision: 'int8-dynamic' is not a TensorRT precision"):
        precision_plan("int8-dynamic", TrtVersion(10, 0))
    with pytest.raises(InputError, match=r"^--precision: 'int8-dynamic' is not a precision of tensorrt"):
        Engine().onnx_variant_for("int8-dynamic")
    assert Engine().onnx_variant_for("int8-qdq") == "int8-qdq"
