"""The database EngineScope wrote on the H200 with ``--profile-kernels 3 --ncu-top 8`` (benchmarks/h200/kernels.sh,
2026-12-03 16:25 UTC; ResNet-50 with random weights, batch 8, fp32 and fp16, ONNX Runtime CUDA 1.31.1 and PyTorch
2.11 eager; RESULTS.md) opens here, on a machine without a GPU, in the Kernels page: each engine's profiled runs
have a kernel timeline and ncu metrics for their top kernels, on a roofline measured on that GPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.dashboard.conftest import page
from tests.dashboard.test_pages import _frame, _texts

H200_DB = Path(__file__).resolve().parents[1] / "data" / "h200_kernels.db"


@pytest.fixture
def h200(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from db.session import get_engine, migrate

    db = tmp_path / "enginescope.db"
    shutil.copy(H200_DB, db)  # never touch the stored copy
    db.chmod(0o644)
    url = f"sqlite:///{db}"
    monkeypatch.setenv("ENGINESCOPE_HOME", str(tmp_path))
    monkeypatch.setenv("ENGINESCOPE_DB_URL", url)
    get_engine.cache_clear()
    migrate(url)  # at head already: proves the schema matches
    yield url
    get_engine.cache_clear()


def _runs(url: str) -> dict[str, int]:
    from db.models import Run
    from db.session import session_scope

    with session_scope(url) as s:
        return {r.label: r.id for r in s.execute(select(Run)).scalars()}


def test_each_engine_has_a_timeline_and_ncu_metrics(h200: str) -> None:
    from db.kernels import load_ncu, load_trace, profiled_runs

    runs = _runs(h200)
    listed = {r["run_id"]: r for r in profiled_runs(h200)}
    for engine_label, tool in (("resnet50.onnx onnxruntime", "onnxruntime+kineto"), ("hf_resnet50 torch", "torch.profiler")):
        timelines = [rid for label, rid in runs.items() if label.startswith(engine_label) and label.endswith(f"[profiled: {tool}]")]
        ncus = [rid for label, rid in runs.items() if label.startswith(engine_label) and label.endswith("[profiled: ncu]")]
        assert len(timelines) == 2 and len(ncus) == 2  # fp32 and fp16
        for rid in timelines:
            trace = load_trace(rid, h200, with_api=False)
            assert trace is not None and trace.source_tool == tool
            kernels = trace.kernels()
            assert len(kernels) > 100 and {k.iteration for k in kernels} == {0, 1, 2}
            assert listed[rid]["of_run_id"] in runs.values()
            if tool == "onnxruntime+kineto":  # every ORT kernel attributed to the node that launched it
                assert all(k.op for k in kernels)
        for rid in ncus:
            rows = load_ncu(rid, h200)
            assert len({r["name"] for r in rows}) == 8
            assert all(r["duration_ns"] and r["duration_ns"] > 0 for r in rows)
            assert any(r["category"] == "gemm/conv" and r["arithmetic_intensity"] for r in rows)


def test_kernels_page_shows_the_h200_ort_fp16_run(h200: str) -> None:
    runs = _runs(h200)
    rid = runs["resnet50.onnx onnxruntime fp16 b8 [profiled: onnxruntime+kineto]"]
    at = page("kernels")
    at.query_params["run"] = str(rid)
    at.run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert "onnxruntime+kineto" in text and "NVIDIA H200" in text
    top = _frame(at, "kernel", "share %", "full name")
    assert len(top) > 10 and top["share %"].sum() == pytest.approx(100.0)
    assert any("implicit_gemm" in n or "xmma" in n for n in top["full name"])
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [f["layout"].get("title", {}).get("text", "") for f in figs]
    assert "Timeline" in titles and "GPU time by kernel category" in titles


def test_kernels_page_roofline_of_the_h200_ncu_run(h200: str) -> None:
    runs = _runs(h200)
    rid = runs["hf_resnet50 torch fp16 (weights cast) b8 [profiled: ncu]"]
    at = page("kernels")
    at.query_params["run"] = str(rid)
    at.run()
    assert not at.exception, at.exception
    figs = {json.loads(c.proto.spec)["layout"].get("title", {}).get("text", ""): json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}
    roof = next(f for t, f in figs.items() if t.startswith("Roofline"))
    assert any(t.get("name", "").startswith("kernels:") for t in roof["data"])
    text = _texts(at)
    assert "measured in this job with PyTorch and CUDA events" in text  # the ceilings' source, stored with the run
