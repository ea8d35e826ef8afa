"""LLM serving page (AppTest) and its chart functions (plain data in, Plotly figures out).

The page test seeds the database by running a real ``llm_serve`` job (engine "endpoint") against the
scripted mock server, then checks the form, the curves and the KV-cache table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import select

from dashboard import llm_charts
from tests.dashboard.conftest import page, rerun_fragments
from tests.llm_fixtures import mock_server, run_llm_job, tiny_tokenizer


def _row(run_id: int, level: float, tput: float, p99: float, mode: str = "concurrency") -> dict:
    return {"run_id": run_id, "level": level, "mode": mode, "output_token_throughput_per_s": tput,
            "ttft_p50_ms": p99 / 2, "ttft_p99_ms": p99, "tpot_p50_ms": 5.0, "tpot_p99_ms": 9.0,
            "e2e_p50_ms": p99, "e2e_p99_ms": p99 * 2}


def test_pareto_front() -> None:
    pts = [(10.0, 100.0), (20.0, 300.0), (15.0, 90.0), (30.0, 290.0), (40.0, 500.0), (40.0, 450.0)]
    assert llm_charts.pareto_front(pts) == [0, 1, 4]
    assert llm_charts.pareto_front([]) == []


def test_throughput_and_latency_figures_overlay_runs_in_level_order() -> None:
    rows = [_row(1, 16, 900, 80), _row(1, 1, 100, 10), _row(1, 4, 400, 20), _row(2, 1, 120, 12), _row(2, 4, 380, 30)]
    fig = llm_charts.throughput_figure(rows, {1: "run A", 2: "run B"})
    assert [t.name for t in fig.data] == ["run A", "run B"]
    assert list(fig.data[0].x) == ["1", "4", "16"] and list(fig.data[0].y) == [100, 400, 900]
    assert list(fig.layout.xaxis.categoryarray) == ["1", "4", "16"]
    assert fig.layout.yaxis.title.text == "throughput (tokens/s)"
    assert fig.layout.xaxis.title.text.startswith("concurrency")
    lat = llm_charts.latency_figure(rows, "ttft", {1: "A"})
    assert [t.name for t in lat.data] == ["A p50", "A p99", "run 2 p50", "run 2 p99"]
    assert lat.data[1].line.dash == "dash" and list(lat.data[1].y) == [10, 20, 80]
    assert lat.layout.yaxis.title.text == "TTFT (ms)"


def test_inf_rate_is_last_and_empty_data_explains() -> None:
    rows = [_row(1, math.inf, 1000, 200, "request_rate"), _row(1, 2.0, 150, 20, "request_rate")]
    fig = llm_charts.throughput_figure(rows)
    assert list(fig.data[0].x) == ["2", "inf"]
    assert fig.layout.xaxis.title.text == "request rate (requests/s)"
    pareto = llm_charts.pareto_figure(rows)
    assert pareto.data[-1].name == "Pareto front" and list(pareto.data[0].text) == ["2", "inf"]
    empty = llm_charts.kv_usage_figure([])
    assert "no /metrics samples" in empty.layout.annotations[0].text
    assert "no TPOT samples" in llm_charts.latency_figure([], "tpot").layout.annotations[0].text


def test_kv_usage_figure_and_concurrency_table() -> None:
    series = [{"run_id": 3, "t_s": 0.5, "kv_usage_pct": 1.5, "running": 4, "level_label": "4"},
              {"run_id": 3, "t_s": 0.0, "kv_usage_pct": 0.0, "running": 0, "level_label": "4"}]
    fig = llm_charts.kv_usage_figure(series, {3: "r3"})
    assert list(fig.data[0].x) == [0.0, 0.5] and fig.data[1].yaxis == "y2"
    run = {"kv_cache": {"bytes_per_token": 4096, "kv_cache_tokens": 65536, "tokens_per_request": 48,
                        "predicted_max_concurrency": 65536 / 48, "vllm_max_concurrency": 64.0,
                        "vllm_max_concurrency_tokens": 1024, "kv_cache_blocks": 512, "block_size": 128}}
    table = {r["quantity"]: r["value"] for r in llm_charts.concurrency_table(run, [{"max_running": 4}, {"max_running": 1}])}
    assert table["predicted max concurrency (KV tokens / tokens per request)"] == "1365.33"
    assert table["measured max requests running (vllm:num_requests_running)"] == "4"
    assert table["KV-cache blocks x block size"] == "512 x 128"


@pytest.fixture
def llm_seeded(es_env: str, tmp_path: Path) -> tuple[str, int]:
    tok = tiny_tokenizer(tmp_path)
    with mock_server(ttft_ms=10, itl_ms=8, model="mock-llm") as url:
        job_id, status = run_llm_job(es_env, {
            "engine": "endpoint", "endpoint": url, "model": "mock-llm", "tokenizer": str(tok),
            "concurrency": [1, 4], "input_len": 16, "output_len": 24, "num_prompts": 8, "warmup": 0})
    assert status == "succeeded"
    return es_env, job_id


def test_page_empty_db_explains(es_env: str) -> None:
    at = page("llm").run()
    assert not at.exception
    assert any("No LLM serving runs yet" in i.value for i in at.info)


def test_page_shows_curves_of_a_real_sweep(llm_seeded: tuple[str, int]) -> None:
    at = page("llm").run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 5  # throughput, Pareto, TTFT, TPOT, KV-cache usage
    import json

    figs = [json.loads(c.proto.spec) for c in charts]
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert titles[0] == "Output token throughput vs load"
    assert list(figs[0]["data"][0]["x"]) == ["1", "4"] and all(y > 0 for y in figs[0]["data"][0]["y"])
    assert "KV-cache usage" in titles[4]
    tables = [e.value for e in at.dataframe]
    points = next(t for t in tables if "output tok/s" in t.columns and "run" in t.columns)
    assert list(points["level"]) == ["concurrency 1", "concurrency 4"]
    assert list(points["completed"]) == [8, 8]
    kv = next(t for t in tables if "quantity" in t.columns)
    measured = kv[kv["quantity"].str.startswith("measured max requests running")]["value"].iloc[0]
    assert float(measured) >= 1


def _model_folder(tmp_path: Path) -> Path:
    """A folder the pre-flight accepts as a model for vLLM: the tiny tokenizer plus a config.json."""
    import json

    model = tiny_tokenizer(tmp_path)
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return model


def test_form_submits_a_validated_job_and_refuses_bad_levels(es_env: str, tmp_path: Path) -> None:
    from db.models import Job
    from db.session import session_scope

    model = _model_folder(tmp_path)
    at = page("llm").run()
    at.text_input(key="llm_model").input(str(model))
    at.text_input(key="llm_levels").input("1,x")
    submit = next(b for b in at.button if b.label == "Start benchmark")
    at = submit.click().run()
    assert not at.exception
    assert any("Levels '1,x'" in e.value for e in at.error)
    at.text_input(key="llm_levels").input("1,8")
    at.number_input(key="llm_kv_mib").set_value(256)
    at.number_input(key="llm_slo_ttft").set_value(500.0)
    at = next(b for b in at.button if b.label == "Start benchmark").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value for s in at.success)
    with session_scope(es_env) as s:
        job = s.execute(select(Job)).scalar_one()
    assert job.kind == "llm_serve" and job.status == "queued" and job.device == "cpu"
    assert job.spec["concurrency"] == [1, 8] and job.spec["model"] == str(model)
    assert job.spec["kv_cache_memory_bytes"] == 256 * 2**20 and job.spec["slos"]["ttft_ms"] == 500.0


def test_form_runs_the_serve_bench_preflight_and_names_the_fields(es_env: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The page refuses what `serve-bench` refuses (profiles.llm_preflight.plan), naming its own form
    labels, and queues nothing."""
    from sqlalchemy import func

    import profiles.llm_preflight as pf
    from db.models import Job
    from db.session import session_scope

    model = _model_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\nnot json\n')

    def submit(**fields: str):  # type: ignore[no-untyped-def]
        at = page("llm").run()
        for key, value in fields.items():
            at.text_input(key=key).input(value)
        at = next(b for b in at.button if b.label == "Start benchmark").click().run()
        assert not at.exception, at.exception
        return [e.value for e in at.error]

    errors = submit(llm_model=str(tmp_path / "nope"))
    assert f"Model {tmp_path / 'nope'}: no such file or folder" in errors
    errors = submit(llm_model=str(model), llm_tokenizer=str(empty), llm_dataset=str(bad))
    assert any(e.startswith(f"Tokenizer {empty}: the folder has no tokenizer files") for e in errors), errors
    assert any(e.startswith(f"Dataset file {bad}:") and "bad.jsonl line 2 is not valid JSON" in e for e in errors), errors
    errors = submit(llm_model=str(empty))
    assert any(e.startswith(f"Model {empty}: the folder has no tokenizer files") for e in errors), errors
    assert f"Model {empty}: the folder has no config.json: not a model vLLM can load" in errors
    # a hub id, nothing cached, hub unreachable: refused at once (the probe is replaced, not timed)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pf, "hub_reachable", lambda timeout_s=pf.HUB_PROBE_TIMEOUT_S: False)
    errors = submit(llm_model="no-such-org/no-such-model-xyz")
    assert any(e.startswith("Model no-such-org/no-such-model-xyz: not a local folder, and the Hugging Face hub")
               for e in errors), errors
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Job)).scalar_one() == 0


