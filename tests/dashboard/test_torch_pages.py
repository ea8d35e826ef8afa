"""The dashboard's PyTorch path, on real tiny models (CPU): a Hugging Face folder registered on Models, the
New benchmark form offering the engines of the model's format with the PyTorch options (errors name the form's
fields), and Compare showing a PyTorch run beside the ONNX Runtime run of the ONNX exported from it (real export
and bench jobs, run inline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.dashboard.conftest import page

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

FAST = {"warmup_iterations": 2, "warmup_s": 0.0, "iterations": 10, "min_duration_s": 0.0, "profile_layers": False}


def _bert(tmp_path: Path) -> Path:
    from tests.integration.torch_models_build import build_bert

    return build_bert(tmp_path / "tiny_bert")


def _inline(url: str, kind: str, spec: dict[str, Any], model_id: int | None = None) -> int:
    """Run a job in this process as the worker would (``db.jobs.start_inline_job`` + ``execute``)."""
    from db.jobs import start_inline_job
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    job_id = start_inline_job(kind, spec, device="cpu", model_id=model_id, origin="cli", url=url)
    status = execute(JobContext(job_id=job_id, kind=kind, spec=spec, db_url=url, hooks=[]))
    assert status == "succeeded", status
    return job_id


def _bench(url: str, model_id: int, **extra: Any) -> int:
    from engine_runner.jobs.model_bench import plan
    from profiles.specs import BenchSpec, validate_spec

    spec = validate_spec(BenchSpec, {"model_id": model_id, "precisions": ["fp32"], "batch_sizes": [1], **FAST, **extra})
    plan(spec, url)
    return _inline(url, "model_bench", spec.model_dump(mode="json"), model_id)


def test_models_page_registers_a_hugging_face_folder(es_env: str, tmp_path: Path) -> None:
    from db.models import Model
    from db.session import session_scope

    folder = _bert(tmp_path)
    at = page("models").run()
    at.text_input(key="models_server_path").input(str(folder)).run()
    at.button(key="models_register_path").click().run()
    assert not at.exception, at.exception
    assert any("Added model" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(es_env) as s:
        row = s.execute(select(Model)).scalar_one()
        assert row.format == "hf" and [i["name"] for i in row.inputs][:2] == ["input_ids", "attention_mask"]
    # the inspection shows what the folder's config says, not ONNX fields
    metrics = {x.label: x.value for x in at.metric}
    assert metrics["Format"] == "Hugging Face folder (PyTorch)" and metrics["Architecture"] == "BertModel"
    assert "Opset" not in metrics and "IR version" not in metrics
    table = next(d.value for d in at.dataframe if "format" in d.value.columns)
    assert list(table["format"]) == ["Hugging Face folder (PyTorch)"]
    empty = tmp_path / "no_config"
    empty.mkdir()
    at.text_input(key="models_server_path").input(str(empty)).run()
    at.button(key="models_register_path").click().run()
    assert not at.exception
    assert any("no_config" in e.value and "config.json" in e.value for e in at.error), [e.value for e in at.error]


def test_new_benchmark_offers_pytorch_for_a_hf_model_and_names_its_fields(es_env: str, tmp_path: Path) -> None:
    from db.models import Job
    from db.session import session_scope
    from engine_runner.torch_models import register_source

    model_id = register_source(str(_bert(tmp_path)), url=es_env)
    at = page("new_benchmark")
    at.session_state["models_selected_id"] = model_id
    at.run()
    assert not at.exception, at.exception
    assert list(at.radio(key="newbench_engine_hf").options) == ["PyTorch"]  # ONNX engines do not run a folder
    assert at.number_input(key="newbench_torch_seq_len").value == 64  # 128 capped at the model's 64 positions
    # the same planning as `enginescope bench` runs before queueing; its message names this form's field
    at.number_input(key="newbench_torch_seq_len").set_value(100).run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception
    assert any("'Sequence length (token positions)' 100" in e.value and "64 positions" in e.value
               and "--seq-len" not in e.value for e in at.error), [e.value for e in at.error]
    at.checkbox(key="newbench_torch_compile").check().run()
    at.text_input(key="newbench_torch_backend").input("bad backend!").run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception
    assert any("Compile backend" in e.value for e in at.error), [e.value for e in at.error]
    with session_scope(es_env) as s:
        assert s.execute(select(Job)).first() is None  # nothing queued
    at.text_input(key="newbench_torch_backend").input("inductor").run()
    at.radio(key="newbench_torch_cast").set_value("autocast").run()
    at.number_input(key="newbench_torch_seq_len").set_value(32).run()
    at.multiselect(key="newbench_precisions_torch").set_value(["fp32", "bf16"]).run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(es_env) as s:
        job = s.execute(select(Job)).scalar_one()
    assert job.spec["engine"] == "torch" and job.spec["precisions"] == ["fp32", "bf16"]
    assert {k: job.spec["torch"][k] for k in ("compile", "compile_backend", "cast", "seq_len")} == \
        {"compile": True, "compile_backend": "inductor", "cast": "autocast", "seq_len": 32}


def test_compare_shows_a_pytorch_run_beside_the_onnx_exported_from_it(es_env: str, tmp_path: Path) -> None:
    from dashboard import data
    from engine_runner.torch_models import register_source

    folder = _bert(tmp_path)
    hf_id = register_source(str(folder), url=es_env)
    export_job = _inline(es_env, "export", {"source": str(folder), "out_path": str(tmp_path / "tiny_bert.onnx"),
                                            "exporter": "torchscript", "seq_len": 16, "opset": 17})
    onnx_id = int(data.get_job(es_env, export_job)["model_id"])
    assert [int(m["id"]) for m in data.related_models(es_env, onnx_id)] == [hf_id]
    assert [int(m["id"]) for m in data.related_models(es_env, hf_id)] == [onnx_id]
    torch_job = _bench(es_env, hf_id, engine="torch", torch={"seq_len": 16})
    ort_job = _bench(es_env, onnx_id, engine="onnxruntime", dim_values={"sequence": 16})

    rows = data.run_rows(es_env, model_id=[onnx_id, hf_id])
    assert {(r["engine"], r["job_id"]) for r in rows} == {("torch", torch_job), ("onnxruntime", ort_job)}
    at = page("compare")
    at.session_state["models_selected_id"] = onnx_id
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key=f"compare_related_{onnx_id}").value == [hf_id]
    at.multiselect(key="compare_jobs").set_value([torch_job, ort_job]).run()
    assert not at.exception, at.exception
    runs = at.multiselect(key="compare_runs_" + "_".join(map(str, sorted([torch_job, ort_job]))))
    labels = [runs.format_func(v) for v in runs.value]  # adding the job selected its run
    assert len(labels) == 2 and any("torch" in x and "tiny_bert:" in x for x in labels) \
        and any("onnxruntime" in x.lower() and "tiny_bert.onnx" in x for x in labels), labels
