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
    with pytest.raises(InputError, match=r"junk\.npz is not a \.npz archive of arrays \(numpy\.savez\)"):
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


# ------------------------------------------------------------------------- --inputs .npz (validate_npz)

def _bert_npz(path: Path, n: int = 6, seq: int = 8, **override: np.ndarray) -> Path:
    arrays = {"input_ids": np.arange(n * seq, dtype=np.int64).reshape(n, seq),
              "attention_mask": np.ones((n, seq), np.int64), "token_type_ids": np.zeros((n, seq), np.int64)}
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def test_inputs_npz_split_into_batches_in_order(tmp_path: Path) -> None:
    from engine_runner.inputs import load_inputs_npz

    path = _bert_npz(tmp_path / "in.npz")
    shapes = {b: resolve_shapes(BERT, b, dim_values={"sequence": 8}) for b in (1, 2, 3)}
    got = load_inputs_npz(path, BERT, shapes)
    assert got.samples == 6 and len(got.sha256) == 64 and got.describe()["file"] == "in.npz"
    batches = got.batches(BERT, 2)
    assert len(batches) == 3 and all(b["input_ids"].shape == (2, 8) for b in batches)
    assert np.array_equal(np.concatenate([b["input_ids"] for b in batches]), got.data["input_ids"])
    assert batches[1]["input_ids"][0, 0] == 16  # sample 2 opens batch 1
    assert len(got.batches(BERT, 3)) == 2 and len(got.batches(BERT, 1)) == 6


def test_inputs_npz_errors_name_the_key(tmp_path: Path) -> None:
    from engine_runner.inputs import load_inputs_npz

    shapes = {b: resolve_shapes(BERT, b, dim_values={"sequence": 8}) for b in (1, 4)}
    # wrong key
    np.savez(tmp_path / "key.npz", ids=np.zeros((4, 8), np.int64), attention_mask=np.ones((4, 8), np.int64),
             token_type_ids=np.zeros((4, 8), np.int64))
    with pytest.raises(InputError, match=r"--inputs key\.npz: key 'ids' is not an input of the model"):
        load_inputs_npz(tmp_path / "key.npz", BERT, shapes)
    np.savez(tmp_path / "missing.npz", input_ids=np.zeros((4, 8), np.int64), attention_mask=np.ones((4, 8), np.int64))
    with pytest.raises(InputError, match=r"key 'token_type_ids' \(a model input\) is missing"):
        load_inputs_npz(tmp_path / "missing.npz", BERT, shapes)
    # wrong dtype
    bad = _bert_npz(tmp_path / "dtype.npz", n=4, attention_mask=np.ones((4, 8), np.int32))
    with pytest.raises(InputError, match=r"--inputs dtype\.npz: key 'attention_mask' has dtype int32, the model input is int64"):
        load_inputs_npz(bad, BERT, shapes)
    # wrong shape: rank, then a sample that is not the resolved shape (sequence 8 vs 16)
    bad = _bert_npz(tmp_path / "rank.npz", n=4, token_type_ids=np.zeros((4, 8, 1), np.int64))
    with pytest.raises(InputError, match=r"key 'token_type_ids' has shape \[4, 8, 1\] \(rank 3\)"):
        load_inputs_npz(bad, BERT, shapes)
    seq16 = {b: resolve_shapes(BERT, b, dim_values={"sequence": 16}) for b in (1, 4)}
    with pytest.raises(InputError, match=r"key 'input_ids': one sample's shape is \[8\], the run resolves input "
                                         r"'input_ids' to \[16\].*'sequence'"):
        load_inputs_npz(_bert_npz(tmp_path / "seq.npz", n=4), BERT, seq16)
    # N not a multiple of a batch size
    with pytest.raises(InputError, match=r"--inputs six\.npz: key 'input_ids' holds 6 samples along its first axis, "
                                         r"not a multiple of the batch size 4"):
        load_inputs_npz(_bert_npz(tmp_path / "six.npz", n=6), BERT, shapes)
    # differing sample counts, and no samples
    bad = _bert_npz(tmp_path / "counts.npz", n=4, attention_mask=np.ones((8, 8), np.int64))
    with pytest.raises(InputError, match="different sample counts"):
        load_inputs_npz(bad, BERT, shapes)
    with pytest.raises(InputError, match=r"key 'input_ids' holds no samples"):
        load_inputs_npz(_bert_npz(tmp_path / "empty.npz", n=0), BERT, shapes)
    with pytest.raises(InputError, match=r"--inputs .*nope\.npz: file not found"):
        load_inputs_npz(tmp_path / "nope.npz", BERT, shapes)


def test_inputs_npz_fixed_batch_model_and_dims_from_file(tmp_path: Path) -> None:
    from engine_runner.inputs import load_inputs_npz, npz_dim_values, read_npz, validate_npz

    mnist = [InputSpec("Input3", "float32", (1, 1, 28, 28))]
    np.savez(tmp_path / "m.npz", Input3=np.zeros((5, 1, 28, 28), np.float32))
    got = load_inputs_npz(tmp_path / "m.npz", mnist, {1: resolve_shapes(mnist, 1)})
    assert got.samples == 5 and [b["Input3"].shape for b in got.batches(mnist, 1)] == [(1, 1, 28, 28)] * 5
    np.savez(tmp_path / "m2.npz", Input3=np.zeros((5, 1, 27, 28), np.float32))
    with pytest.raises(InputError, match="key 'Input3' dim 2 is 27, fixed at 28"):
        load_inputs_npz(tmp_path / "m2.npz", mnist, {1: resolve_shapes(mnist, 1)})
    # the sequence length comes from the file unless --dim/--shape set it
    data = read_npz(_bert_npz(tmp_path / "b.npz", n=2, seq=12), "--inputs")
    assert npz_dim_values(data, BERT) == {"sequence": 12}
    assert npz_dim_values(data, BERT, dim_values={"sequence": 5}) == {}
    # one validation for both flags: calibration accepts any sequence length, batch-1 feeds
    assert validate_npz(data, BERT, flag="--calibration", fname="b.npz") == 2
    assert len(load_calibration_npz(tmp_path / "b.npz", BERT)) == 2


def test_dim_naming_no_symbolic_dim_is_refused_with_the_models_dims() -> None:
    with pytest.raises(InputError, match=r"--dim seq=8: 'seq' is not a symbolic dim of the model "
                                         r"\(its symbolic dims: batch, sequence\)"):
        resolve_shapes(BERT, 1, dim_values={"seq": 8})
    fixed = [InputSpec("x", "float32", (1, 3))]
    with pytest.raises(InputError, match=r"--dim n=2: 'n' is not a symbolic dim of the model \(its symbolic dims: none\)"):
        resolve_shapes(fixed, 1, dim_values={"n": 2})


def test_non_npz_files_are_named_without_mentioning_pickle(tmp_path: Path) -> None:
    from engine_runner.inputs import read_npz

    text = tmp_path / "inputs.json"
    text.write_text('{"x": [1, 2]}')
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros(3, np.float32))
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}], dtype=object))
    for path, flag in [(text, "--inputs"), (npy, "--calibration"), (obj, "--inputs")]:
        with pytest.raises(InputError) as info:
            read_npz(path, flag)
        msg = str(info.value)
        assert msg.startswith(f"{flag} {path}") and "is not a .npz archive of arrays (numpy.savez)" in msg
        assert "allow_pickle" not in msg
