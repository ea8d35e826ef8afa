"""Integration: a level run from several client processes (engine_runner.loadgen.shards) against the real
mock server in its own process, with its per-request timeline.

Exact checks only (no timing tolerances): every request is measured once, the merged ``X-Request-Id`` of
every record names a request the server saw, its chunk count equals the server's writes, and no client stamp
precedes the server's write of that chunk (one CLOCK_MONOTONIC across processes: causality is exact).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine_runner.loadgen import EndpointConfig, LoadLevel, Prompt
from engine_runner.loadgen.shards import run_level_sharded
from profiles.errors import InputError
from profiles.llm_metrics import point_report, request_metrics

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine_runner.cli", "mock-server", "--port", "0", "--ttft-ms", "20", "--itl-ms", "4",
         "--record-timeline", "--model", "mock-llm"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"listening on (http://\S+)", line)
            url = m.group(1) if m else None
        assert url, "mock-server did not print its URL"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _timeline(url: str) -> dict:
    return httpx.get(url + "/mock/timeline?clear=1", timeout=30).json()


PROMPTS = [Prompt(f"word {i} two three", 4, 6) for i in range(8)]


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
def test_concurrency_level_from_three_processes_matches_the_server_timeline(mock_url: str, transport: str) -> None:
    _timeline(mock_url)
    ep = EndpointConfig(base_url=mock_url, model="mock-llm", request_id_prefix="t-", timeout_s=60,
                        transport=transport)  # type: ignore[arg-type]
    progress: list[tuple[int, int]] = []
    res = run_level_sharded(ep, PROMPTS, LoadLevel("concurrency", 6, num_requests=20, warmup_requests=6),
                            processes=3, on_progress=lambda d, t: progress.append((d, t)))
    tl = _timeline(mock_url)
    assert [r.seq for r in res.records] == list(range(26))
    assert sum(r.warmup for r in res.records) == 6
    rep = point_report(res.records, res.duration_s)
    assert rep["completed"] == 20 and rep["failed"] == 0
    assert sorted(res.request_ids) == sorted(tl)  # warm-up included: the server saw exactly these requests
    assert {rid.split("-")[1] for rid in res.request_ids} == {"s0", "s1", "s2"}
    for rec, rid in zip(res.records, res.request_ids):
        emits = tl[rid]["emit_ns"]
        assert len(emits) == len(rec.chunk_ns) == 6
        assert all(res.t0_ns + c >= e for c, e in zip(rec.chunk_ns, emits))  # never stamped before written
        m = request_metrics(rec)
        assert m.e2e_minus_ttft_ns == m.sum_chunk_gaps_ns
    assert progress[-1] == (20, 20)
    assert len(res.client_health["shards"]) == 3


def test_rate_level_from_two_processes_sends_the_whole_schedule(mock_url: str) -> None:
    _timeline(mock_url)
    ep = EndpointConfig(base_url=mock_url, model="mock-llm", request_id_prefix="r-", timeout_s=60)
    level = LoadLevel("request_rate", 40.0, num_requests=16, warmup_requests=2, seed=3)
    res = run_level_sharded(ep, PROMPTS, level, processes=2)
    measured = [r for r in res.records if not r.warmup]
    assert len(measured) == 16 and all(r.ok for r in measured)
    assert all(r.scheduled_ns is not None and r.send_ns >= r.scheduled_ns for r in measured)
    assert sorted(res.request_ids) == sorted(_timeline(mock_url))


def test_cancel_stops_every_shard(mock_url: str) -> None:
    ep = EndpointConfig(base_url=mock_url, model="mock-llm", timeout_s=60)
    seen: list[int] = []
    res = run_level_sharded(ep, PROMPTS, LoadLevel("concurrency", 4, num_requests=100_000), processes=2,
                            on_progress=lambda d, t: seen.append(d), should_stop=lambda: len(seen) >= 3)
    measured = [r for r in res.records if not r.warmup]
    assert 0 < len(measured) < 100_000
    assert any(r.error_reason == "cancelled" for r in measured) or len(measured) < 100_000


def test_a_shard_that_fails_raises_its_error_here(mock_url: str) -> None:
    ep = EndpointConfig(base_url=mock_url, model="mock-llm", timeout_s=60)
    with pytest.raises(InputError, match="/nonexistent/tokenizer"):
        run_level_sharded(ep, PROMPTS, LoadLevel("concurrency", 2, num_requests=4), processes=2,
                          tokenizer_path="/nonexistent/tokenizer")


def test_shards_do_not_rerun_the_callers_main_script(mock_url: str, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """spawn re-runs ``__main__``'s file in each child; a caller's main may be any script (in the suite, a
    Streamlit page that AppTest ran). Here the main script raises: the level must still run."""
    import types

    script = tmp_path / "main_script.py"
    script.write_text("raise SystemExit('the caller main script ran in a client shard')\n")
    fake = types.ModuleType("__main__")
    fake.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake)
    ep = EndpointConfig(base_url=mock_url, model="mock-llm", timeout_s=60)
    res = run_level_sharded(ep, PROMPTS, LoadLevel("concurrency", 2, num_requests=4), processes=2)
    assert sum(r.ok for r in res.records) == 4
    assert sys.modules["__main__"] is fake
