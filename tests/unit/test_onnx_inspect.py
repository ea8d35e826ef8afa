"""profiles.onnx_inspect: validation of bad files and the inspection of real and built models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import linear_model, save_external, save_plain, save_with_raw_location

from profiles.errors import ModelError
from profiles.onnx_inspect import dtype_name, inspect_onnx


# ---------------------------------------------------------------- built models


def test_inspects_built_model(tmp_path: Path) -> None:
    p = save_plain(linear_model(), tmp_path / "lin.onnx")
    r = inspect_onnx(p)
    assert r.opset == 17 and r.ir_version == 8
    assert r.producer == "enginescope-tests 1"
    assert r.inputs == [{"name": "X", "dtype": "float32", "shape": ["N", 4]}]
    assert r.outputs == [{"name": "Y", "dtype": "float32", "shape": ["N", 3]}]
    assert r.op_histogram == {"Add": 1, "MatMul": 1, "Relu": 1}
    assert r.opset_imports == {"ai.onnx": 17}
    assert r.param_count == 4 * 3 + 3
    assert r.external_data == [] and r.nondefault_domains == [] and r.warnings == []
    assert r.size_bytes == p.stat().st_size
    assert r.preflight() == {"nondefault_domains": [], "warnings": []}


def test_nondefault_domain_is_flagged_and_keyed(tmp_path: Path) -> None:
    p = save_plain(linear_model(custom_domain=True), tmp_path / "ms.onnx")
    r = inspect_onnx(p)
    assert r.op_histogram["com.microsoft::Gelu"] == 1 and "Gelu" not in r.op_histogram
    assert r.nondefault_domains == ["com.microsoft"]
    assert any("com.microsoft" in w and "TensorRT" in w for w in r.warnings)
    assert r.preflight()["nondefault_domains"] == ["com.microsoft"]


def test_unknown_dims_unknown_rank_and_int64(tmp_path: Path) -> None:
    from profiles.onnx_inspect import _value_info

    x = helper.make_tensor_value_info("ids", TensorProto.INT64, [None, "S", 2])
    g = helper.make_graph([helper.make_node("Identity", ["ids"], ["out"])], "g", [x],
                          [helper.make_tensor_value_info("out", TensorProto.INT64, [None, "S", 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    r = inspect_onnx(save_plain(m, tmp_path / "u.onnx"))
    assert r.inputs == [{"name": "ids", "dtype": "int64", "shape": [None, "S", 2]}]
    assert r.producer is None
    # unknown rank (no shape at all), as value_info may carry it
    assert _value_info(helper.make_tensor_value_info("v", TensorProto.INT64, None)) == {"name": "v", "dtype": "int64", "shape": None}


def test_subgraph_nodes_are_counted(tmp_path: Path) -> None:
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])
    one = numpy_helper.from_array(np.ones(1, np.float32), "one")
    then_g = helper.make_graph([helper.make_node("Identity", ["one"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])])
    else_g = helper.make_graph([helper.make_node("Neg", ["one"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1])])
    node = helper.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g)
    m = helper.make_model(helper.make_graph([node], "g", [c], [out], initializer=[one]),
                          opset_imports=[helper.make_opsetid("", 17)])
    r = inspect_onnx(save_plain(m, tmp_path / "if.onnx"))
    assert r.op_histogram == {"If": 1, "Identity": 1, "Neg": 1}
    assert r.param_count == 1


def test_dtype_names() -> None:
    assert dtype_name(TensorProto.FLOAT) == "float32"
    assert dtype_name(TensorProto.DOUBLE) == "float64"
    assert dtype_name(TensorProto.FLOAT16) == "float16"
    assert dtype_name(TensorProto.BFLOAT16) == "bfloat16"
    assert dtype_name(TensorProto.BOOL) == "bool"
    assert dtype_name(TensorProto.UNDEFINED) is None


def test_external_data_listed_without_loading(tmp_path: Path) -> None:
    p = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    r = inspect_onnx(p)
    assert {e["tensor"] for e in r.external_data} == {"W", "B"}
    for e in r.external_data:
        assert e["location"] == "weights.bin" and isinstance(e["offset"], int) and e["length"] > 0
    assert r.size_bytes == p.stat().st_size + (tmp_path / "m" / "weights.bin").stat().st_size
    assert r.param_count == 15


# ---------------------------------------------------------------- bad inputs


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty\.onnx: the file is empty \(0 bytes\)"):
        inspect_onnx(p)


def test_truncated_file(tmp_path: Path) -> None:
    good = save_plain(linear_model(in_features=64, out_features=64), tmp_path / "good.onnx").read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match=r"cut\.onnx: .*truncated"):
        inspect_onnx(p)


def test_text_file_renamed_onnx(tmp_path: Path) -> None:
    p = tmp_path / "readme.onnx"
    p.write_text("This is my model, trust me\nsecond line\n")
    with pytest.raises(ModelError, match=r"readme\.onnx: not an ONNX model: it is a text file \(it starts with 'This is my model"):
        inspect_onnx(p)


def test_other_formats_are_named(tmp_path: Path) -> None:
    import zipfile

    p = tmp_path / "model.onnx"
    with zipfile.ZipFile(p, "w") as zf:  # what a torch.save checkpoint looks like
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ModelError, match="ZIP archive"):
        inspect_onnx(p)
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ModelError, match="HDF5"):
        inspect_onnx(p)


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "noise.onnx"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match=r"noise\.onnx"):
        inspect_onnx(p)


def test_checker_rejection_names_file(tmp_path: Path) -> None:
    m = linear_model()
    m.graph.node[0].input[1] = "does_not_exist"
    p = save_plain(m, tmp_path / "bad_graph.onnx")
    with pytest.raises(ModelError, match=r"bad_graph\.onnx: the ONNX checker rejected the model"):
        inspect_onnx(p)


def test_missing_external_data_names_tensor_and_file(tmp_path: Path) -> None:
    p = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    (tmp_path / "m" / "weights.bin").unlink()
    with pytest.raises(ModelError, match=r"tensor '(W|B)' \(and 1 more\) needs missing file 'weights.bin'"):
        inspect_onnx(p)


def test_truncated_external_data(tmp_path: Path) -> None:
    p = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    data = tmp_path / "m" / "weights.bin"
    data.write_bytes(data.read_bytes()[:20])
    with pytest.raises(ModelError, match=r"tensor '(W|B)' reads bytes .* of 'weights.bin', but that file has 20 bytes"):
        inspect_onnx(p)


@pytest.mark.parametrize("location", ["../evil.bin", "sub/../../evil.bin", "/etc/passwd", "C:\\evil.bin"])
def test_escaping_location_is_refused(tmp_path: Path, location: str) -> None:
    (tmp_path / "evil.bin").write_bytes(b"\x00" * 48)
    p = save_with_raw_location(linear_model(), tmp_path / "m" / "dots.onnx", location)
    with pytest.raises(ModelError, match=r"dots\.onnx: tensor 'W' refers to external data .*refused"):
        inspect_onnx(p)


def test_symlink_out_of_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\x00" * 48)
    folder = tmp_path / "m"
    p = save_with_raw_location(linear_model(), folder / "link.onnx", "w.bin")
    os.symlink(outside, folder / "w.bin")
    with pytest.raises(ModelError, match=r"tensor 'W' refers to external data 'w.bin', a link that points outside"):
        inspect_onnx(p)


def test_wrong_external_length_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    p = save_with_raw_location(linear_model(), folder / "len.onnx", "w.bin")
    m = onnx.load(str(p), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "length":
            e.value = "40"
    p.write_bytes(m.SerializeToString())
    (folder / "w.bin").write_bytes(b"\x00" * 48)
    with pytest.raises(ModelError, match=r"tensor 'W' \(float32, dims \[4, 3\]\) needs 48 bytes"):
        inspect_onnx(p)


# ---------------------------------------------------------------- real models from ../shared


def _shared_models(shared: Path) -> list[Path]:
    return sorted((shared / "models" / "onnx").rglob("*.onnx"))


def test_every_shared_model_inspects(shared: Path) -> None:
    paths = _shared_models(shared)
    assert len(paths) >= 7
    for p in paths:
        r = inspect_onnx(p)
        assert r.ir_version and r.ir_version >= 3, p
        assert r.inputs and r.outputs and r.op_histogram, p
        assert r.size_bytes >= p.stat().st_size, p
        for v in r.inputs + r.outputs:
            assert set(v) == {"name", "dtype", "shape"}
            assert v["shape"] is None or all(d is None or isinstance(d, (int, str)) for d in v["shape"])


def test_shared_domains_flagged(shared: Path) -> None:
    onnx_dir = shared / "models" / "onnx"
    ms = inspect_onnx(onnx_dir / "tiny-random-gpt2_fp32_past_com.microsoft.onnx")
    assert ms.nondefault_domains == ["com.microsoft"]
    assert ms.op_histogram["com.microsoft::Attention"] >= 1
    assert ms.inputs[0] == {"name": "input_ids", "dtype": "int32", "shape": ["batch_size", "seq_len"]}
    ml = inspect_onnx(onnx_dir / "logreg_iris_ai.onnx.ml.onnx")
    assert ml.nondefault_domains == ["ai.onnx.ml"] and ml.opset is None
    assert ml.outputs[1]["dtype"] == "seq(map(int64,float32))" and ml.outputs[1]["shape"] is None
    # st_mobilenet imports ai.onnx.ml but no node uses it: not flagged, only noted
    mob = inspect_onnx(onnx_dir / "st_mobilenet_v2_128_0.5.onnx")
    assert mob.nondefault_domains == [] and any("ai.onnx.ml" in w for w in mob.warnings)
    sr = inspect_onnx(onnx_dir / "super_resolution_pytorch_tutorial.onnx")
    assert sr.inputs[0]["shape"] == ["batch_size", 1, 224, 224]
    # IR 3: initializers are also graph inputs; only the real input is reported
    rn = inspect_onnx(onnx_dir / "light_resnet50_arch_only.onnx")
    assert [i["name"] for i in rn.inputs] == ["gpu_0/data_0"]


def test_shared_external_data_model(shared: Path) -> None:
    folder = shared / "models" / "onnx" / "mnist_external_data"
    r = inspect_onnx(folder / "model.onnx")
    assert r.external_data and all(e["location"] == "model.onnx.data" for e in r.external_data)
    assert {"conv1.weight", "conv2.weight"} <= {e["tensor"] for e in r.external_data}
    assert r.size_bytes == (folder / "model.onnx").stat().st_size + (folder / "model.onnx.data").stat().st_size
    assert r.inputs[0]["shape"] == ["s77", 1, 28, 28]
    # parameter count from dims: must equal what loading the weights gives
    full = onnx.load(str(folder / "model.onnx"))
    assert r.param_count == sum(numpy_helper.to_array(t).size for t in full.graph.initializer)


def test_shared_external_data_missing_file(shared: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copy(shared / "models" / "onnx" / "mnist_external_data" / "model.onnx", tmp_path / "model.onnx")
    with pytest.raises(ModelError, match=r"tensor '[^']+' \(and \d+ more\) needs missing file 'model.onnx.data'"):
        inspect_onnx(tmp_path / "model.onnx")
