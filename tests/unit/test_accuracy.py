"""profiles.accuracy: every metric checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from profiles.accuracy import AGGREGATE, compare_output, compare_outputs, output_health
from profiles.errors import InputError


def test_metrics_by_hand() -> None:
    ref = np.array([[1.0, -2.0], [0.0, 4.0]], np.float32)
    cand = np.array([[1.1, -2.0], [0.5, 3.0]], np.float16)
    rec = compare_output("y", ref, cand)
    assert rec.max_abs_err == pytest.approx(1.0, abs=1e-3)        # |3 - 4|
    assert rec.max_rel_err == pytest.approx(0.25, abs=1e-3)       # 1/4; the 0 reference element is left out
    r, c = ref.astype(np.float64).ravel(), cand.astype(np.float64).ravel()
    assert rec.cosine == pytest.approx(float(r @ c / np.linalg.norm(r) / np.linalg.norm(c)))
    assert (rec.nan_count, rec.inf_count, rec.all_zero, rec.valid) == (0, 0, False, True)
    assert rec.details["shape"] == [2, 2] and rec.details["dtype"] == "float16"


def test_identical_outputs() -> None:
    a = np.linspace(-1, 1, 10, dtype=np.float32)
    rec = compare_output("a", a, a.copy())
    assert rec.max_abs_err == 0.0 and rec.max_rel_err == 0.0 and rec.cosine == pytest.approx(1.0)


def test_nan_inf_are_counted_excluded_and_invalid() -> None:
    ref = np.ones(5, np.float32)
    cand = np.array([1.0, np.nan, np.inf, -np.inf, 2.0], np.float32)
    rec = compare_output("o", ref, cand)
    assert rec.nan_count == 1 and rec.inf_count == 2
    assert rec.max_abs_err == pytest.approx(1.0)  # only finite elements compared
    assert rec.details["compared_elements"] == 2
    assert not rec.valid


def test_all_zero_candidate_invalid_unless_reference_zero_too() -> None:
    z = np.zeros(4, np.float32)
    bad = compare_output("o", np.ones(4, np.float32), z)
    assert bad.all_zero and not bad.valid and bad.cosine == 0.0
    ok = compare_output("o", z, z)
    assert ok.all_zero and ok.valid and ok.cosine == 1.0


def test_aggregate_row() -> None:
    ref = {"a": np.array([1.0, 2.0]), "b": np.array([10.0, -10.0])}
    cand = {"a": np.array([1.0, 2.5]), "b": np.array([-10.0, 10.0])}
    recs = compare_outputs(ref, cand)
    assert [r.output_name for r in recs] == ["a", "b", AGGREGATE]
    agg = recs[-1]
    assert agg.max_abs_err == pytest.approx(20.0)
    assert agg.max_rel_err == pytest.approx(2.0)
    assert agg.cosine == pytest.approx(-1.0)  # worst output, not a size-weighted blend
    assert agg.valid


def test_integer_outputs_compare() -> None:
    rec = compare_output("argmax", np.array([3, 1], np.int64), np.array([3, 2], np.int64))
    assert rec.max_abs_err == 1.0


def test_errors_name_the_output() -> None:
    with pytest.raises(InputError, match="'y'.*shape"):
        compare_output("y", np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(InputError, match="'z'.*missing"):
        compare_outputs({"z": np.zeros(1)}, {"w": np.zeros(1)})
    with pytest.raises(InputError, match="'s'"):
        compare_output("s", np.array(["a"]), np.array(["b"]))


def test_output_health() -> None:
    good = output_health({"a": np.array([0.0, 1.0]), "b": np.zeros(3)})
    assert good.valid and not good.all_zero
    zero = output_health({"a": np.zeros(2), "b": np.zeros(3)})
    assert zero.all_zero and not zero.valid
    nan = output_health({"a": np.array([np.nan, 1.0])})
    assert nan.nan_count == 1 and not nan.valid
    assert nan.per_output["a"]["nan_count"] == 1
