"""int8-qdq on an attention block with a padding mask: the additive mask sentinel (``finfo(float32).min``
or ``-1e4`` at padded keys) must not enter a quantization range (engine_runner.precision).

The graph, built with onnx.helper, is one self-attention head as BERT exports it:
``Softmax(MatMul(x Wq, (x Wk)^T) + (1 - mask) * SENTINEL) @ (x Wv) @ Wo``, inputs ``x`` float32
[N, S, D] and ``attention_mask`` int64 [N, S] (1 = token, 0 = padding), output ``y`` [N, S, D].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

S, D = 16, 32
FLOAT_MIN = float(np.finfo(np.float32).min)


def build_masked_attention(path: Path, sentinel: float, seed: int = 0) -> Path:
    """Write the module docstring's graph to ``path`` (opset 17, all nodes named)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    # Wq, Wk scaled so the scores have a std of about 5 (max ~20): attention is peaked, as in a trained model
    w = {"Wq": rng.standard_normal((D, D)) * 0.17, "Wk": rng.standard_normal((D, D)) * 0.17,
         "Wv": rng.standard_normal((D, D)) / np.sqrt(D), "Wo": rng.standard_normal((D, D)) / np.sqrt(D)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    inits += [numpy_helper.from_array(np.array(1.0, np.float32), "one"),
              numpy_helper.from_array(np.array(sentinel, np.float32), "sentinel"),
              numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "Wq"], ["q"], name="attn/query/MatMul"),
        n("MatMul", ["x", "Wk"], ["k"], name="attn/key/MatMul"),
        n("MatMul", ["x", "Wv"], ["v"], name="attn/value/MatMul"),
        n("Transpose", ["k"], ["kT"], name="attn/Transpose", perm=[0, 2, 1]),
        n("MatMul", ["q", "kT"], ["scores"], name="attn/scores/MatMul"),
        n("Cast", ["attention_mask"], ["mask_f"], name="mask/Cast", to=TensorProto.FLOAT),
        n("Unsqueeze", ["mask_f", "axis1"], ["mask_u"], name="mask/Unsqueeze"),
        n("Sub", ["one", "mask_u"], ["inv"], name="mask/Sub"),
        n("Mul", ["inv", "sentinel"], ["mask_add"], name="mask/Mul"),
        n("Add", ["scores", "mask_add"], ["masked"], name="attn/Add"),
        n("Softmax", ["masked"], ["probs"], name="attn/Softmax", axis=-1),
        n("MatMul", ["probs", "v"], ["ctx"], name="attn/context/MatMul"),
        n("MatMul", ["ctx", "Wo"], ["y"], name="attn/output/MatMul"),
    ]
    graph = helper.make_graph(
        nodes, "masked_attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S, D]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", S])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", S, D])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def padded_inputs(count: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` samples: x ~ N(0, 1), attention_mask 1 on the first L tokens (L uniform in [3, S]),
    0 after (padding)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, S + 1, size=count)
    mask = (np.arange(S)[None, :] < lengths[:, None]).astype(np.int64)
    return {"x": rng.standard_normal((count, S, D)).astype(np.float32), "attention_mask": mask}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(["y"], feeds)[0]


@pytest.mark.parametrize("sentinel", [FLOAT_MIN, -1e4])
def test_mask_sentinel_is_excluded_and_accuracy_kept(tmp_path: Path, sentinel: float) -> None:
    from engine_runner.precision import Calibration, QdqOptions, convert

    src = build_masked_attention(tmp_path / "attn.onnx", sentinel)
    calib = padded_inputs(16, seed=1)
    feeds = [{k: v[i:i + 1] for k, v in calib.items()} for i in range(16)]
    calibration = Calibration("generated", "test", feeds, {})
    held = padded_inputs(16, seed=2)
    ref = run(src, held)

    # the old behaviour (MinMax over everything): the masked scores' range spans the sentinel
    old = convert(src, tmp_path / "old.onnx", "int8-qdq", calibration, QdqOptions(exclude_sentinels=False))
    old_cos = cosine(run(tmp_path / "old.onnx", held), ref)
    assert old["quantization_exclusions"]["excluded_nodes"] == []
    print(f"cosine vs fp32: without exclusion {old_cos:.4f}")
    assert old_cos < 0.9, old_cos

    meta = convert(src, tmp_path / "new.onnx", "int8-qdq", calibration)
    new_cos = cosine(run(tmp_path / "new.onnx", held), ref)
    print(f"cosine vs fp32: with exclusion {new_cos:.4f}")
    assert new_cos > 0.99, (new_cos, meta["quantization_exclusions"])
    ex = meta["quantization_exclusions"]
    assert set(ex["flagged_tensors"]) == {"mask_add", "masked"}
    assert ex["flagged_tensors"]["masked"]["min"] <= sentinel + 1  # the sentinel itself is recorded
    assert ex["flagged_tensors"]["masked"]["max"] < 100
    assert [(e["node"], e["op_type"]) for e in ex["excluded_nodes"]] == [
        ("mask/Mul", "Mul"), ("attn/Add", "Add"), ("attn/Softmax", "Softmax")]
    assert ex["excluded_nodes"][1] == {"node": "attn/Add", "op_type": "Add", "reads": ["mask_add"], "writes": ["masked"]}
    assert "3 node(s) left float32" in ex["summary"]
    assert meta["calibrate_method"] == "MinMax" and meta["sentinel_exclusion"]["abs_threshold"] == 1e4

    import onnx

    q = onnx.load(str(tmp_path / "new.onnx"))
    # nothing quantizes the masked scores; the MatMuls are still quantized (the variant is int8)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in ("masked", "mask_add") for n in q.graph.node)
    quantized = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert {"x", "probs"} <= quantized


