"""Small real ONNX graphs built with onnx.helper for the intake/inspection tests (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_model(seed: int = 0, *, in_features: int = 4, out_features: int = 3, custom_domain: bool = False) -> onnx.ModelProto:
    """Y[N, out] = X[N, in] @ W + B (float32, symbolic batch dim "N"); optionally one extra
    com.microsoft Gelu node so the non-default domain is flagged."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((in_features, out_features)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(out_features).astype(np.float32), "B")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["XW"], name="mm"), helper.make_node("Add", ["XW", "B"], ["Y0"], name="add")]
    opsets = [helper.make_opsetid("", 17)]
    if custom_domain:
        nodes.append(helper.make_node("Gelu", ["Y0"], ["Y"], name="gelu", domain="com.microsoft"))
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    else:
        nodes.append(helper.make_node("Relu", ["Y0"], ["Y"], name="relu"))
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", in_features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", out_features])],
        initializer=[w, b],
    )
    m = helper.make_model(graph, opset_imports=opsets, producer_name="enginescope-tests", producer_version="1")
    m.ir_version = 8
    return m


def save_plain(model: onnx.ModelProto, path: Path) -> Path:
    """Save a self-contained .onnx."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def save_external(model: onnx.ModelProto, path: Path, location: str = "weights.bin") -> Path:
    """Save with every initializer in the external file ``location`` beside ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=location, size_threshold=0)
    return path


def save_with_raw_location(model: onnx.ModelProto, path: Path, location: str) -> Path:
    """Save ``model`` with initializer "W" pointing at an arbitrary (possibly unsafe) ``location``
    (``..``, absolute), bypassing onnx's writer, which would refuse it."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.name == "W":
            nbytes = len(t.raw_data) or int(np.prod(t.dims)) * 4
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.data_location = TensorProto.EXTERNAL
            del t.external_data[:]
            for k, v in (("location", location), ("offset", "0"), ("length", str(nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(m.SerializeToString())
    return path
