"""Unit tests of profiles.llm_metrics: exact metric values from hand-built raw records (integer ns)."""

from __future__ import annotations

import math

import pytest

from profiles.errors import InputError
from profiles.llm_metrics import RequestRecord, point_report, request_metrics

MS = 1_000_000


def ok(seq: int, send_ms: float, chunks: list[tuple[float, int]], *, out: int | None = -1,
       client: int | None = None, sched_ms: float | None = None, content_ms: float | None = None,
       inp: int = 10, warmup: bool = False) -> RequestRecord:
    """A successful record: chunk (arrival ms, tokens); ``out=-1`` means usage = sum of chunk tokens."""
    c_ns = [int(t * MS) for t, _ in chunks]
    toks = [k for _, k in chunks]
    return RequestRecord(
        seq=seq, warmup=warmup, scheduled_ns=None if sched_ms is None else int(sched_ms * MS),
        send_ns=int(send_ms * MS), first_token_ns=c_ns[0],
        first_content_ns=c_ns[0] if content_ms is None else int(content_ms * MS), end_ns=c_ns[-1],
        chunk_ns=c_ns, chunk_tokens=toks, input_tokens=inp,
        output_tokens=sum(toks) if out == -1 else out,
        client_output_tokens=sum(toks) if client is None else client, http_status=200,
    )


def failed(seq: int, reason: str, status: int | None = None) -> RequestRecord:
    return RequestRecord(seq=seq, send_ns=0, http_status=status, error_reason=reason, error="x")


def test_multi_token_chunks_itl_per_token_and_invariant() -> None:
    # per-chunk usage: chunks of 1, 1 and 5 tokens; 5 tokens 50 ms after the previous -> five 10 ms ITLs
    r = ok(0, 1, [(11, 1), (21, 1), (71, 5)])
    m = request_metrics(r)
    assert m.ttft_ms == 10.0
    assert m.e2e_ms == 70.0
    assert m.output_tokens == 7
    assert m.tpot_ms == pytest.approx(60.0 / 6)
    assert m.itl_ms == [10.0] * 6
    assert m.itl_chunk_ms == [10.0, 50.0]
    assert m.e2e_minus_ttft_ns == m.sum_chunk_gaps_ns == 60 * MS
    assert m.ttft_from_schedule_ms is None and m.dispatch_lag_ms is None


def test_invariant_exact_on_odd_integer_ns() -> None:
    r = RequestRecord(seq=0, send_ns=7, chunk_ns=[1_000_003, 1_333_337, 2_999_999, 3_000_001],
                      chunk_tokens=[1, 3, 1, 2], first_token_ns=1_000_003, end_ns=3_000_001, output_tokens=7)
    m = request_metrics(r)
    assert m.e2e_minus_ttft_ns == m.sum_chunk_gaps_ns == 3_000_001 - 1_000_003
    assert len(m.itl_ms) == 3 + 1 + 2
    # per-token ITLs add back up to the chunk gaps
    assert math.fsum(m.itl_ms) == pytest.approx(m.e2e_minus_ttft_ns / MS, abs=1e-12)


def test_one_token_output_has_no_tpot() -> None:
    m = request_metrics(ok(0, 0, [(25, 1)]))
    assert m.ttft_ms == m.e2e_ms == 25.0
    assert m.tpot_ms is None
    assert m.itl_ms == [] and m.itl_chunk_ms == []


def test_reasoning_before_content() -> None:
    m = request_metrics(ok(0, 0, [(10, 1), (20, 1), (30, 1)], content_ms=30))
    assert m.ttft_ms == 10.0
    assert m.first_content_ms == 30.0


def test_missing_usage_falls_back_to_client_count_and_is_flagged() -> None:
    r = ok(0, 0, [(10, 1), (20, 1), (30, 1)], out=None, client=5)
    m = request_metrics(r)
    assert m.usage_missing
    assert m.output_tokens == 5
    assert m.tpot_ms == pytest.approx(20.0 / 4)
    rep = point_report([r], duration_s=1.0)
    assert rep["usage_missing"] == 1
    assert rep["output_tokens_total"] == 5
    assert rep["usage_mismatches"] == 0  # no usage to compare against


