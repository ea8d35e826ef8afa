"""Small ONNX graphs built with onnx.helper for the ONNX Runtime bench tests (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def build_cnn(path: Path) -> Path:
    """Conv(3->8) -> Relu -> Reshape -> MatMul(512->10), input x float32 [N, 3, 8, 8], output y [N, 10]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((0.3 * rng.standard_normal((8, 3, 3, 3))).astype(np.float32), "w1"),
             numpy_helper.from_array((0.1 * rng.standard_normal((512, 10))).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "shp")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("Reshape", ["r", "shp"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "w2"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def build_single_op(path: Path, op: str, **attrs: Any) -> Path:
    """x float32 [N, 4] -> Mul(0.5) -> op -> y."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    nodes = [helper.make_node("Mul", ["x", "half"], ["h"], name="scale"), helper.make_node(op, ["h"], ["y"], name="op", **attrs)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def build_sqrt(path: Path) -> Path:
    """y = Sqrt(x): NaN wherever the (N(0,1)) input is negative, in every precision."""
    return build_single_op(path, "Sqrt")
