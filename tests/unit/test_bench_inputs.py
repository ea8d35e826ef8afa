"""engine_runner.inputs: shape resolution, seeded inputs, calibration .npz validation (no engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine_runner.inputs import (
    InputSpec,
    fixed_batch,
    generate_inputs,
    load_calibration_npz,
    read_input_specs,
    resolve_shapes,
)
from profiles.errors import InputError, ModelError

BERT = [InputSpec("input_ids", "int64", ("batch", "sequence")),
        InputSpec("attention_mask", "int64", ("batch", "sequence")),
        InputSpec("token_type_ids", "int64", ("batch", "sequence"))]
IMG = [InputSpec("x", "float32", ("N", 3, 224, None))]


def test_defaults_batch_then_dim_values_then_one() -> None:
    assert resolve_shapes(BERT, 4) == {n.name: [4, 1] for n in BERT}
    assert resolve_shapes(BERT, 4, dim_values={"sequence": 128}) == {n.name: [4, 128] for n in BERT}
    assert resolve_shapes(IMG, 2) == {"x": [2, 3, 224, 1]}


def test_shape_flag_first_dim_follows_batch() -> None:
    assert resolve_shapes(IMG, 8, shapes={"x": [1, 3, 224, 224]}) == {"x": [8, 3, 224, 224]}


def test_shape_contradicting_fixed_dim_names_input_and_dim() -> None:
    with pytest.raises(InputError, match=r"dim 2 of input 'x' is fixed at 224 in the model, got 225"):
        resolve_shapes(IMG, 1, shapes={"x": [1, 3, 225, 224]})
    with pytest.raises(InputError, match="rank"):
        resolve_shapes(IMG, 1, shapes={"x": [1, 3, 224]})
    with pytest.raises(InputError, match="no input 'y'"):
        resolve_shapes(IMG, 1, shapes={"y": [1]})
    with pytest.raises(InputError, match="--dim batch=2 names the batch dim"):
        resolve_shapes(BERT, 1, dim_values={"batch": 2})


def test_fixed_batch_models() -> None:
    mnist = [InputSpec("Input3", "float32", (1, 1, 28, 28))]
    assert fixed_batch(mnist) == 1 and fixed_batch(IMG) is None
    assert resolve_shapes(mnist, 1) == {"Input3": [1, 1, 28, 28]}
    with pytest.raises(InputError, match="only at batch 1"):
        resolve_shapes(mnist, 8)


def test_generated_inputs_are_seeded_and_follow_the_rules() -> None:
    shapes = resolve_shapes(BERT, 2, dim_values={"sequence": 16})
    a = generate_inputs(BERT, shapes, seed=0)
    b = generate_inputs(BERT, shapes, seed=0)
    c = generate_inputs(BERT, shapes, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["input_ids"], c["input_ids"])
    assert a["input_ids"].dtype == np.int64 and a["input_ids"].min() >= 0 and a["input_ids"].max() < 100
    assert np.all(a["attention_mask"] == 1) and np.all(a["token_type_ids"] == 0)
    x = generate_inputs([InputSpec("x", "float16", ("N", 1000))], {"x": [4, 1000]})["x"]
    assert x.dtype == np.float16 and abs(float(x.astype(np.float32).std()) - 1.0) < 0.05
    with pytest.raises(InputError, match="'s'"):
        generate_inputs([InputSpec("s", "string", (1,))], {"s": [1]})


def test_calibration_npz(tmp_path: Path) -> None:
    good = tmp_path / "c.npz"
    np.savez(good, x=np.zeros((3, 3, 224, 7), np.float32))
    feeds = load_calibration_npz(good, IMG)
    assert len(feeds) == 3 and feeds[0]["x"].shape == (1, 3, 224, 7)
    np.savez(tmp_path / "missing.npz", y=np.zeros((1,), np.float32))
    with pytest.raises(InputError, match="key 'y' is not an input"):
        load_calibration_npz(tmp_path / "missing.npz", IMG)
    np.savez(tmp_path / "dtype.npz", x=np.zeros((3, 3, 224, 7), np.int64))
    with pytest.raises(InputError, match="key 'x' has dtype int64"):
        load_calibration_npz(tmp_path / "dtype.npz", IMG)
    np.savez(tmp_path / "fixed.npz", x=np.zeros((3, 4, 224, 7), np.float32))
    with pytest.raises(InputError, match="key 'x' dim 1 is 4, fixed at 3"):
        load_calibration_npz(tmp_path / "fixed.npz", IMG)
    np.savez(tmp_path / "counts.npz", input_ids=np.zeros((2, 4), np.int64), attention_mask=np.zeros((3, 4), np.int64),
             token_type_ids=np.zeros((2, 4), np.int64))
    with pytest.raises(InputError, match="different sample counts"):
        load_calibration_npz(tmp_path / "counts.npz", BERT)
    with pytest.raises(InputError, match="not found"):
        load_calibration_npz(tmp_path / "nope.npz", IMG)
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_calibration_npz(tmp_path / "junk.npz", IMG)


def test_read_input_specs_skips_initializer_inputs(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 4]),
                               helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 2])], [w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert read_input_specs(path) == [InputSpec("X", "float32", ("batch", 4))]
    bogus = tmp_path / "bogus.onnx"
    bogus.write_text("hello")
    with pytest.raises(ModelError, match="bogus.onnx"):
        read_input_specs(bogus)
