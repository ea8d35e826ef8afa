"""engine_runner.precision int8-qdq options: sentinel detection rule, node selection, option validation
and cache keys (no quantization run here; tests/integration/test_qdq_sentinel.py runs it)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from engine_runner.precision import (SENTINEL_ABS_THRESHOLD, Calibration, QdqOptions, cache_key, method_of,
                                     sentinel_exclusions, sentinel_tensors)
from profiles.errors import InputError


def test_sentinel_rule() -> None:
    f32 = np.float32
    ranges = {
        "scores": (f32(-12.5), f32(30.0)),                      # ordinary
        "outlier_200": (f32(-3.0), f32(200.0)),                 # large but quantizable
        "masked_min": (f32(np.finfo(np.float32).min), f32(9.0)),  # HF finfo.min mask
        "masked_1e4": (f32(-1e4), f32(0.0)),                    # older HF -10000 mask, exactly at the threshold
        "masked_inf": (f32(-np.inf), f32(3.0)),                 # -inf mask (Where on a -inf constant)
        "nan": (f32(np.nan), f32(1.0)),
        "per_channel": (np.array([-1.0, -2e4], f32), np.array([1.0, 2.0], f32)),
    }
    flagged = sentinel_tensors(ranges)
    assert set(flagged) == {"masked_min", "masked_1e4", "masked_inf", "nan", "per_channel"}
    assert flagged["masked_inf"] == {"min": "-inf", "max": 3.0, "reason": "non-finite calibrated range"}
    assert "|x| >= 10000" in flagged["masked_1e4"]["reason"]
    assert set(sentinel_tensors(ranges, abs_threshold=100.0)) == set(flagged) | {"outlier_200"}
    assert SENTINEL_ABS_THRESHOLD == 1e4


def test_exclusions_pick_readers_and_writers_of_quantizable_types() -> None:
    n = helper.make_node
    graph = helper.make_graph([
        n("Sub", ["one", "m"], ["inv"], name="sub"),          # not a quantizable type: never listed
        n("Mul", ["inv", "big"], ["mask_add"], name="mul"),
        n("Add", ["scores", "mask_add"], ["masked"], name="add"),
        n("Softmax", ["masked"], ["probs"], name="softmax"),
        n("MatMul", ["probs", "v"], ["ctx"], name="matmul"),   # reads the (fine) Softmax output: stays int8
    ], "g", [], [])
    model = helper.make_model(graph)
    flagged = {"mask_add": {}, "masked": {}}
    ex = sentinel_exclusions(model, flagged, ["Mul", "Add", "Softmax", "MatMul"])
    assert ex == [{"node": "mul", "op_type": "Mul", "reads": [], "writes": ["mask_add"]},
                  {"node": "add", "op_type": "Add", "reads": ["mask_add"], "writes": ["masked"]},
                  {"node": "softmax", "op_type": "Softmax", "reads": ["masked"], "writes": []}]
    assert sentinel_exclusions(model, {}, ["Mul"]) == []


def test_options_validation_and_meta() -> None:
    assert method_of("int8-qdq")["calibrate_method"] == "MinMax"
    assert method_of("int8-qdq")["sentinel_exclusion"] == {"enabled": True, "abs_threshold": 1e4, "rule_version": 1}
    assert method_of("int8-qdq", QdqOptions(calibrate_method="Entropy"))["calibrate_method"] == "Entropy"
    with pytest.raises(InputError, match="calibrate_method 'Histogram'"):
        method_of("int8-qdq", QdqOptions(calibrate_method="Histogram"))
    for bad in (0.0, -5.0, float("inf"), float("nan")):
        with pytest.raises(InputError, match="sentinel_abs_threshold"):
            QdqOptions(sentinel_abs_threshold=bad).validate()
    # fp16 / dynamic ignore the qdq options
    assert method_of("fp16", QdqOptions(calibrate_method="Entropy")) == method_of("fp16")


def test_cache_key_changes_with_every_option() -> None:
    calib = Calibration("npz", "npz:abc", [], {})
    base = cache_key("h", "int8-qdq", calib)
    assert base == cache_key("h", "int8-qdq", calib, QdqOptions())
    others = [cache_key("h", "int8-qdq", calib, QdqOptions(calibrate_method="Percentile")),
              cache_key("h", "int8-qdq", calib, QdqOptions(calibrate_method="Entropy")),
              cache_key("h", "int8-qdq", calib, QdqOptions(exclude_sentinels=False)),
              cache_key("h", "int8-qdq", calib, QdqOptions(sentinel_abs_threshold=1e3)),
              cache_key("h", "int8-qdq", Calibration("npz", "npz:other", [], {}))]
    assert len({base, *others}) == 6
    # options of int8-qdq do not touch the other variants' keys
    assert cache_key("h", "fp16", None) == cache_key("h", "fp16", None, QdqOptions(calibrate_method="Entropy"))


