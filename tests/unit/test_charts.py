"""Unit tests of dashboard/charts.py (plain data in, Plotly figures out) and the pure helpers of
dashboard/data.py that decide what is shown as fastest."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import charts
from dashboard.data import fastest_valid, speedups_vs, symbolic_dims, non_default_domains
from profiles.layer_match import LayerRecord, compare_runs


def _rows() -> list[dict]:
    return [
        {"run_id": 1, "variant": "onnxruntime / fp32", "engine": "onnxruntime", "precision": "fp32", "batch_size": 1,
         "p50_ms": 2.0, "ci_low_ms": 1.9, "ci_high_ms": 2.2, "items_per_s": 500.0, "valid": True, "count": 100, "status": "succeeded"},
        {"run_id": 2, "variant": "onnxruntime / fp16", "engine": "onnxruntime", "precision": "fp16", "batch_size": 1,
         "p50_ms": 1.5, "ci_low_ms": 1.4, "ci_high_ms": 1.7, "items_per_s": 650.0, "valid": True, "count": 100, "status": "succeeded"},
        {"run_id": 3, "variant": "onnxruntime / int8-dynamic", "engine": "onnxruntime", "precision": "int8-dynamic",
         "batch_size": 1, "p50_ms": 0.5, "ci_low_ms": 0.45, "ci_high_ms": 0.6, "items_per_s": 2000.0, "valid": False,
         "count": 100, "status": "succeeded"},
        {"run_id": 4, "variant": "onnxruntime / fp32", "engine": "onnxruntime", "precision": "fp32", "batch_size": 8,
         "p50_ms": 10.0, "ci_low_ms": 9.0, "ci_high_ms": 11.0, "items_per_s": 800.0, "valid": None, "count": 50, "status": "succeeded"},
    ]


def test_latency_ci_figure_traces_errors_and_axes() -> None:
    fig = charts.latency_ci_figure(_rows())
    assert [t.name for t in fig.data] == ["batch 1", "batch 8"]
    b1 = fig.data[0]
    assert list(b1.x) == ["onnxruntime / fp32", "onnxruntime / fp16", "onnxruntime / int8-dynamic"]
    assert list(b1.y) == [2.0, 1.5, 0.5]
    assert list(b1.error_y.array) == pytest.approx([0.2, 0.2, 0.1])
    assert list(b1.error_y.arrayminus) == pytest.approx([0.1, 0.1, 0.05])
    assert fig.layout.yaxis.title.text == "p50 latency (ms)"
    assert "variant" in fig.layout.xaxis.title.text


def test_invalid_variant_is_grey_and_labelled() -> None:
    for fig in (charts.latency_ci_figure(_rows()), charts.throughput_figure(_rows())):
        b1 = fig.data[0]
        colors, texts, patterns = list(b1.marker.color), list(b1.text), list(b1.marker.pattern.shape)
        assert colors[2] == charts.INVALID_COLOR and texts[2] == charts.INVALID_LABEL and patterns[2] == "/"
        assert charts.INVALID_COLOR not in colors[:2] and texts[:2] == ["", ""]


def test_throughput_figure_axis_units() -> None:
    fig = charts.throughput_figure(_rows())
    assert fig.layout.yaxis.title.text == "throughput (items/s)"
    assert list(fig.data[1].y) == [800.0]
    assert fig.data[0].error_y.array is None


def test_empty_inputs_give_annotated_figures() -> None:
    assert charts.latency_ci_figure([]).layout.annotations[0].text == "no data"
    assert charts.latency_distribution_figure([], "box").layout.annotations[0].text == "no raw samples"
    assert charts.top_layers_figure([]).layout.annotations[0].text == "no layer timings"


@pytest.mark.parametrize("kind", charts.DISTRIBUTION_KINDS)
def test_distribution_kinds(kind: str) -> None:
    rng = np.random.default_rng(0)
    series = [{"label": "fp32", "values_ms": rng.normal(2, 0.1, 50), "valid": True},
              {"label": "int8", "values_ms": rng.normal(1, 0.1, 50), "valid": False}]
    fig = charts.latency_distribution_figure(series, kind)
    assert len(fig.data) == 2
    assert fig.data[1].name == f"int8 ({charts.INVALID_LABEL})"
    if kind == "histogram":
        assert fig.layout.xaxis.title.text == "latency (ms)" and fig.data[0].histnorm == "probability density"
    else:
        assert fig.layout.yaxis.title.text == "latency (ms)"
        assert len(fig.data[0].y) == 50


def test_distribution_unknown_kind() -> None:
    with pytest.raises(ValueError, match="pie"):
        charts.latency_distribution_figure([{"label": "a", "values_ms": [1.0]}], "pie")


def test_top_layers_and_op_type() -> None:
    layers = [{"name": f"n{i}", "op_type": "Conv" if i % 2 else "Relu", "time_ms": float(i)} for i in range(30)]
    fig = charts.top_layers_figure(layers, 5)
    assert list(fig.data[0].y) == ["n25", "n26", "n27", "n28", "n29"]  # slowest on top (last)
    assert fig.layout.xaxis.title.text == "time per inference (ms)"
    ops = charts.op_type_figure([{"run": "a", "op_type": "Conv", "time_ms": 3.0}, {"run": "a", "op_type": "Relu", "time_ms": 1.0},
                                 {"run": "b", "op_type": "Conv", "time_ms": 1.0}])
    assert [t.name for t in ops.data] == ["a", "b"]
    assert list(ops.data[1].y) == [1.0, 0.0]
    assert ops.layout.yaxis.title.text == "time per inference (ms)"


def test_layer_side_by_side() -> None:
    runs = {"fp32": [LayerRecord("a", "Conv", 2.0), LayerRecord("b", "Relu", 1.0)],
            "fp16": [LayerRecord("a", "Conv", 1.0), LayerRecord("b", "Relu", 0.25)]}
    fig = charts.layer_side_by_side_figure(compare_runs(runs, "fp32"), ["fp32", "fp16"])
    assert [t.name for t in fig.data] == ["fp32", "fp16"]
    assert list(fig.data[1].x) == [0.25, 1.0]
    assert fig.data[1].customdata[1][0] == pytest.approx(2.0)  # speed-up of layer a


def test_fastest_valid_skips_invalid_and_failed() -> None:
    rows = _rows()
    assert fastest_valid(rows)["run_id"] == 2  # run 3 is faster but invalid
    rows[1]["status"] = "failed"
    assert fastest_valid(rows)["run_id"] == 1
    assert fastest_valid([r for r in rows if r["valid"] is False]) is None


def test_speedups_vs_fp32_same_batch() -> None:
    sp = speedups_vs(_rows())
    assert sp[1] == pytest.approx(1.0) and sp[2] == pytest.approx(2.0 / 1.5)
    assert 3 not in sp  # invalid: no speed-up shown
    assert sp[4] == pytest.approx(1.0)


def test_symbolic_dims_and_domains() -> None:
    inputs = [{"name": "ids", "shape": ["batch", "seq"]}, {"name": "mask", "shape": ["batch", "seq"]},
              {"name": "img", "shape": [1, 3, None, 224]}]
    dims = {d["name"]: d for d in symbolic_dims(inputs)}
    assert dims["batch"]["leading"] and not dims["seq"]["leading"]
    assert dims["seq"]["inputs"] == ["ids", "mask"]
    assert dims["img[2]"]["unnamed"]
    assert non_default_domains({"Conv": 3, "com.microsoft::FusedGemm": 1}, {"": 17, "ai.onnx.ml": 3}) == [
        "ai.onnx.ml", "com.microsoft"]
