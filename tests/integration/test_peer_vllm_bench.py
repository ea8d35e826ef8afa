"""The llm_serve job's peer client: vLLM's own benchmark client runs each level's load against the same
server (here the scripted mock server) and its numbers are stored beside ours."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.llm_fixtures import mock_server, run_llm_job, tiny_tokenizer



@pytest.mark.integration
def test_vllm_bench_peer_beside_ours(es_env: str, tmp_path: Path) -> None:
    from profiles.errors import EngineUnavailableError
    from profiles.vllm_env import find_vllm_python

    try:
        find_vllm_python()  # the job's own lookup finds the peer's interpreter
    except EngineUnavailableError as exc:
        pytest.skip(f"vllm is not installed: {exc}")
    from db.models import LoadPoint
    from db.session import session_scope
    from engine_runner.commands.serve_bench import results_json

    tok = tiny_tokenizer(tmp_path)
    spec = {"engine": "endpoint", "model": "mock-llm", "tokenizer": str(tok), "concurrency": [2],
            "input_len": 16, "output_len": 8, "num_prompts": 8, "warmup": 0, "peer_clients": ["vllm-bench"]}
    with mock_server(ttft_ms=30, itl_ms=5, model="mock-llm") as url:
        job_id, status = run_llm_job(es_env, {**spec, "endpoint": url})
    assert status == "succeeded"
    with session_scope(es_env) as s:
        (lp,) = s.execute(select(LoadPoint)).scalars().all()
        ours, peer = lp.report, lp.report["peers"]["vllm-bench"]
    assert "error" not in peer, peer.get("error")
    assert peer["completed"] == 8 and peer["max_concurrency"] == 2.0
    # both clients see the scripted server: TTFT >= 30 ms, TPOT ~ 5 ms per token
    assert peer["ttft_ms"]["p50"] >= 30.0 and ours["ttft_ms"]["p50"] >= 30.0
    assert peer["tpot_ms"]["p50"] == pytest.approx(ours["tpot_ms"]["p50"], abs=3.0)
    assert Path(peer["result_file"]).is_file()
    doc = results_json(job_id, es_env)
    assert doc["runs"][0]["points"][0]["peers"]["vllm-bench"]["completed"] == 8
