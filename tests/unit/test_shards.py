"""Unit: how a level is split over client shards and how their results are merged (no processes, no server)."""

from __future__ import annotations

import pytest

from engine_runner.loadgen import EndpointConfig, LevelResult, LoadLevel, Prompt
from engine_runner.loadgen.shards import merge, plan_shards, schedule, shard_count, split_count
from profiles.errors import InputError
from profiles.llm_metrics import RequestRecord, request_metrics

EP = EndpointConfig(base_url="http://127.0.0.1:1", model="m", request_id_prefix="run-")
PROMPTS = [Prompt(f"p{i}", 3, 4) for i in range(10)]


def test_split_count_shares_add_up_and_differ_by_at_most_one() -> None:
    for x in (0, 1, 7, 64, 257):
        for n in (1, 2, 3, 4, 7):
            shares = [split_count(x, n, k) for k in range(n)]
            assert sum(shares) == x and max(shares) - min(shares) <= 1


def test_concurrency_level_is_split_in_workers_requests_warmup_and_prompts() -> None:
    level = LoadLevel("concurrency", 10, num_requests=31, warmup_requests=10)
    plans = plan_shards(EP, PROMPTS, level, 3)
    assert [p.level.value for p in plans] == [4, 3, 3]
    assert [p.level.num_requests for p in plans] == [11, 10, 10]
    assert [p.level.warmup_requests for p in plans] == [4, 3, 3]
    assert [p.endpoint.request_id_prefix for p in plans] == ["run-s0-", "run-s1-", "run-s2-"]
    assert [q.text for q in plans[1].prompts] == ["p1", "p4", "p7"]
    assert all(p.offsets_ns is None for p in plans)


def test_rate_level_shards_interleave_one_schedule() -> None:
    level = LoadLevel("request_rate", 50.0, num_requests=11, max_concurrency=5, warmup_requests=3, seed=4)
    full = schedule(level)
    assert len(full) == 11 and full == sorted(full)
    plans = plan_shards(EP, PROMPTS, level, 2)
    assert plans[0].offsets_ns == full[0::2] and plans[1].offsets_ns == full[1::2]
    assert [p.level.num_requests for p in plans] == [6, 5]
    assert [p.level.max_concurrency for p in plans] == [3, 2]
    assert [p.level.warmup_requests for p in plans] == [2, 1]


def test_duration_bounded_schedule_stops_at_the_duration() -> None:
    level = LoadLevel("request_rate", 100.0, duration_s=0.5, arrival="constant")
    assert schedule(level) == [int(round(i * 0.01 * 1e9)) for i in range(50)]


def test_shard_count_is_capped_by_concurrency_and_rejects_zero() -> None:
    assert shard_count(LoadLevel("concurrency", 2, num_requests=4), 8) == 2
    assert shard_count(LoadLevel("request_rate", 5.0, num_requests=4, max_concurrency=3), 8) == 3
    with pytest.raises(InputError, match="--client-processes"):
        shard_count(LoadLevel("concurrency", 2, num_requests=4), 0)


def test_few_prompts_are_rotated_not_dropped() -> None:
    plans = plan_shards(EP, PROMPTS[:2], LoadLevel("concurrency", 3, num_requests=3), 3)
    assert [[q.text for q in p.prompts] for p in plans] == [["p0", "p1"], ["p1", "p0"], ["p0", "p1"]]


def _rec(seq: int, send: int, warmup: bool = False, gaps: tuple[int, ...] = (5, 7)) -> RequestRecord:
    chunks = [send + 10]
    for g in gaps:
        chunks.append(chunks[-1] + g)
    return RequestRecord(seq=seq, warmup=warmup, scheduled_ns=send - 1, send_ns=send, first_token_ns=chunks[0],
                         first_content_ns=chunks[0], first_event_ns=chunks[0], end_ns=chunks[-1], chunk_ns=chunks,
                         chunk_tokens=[1] * len(chunks), output_tokens=len(chunks))


def test_merge_rebases_on_the_earliest_t0_renumbers_by_send_time_and_keeps_request_ids() -> None:
    a = LevelResult(records=[_rec(0, -50, warmup=True), _rec(1, 0), _rec(2, 30)], t0_ns=1_000, duration_s=100e-9,
                    client_health={"loop_lag_ms": {"p99": 0.5}, "starved": False, "why": None})
    b = LevelResult(records=[_rec(0, -40, warmup=True), _rec(1, 5)], t0_ns=1_020, duration_s=200e-9,
                    client_health={"loop_lag_ms": {"p99": 12.0}, "starved": True, "why": "lag"})
    before = {id(r): request_metrics(r) for r in a.records + b.records}
    m = merge({0: a, 1: b}, {0: "x-s0-", 1: "x-s1-"})
    assert m.t0_ns == 1_000
    assert m.duration_s == pytest.approx(220e-9)  # b ends at 1_020 + 200 ns
    assert [r.seq for r in m.records] == list(range(5))
    assert [r.warmup for r in m.records] == [True, True, False, False, False]
    assert [r.send_ns for r in m.records] == [-50, -20, 0, 25, 30]
    assert m.request_ids == ["x-s0-0", "x-s1-0", "x-s0-1", "x-s1-1", "x-s0-2"]
    for r in m.records:
        old, new = before[id(r)], request_metrics(r)
        assert (new.ttft_ms, new.e2e_ms, new.itl_ms) == (old.ttft_ms, old.e2e_ms, old.itl_ms)
        assert new.e2e_minus_ttft_ns == new.sum_chunk_gaps_ns
        assert r.send_ns - r.scheduled_ns == 1  # dispatch lag unchanged by re-basing
    h = m.client_health
    assert h["starved"] and h["worst_shard"] == 1 and h["loop_lag_ms"]["p99"] == 12.0
    assert "client shard 1: lag" == h["why"] and [s["shard"] for s in h["shards"]] == [0, 1]


def test_merge_without_prefixes_has_no_request_ids() -> None:
    a = LevelResult(records=[_rec(0, 0)], t0_ns=5, duration_s=1e-6)
    assert merge({0: a}, {0: None}).request_ids is None
