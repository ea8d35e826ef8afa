"""TensorRT pre-flight on real models (shared) and on graphs built here."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from profiles.errors import ModelError
from profiles.trt_preflight import tensorrt_preflight


def test_gpt2_contrib_ops(shared):
    r = tensorrt_preflight(shared / "models/onnx/tiny-random-gpt2_fp32_past_com.microsoft.onnx")
    assert not r["ok"]
    errs = {(i["domain"], i["op_type"]): i for i in r["issues"] if i["severity"] == "error"}
    assert ("com.microsoft", "Attention") in errs and ("com.microsoft", "SkipLayerNormalization") in errs
    assert errs[("com.microsoft", "Attention")]["count"] == 5
    assert "plugin" in errs[("com.microsoft", "Attention")]["reason"]
    assert "8.5" in r["checked_against"]


def test_onnx_ml_ops(shared):
    r = tensorrt_preflight(shared / "models/onnx/logreg_iris_ai.onnx.ml.onnx")
    assert not r["ok"]
    assert {i["op_type"] for i in r["issues"]} == {"LinearClassifier", "Normalizer", "ZipMap"}
    assert all(i["domain"] == "ai.onnx.ml" for i in r["issues"])


def test_plain_cnn_ok(shared):
    r = tensorrt_preflight(shared / "models/onnx/mnist-8_model_zoo.onnx")
    assert r["ok"] and r["issues"] == []


def _model(nodes, opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_default_domain_op_is_warning():
    m = _model([helper.make_node("Hardmax", ["x"], ["y"], name="hm")])
    r = tensorrt_preflight(m)
    assert r["ok"] and r["issues"][0]["op_type"] == "Hardmax" and r["issues"][0]["severity"] == "warning"
    assert r["issues"][0]["nodes"] == ["hm"]


def test_subgraph_nodes_checked():
    then_g = helper.make_graph([helper.make_node("Unique", ["x"], ["t"], name="inner_unique")], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [None])])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="inner_id")], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [None])])
    cond = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("cv", TensorProto.BOOL, [], [True]))
    iff = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)
    r = tensorrt_preflight(_model([cond, iff]))
    assert r["issues"][0]["op_type"] == "Unique" and r["issues"][0]["nodes"] == ["branch/then_branch/inner_unique"]


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    with pytest.raises(ModelError, match="bad.onnx"):
        tensorrt_preflight(bad)
