"""The llm_serve job end to end against the scripted mock server (engine "endpoint"): what it stores
(load points, raw requests, summaries, scalars, /metrics samples, KV-cache block), SLO goodput, the
--json document, and failure/cancel paths. Real vLLM: tests/integration/test_vllm_cpu.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.llm_fixtures import mock_server, run_llm_job, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("llm"))


def _spec(url: str, tiny: Path, **kw):  # type: ignore[no-untyped-def]
    return {"engine": "endpoint", "endpoint": url, "model": "mock-llm", "tokenizer": str(tiny),
            "concurrency": [1, 4], "input_len": 16, "output_len": 32, "num_prompts": 12, "warmup": 1, **kw}


def test_sweep_stores_everything(es_env: str, tiny: Path) -> None:
    from db.models import Job, LlmRequest, LoadPoint, Run, RunMetric, ServerMetricSample, Summary
    from db.session import session_scope
    from engine_runner.commands.serve_bench import results_json

    events: list = []
    # ~340 ms per request: several /metrics scrapes (every 0.5 s) land inside each level
    with mock_server(ttft_ms=20, itl_ms=10, model="mock-llm") as url:
        job_id, status = run_llm_job(es_env, _spec(url, tiny, slos={"ttft_ms": 1.0, "e2e_ms": 10_000}), events)
    assert status == "succeeded"
    with session_scope(es_env) as s:
        run = s.execute(select(Run).where(Run.job_id == job_id)).scalar_one()
        assert run.engine == "openai-endpoint" and run.status == "succeeded"
        pts = s.execute(select(LoadPoint).where(LoadPoint.run_id == run.id).order_by(LoadPoint.idx)).scalars().all()
        assert [(p.mode, p.level) for p in pts] == [("concurrency", 1.0), ("concurrency", 4.0)]
        for p in pts:
            assert (p.completed, p.failed) == (12, 0)
            reqs = s.execute(select(LlmRequest).where(LlmRequest.point_id == p.id)).scalars().all()
            assert len(reqs) == 13 and sum(r.warmup for r in reqs) == 1
            assert all(r.output_tokens == 32 and sum(r.chunk_tokens) == 32 for r in reqs)
            rep = p.report
            # mock TTFT is 20 ms: nobody meets a 1 ms TTFT SLO, so goodput is 0 while throughput is not
            assert rep["goodput_per_s"] == 0.0 and rep["request_throughput_per_s"] > 0
            assert rep["ttft_ms"]["p50"] >= 20.0
            # the server's counters moved by exactly what the client received (warm-up included)
            assert rep["server"]["generation_tokens_delta"] == 13 * 32
            assert rep["server"]["request_success_delta"] == 13
            assert rep["server"]["max_num_requests_running"] >= 1
            names = set(s.execute(select(Summary.metric).where(Summary.point_id == p.id)).scalars())
            assert {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"} <= names
            m = dict(s.execute(select(RunMetric.name, RunMetric.value).where(RunMetric.point_id == p.id)).all())
            assert m["output_token_throughput_per_s"] == pytest.approx(rep["output_token_throughput_per_s"])
            assert s.execute(select(func.count()).select_from(ServerMetricSample)
                             .where(ServerMetricSample.point_id == p.id)).scalar_one() > 0
        assert pts[1].report["server"]["max_num_requests_running"] == 4
        kv = run.config["kv_cache"]
        assert kv["tokens_per_request"] == 48 and kv["measured_max_running"] == 4
        assert s.get(Job, job_id).progress == 1.0
    assert any("level 2/2" in m for _, m, _ in events)
    doc = results_json(job_id, es_env)
    pt = doc["runs"][0]["points"][1]
    assert pt["concurrency"] == 4 and pt["completed"] == 12
    assert set(pt["ttft_ms"]) >= {"mean", "p50", "p90", "p99"}
    assert all(math.isfinite(pt[k]["p50"]) and pt[k]["p50"] > 0 for k in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"))


def test_request_rate_inf_and_failures_counted(es_env: str, tiny: Path) -> None:
    from db.models import LoadPoint
    from db.session import session_scope

    with mock_server(ttft_ms=5, itl_ms=1, model="mock-llm", fail_rate=0.3, seed=3) as url:
        spec = _spec(url, tiny, request_rate=["inf"], warmup=0, output_len=4)
        spec.pop("concurrency")
        job_id, status = run_llm_job(es_env, spec)
    assert status == "succeeded"
    with session_scope(es_env) as s:
        p = s.execute(select(LoadPoint)).scalar_one()
        assert p.mode == "request_rate" and p.level is None
        assert p.failed > 0 and p.completed + p.failed == 12
        assert p.report["failures_by_reason"] == {"http_5xx": p.failed}


def test_wrong_model_name_fails_the_job_naming_it(es_env: str, tiny: Path) -> None:
    with mock_server(model="mock-llm") as url:
        job_id, status = run_llm_job(es_env, _spec(url, tiny, model="nope"))
    from db.jobs import get_job

    assert status == "failed"
    assert "--model 'nope'" in get_job(job_id, url=es_env).error


def test_cancel_between_levels(es_env: str, tiny: Path) -> None:
    from db.jobs import request_cancel, start_inline_job
    from db.models import LoadPoint, Run
    from db.session import session_scope
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    with mock_server(ttft_ms=5, itl_ms=1, model="mock-llm") as url:
        spec = _spec(url, tiny, output_len=4)
        job_id = start_inline_job("llm_serve", spec, device="test", url=es_env)

        def hook(kind: str, msg: str, p: float | None, d: dict) -> None:
            if "level concurrency 1 done" in msg:
                request_cancel(job_id, url=es_env)

        status = execute(JobContext(job_id=job_id, kind="llm_serve", spec=spec, db_url=es_env, hooks=[hook]))
    assert status == "cancelled"
    with session_scope(es_env) as s:
        assert [p.level for p in s.execute(select(LoadPoint)).scalars()] == [1.0]
        assert s.execute(select(Run.status)).scalar_one() == "failed"


def test_kv_cache_info_uses_the_dtype_vllm_ran(tmp_path: Path) -> None:
    """vLLM's dtype "auto" serves an fp32 checkpoint in 16-bit (seen here: 131,072 tokens in 256 MiB, i.e.
    2,048 B/token, for the tiny model whose config.json says float32)."""
    import json

    from engine_runner.jobs.llm_serve import kv_cache_info
    from profiles.llm_spec import ServeBenchSpec

    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "num_attention_heads": 4,
                                                      "num_key_value_heads": 4, "hidden_size": 256,
                                                      "dtype": "float32"}))
    spec = ServeBenchSpec(model=str(tmp_path), concurrency=[1], input_len=32, output_len=16)
    kv = kv_cache_info(spec, {"dtype": "bfloat16", "kv_cache_tokens": 131_072, "max_concurrency": 256.0,
                              "max_concurrency_tokens": 512},
                       {"num_gpu_blocks": 1024, "block_size": 128, "kv_cache_memory_bytes": 256 * 2**20})
    assert kv["bytes_per_token"] == 2048 == kv["implied_bytes_per_token"]
    assert kv["kv_cache_blocks"] == 1024 and kv["predicted_max_concurrency"] == pytest.approx(131_072 / 48)
    # no start-up log (an endpoint): config.json's dtype, tokens from /metrics
    kv = kv_cache_info(spec, {}, {"kv_cache_size_tokens": 65_536, "kv_cache_memory_bytes": 256 * 2**20})
    assert kv["bytes_per_token"] == 4096 == kv["implied_bytes_per_token"] and kv["kv_cache_tokens"] == 65_536
    explicit = ServeBenchSpec(model=str(tmp_path), concurrency=[1], kv_cache_dtype="fp8")
    assert kv_cache_info(explicit, {"dtype": "bfloat16"})["bytes_per_token"] == 1024


def test_cli_serve_bench_json_and_exit_codes(es_env: str, tiny: Path) -> None:
    import json

    from typer.testing import CliRunner

    from engine_runner.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["serve-bench", "--model", "m", "--concurrency", "0"])
    assert bad.exit_code == 2 and "concurrency" in bad.output
    bad = runner.invoke(app, ["serve-bench", "--model", "m", "--concurrency", "1", "--slo", "latency=3"])
    assert bad.exit_code == 2
    with mock_server(ttft_ms=5, itl_ms=1, model="mock-llm") as url:
        ok = runner.invoke(app, ["serve-bench", "--endpoint", url, "--model", "mock-llm", "--tokenizer", str(tiny),
                                 "--request-rate", "50,inf", "--input-len", "16", "--output-len", "4",
                                 "--num-prompts", "6", "--warmup", "0", "--json"])
        assert ok.exit_code == 0, ok.output
        doc = json.loads(ok.stdout[ok.stdout.index("{"):])
        assert [p["request_rate"] for p in doc["runs"][0]["points"]] == [50.0, "inf"]
        assert doc["runs"][0]["engine"] == "openai-endpoint"
        # a model the endpoint does not serve is bad input found inside the job: exit 2, the reason named
        wrong = runner.invoke(app, ["serve-bench", "--endpoint", url, "--model", "wrong-model", "--tokenizer",
                                    str(tiny), "--concurrency", "1", "--input-len", "16", "--output-len", "4",
                                    "--num-prompts", "2", "--warmup", "0"])
        assert wrong.exit_code == 2, wrong.output
        assert "--model 'wrong-model'" in wrong.output
    # the mock answers HTTP 500 to every request: the level has no success, the run fails, exit 1
    with mock_server(model="mock-llm", fail_rate=1.0) as url:
        failed = runner.invoke(app, ["serve-bench", "--endpoint", url, "--model", "mock-llm", "--tokenizer", str(tiny),
                                     "--concurrency", "2", "--input-len", "16", "--output-len", "4",
                                     "--num-prompts", "4", "--warmup", "0"])
    assert failed.exit_code == 1, failed.output
    assert "concurrency 2: no request succeeded ({'http_5xx': 4})" in failed.output


def test_cli_serve_bench_input_errors_exit_2_before_any_job_row(es_env: str, tiny: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:  # noqa: ANN001
    from sqlalchemy import func, select
    from typer.testing import CliRunner

    import profiles.llm_preflight as pf
    from db.models import Job
    from db.session import session_scope
    from engine_runner.cli import app

    runner = CliRunner()
    base = ["serve-bench", "--endpoint", "http://127.0.0.1:1", "--model", "m", "--concurrency", "1"]
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"prompt": "a", "output_tokens": 2}\nnot json\n')
    cases = [
        (["--tokenizer", str(tmp_path / "no-tok")], f"--tokenizer {tmp_path / 'no-tok'}"),
        (["--tokenizer", str(tiny), "--dataset", str(tmp_path / "none.json")], "none.json"),
        (["--tokenizer", str(tiny), "--dataset", str(bad_jsonl)], "bad.jsonl line 2"),
        (["--tokenizer", str(bad_jsonl)], f"--tokenizer {bad_jsonl}: is a file"),
    ]
    for extra, needle in cases:
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 2, res.output
        assert needle in res.output and "Repo id" not in res.output
    # no local tokenizer and the hub unreachable: fail fast with advice (the probe is replaced, not timed)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pf, "hub_reachable", lambda timeout_s=pf.HUB_PROBE_TIMEOUT_S: False)
    res = runner.invoke(app, ["serve-bench", "--model", "no-such-org/no-such-model-xyz"])
    assert res.exit_code == 2 and "pass --tokenizer DIR" in res.output, res.output
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Job)).scalar() == 0


def test_cli_serve_bench_failure_printed_once_without_empty_table(es_env: str, tiny: Path) -> None:
    from typer.testing import CliRunner

    from engine_runner.cli import app

    res = CliRunner().invoke(app, ["serve-bench", "--endpoint", "http://127.0.0.1:1", "--model", "m",
                                   "--tokenizer", str(tiny), "--concurrency", "1", "--num-prompts", "1"])
    assert res.exit_code == 1, res.output
    assert res.output.count("cannot reach /v1/models") == 1, res.output
    assert "TTFT p50/p99" not in res.output


class _P:
    """A prompt as the load generator makes it (only the lengths matter for sizing)."""

    def __init__(self, input_tokens: int, output_tokens: int) -> None:
        self.input_tokens, self.output_tokens = input_tokens, output_tokens


def _tiny_config(folder: Path, **extra) -> Path:  # type: ignore[no-untyped-def]
    import json

    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "hidden_size": 256,
        "max_position_embeddings": 2048, "torch_dtype": "float32", **extra}))
    return folder


def test_kv_cache_sizing_on_cpu_from_the_sweep(tmp_path: Path) -> None:
    from engine_runner.jobs.llm_serve import kv_cache_sizing
    from profiles.llm_spec import ServeBenchSpec

    model = _tiny_config(tmp_path / "m")
    spec = ServeBenchSpec(model=str(model), concurrency=[1, 4, 16], input_len=128, output_len=128)
    got = kv_cache_sizing(spec, [_P(128, 128)] * 66, on_cpu=True, env={})
    assert got["source"] == "sized for the sweep (CPU)"
    assert (got["max_running"], got["tokens_per_request"], got["max_model_len"], got["block_size"],
            got["bytes_per_token"], got["dtype"]) == (16, 256, 2048, 128, 4096, "float32")
    assert got["kv_cache_memory_bytes"] == 64 * 2**20 and "override with --kv-cache-memory-bytes" in got["message"]
    # dataset prompts: the longest one counts; --max-model-len and --block-size are honoured; bf16 halves it
    spec = ServeBenchSpec(model=str(model), concurrency=[200], max_model_len=4096, dtype="bfloat16",
                          vllm_args=["--block-size=16"], max_num_seqs=256)
    got = kv_cache_sizing(spec, [_P(30, 10), _P(500, 100)], on_cpu=True, env={})
    assert (got["max_running"], got["tokens_per_request"], got["max_model_len"], got["block_size"],
            got["bytes_per_token"]) == (200, 600, 4096, 16, 2048)
    # 200 x 608 (600 in 16-token blocks) x 1.5 = 182,400 tokens x 2 KiB = 356.25 MiB, rounded up to a MiB
    assert got["kv_cache_memory_bytes"] == 357 * 2**20
    # vLLM runs at most max_num_seqs at once (CPU default 128); a request-rate level may have all in flight
    rate = ServeBenchSpec(model=str(model), request_rate=["inf"], num_prompts=500, warmup=2)
    assert kv_cache_sizing(rate, [_P(10, 10)], on_cpu=True, env={})["max_running"] == 128
    rate = ServeBenchSpec(model=str(model), request_rate=[4.0], num_prompts=30, warmup=2)
    assert kv_cache_sizing(rate, [_P(10, 10)], on_cpu=True, env={})["max_running"] == 32
    # the model's context length sets it when it needs more than the sweep, and the message says what to do
    long = _tiny_config(tmp_path / "long", max_position_embeddings=131_072)
    got = kv_cache_sizing(ServeBenchSpec(model=str(long), concurrency=[1]), [_P(32, 16)], on_cpu=True, env={})
    assert got["limited_by"] == "max_model_len" and got["kv_cache_memory_bytes"] == 131_072 * 4096
    assert "--max-model-len 48 would size it for the sweep alone" in got["message"]


def test_kv_cache_sizing_leaves_a_users_choice_and_the_gpu_alone(tmp_path: Path) -> None:
    from engine_runner.jobs.llm_serve import kv_cache_sizing
    from profiles.llm_spec import ServeBenchSpec

    model = str(_tiny_config(tmp_path / "m"))
    p = [_P(32, 16)]

    def choice(env=None, on_cpu=True, **kw):  # type: ignore[no-untyped-def]
        got = kv_cache_sizing(ServeBenchSpec(model=model, concurrency=[4], **kw), p, on_cpu=on_cpu, env=env or {})
        return got["source"], got["kv_cache_memory_bytes"]

    assert choice(kv_cache_memory_bytes=2**30) == ("--kv-cache-memory-bytes", 2**30)
    assert choice(env={"VLLM_CPU_KVCACHE_SPACE": "2"}) == ("VLLM_CPU_KVCACHE_SPACE", None)
    assert choice(env={"VLLM_CPU_KVCACHE_SPACE": ""})[0] == "sized for the sweep (CPU)"  # vLLM ignores empty too
    assert choice(gpu_memory_utilization=0.5) == ("--gpu-memory-utilization", None)
    assert choice(vllm_args=["--num-gpu-blocks-override", "64"]) == ("--vllm-arg", None)
    assert choice(on_cpu=False) == ("vLLM default (GPU)", None)
    got = kv_cache_sizing(ServeBenchSpec(model="no-such-org/not-cached-xyz", concurrency=[4]), p, on_cpu=True, env={})
    assert got["source"] == "vLLM default (no model config)" and got["kv_cache_memory_bytes"] is None
    assert got["warning"] and "pass --kv-cache-memory-bytes" in got["message"]


def test_preflight_plan_is_one_function_for_cli_page_and_job(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import json

    import profiles.llm_preflight as pf
    from profiles.errors import InputError

    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps([{"prompt": "hi", "output_tokens": 3}]))
    base = {"engine": "endpoint", "endpoint": "http://127.0.0.1:1", "model": "served", "concurrency": [1]}
    spec = pf.plan({**base, "tokenizer": str(tok), "dataset": str(ds)})
    assert spec.tokenizer == str(tok)
    with pytest.raises(pf.PreflightError) as exc:
        pf.plan({**base, "tokenizer": str(tmp_path / "none")})
    assert [(i.field, i.problem) for i in exc.value.issues] == [("tokenizer", "no such file or folder")]
    assert str(exc.value) == f"--tokenizer {tmp_path / 'none'}: no such file or folder"
    with pytest.raises(pf.PreflightError, match=r"^Tokenizer folder .*: no such file") as exc:
        pf.plan({**base, "tokenizer": str(tmp_path / "none")}, {"tokenizer": "Tokenizer folder"})
    # an invalid field is the spec's own InputError, before any file is looked at
    with pytest.raises(InputError, match="concurrency"):
        pf.plan({**base, "concurrency": [0], "tokenizer": str(tmp_path / "none")})
    # the JSON array and JSONL readers
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"prompt": "a"}\n\n{"prompt": "b"}\n')
    assert len(pf.read_dataset_entries(jl)) == 2 and len(pf.read_dataset_entries(ds)) == 1
    monkeypatch.setattr(pf, "hub_reachable", lambda timeout_s=pf.HUB_PROBE_TIMEOUT_S: True)
    assert pf.preflight(pf.plan({**base, "model": "org/model"})) == []  # a hub id, hub reachable


def test_the_job_runs_the_same_preflight_before_a_run_row(es_env: str, tmp_path: Path) -> None:
    """A job queued elsewhere (the worker may run on another machine than the dashboard) is refused by the
    same pre-flight, naming the flag, before a run row or a server exists."""
    from db.jobs import get_job
    from db.models import Run
    from db.session import session_scope

    job_id, status = run_llm_job(es_env, {"engine": "vllm", "model": str(tmp_path / "gone"), "concurrency": [1]})
    assert status == "failed"
    assert f"--model {tmp_path / 'gone'}: no such file or folder" in get_job(job_id, url=es_env).error
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Run)).scalar_one() == 0


def test_a_vllm_job_on_cpu_sizes_the_kv_cache_and_records_the_interpreter(es_env: str, tmp_path: Path,
                                                                         monkeypatch) -> None:  # noqa: ANN001
    """engine "vllm" against the fake `python -m vllm...` of test_vllm_server (it serves /health and
    /v1/models only, so every request fails and the run fails): what matters here is what was launched and
    recorded before the load."""
    import json

    from db.models import Run
    from db.session import session_scope
    from tests.unit.test_vllm_server import FAKE

    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE)
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nshift 2\nexec {sys.executable} {script} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("ENGINESCOPE_VLLM_PYTHON", str(wrapper))
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    from engine_runner import gpu

    monkeypatch.setattr(gpu, "snapshot", lambda indices=None, nvml=None: [])  # a CPU-only machine, also on a GPU host
    model = tiny_tokenizer(tmp_path)
    _tiny_config(model)
    events: list = []
    job_id, status = run_llm_job(es_env, {"engine": "vllm", "model": str(model), "concurrency": [1, 4],
                                          "input_len": 16, "output_len": 8, "num_prompts": 2, "warmup": 0,
                                          "dtype": "float32", "startup_timeout_s": 30}, events)
    assert status == "failed"  # the fake has no /v1/completions
    with session_scope(es_env) as s:
        run = s.execute(select(Run).where(Run.job_id == job_id)).scalar_one()
        cfg, env = run.config, run.environment
    sizing = cfg["kv_cache_sizing"]
    assert sizing["source"] == "sized for the sweep (CPU)" and sizing["max_running"] == 4
    assert sizing["kv_cache_memory_bytes"] == 64 * 2**20  # 2,048-token context x 4,096 B = 8 MiB < the floor
    cmd = cfg["command"]
    assert cmd[cmd.index("--kv-cache-memory-bytes") + 1] == str(64 * 2**20)
    assert env["vllm_python"] == {"path": str(wrapper), "source": "ENGINESCOPE_VLLM_PYTHON", "skipped": []}
    assert any(m.startswith("KV cache: sized for the sweep on CPU: max(4 requests") for _, m, _ in events)
    assert any(m.startswith("launching vLLM on port") and str(wrapper) in m for _, m, _ in events)
    assert json.dumps(cfg)  # JSON-serialisable as stored


def test_cli_serve_bench_from_two_client_processes_stores_one_level(es_env: str, tiny: Path) -> None:
    import json

    from typer.testing import CliRunner

    from db.models import LlmRequest, LoadPoint
    from db.session import session_scope
    from engine_runner.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["serve-bench", "--model", "m", "--client-processes", "0"])
    assert bad.exit_code == 2 and "--client-processes:" in bad.output
    def bench(url: str, procs: int):  # noqa: ANN202
        return runner.invoke(app, ["serve-bench", "--endpoint", url, "--model", "mock-llm", "--tokenizer", str(tiny),
                                   "--concurrency", "4", "--input-len", "16", "--output-len", "6", "--num-prompts",
                                   "10", "--warmup", "2", "--client-processes", str(procs), "--json"])

    def client_counts() -> list:
        with session_scope(es_env) as s:
            p = s.execute(select(LoadPoint).order_by(LoadPoint.id.desc())).scalars().first()
            return sorted(r.client_output_tokens for r in s.execute(select(LlmRequest).where(
                LlmRequest.point_id == p.id)).scalars())

    with mock_server(ttft_ms=5, itl_ms=1, model="mock-llm") as url:
        assert bench(url, 1).exit_code == 0
        one_process = client_counts()
        ok = bench(url, 2)
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout[ok.stdout.index("{"):])
    pt = doc["runs"][0]["points"][0]
    assert pt["completed"] == 10 and pt["failed"] == 0
    assert [s["shard"] for s in pt["client_health"]["shards"]] == [0, 1]
    with session_scope(es_env) as s:
        p = s.execute(select(LoadPoint).order_by(LoadPoint.id.desc())).scalars().first()
        reqs = s.execute(select(LlmRequest).where(LlmRequest.point_id == p.id)).scalars().all()
        assert sorted(r.seq for r in reqs) == list(range(12)) and sum(r.warmup for r in reqs) == 2
        assert all(r.output_tokens == 6 for r in reqs)
    # the shards count completion text with the same client tokenizer as one process does
    assert client_counts() == one_process and None not in one_process