def test_unnamed_nodes_are_named_then_excluded(tmp_path: Path) -> None:
    import onnx

    from engine_runner.precision import Calibration, convert

    src = build_masked_attention(tmp_path / "attn.onnx", FLOAT_MIN)
    model = onnx.load(str(src))
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, str(src))
    calib = padded_inputs(8, seed=3)
    feeds = [{k: v[i:i + 1] for k, v in calib.items()} for i in range(8)]
    meta = convert(src, tmp_path / "q.onnx", "int8-qdq", Calibration("generated", "t", feeds, {}))
    names = [e["node"] for e in meta["quantization_exclusions"]["excluded_nodes"]]
    assert names == ["Mul__es8", "Add__es9", "Softmax__es10"]
    assert any("unnamed nodes named" in f for f in meta["fixes"])
    held = padded_inputs(8, seed=4)
    assert cosine(run(tmp_path / "q.onnx", held), run(src, held)) > 0.99


def test_bench_job_records_exclusions_in_run_config(es_env: str, tmp_path: Path) -> None:
    """Through the model_bench job: the variant meta (artifact) and each int8-qdq run's config name
    the excluded nodes; accuracy vs fp32 on padded held-out inputs stays high."""
    from sqlalchemy import select

    from db.jobs import start_inline_job
    from db.models import AccuracyResult, Artifact, Run
    from db.session import session_scope
    from db.store import add_model
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    model_id = int(add_model(build_masked_attention(tmp_path / "attn.onnx", FLOAT_MIN)).id)
    np.savez(tmp_path / "calib.npz", **padded_inputs(16, seed=5))
    np.savez(tmp_path / "held.npz", **padded_inputs(8, seed=6))
    spec = {"model_id": model_id, "precisions": ["fp32", "int8-qdq"], "batch_sizes": [4], "iterations": 5,
            "min_duration_s": 0, "warmup_iterations": 1, "warmup_s": 0, "profile_layers": False,
            "calibration_npz": str(tmp_path / "calib.npz"), "inputs_npz": str(tmp_path / "held.npz")}
    job_id = start_inline_job("model_bench", spec, model_id=model_id, url=es_env)
    assert execute(JobContext(job_id=job_id, kind="model_bench", spec=spec, db_url=es_env, hooks=[])) == "succeeded"
    with session_scope(es_env) as s:
        art = s.execute(select(Artifact).where(Artifact.kind == "onnx_variant")).scalar_one()
        run_ = s.execute(select(Run).where(Run.job_id == job_id, Run.precision == "int8-qdq")).scalar_one()
        acc = s.execute(select(AccuracyResult).where(AccuracyResult.run_id == run_.id,
                                                     AccuracyResult.output_name == "y")).scalar_one()
        art_meta, cfg, acc_cos = dict(art.meta), dict(run_.config), acc.cosine
    nodes = [e["node"] for e in art_meta["quantization_exclusions"]["excluded_nodes"]]
    assert nodes == ["mask/Mul", "attn/Add", "attn/Softmax"]
    assert cfg["variant"]["quantization_exclusions"]["excluded_nodes"] == art_meta["quantization_exclusions"]["excluded_nodes"]
    assert art_meta["quantization_exclusions"]["flagged_tensors"]["masked"]["min"] == pytest.approx(FLOAT_MIN, rel=1e-6)
    assert acc_cos > 0.99


def test_percentile_calibration_skips_the_sentinel_tensors(tmp_path: Path) -> None:
    """A histogram calibrator cannot bin a range as wide as float32 (its width overflows to inf):
    Percentile runs on all but the flagged tensors, and the method and its options are in the meta."""
    from engine_runner.precision import Calibration, QdqOptions, convert

    src = build_masked_attention(tmp_path / "attn.onnx", FLOAT_MIN)
    calib = padded_inputs(8, seed=7)
    feeds = [{k: v[i:i + 1] for k, v in calib.items()} for i in range(8)]
    meta = convert(src, tmp_path / "p.onnx", "int8-qdq", Calibration("generated", "t", feeds, {}),
                   QdqOptions(calibrate_method="Percentile"))
    assert meta["calibrate_method"] == "Percentile" and meta["calibrate_options"]["percentile"] == 99.999
    ex = meta["quantization_exclusions"]
    assert ex["flagged_tensors"]["masked"]["min"] == pytest.approx(FLOAT_MIN, rel=1e-6)
    assert [e["node"] for e in ex["excluded_nodes"]] == ["mask/Mul", "attn/Add", "attn/Softmax"]
    held = padded_inputs(8, seed=8)
    assert cosine(run(tmp_path / "p.onnx", held), run(src, held)) > 0.98
