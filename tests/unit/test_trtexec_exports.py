"""trtexec JSON export parsers on every JSON in shared/fixtures/trtexec (values copied from the files)."""

from __future__ import annotations

import pytest

from profiles.errors import ParseError
from profiles.trtexec import dtype_of_format, merge_layers, parse_layer_info, parse_profile, parse_times

T = "fixtures/trtexec/"


def _read(shared, name):
    return (shared / T / name).read_text()


def test_profile_fp16(shared):
    p = parse_profile(_read(shared, "trex_resnet18_a100_fp16.profile.json"))
    assert p.count == 1 and not p.tolerant
    r = p.rows[0]
    assert (r.name, r.total_ms, r.avg_ms, r.median_ms, r.percentage) == (
        "Reformatting CopyNode for Input Tensor 0 to Conv_0 + Relu_1", 0.080896, 0.080896, 0.080896, 7.95569)
    assert p.rows[1].name == "Conv_0 + Relu_1" and p.rows[1].avg_ms == 0.111616


def test_profile_fp32_and_int8(shared):
    p32 = parse_profile(_read(shared, "trex_resnet18_a100_fp32.profile.json"))
    assert len(p32.rows) == 32 and p32.rows[0].name == "Conv_0 + Relu_1" and p32.rows[0].percentage == 24.5902
    assert p32.rows[-1].name == "reshape_after_Gemm_48" and p32.rows[-1].avg_ms == 0
    p8 = parse_profile(_read(shared, "trex_resnet18_a100_int8qat.profile.json"))
    assert len(p8.rows) == 37 and p8.rows[0].name == "QuantizeLinear_2" and p8.rows[0].avg_ms == 0.06144


def test_profile_detr_many_layers(shared):
    p = parse_profile(_read(shared, "detr_int8_exportProfile.json"))
    assert p.count == 641 and len(p.rows) == 840
    last = p.rows[-1]
    assert (last.name, last.total_ms, last.avg_ms, last.median_ms, last.percentage) == ("PWN(/Mul_2)", 1.97908, 0.00308749, 0.003072, 0.0741898)


def test_profile_tolerant_of_unescaped_names():
    # trtexec writes layer names without JSON escaping: a quote inside a name breaks json.loads.
    text = ('[\n  { "count" : 10 }\n, { "name" : "Conv "a" + Relu", "timeMs" : 1.5, "averageMs" : 0.15, "medianMs" : 0.14, '
            '"percentage" : 60 }\n, { "name" : "path\\to\\x", "timeMs" : 1, "averageMs" : 0.1, "percentage" : 40 }\n]')
    p = parse_profile(text)
    assert p.tolerant and p.count == 10
    assert [r.name for r in p.rows] == ['Conv "a" + Relu', "path\\to\\x"]
    assert p.rows[0].median_ms == 0.14 and p.rows[1].median_ms is None


def test_profile_rejects_other_json():
    with pytest.raises(ParseError, match="x.json"):
        parse_profile('{"a": 1}', "x.json")


def test_times_fp16(shared):
    t = parse_times(_read(shared, "trex_resnet18_a100_fp16.timing.json"))
    assert len(t.records) == 3698
    first = t.records[0]
    assert first["startEnqMs"] == 2.67333 and first["computeMs"] == 0.873472 and first["latencyMs"] == 0.873472
    assert t.records[-1]["latencyMs"] == 0.861328
    assert t.latency_ns()[0] == 873472


def test_layer_info_detailed_8x_long_formats(shared):
    li = parse_layer_info(_read(shared, "trex_resnet18_a100_fp16.graph.json"))
    assert li.detailed and li.bindings == ["input.1", "191"] and len(li.layers) == 36
    ref, conv = li.layers[0], li.layers[1]
    assert ref.layer_type == "Reformat" and ref.precision == "fp32->fp16" and not ref.fused and "reformat" in ref.note
    assert conv.name == "Conv_0 + Relu_1" and conv.layer_type == "CaskConvolution" and conv.fused
    assert conv.precision == "fp16"
    assert conv.inputs[0].dims == [32, 3, 224, 224] and conv.outputs[0].dims == [32, 64, 112, 112]
    assert conv.outputs[0].format == "Channel major FP16 format where channel % 8 == 0"
    assert conv.tactic == "trt_turing_cutlass_image_network_first_layer_hmma_fprop_f16f16f32_nhwc_nhwc_k64r7s7c4_stride2x2"


def test_layer_info_int8_qat(shared):
    li = parse_layer_info(_read(shared, "trex_resnet18_a100_int8qat.graph.json"))
    precs = {x.precision for x in li.layers if x.layer_type == "CaskConvolution"}
    assert "int8" in precs
    assert dtype_of_format("Thirty-two wide channel vectorized row major Int8 format") == "int8"


def test_layer_info_10x_short_formats_and_metadata(shared):
    li = parse_layer_info(_read(shared, "hackathon_trt10.16_exportLayerInfo_detailed.json"))
    assert li.bindings == ["x", "y", "z"] and len(li.layers) == 9
    first = li.layers[0]
    assert first.name == "node_conv2d + node_relu" and first.precision == "fp32"
    assert first.onnx_nodes == ["node_conv2d", "node_relu"] and first.fused
    assert first.params["StreamId"] == 0
    gemm = li.layers[4]
    assert gemm.layer_type == "gemm" and gemm.fused and "Myelin" in gemm.note
    assert gemm.onnx_nodes == ["node_linear", "node_relu_2"]  # \u001f separator inside a Myelin region
    cast = li.layers[-1]
    assert cast.name == "__myl_CastReshCast_myl4_4" and cast.precision == "int32"
    assert cast.onnx_nodes == []


def test_layer_info_names_only(shared):
    li = parse_layer_info(_read(shared, "hackathon_trt8.6.0_exportLayerInfo_names_only.json"))
    assert not li.detailed and len(li.layers) == 15 and li.bindings == ["tensor-0", "tensor-15"]
    assert li.layers[1].name == "Conv-1 + ReLU-2" and li.layers[1].fused and li.layers[1].layer_type is None
    assert li.layers[-1].name == "(Unnamed Layer* 32) [Shuffle]"


def test_merge_profile_and_info(shared):
    prof = parse_profile(_read(shared, "trex_resnet18_a100_fp32.profile.json"))
    info = parse_layer_info(_read(shared, "trex_resnet18_a100_fp32.graph.json"))
    merged = merge_layers(prof.rows, info)
    assert len(merged) == 32
    assert all(m.info is not None and m.timing is not None for m in merged)
    assert merged[0].info.layer_type == "CaskConvolution" and merged[0].timing.avg_ms == 0.52224


@pytest.mark.parametrize("fmt,dtype", [("Row major linear FP16 format", "fp16"), ("Half", "fp16"), ("Float", "fp32"),
                                       ("Row major linear FP32", "fp32"), ("BFloat16", "bf16"), ("Int64", "int64"), (None, None)])
def test_dtype_spellings(fmt, dtype):
    assert dtype_of_format(fmt) == dtype
