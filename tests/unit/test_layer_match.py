"""Unit tests of profiles.layer_match (pure), plus real trtexec layer exports from ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiles.layer_match import (
    LayerRecord,
    canonical_op,
    compare_runs,
    fused_components,
    match_layers,
    shapes_from_details,
)


def L(name: str, op: str | None, ms: float, ins=(), outs=()) -> LayerRecord:  # noqa: N802
    return LayerRecord(name=name, op_type=op, time_ms=ms, input_shapes=tuple(map(tuple, ins)),
                       output_shapes=tuple(map(tuple, outs)))


def test_fused_components() -> None:
    assert fused_components("Conv_0 + Relu_1") == {"Conv_0", "Relu_1"}
    assert fused_components("PWN(PWN(Sigmoid_2), Mul_3)") == {"Sigmoid_2", "Mul_3"}
    assert fused_components("/layer1/conv/Conv") == {"/layer1/conv/Conv"}
    assert fused_components("Reformatting CopyNode for Input Tensor 0 to Conv_0 + Relu_1") == frozenset()
    assert fused_components("{ForeignNode[/a/MatMul.../b/Add]}") == frozenset()


def test_canonical_op_meets_onnx_and_tensorrt_names() -> None:
    assert canonical_op("Conv") == canonical_op("CaskConvolution") == canonical_op("Convolution") == "conv"
    assert canonical_op("MaxPool") == canonical_op("TiledPooling")
    assert canonical_op("SomethingNew") == "somethingnew"
    assert canonical_op(None) is None


def test_match_by_name_then_fused_then_op_shape() -> None:
    ref = [L("Conv_0", "Conv", 2.0, [[1, 3, 8, 8]], [[1, 8, 8, 8]]), L("Relu_1", "Relu", 1.0),
           L("pool", "MaxPool", 0.5, [[1, 8, 8, 8]], [[1, 8, 4, 4]]), L("fc", "Gemm", 0.4), L("extra", "Softmax", 0.1)]
    other = [L("Conv_0 + Relu_1", "CaskConvolution", 1.0), L("TRT_pool", "TiledPooling", 0.25, [[1, 8, 8, 8]], [[1, 8, 4, 4]]),
             L("fc", "CaskGemmMatrixMultiply", 0.1), L("Reformatting CopyNode for Output Tensor 0 to fc", "Reformat", 0.05)]
    ms = match_layers(ref, other)
    by = {m.method: m for m in ms}
    assert by["name"].ref_names == ("fc",) and by["name"].speedup == pytest.approx(4.0)
    assert by["fused"].ref_names == ("Conv_0", "Relu_1") and by["fused"].other_names == ("Conv_0 + Relu_1",)
    assert by["fused"].ref_ms == pytest.approx(3.0) and by["fused"].speedup == pytest.approx(3.0)
    assert by["op_shape"].ref_names == ("pool",) and by["op_shape"].other_names == ("TRT_pool",)
    assert by["op_shape"].speedup == pytest.approx(2.0)
    assert by["only_ref"].ref_names == ("extra",) and by["only_ref"].speedup is None
    assert by["only_other"].other_names[0].startswith("Reformatting")
    # every layer is used exactly once
    assert sorted(n for m in ms for n in m.ref_names) == sorted(layer.name for layer in ref)
    assert sorted(n for m in ms for n in m.other_names) == sorted(layer.name for layer in other)


def test_op_shape_requires_equal_shapes_and_orders_occurrences() -> None:
    ref = [L("a", "Conv", 1.0, [[1, 3, 8, 8]]), L("b", "Conv", 2.0, [[1, 8, 8, 8]]), L("c", "Conv", 3.0, [[1, 8, 8, 8]])]
    other = [L("x", "Convolution", 0.5, [[1, 8, 8, 8]]), L("y", "Convolution", 1.5, [[1, 8, 8, 8]]),
             L("z", "Convolution", 9.0, [[1, 3, 16, 16]]), L("w", "Convolution", 9.0, [[1, 3, 32, 32]])]
    ms = {m.ref_names: m for m in match_layers(ref, other) if m.ref_names}
    assert ms[("b",)].other_names == ("x",) and ms[("c",)].other_names == ("y",)
    # shapes differ from z and w, and 1 leftover conv vs 2: no match
    assert ms[("a",)].method == "only_ref"


def test_op_order_pairs_equal_leftover_counts_like_onnxruntime_int8() -> None:
    """fp32 ORT fuses Conv+Relu into NCHWc Convs; int8-dynamic renames them Conv_k_quant (ConvInteger)."""
    ref = [L("input.4_nchwc", "Conv", 10.0, [[1, 8, 8, 8]]), L("input.8_nchwc", "Conv", 20.0, [[1, 8, 8, 8]]),
           L("DepthToSpace_7", "DepthToSpace", 1.0)]
    other = [L("input_QuantizeLinear", "DynamicQuantizeLinear", 0.1), L("Conv_0_quant", "ConvInteger", 5.0, [[1, 1, 8, 8]]),
             L("Relu_1", "Relu", 0.2), L("Conv_2_quant", "ConvInteger", 40.0, [[1, 1, 8, 8]]),
             L("DepthToSpace_7", "DepthToSpace", 0.5)]
    ms = {m.ref_names: m for m in match_layers(ref, other) if m.ref_names}
    assert ms[("input.4_nchwc",)].other_names == ("Conv_0_quant",) and ms[("input.4_nchwc",)].method == "op_order"
    assert ms[("input.8_nchwc",)].speedup == pytest.approx(0.5)
    assert ms[("DepthToSpace_7",)].method == "name"


def test_op_order_when_no_shapes_known() -> None:
    ms = match_layers([L("n1", "Relu", 1.0)], [L("m1", "Activation", 0.5)])
    assert [m.method for m in ms] == ["op_order"]
    assert ms[0].speedup == pytest.approx(2.0)


def test_duplicate_names_match_in_order() -> None:
    ms = match_layers([L("dup", "Add", 1.0), L("dup", "Add", 2.0)], [L("dup", "Add", 4.0), L("dup", "Add", 8.0)])
    assert [(m.ref_ms, m.other_ms) for m in ms] == [(1.0, 4.0), (2.0, 8.0)]


def test_shapes_from_details_variants() -> None:
    assert shapes_from_details({"inputs": [{"name": "x", "shape": [1, 3]}], "outputs": [[1, 4]]}) == (((1, 3),), ((1, 4),))
    assert shapes_from_details({"Inputs": [{"Name": "x", "Dimensions": [2, 2]}]}) == (((2, 2),), ())
    assert shapes_from_details({"inputs": [{"name": "x"}]}) == ((), ())
    assert shapes_from_details(None) == ((), ())


def test_compare_runs_table() -> None:
    runs = {"fp32": [L("a", "Conv", 2.0), L("b", "Relu", 1.0)], "fp16": [L("a", "Conv", 1.0), L("b", "Relu", 0.5)],
            "trt": [L("a + b", "CaskConvolution", 0.75)]}
    table = compare_runs(runs, "fp32")
    rows = {r["layer"]: r for r in table}
    assert rows["a"]["fp16 speed-up"] == pytest.approx(2.0) and rows["a"]["fp16 match"] == "name"
    assert rows["a | b"]["trt ms"] == pytest.approx(0.75) and rows["a | b"]["fp32 ms"] == pytest.approx(3.0)
    assert rows["a | b"]["trt speed-up"] == pytest.approx(4.0)
    with pytest.raises(KeyError):
        compare_runs(runs, "missing")


def _trex_layers(shared: Path, name: str) -> list[LayerRecord]:
    base = shared / "fixtures" / "trtexec"
    graph = json.loads((base / f"trex_resnet18_a100_{name}.graph.json").read_text())
    prof = json.loads((base / f"trex_resnet18_a100_{name}.profile.json").read_text())
    times = {p["name"]: p["averageMs"] for p in prof if "name" in p}
    out = []
    for layer in graph["Layers"]:
        ins, outs = shapes_from_details(layer)
        out.append(LayerRecord(layer["Name"], layer["LayerType"], float(times.get(layer["Name"], 0.0)), ins, outs))
    return out


def test_real_trtexec_fp32_vs_fp16_and_int8(shared: Path) -> None:
    fp32, fp16, int8 = (_trex_layers(shared, n) for n in ("fp32", "fp16", "int8qat"))
    ms = match_layers(fp32, fp16)
    compute = [m for m in ms if m.method == "name" and m.op_type == "CaskConvolution"]
    assert len(compute) >= 15  # ResNet-18 convolutions keep their fused names across precisions
    assert all(m.speedup and m.speedup > 0 for m in compute)
    # the QAT export has different node names: convolutions meet by op type and shapes
    ms8 = match_layers(fp32, int8)
    by_shape = [m for m in ms8 if m.method in ("op_shape", "fused") and m.op_type and "Convolution" in m.op_type]
    assert len(by_shape) >= 5
