"""Polygraphy parsers on shared/fixtures/polygraphy (values copied from the files)."""

from __future__ import annotations

import pytest

from profiles.errors import ParseError
from profiles.polygraphy_out import parse_accuracy_results, parse_capability_summary, parse_polygraphy_run

P = "fixtures/polygraphy/"


def test_run_comparison(shared):
    r = parse_polygraphy_run((shared / P / "hackathon_polygraphy_run_trt_vs_onnxrt_markall.log").read_text())
    assert [o.name for o in r.outputs] == ["conv2d", "relu", "max_pool2d", "conv2d_1", "relu_1", "max_pool2d_1", "view",
                                           "linear", "relu_2", "y", "softmax", "z"]
    assert all(o.passed for o in r.outputs)
    c = r.outputs[3]
    assert c.shape == [4, 64, 14, 14] and c.dtype == "float32"
    assert c.max_abs_err == 2.3842e-06 and c.max_rel_err == 1.0078e-05 and c.mean_abs_err == 3.1878e-07
    assert c.atol == 0.001 and c.rtol == 0.001
    assert r.outputs[-1].dtype == "int64" and r.outputs[-1].shape == [4]
    assert r.pass_rate_pct == 100.0 and r.passed_iterations == 1 and r.total_iterations == 1
    assert r.passed is True and r.runtime_s == 16.888


def test_capability_summary(shared):
    rows = parse_capability_summary((shared / P / "hackathon_polygraphy_inspect_capability_unsupported_ops.log").read_text())
    assert [(r.operator, r.node) for r in rows] == [("UnknownNode1", "UnknownModel-N-1-UnknownNode1"),
                                                     ("UnknownNode2", "UnknownModel-N-3-UnknownNode2")]
    assert "Plugin not found" in rows[0].reason


def test_surgeon_log_is_not_a_comparison(shared):
    with pytest.raises(ParseError, match="surgeon"):
        parse_polygraphy_run((shared / P / "hackathon_polygraphy_surgeon_sanitize_fold_constants.log").read_text(), "surgeon.log")


def test_accuracy_results_json(shared):
    rows = parse_accuracy_results((shared / P / "polygraphy_accuracy_results.json").read_text())
    assert len(rows) == 4
    assert rows[0]["output"] == "R" and rows[0]["max_abs_err"] == 0.0 and rows[0]["atol"] == 1e-05
    assert rows[1]["l2_norm"] == 0.0 and rows[2]["cosine_similarity"] == 1.0 and rows[2]["threshold"] == 0.997
    assert rows[3]["psnr"] == float("inf")


def test_results_json_is_not_accuracy(shared):
    with pytest.raises(ParseError, match="inputs.json"):
        parse_accuracy_results((shared / P / "polygraphy_inputs.json").read_text(), "inputs.json")
