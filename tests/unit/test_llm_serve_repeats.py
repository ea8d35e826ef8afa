"""``serve-bench --repeats N`` against the scripted mock server: every level measured N times in interleaved
rounds, one load point per (level, repeat) with its raw requests, the order in ``runs.config["repeats"]``; one
point per level where the dashboard and ``--json`` show levels (repeats pooled, nothing counted twice);
verdicts group by repeat (``db.verdicts.llm_by_repeat``) and ``enginescope compare`` sees (3, 3) repeats;
the peer client runs after a level's last repeat only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.llm_fixtures import mock_server, run_llm_job, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("llm"))


def _spec(url: str, tiny: Path, **kw: Any) -> dict[str, Any]:
    return {"engine": "endpoint", "endpoint": url, "model": "mock-llm", "tokenizer": str(tiny),
            "concurrency": [1, 4], "input_len": 16, "output_len": 6, "num_prompts": 8, "warmup": 1,
            "repeats": 3, **kw}


def _run_id(url: str, job_id: int) -> int:
    from db.models import Run
    from db.session import session_scope

    with session_scope(url) as s:
        return int(s.execute(select(Run.id).where(Run.job_id == job_id)).scalar_one())


def test_two_levels_three_repeats_interleaved(es_env: str, tiny: Path) -> None:
    from dashboard.llm_data import point_rows
    from db.models import LlmRequest, LoadPoint, Run, Summary
    from db.session import session_scope
    from db.verdicts import llm_by_repeat, llm_levels
    from engine_runner.commands.serve_bench import results_json

    events: list = []
    with mock_server(ttft_ms=5, itl_ms=1, model="mock-llm") as url:
        job_id, status = run_llm_job(es_env, _spec(url, tiny), events)
    assert status == "succeeded"
    run_id = _run_id(es_env, job_id)
    with session_scope(es_env) as s:
        run = s.get(Run, run_id)
        assert run is not None and run.status == "succeeded"
        pts = s.execute(select(LoadPoint).where(LoadPoint.run_id == run_id).order_by(LoadPoint.idx)).scalars().all()
        # L1 L2, L1 L2, L1 L2: idx is the measured order, repeat the round
        assert [(p.idx, p.level, p.repeat) for p in pts] == [
            (0, 1.0, 0), (1, 4.0, 0), (2, 1.0, 1), (3, 4.0, 1), (4, 1.0, 2), (5, 4.0, 2)]
        assert all(p.t0_ns < q.t0_ns for p, q in zip(pts, pts[1:]))  # measured in that order
        for p in pts:
            reqs = s.execute(select(LlmRequest).where(LlmRequest.point_id == p.id)).scalars().all()
            assert len(reqs) == 9 and sum(r.warmup for r in reqs) == 1  # each repeat has its own warm-up
            assert (p.completed, p.failed, p.status) == (8, 0, "succeeded")
            assert s.execute(select(Summary.count).where(Summary.point_id == p.id,
                                                          Summary.metric == "ttft_ms")).scalar_one() == 8
        rep = run.config["repeats"]
        assert rep["count"] == 3
        assert rep["order"] == [["concurrency=1", 0], ["concurrency=4", 0], ["concurrency=1", 1],
                                ["concurrency=4", 1], ["concurrency=1", 2], ["concurrency=4", 2]]
        pooled = rep["pooled"]["concurrency=4"]
        assert pooled["completed"] == 24 and pooled["ttft_ms"]["count"] == 24
        assert pooled["duration_s"] == pytest.approx(sum(p.duration_s or 0.0 for p in pts if p.level == 4.0))
        assert [r["point_id"] for r in pooled["repeats"]["per_repeat"]] == [pts[1].id, pts[3].id, pts[5].id]
        # verdict inputs: 3 groups per level, 8 requests each
        assert llm_levels(s, run_id) == ["concurrency=1", "concurrency=4"]
        for lv in ("concurrency=1", "concurrency=4"):
            groups = llm_by_repeat(s, run_id, lv, "ttft")
            assert [len(g) for g in groups] == [8, 8, 8] and all(g.min() >= 5.0 for g in groups)
    assert any("level 2/2: concurrency 4 repeat 3/3" in m for _, m, _ in events)

    # the dashboard: one row per level, the repeats pooled (not 3 rows, not 3x counted)
    rows = point_rows(es_env, [run_id])
    assert [(r["level"], r["repeats"], r["completed"]) for r in rows] == [(1.0, 3, 24), (4.0, 3, 24)]
    assert rows[1]["ttft_p99_ms"] == pooled["ttft_ms"]["p99"]
    assert rows[1]["request_throughput_per_s"] == pytest.approx(24 / pooled["duration_s"])
    # --json: points per level with the repeats, the run's order
    doc = results_json(job_id, es_env)
    r0 = doc["runs"][0]
    assert r0["repeats"]["count"] == 3 and len(r0["repeats"]["order"]) == 6 and "pooled" not in r0["repeats"]
    assert [(p["concurrency"], p["completed"], p["repeats"]["count"]) for p in r0["points"]] == [(1, 24, 3), (4, 24, 3)]
    json.dumps(doc)  # valid JSON
    # a run stopped between repeats has no stored pooled reports: the readers pool its points themselves
    with session_scope(es_env) as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.config = {**run.config, "repeats": {k: v for k, v in run.config["repeats"].items() if k != "pooled"}}
    again = point_rows(es_env, [run_id])
    assert [(r["completed"], r["ttft_p99_ms"]) for r in again] == [(r["completed"], r["ttft_p99_ms"]) for r in rows]


def test_compare_cli_sees_three_repeats_a_side(es_env: str, tiny: Path) -> None:
    from typer.testing import CliRunner

    from engine_runner.cli import app

    with mock_server(ttft_ms=5, itl_ms=1, model="mock-llm") as url:
        fast = _run_id(es_env, run_llm_job(es_env, _spec(url, tiny, concurrency=[1, 2]))[0])
    with mock_server(ttft_ms=60, itl_ms=1, model="mock-llm") as url:
        slow = _run_id(es_env, run_llm_job(es_env, _spec(url, tiny, concurrency=[1, 2]))[0])
    runner = CliRunner()
    worse = runner.invoke(app, ["compare", str(fast), str(slow), "--metric", "ttft_p99", "--level", "2", "--json"])
    assert worse.exit_code == 1, worse.output
    doc = json.loads(worse.stdout[worse.stdout.index("{"):])
    assert doc["repeats"] == [3, 3] and doc["level"] == "concurrency=2" and doc["regression"] is True
    better = runner.invoke(app, ["compare", str(slow), str(fast), "--metric", "ttft_p99", "--level", "2", "--json"])
    assert better.exit_code == 0, better.output
    doc = json.loads(better.stdout[better.stdout.index("{"):])
    assert doc["repeats"] == [3, 3] and doc["regression"] is False
    # two levels shared: --level is needed
    amb = runner.invoke(app, ["compare", str(fast), str(slow), "--metric", "ttft_p99"])
    assert amb.exit_code == 2 and "--level" in amb.output
    # a report's verdict table of endpoint runs (not engine "vllm") has one verdict per shared level
    from db.verdicts import verdict_table

    table = verdict_table([fast, slow], fast, "ttft_p99", url=es_env)
    assert [(v.level, v.verdict, v.repeats) for v in table] == [("concurrency=1", "slower", (3, 3)),
                                                               ("concurrency=2", "slower", (3, 3))]


def test_peer_client_runs_after_the_last_repeat_only(es_env: str, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine_runner.jobs.llm_serve as job
    from db.models import LoadPoint
    from db.session import session_scope
    from engine_runner.commands.serve_bench import results_json
    from engine_runner.peers import vllm_bench

    calls: list[Any] = []

    class _Found:
        path = "/no/python"

    def fake_run(python: str, level: Any, out_dir: Path, *, name: str, timeout_s: float) -> dict[str, Any]:
        calls.append((level.concurrency, level.num_prompts, level.seed, name))
        return {"tool": "vllm-bench", "completed": level.num_prompts, "ttft_ms": {"p50": 5.0}}

    monkeypatch.setattr(job, "find_vllm_python", lambda: _Found())
    monkeypatch.setattr(vllm_bench, "run", fake_run)
    with mock_server(ttft_ms=5, itl_ms=1, model="mock-llm") as url:
        job_id, status = run_llm_job(es_env, _spec(url, tiny, repeats=2, peer_clients=["vllm-bench"]))
    assert status == "succeeded"
    run_id = _run_id(es_env, job_id)
    # once per level, with that level's load and seed, after its last repeat
    assert [(c[0], c[1], c[2]) for c in calls] == [(1, 8, 0), (4, 8, 1)]
    with session_scope(es_env) as s:
        pts = s.execute(select(LoadPoint).where(LoadPoint.run_id == run_id).order_by(LoadPoint.idx)).scalars().all()
        assert [(p.repeat, bool((p.report or {}).get("peers"))) for p in pts] == [
            (0, False), (0, False), (1, True), (1, True)]
    doc = results_json(job_id, es_env)
    assert doc["runs"][0]["repeats"]["peers_after_repeat"] == 1
    for p in doc["runs"][0]["points"]:
        assert p["peers"]["vllm-bench"]["completed"] == 8 and p["peers"]["vllm-bench"]["after_repeat"] == 1


def test_repeats_validation_names_the_flag(es_env: str) -> None:
    from typer.testing import CliRunner

    from engine_runner.cli import app
    from profiles.errors import InputError
    from profiles.llm_spec import ServeBenchSpec
    from profiles.specs import validate_spec

    base = {"model": "m", "concurrency": [1, 4]}
    for bad in (0, 51):
        with pytest.raises(InputError, match=r"--repeats: Input should be"):
            validate_spec(ServeBenchSpec, {**base, "repeats": bad})
    spec = validate_spec(ServeBenchSpec, {**base, "repeats": 2})
    assert spec.schedule == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert validate_spec(ServeBenchSpec, base).schedule == [(0, 0), (1, 0)]
    res = CliRunner().invoke(app, ["serve-bench", "--model", "m", "--concurrency", "1", "--repeats", "0"])
    assert res.exit_code == 2 and "--repeats" in res.output, res.output


def test_a_cancel_during_the_last_level_fails_it(es_env: str, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel (or a lost signal's pending reason) that cuts the last level short: the level is stored
    failed as stopped mid-level and the job is cancelled, never 'succeeded' with a partial level."""
    from db.models import LoadPoint
    from db.session import session_scope
    from engine_runner import interrupts

    calls = {"n": 0}

    def pending_after_start() -> str | None:  # the signal "arrives" once the level is under way
        calls["n"] += 1
        return "stopped by SIGTERM (test)" if calls["n"] > 3 else None

    monkeypatch.setattr(interrupts, "pending", pending_after_start)
    with mock_server(ttft_ms=5, itl_ms=5, model="mock-llm") as url:
        job_id, status = run_llm_job(es_env, _spec(url, tiny, concurrency=[1], repeats=1, num_prompts=400))
    assert status == "cancelled"
    with session_scope(es_env) as s:
        pts = s.execute(select(LoadPoint).where(LoadPoint.run_id == _run_id(es_env, job_id))).scalars().all()
        assert [p.status for p in pts] == ["failed"] and "stopped mid-level" in pts[0].report["stopped"]