def test_usage_mismatch_counted() -> None:
    a = ok(0, 0, [(10, 1), (20, 1)], out=3, client=2)
    b = ok(1, 0, [(10, 1), (20, 1)])
    rep = point_report([a, b], 1.0)
    assert rep["usage_mismatches"] == 1
    assert rep["output_tokens_total"] == 3 + 2  # server usage wins


def test_from_schedule_and_dispatch_lag() -> None:
    m = request_metrics(ok(0, 5, [(15, 1), (25, 1)], sched_ms=2))
    assert m.dispatch_lag_ms == 3.0
    assert m.ttft_from_schedule_ms == 13.0
    assert m.e2e_from_schedule_ms == 23.0
    assert m.ttft_ms == 10.0


def test_point_report_failures_excluded_and_throughput_counts_successes_only() -> None:
    recs = [
        ok(0, 0, [(10, 1), (20, 1), (30, 2)], inp=100),        # 4 tokens, ttft 10
        ok(1, 0, [(30, 1), (40, 3)], inp=50),                  # 4 tokens, ttft 30
        failed(2, "http_5xx", 500),
        failed(3, "timeout"),
        failed(4, "http_5xx", 503),
        failed(5, "empty", 200),
        ok(6, 0, [(999, 1), (1999, 1)], warmup=True),          # warm-up: ignored everywhere
        failed(7, "connection"),
    ]
    rep = point_report(recs, duration_s=2.0)
    assert rep["completed"] == 2
    assert rep["failed"] == 5
    assert rep["failures_by_reason"] == {"connection": 1, "empty": 1, "http_5xx": 2, "timeout": 1}
    assert rep["request_throughput_per_s"] == 1.0
    assert rep["output_token_throughput_per_s"] == 4.0
    assert rep["total_token_throughput_per_s"] == (8 + 150) / 2.0
    assert rep["ttft_ms"]["count"] == 2
    assert rep["ttft_ms"]["p50"] == 20.0  # linear interpolation of [10, 30]
    assert rep["ttft_ms"]["p99"] == pytest.approx(10 + 0.99 * 20)
    assert rep["e2e_ms"]["max"] == 40.0
    # per-token ITL samples: [10, 5, 5] and [10/3]*3
    assert rep["itl_ms"]["count"] == 6
    assert rep["itl_chunk_ms"]["count"] == 3
    assert rep["goodput_per_s"] is None
    assert rep["dispatch_lag_ms"]["count"] == 0


def test_goodput_under_slos() -> None:
    recs = [
        ok(0, 0, [(10, 1), (20, 1)]),          # ttft 10, tpot 10, e2e 20
        ok(1, 0, [(50, 1), (60, 1)]),          # ttft 50 -> misses ttft SLO
        ok(2, 0, [(10, 1), (90, 1)]),          # tpot 80 -> misses tpot SLO
        ok(3, 0, [(40, 1)]),                   # one token: TPOT undefined meets the TPOT SLO
        failed(4, "http_4xx", 400),
    ]
    rep = point_report(recs, 2.0, slos={"ttft_ms": 40, "tpot_ms": 20})
    assert rep["goodput_per_s"] == 2 / 2.0
    rep = point_report(recs, 2.0, slos={"e2e_ms": 20})
    assert rep["goodput_per_s"] == 1 / 2.0


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(InputError, match="unknown SLO 'itl'"):
        point_report([], 1.0, slos={"itl": 5})
    with pytest.raises(InputError, match="duration_s"):
        point_report([], 0.0)
    with pytest.raises(InputError, match="failed"):
        request_metrics(failed(0, "timeout"))
    bad = RequestRecord(seq=3, send_ns=0, chunk_ns=[1, 2], chunk_tokens=[1])
    with pytest.raises(InputError, match="seq=3.*chunk_tokens"):
        request_metrics(bad)


def test_empty_report_is_well_formed() -> None:
    rep = point_report([failed(0, "timeout")], 1.0)
    assert rep["completed"] == 0 and rep["failed"] == 1
    assert rep["ttft_ms"]["count"] == 0 and rep["ttft_ms"]["p50"] is None
    assert rep["request_throughput_per_s"] == 0.0