def test_results_appear_when_the_job_finishes_without_a_reload(es_env: str, tmp_path: Path) -> None:
    """The bug: the page was drawn while its job was queued (Results: "No LLM serving runs yet"); the
    job then succeeded; the live-progress fragment reran on its timer, but the Results section is outside
    the fragment and stayed "No LLM serving runs yet" until a reload. Now the fragment reruns the page."""
    from db.models import Job, Run
    from db.session import session_scope
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    tok = tiny_tokenizer(tmp_path)
    with mock_server(ttft_ms=5, itl_ms=2, model="mock-llm") as url:
        at = page("llm").run()
        at = at.radio(key="llm_target").set_value("Existing endpoint").run()
        at.text_input(key="llm_endpoint").input(url)
        at.text_input(key="llm_model_served").input("mock-llm")
        at.text_input(key="llm_tokenizer").input(str(tok))
        at.text_input(key="llm_levels").input("1,2")
        at.number_input(key="llm_input_len").set_value(16)
        at.number_input(key="llm_output_len").set_value(8)
        at.number_input(key="llm_num_prompts").set_value(4)
        at.number_input(key="llm_warmup").set_value(0)
        at = next(b for b in at.button if b.label == "Start benchmark").click().run()
        assert not at.exception, at.exception
        assert any("Queued job" in s.value for s in at.success)
        assert any("No LLM serving runs yet" in i.value for i in at.info)
        # the fragment's timer fires while the job is still queued: nothing to redraw yet
        at = rerun_fragments(at)
        assert not at.exception, at.exception
        assert not at.get("plotly_chart")
        # the worker runs the job (here: in-process, as the worker's child would)
        with session_scope(es_env) as s:
            job = s.execute(select(Job)).scalar_one()
            job_id, spec = job.id, job.spec
        assert execute(JobContext(job_id=job_id, kind="llm_serve", spec=spec, db_url=es_env)) == "succeeded"
    at = rerun_fragments(at)  # the next tick of the fragment's timer, no reload
    assert not at.exception, at.exception
    assert not any("No LLM serving runs yet" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 5
    points = next(t.value for t in at.dataframe if "run" in t.value.columns and "output tok/s" in t.value.columns)
    assert list(points["level"]) == ["concurrency 1", "concurrency 2"] and list(points["completed"]) == [4, 4]
    with session_scope(es_env) as s:
        run_ids = list(s.execute(select(Run.id).where(Run.job_id == job_id)).scalars())
    assert at.multiselect(key="llm_runs").value == run_ids  # opened on the job's run
    # later ticks do not rerun the page again (it was redrawn once for this job)
    at = rerun_fragments(at)

    assert not at.exception and not at.get("plotly_chart")


def test_page_warns_for_a_level_whose_client_was_starved(llm_seeded: tuple[str, int]) -> None:
    """A level whose stored client health says "starved" (engine_runner.loadgen.health; here written into the
    stored report of the real sweep's concurrency-4 level, as a starved level records it) gets a warning that
    its latencies include client delay; the other level gets none."""
    from sqlalchemy import select

    from db.models import LoadPoint
    from db.session import session_scope

    url, _ = llm_seeded
    with session_scope(url) as s:
        p4 = s.execute(select(LoadPoint).where(LoadPoint.level == 4)).scalar_one()
        p4.report = {**p4.report, "client_health": {**(p4.report.get("client_health") or {}), "starved": True,
                                                    "why": "event-loop lag p99 48.0 ms > 5 ms"}}
    at = page("llm").run()
    assert not at.exception
    starved = [w.value for w in at.warning if "load generator was starved" in w.value]
    assert len(starved) == 1 and "concurrency 4" in starved[0] and "lag p99 48.0 ms" in starved[0], starved
