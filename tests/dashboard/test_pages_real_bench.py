"""AppTests of Compare and Layers on results of a REAL model_bench job (ONNX Runtime, CPU) on the MLP
built in conftest: what the pages show comes from measured runs, not inserted rows."""

from __future__ import annotations

import pytest

from tests.dashboard.conftest import page

pytestmark = pytest.mark.integration


@pytest.fixture
def real_job(mlp_model: tuple[str, int]) -> tuple[str, int, int]:
    from db.jobs import start_inline_job
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute
    from profiles.specs import BenchSpec, validate_spec

    url, model_id = mlp_model
    spec = validate_spec(BenchSpec, {"model_id": model_id, "precisions": ["fp32", "int8-dynamic"], "batch_sizes": [1, 4],
                                     "iterations": 30, "warmup_iterations": 3, "warmup_s": 0.0,
                                     "min_duration_s": 0.05}).model_dump()
    job_id = start_inline_job("model_bench", spec, device="cpu", model_id=model_id, url=url)
    status = execute(JobContext(job_id=job_id, kind="model_bench", spec=spec, db_url=url))
    assert status == "succeeded"
    return url, model_id, job_id


def test_compare_and_layers_on_real_runs(real_job: tuple[str, int, int]) -> None:
    from dashboard import data

    url, model_id, job_id = real_job
    rows = data.run_rows(url, job_ids=[job_id])
    assert len(rows) == 4 and all(r["count"] >= 30 and r["p50_ms"] > 0 for r in rows)
    assert all(r["ci_low_ms"] <= r["p50_ms"] <= r["ci_high_ms"] for r in rows)

    at = page("compare").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    best = data.fastest_valid(rows)
    assert metrics["Fastest valid variant (p50)"] == f"{best['variant']} b{best['batch_size']}"
    assert len(at.get("plotly_chart")) == 3
    assert any("Timing window" in c.value for c in at.caption)

    at = page("layers").run()
    assert not at.exception
    fp32 = [r["id"] for r in rows if r["precision"] == "fp32" and r["batch_size"] == 1][0]
    int8 = [r["id"] for r in rows if r["precision"] == "int8-dynamic" and r["batch_size"] == 1][0]
    at.selectbox(key="layers_run").set_value(fp32).run()
    at.multiselect(key="layers_compare").set_value([int8]).run()
    assert not at.exception
    table = [e.value for e in at.dataframe if "layer" in e.value.columns and "op_type" in e.value.columns][0]
    assert len(table) >= 1
    assert table.filter(like="ms").notna().any().all()
