"""`enginescope import --json` on the real trtexec fixtures: values equal to the files'."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Artifact, LatencySample, LayerTiming, Run, Summary
from db.session import session_scope
from engine_runner.cli import app

T = "fixtures/trtexec/"


def _import(shared, *names):
    res = CliRunner().invoke(app, ["import", "--json", *[str(shared / T / n) for n in names]])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)["runs"]


def test_resnet18_fp32_fp16_int8(es_env, shared):
    names = [f"trex_resnet18_a100_{v}.{k}.json" for v in ("fp32", "int8qat") for k in ("graph", "profile")]
    names += [f"trex_resnet18_a100_fp16.{k}.json" for k in ("graph", "profile", "timing", "profile.metadata", "build.metadata")]
    runs = {r["label"]: r for r in _import(shared, *names)}
    assert set(runs) == {"trex_resnet18_a100_fp32", "trex_resnet18_a100_int8qat", "trex_resnet18_a100_fp16"}
    fp16, fp32, int8 = runs["trex_resnet18_a100_fp16"], runs["trex_resnet18_a100_fp32"], runs["trex_resnet18_a100_int8qat"]
    assert (fp16["precision"], fp32["precision"], int8["precision"]) == ("fp16", "fp32", "int8-qdq")
    assert (fp16["layers"], fp32["layers"], int8["layers"]) == (36, 32, 37)
    for r in runs.values():
        assert r["source"] == "import:trtexec" and r["engine"] == "tensorrt" and r["engine_version"] is None
    # profile.metadata.json: "Latency": [0.856049, 0.872559, 0.86277, 0.862183, 0.871338], "Throughput": 1155.36
    assert fp16["latency_ms"] == {"mean": 0.86277, "p50": 0.862183, "p90": None, "p95": None, "p99": 0.871338,
                                  "min": 0.856049, "max": 0.872559}
    assert fp16["throughput_per_s"] == 1155.36
    assert fp32["latency_ms"]["p50"] is None and fp32["throughput_per_s"] is None  # no summary in those files
    with session_scope(es_env) as s:
        n_samples = s.execute(select(func.count()).select_from(LatencySample).where(LatencySample.run_id == fp16["run_id"])).scalar()
        assert n_samples == 3698
        first = s.execute(select(LatencySample.latency_ns).where(LatencySample.run_id == fp16["run_id"], LatencySample.seq == 0)).scalar()
        assert first == 873472  # "latencyMs" : 0.873472
        conv = s.execute(select(LayerTiming).where(LayerTiming.run_id == fp32["run_id"], LayerTiming.idx == 0)).scalar_one()
        assert (conv.name, conv.op_type, conv.precision, conv.avg_ms, conv.percentage, conv.fused) == (
            "Conv_0 + Relu_1", "CaskConvolution", "fp32", 0.52224, 24.5902, True)
        assert conv.details["inputs"][0]["shape"] == [32, 3, 224, 224]
        q = s.execute(select(LayerTiming).where(LayerTiming.run_id == int8["run_id"], LayerTiming.idx == 0)).scalar_one()
        assert q.name == "QuantizeLinear_2" and q.avg_ms == 0.06144
        kinds = set(s.execute(select(Artifact.kind).where(Artifact.run_id == fp16["run_id"])).scalars())
        assert kinds == {"trtexec_layers", "trtexec_profile", "trtexec_times", "trtexec_metadata"}


def test_every_fixture_imports(es_env, shared):
    files = sorted(p for p in (shared / T).rglob("*") if p.is_file())
    res = CliRunner().invoke(app, ["import", "--json", *map(str, files)])
    assert res.exit_code == 0, res.output
    runs = {r["label"]: r for r in json.loads(res.output)["runs"]}
    assert len(runs) == 16
    for r in runs.values():
        assert set(r["latency_ms"]) == {"mean", "p50", "p90", "p95", "p99", "min", "max"}
        assert "timing_window" in r and (r["timing_window"] is None or isinstance(r["timing_window"], str))
    assert any(r["timing_window"] for r in runs.values())  # a log with timings says what a sample includes
    v86 = runs["hackathon_trt8.6.0_loadengine_shapes_verbose"]
    assert v86["engine_version"] == "8.6.0" and v86["precision"] == "fp32" and v86["throughput_per_s"] == 21009.2
    assert v86["latency_ms"] == {"mean": 0.0533242, "p50": 0.0517578, "p90": 0.0532227, "p95": 0.053772, "p99": 0.0630798,
                                 "min": 0.0490112, "max": 0.617065}
    v80 = runs["hackathon_trt8.0.3_fp16_dynamic_verbose"]
    assert v80["engine_version"] == "8.0.3" and v80["precision"] == "fp16" and v80["latency_ms"]["p99"] == 0.165161
    assert v80["latency_ms"]["p90"] is None
    v10 = runs["hackathon_trt10.16_run_shapes_cudagraph_verbose"]
    assert v10["engine_version"] == "10.16.1" and v10["latency_ms"]["mean"] == 0.0387646 and v10["throughput_per_s"] == 24896.9
    assert runs["hackathon_trt10.16_dumpProfile"]["layers"] == 15
    assert runs["detr_int8"]["layers"] == 840
    failed = runs["onnx-tensorrt_800_trt8.0.3_unsupported_op_FAILED"]
    assert failed["status"] == "failed" and "Plugin not found" in failed["error"]
    assert runs["TensorRT_2739_runtime_shape_outside_profile"]["status"] == "failed"
    with session_scope(es_env) as s:
        run = s.get(Run, v10["run_id"])
        assert "GPU compute only" in run.timing_window and run.environment["gpu"] == "NVIDIA H100 PCIe"
        e2e = s.execute(select(Summary).where(Summary.run_id == v80["run_id"], Summary.metric == "end_to_end_host_latency_ms")).scalar_one()
        assert (e2e.mean, e2e.p99, e2e.source) == (0.283727, 0.298584, "trtexec")


def test_bad_file_exit_code_2(es_env, tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('{"hello": 1}')
    res = CliRunner().invoke(app, ["import", str(bad)])
    assert res.exit_code == 2 and "results.json" in res.output
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Run)).scalar() == 0
