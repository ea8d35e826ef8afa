"""``enginescope bench`` as a user runs it: the real console script in a subprocess, a fresh
ENGINESCOPE_HOME, real ONNX Runtime runs on graphs built here (and a ../shared model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ort_graphs import build_cnn, build_single_op  # tests/integration is on sys.path (rootdir-relative import)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAST = ["--iterations", "20", "--min-duration", "0", "--warmup", "2", "--warmup-s", "0"]


def enginescope(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("enginescope")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "engine_runner.cli"]
    # PYTHONPATH: the console script must run this checkout's code, not whatever checkout the venv's editable
    # install points at (a git worktree shares the venv of the main checkout)
    env = {**os.environ, "ENGINESCOPE_HOME": str(home), "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("ENGINESCOPE_DB_URL", None)
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


LAT_KEYS = {"mean", "std", "min", "p50", "p90", "p95", "p99", "max"}
ACC_KEYS = {"max_abs_err", "max_rel_err", "cosine", "nan_count", "inf_count"}
RUN_KEYS = {"run_id", "engine", "precision", "batch_size", "status", "error", "latency_ms", "samples",
            "throughput_per_s", "layers", "accuracy"}


def test_json_document(tmp_path: Path) -> None:
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--precision", "fp32", "--precision", "fp16",
                      "--batch", "1", "--batch", "2", "--json", *FAST)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # exactly one JSON document: json.loads refuses trailing data
    assert set(doc) >= {"job_id", "runs"} and isinstance(doc["job_id"], int)
    assert [(r["precision"], r["batch_size"]) for r in doc["runs"]] == [("fp32", 1), ("fp32", 2), ("fp16", 1), ("fp16", 2)]
    for r in doc["runs"]:
        assert RUN_KEYS <= set(r)
        assert r["engine"] == "onnxruntime" and r["status"] == "succeeded" and r["error"] is None
        assert set(r["latency_ms"]) == LAT_KEYS
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert r["samples"] >= 20 and r["layers"] > 0 and r["throughput_per_s"] > 0
        assert isinstance(r["timing_window"], str) and r["timing_window"] and r["warnings"] == []
        if r["precision"] == "fp32":
            assert r["accuracy"] is None
        else:
            assert set(r["accuracy"]) == ACC_KEYS and r["accuracy"]["cosine"] > 0.999
    assert "progress" in res.stderr or "stage" in res.stderr  # progress goes to stderr, not stdout
    # a model id works as MODEL; without --json a table is printed
    again = enginescope(tmp_path / "home", "bench", "1", "--precision", "int8-dynamic", "--no-layers", *FAST)
    assert again.returncode == 0, again.stderr
    assert "int8-dynamic" in again.stdout and "p50 ms" in again.stdout and "succeeded" in again.stdout


def test_bad_shape_exits_2(tmp_path: Path) -> None:
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--shape", "x=1x4x8x8", "--json")
    assert res.returncode == 2
    assert "dim 1 of input 'x' is fixed at 3" in res.stderr
    assert res.stdout == ""


def test_not_onnx_exits_2(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("this is a text file, not a model\n")
    res = enginescope(tmp_path / "home", "bench", str(bogus))
    assert res.returncode == 2
    assert "notes.onnx" in res.stderr
    res = enginescope(tmp_path / "home", "bench", str(tmp_path / "missing.onnx"))
    assert res.returncode == 2 and "missing.onnx" in res.stderr


def test_failed_run_exits_1(tmp_path: Path) -> None:
    """The fp16 variant of a Celu graph does not load in ONNX Runtime (see test_ort_bench): exit 1,
    fp32 still reported as succeeded."""
    model = build_single_op(tmp_path / "celu.onnx", "Celu")
    res = enginescope(tmp_path / "home", "bench", str(model), "--precision", "fp32", "--precision", "fp16",
                      "--json", "--no-layers", *FAST)
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    status = {r["precision"]: r["status"] for r in doc["runs"]}
    assert status == {"fp32": "succeeded", "fp16": "failed"}
    failed = next(r for r in doc["runs"] if r["precision"] == "fp16")
    assert "Celu" in failed["error"] and failed["latency_ms"] is None


def test_shared_model_with_batch_and_calibration(tmp_path: Path, shared: Path) -> None:
    import numpy as np

    calib = tmp_path / "calib.npz"
    np.savez(calib, **{"input_1:0": np.random.default_rng(0).standard_normal((4, 3, 128, 128)).astype(np.float32)})
    res = enginescope(tmp_path / "home", "bench", str(shared / "models/onnx/st_mobilenet_v2_128_0.5.onnx"),
                      "--precision", "fp32", "--precision", "int8-qdq", "--batch", "2", "--calibration", str(calib),
                      "--json", *FAST)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [r["batch_size"] for r in doc["runs"]] == [2, 2]
    assert doc["runs"][1]["accuracy"]["cosine"] > 0.5


def test_inputs_npz_flag(tmp_path: Path) -> None:
    """--inputs: 4 samples at --batch 2 -> timing on the first batch, accuracy over both; a sample count
    that is not a multiple of the batch exits 2 naming the key, before any job runs."""
    import numpy as np

    model = build_cnn(tmp_path / "cnn.onnx")
    good = tmp_path / "inputs.npz"
    np.savez(good, x=np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32))
    res = enginescope(tmp_path / "home", "bench", str(model), "--precision", "fp32", "--precision", "int8-dynamic",
                      "--batch", "2", "--inputs", str(good), "--json", "--no-layers", *FAST)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    for r in doc["runs"]:
        assert r["shapes"] == {"x": [2, 3, 8, 8]}
        assert r["inputs"]["source"] == "npz" and r["inputs"]["samples"] == 4 and r["inputs"]["batches"] == 2
    assert 0.9 < doc["runs"][1]["accuracy"]["cosine"] <= 1.0
    assert "accuracy on 2 batch(es)" in res.stderr
    three = tmp_path / "three.npz"
    np.savez(three, x=np.zeros((3, 3, 8, 8), np.float32))
    bad = enginescope(tmp_path / "home", "bench", str(model), "--batch", "2", "--inputs", str(three), "--json")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "--inputs three.npz: key 'x' holds 3 samples" in bad.stderr
    missing = enginescope(tmp_path / "home", "bench", str(model), "--inputs", str(tmp_path / "nope.npz"))
    assert missing.returncode == 2 and "nope.npz" in missing.stderr


def test_capped_timing_loop_warns_and_table_shows_timing_window(tmp_path: Path) -> None:
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--no-layers", "--warmup", "0", "--warmup-s", "0",
                      "--iterations", "10000000", "--min-duration", "0", "--max-duration", "0.2")
    assert res.returncode == 0, res.stderr
    assert "timing window: " in res.stdout
    assert "warning: timed loop capped by max_duration_s=0.2: " in res.stdout
    assert "of 10000000 requested iterations" in res.stdout
    assert "warning: " in res.stderr and "capped by max_duration_s" in res.stderr  # the job's warning event


def test_unknown_dim_exits_2_listing_the_models_dims(tmp_path: Path) -> None:
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--dim", "sequence=8", "--json")
    assert res.returncode == 2 and res.stdout == ""
    assert "--dim sequence=8: 'sequence' is not a symbolic dim of the model (its symbolic dims: N)" in res.stderr


def test_precision_and_engine_names_are_case_insensitive_and_int8_is_resolved(tmp_path: Path) -> None:
    """--precision FP16 / Int8 and --engine ORT are catalogue names in another case or an alias; int8 runs as
    int8-qdq and the output says so (stderr event, table note, JSON notes)."""
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--engine", "ORT", "--device", "CPU",
                      "--precision", "FP16", "--precision", "Int8", "--json", "--no-layers", *FAST)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [(r["engine"], r["precision"], r["status"]) for r in doc["runs"]] == [
        ("onnxruntime", "fp16", "succeeded"), ("onnxruntime", "int8-qdq", "succeeded")]
    assert doc["notes"] == ["int8 resolved to int8-qdq (static Q/DQ, calibrated)"]
    assert "int8 resolved to int8-qdq (static Q/DQ, calibrated)" in res.stderr
    table = enginescope(tmp_path / "home", "bench", "1", "--precision", "INT8", "--no-layers", "--quiet", *FAST)
    assert table.returncode == 0, table.stderr
    assert "note: int8 resolved to int8-qdq (static Q/DQ, calibrated)" in table.stdout


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp64"], "--precision: 'fp64' is not a precision of onnxruntime "
                              "(choose fp32, fp16, int8-dynamic, int8-qdq, int8)"),
    (["--precision", "fp32", "--precision", "bf16"], "--precision: 'bf16' is not a precision of onnxruntime"),
    (["--device", "cuda:x"], "--device: 'cuda:x' is not a device (choose cpu, cuda or cuda:N with N >= 0)"),
    (["--engine", "jax"], "--engine: 'jax' is not an engine (choose onnxruntime, tensorrt, torch"),
    (["--engine", "tensorrt", "--device", "cpu"], "--device: tensorrt does not run on cpu"),
    (["--device", "cuda:0", "--precision", "int8-dynamic"], "--precision: 'int8-dynamic' of onnxruntime does not run on cuda"),
    (["--batch", "0"], "--batch: batch size 0 is outside 1..65536"),
    (["--iterations", "0"], "--iterations: Input should be greater than or equal to 1"),
])
def test_bad_names_exit_2_naming_the_flag(tmp_path: Path, args: list[str], message: str) -> None:
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), *args, "--json")
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert message in res.stderr
    assert "precisions." not in res.stderr and "batch_sizes" not in res.stderr


def test_cuda_device_without_the_gpu_build_fails_clearly(tmp_path: Path) -> None:
    """On a CPU-only onnxruntime, ``--device cuda:0`` is refused before any job runs (exit 1, an
    EngineError naming CUDAExecutionProvider and onnxruntime-gpu); it never silently runs on the CPU."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDAExecutionProvider")
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--device", "cuda:0", "--json", *FAST)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "CUDAExecutionProvider is not available" in res.stderr and "pip install onnxruntime-gpu" in res.stderr
    assert res.stdout == ""  # no job document: nothing ran
    res = enginescope(tmp_path / "home", "bench", str(model), "--cuda-graph", *FAST)
    assert res.returncode == 2 and "--cuda-graph: CUDA graphs need a CUDA device" in res.stderr
