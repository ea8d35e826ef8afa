"""PyTorch engine options (profiles.torch_spec), the engine's operator rows from a real torch.profiler
pass, the timing loop's injected per-call timer, and the model-folder helpers that need no model load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from profiles.errors import InputError
from profiles.torch_spec import DEFAULT_SEQ_LEN, TorchOptions, parse_torch_options, precision_detail


def test_defaults_and_labels() -> None:
    opts = parse_torch_options(None)
    assert opts == TorchOptions() and opts.seq_len is None and DEFAULT_SEQ_LEN == 128
    assert opts.mode_label() == "eager" and opts.cast == "weights" and opts.allow_pickle is False
    assert parse_torch_options({"compile": True, "compile_mode": "max-autotune"}).mode_label() == \
        "torch.compile (backend inductor, mode max-autotune)"
    assert parse_torch_options({"cuda_graph": True}).mode_label() == "eager + CUDA graph"


@pytest.mark.parametrize(("data", "flag"), [
    ({"seq_len": 0}, "--seq-len"), ({"seq_len": 2_000_000}, "--seq-len"), ({"cast": "half"}, "--cast"),
    ({"compile_mode": "fast"}, "--compile-mode"), ({"compile": True, "compile_backend": "a b"}, "--compile-backend"),
    ({"compile_mode": "max-autotune"}, "--compile-mode/--compile-backend apply only with --compile"),
    ({"compile": True, "compile_mode": "reduce-overhead", "cuda_graph": True}, "--cuda-graph with --compile-mode"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_options_name_the_flag(data: dict, flag: str) -> None:
    with pytest.raises(InputError) as info:
        parse_torch_options(data)
    assert str(info.value).startswith("invalid torch options: ") and flag in str(info.value)


def test_precision_detail() -> None:
    assert precision_detail("fp32", "weights") == "fp32 (TF32 off)"
    assert precision_detail("tf32", "autocast").startswith("tf32 (fp32 weights")
    assert precision_detail("fp16", "weights") == "fp16 (weights cast)"
    assert precision_detail("bf16", "autocast") == "bf16 (autocast)"
    with pytest.raises(InputError, match="--precision"):
        precision_detail("int8-qdq", "weights")


def test_time_calls_uses_the_injected_timer() -> None:
    from engine_runner.timing import TimingPolicy, time_calls

    calls = {"fn": 0, "timed": 0}

    def fn() -> None:
        calls["fn"] += 1

    def timed() -> int:
        calls["timed"] += 1
        return 1000 + calls["timed"]

    res = time_calls(fn, TimingPolicy(warmup_iterations=3, warmup_s=0, iterations=4, min_duration_s=0), timed=timed)
    assert calls == {"fn": 3, "timed": 4}  # warm-up calls fn, the timed phase only the timer
    assert res.samples_ns.tolist() == [1001, 1002, 1003, 1004] and res.samples_ns.dtype == np.int64


def test_operator_rows_from_a_real_profile() -> None:
    """Top-level operators of each marked inference, module scopes from hooks, no double counting of nested
    operators (aten::linear's aten::addmm is inside it), counts = inferences."""
    import torch

    from engine_runner.engines.torch_engine import Engine, _Handle, operator_rows

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    h = _Handle(module=model, fmt="hf", device="cpu", precision="fp32", weights_dtype=torch.float32,
                autocast_dtype=None, tf32=False, opts=TorchOptions(), input_names=[])
    eng = Engine()
    hooks = eng._module_hooks(h)
    x = torch.randn(2, 8)
    from torch.profiler import ProfilerActivity, profile, record_function

    try:
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for i in range(3):
                with record_function(f"enginescope.inference#{i}"):
                    model(x)
    finally:
        for hd in hooks:
            hd.remove()
    rows, totals = operator_rows(prof.events(), 3, on_cuda=False)
    names = [r.name for r in rows]
    assert names == ["0/aten::linear", "1/aten::relu", "2/aten::linear"], names
    assert all(r.count == 3 and r.op_type in ("aten::linear", "aten::relu") for r in rows)
    assert rows[0].details["input_shapes"][0] == [2, 8] and rows[0].details["module"] == "0"
    assert sum(r.percentage for r in rows) == pytest.approx(100.0)
    assert totals["summed_ms_per_inference"] == pytest.approx(sum(r.avg_ms for r in rows))
    assert all(r.median_ms is not None and r.total_ms == pytest.approx(r.avg_ms * 3) for r in rows)


def test_safetensors_header_param_count(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from engine_runner.torch_models import safetensors_param_count
    from profiles.errors import ModelError

    save_file({"a": np.zeros((3, 4), np.float32), "b": np.zeros(5, np.float16)}, str(tmp_path / "m.safetensors"))
    assert safetensors_param_count(tmp_path / "m.safetensors") == 17
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ModelError, match="bad.safetensors"):
        safetensors_param_count(tmp_path / "bad.safetensors")


def test_folder_weights_and_pickle_policy(tmp_path: Path) -> None:
    from engine_runner.torch_models import _folder_files, _folder_weights, _pt2_pickled_entries
    from profiles.errors import ModelError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    for n in ("model-00001-of-00002.safetensors", "pytorch_model.bin", "training_args.bin", "w.pt"):
        (tmp_path / n).write_bytes(b"x")
    safes, pickles = _folder_weights(tmp_path, _folder_files(tmp_path))
    assert safes == ["model-00001-of-00002.safetensors"]
    assert pickles == ["pytorch_model.bin", "w.pt"]  # training_args.bin is not weights transformers loads
    (tmp_path / "x.pt2").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="x.pt2: not a torch.export archive"):
        _pt2_pickled_entries(tmp_path / "x.pt2")


def test_dashboard_variant_label_says_how_the_precision_was_made() -> None:
    from dashboard.data import variant_label

    assert variant_label("onnxruntime", "fp16", "x", {}) == "onnxruntime / fp16"
    assert variant_label("torch", "fp16", None, {"precision_detail": "fp16 (weights cast)", "mode": "eager"}) == \
        "torch / fp16 (weights cast)"
    assert variant_label("torch", "bf16", None, {"precision_detail": "bf16 (autocast)",
                                                 "mode": "torch.compile (backend inductor, mode default) + CUDA graph"}) \
        == "torch / bf16 (autocast), compile + CUDA graph"


def test_torch_operators_have_canonical_kinds() -> None:
    """The torch engine's rows (aten ops) meet ONNX/TensorRT op types in layer matching's op_shape pass."""
    from profiles.layer_match import canonical_op

    assert canonical_op("aten::linear") == canonical_op("MatMul") == canonical_op("Gemm") == "matmul"
    assert canonical_op("aten::conv2d") == canonical_op("Conv") == "conv"
    assert canonical_op("aten::layer_norm") == canonical_op("LayerNormalization")
    assert canonical_op("aten::scaled_dot_product_attention") == "aten::scaled_dot_product_attention"
