"""Unit tests of arrival schedules and of run_level's load control (fake session, no server)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from typing import Any

import numpy as np
import pytest

from engine_runner.loadgen import EndpointConfig, LoadLevel, Prompt
from engine_runner.loadgen.runner import run_level, validate_level
from engine_runner.loadgen.schedule import arrival_offsets_ns, interarrival_s
from profiles.errors import InputError

N = 20_000


@pytest.mark.parametrize("arrival,burstiness", [("poisson", 1.0), ("gamma", 0.5), ("gamma", 4.0)])
def test_interarrival_mean_matches_rate(arrival: str, burstiness: float) -> None:
    # Gamma(shape=b, scale=1/(r*b)) has mean 1/r and std 1/(r*sqrt(b)): the sample mean of N gaps has a
    # relative standard error of 1/sqrt(N*b) (0.71% for b=1, 1.0% for b=0.5 at N=20,000). A 5-sigma band
    # (5.0% for the burstiest case) would fail about once in 1.7 million seeds; this seed is fixed anyway.
    rate = 250.0
    gaps = interarrival_s(N, rate, arrival, burstiness, seed=7)
    shape = 1.0 if arrival == "poisson" else burstiness
    rel_se = 1 / math.sqrt(N * shape)
    assert gaps.mean() == pytest.approx(1 / rate, rel=5 * rel_se)
    # the coefficient of variation identifies the distribution: 1 for Poisson, 1/sqrt(b) for gamma
    cv = gaps.std() / gaps.mean()
    assert cv == pytest.approx(1 / math.sqrt(shape), rel=0.05)


def test_constant_and_infinite_rates() -> None:
    assert np.all(interarrival_s(5, 100.0, "constant") == 0.01)
    assert np.all(interarrival_s(5, math.inf) == 0.0)
    offs = list(itertools.islice(arrival_offsets_ns(100.0, "constant"), 4))
    assert offs == [0, 10_000_000, 20_000_000, 30_000_000]


def test_offsets_are_seeded_cumulative_and_start_at_zero() -> None:
    a = list(itertools.islice(arrival_offsets_ns(1000.0, "poisson", seed=3, batch=7), 50))
    b = list(itertools.islice(arrival_offsets_ns(1000.0, "poisson", seed=3), 50))
    assert a == b and a[0] == 0 and all(x <= y for x, y in zip(a, a[1:]))
    c = list(itertools.islice(arrival_offsets_ns(1000.0, "poisson", seed=4), 50))
    assert a != c


def test_invalid_levels_name_the_field() -> None:
    with pytest.raises(InputError, match="field value"):
        validate_level(LoadLevel("concurrency", 2.5, num_requests=1))
    with pytest.raises(InputError, match="num_requests, duration_s"):
        validate_level(LoadLevel("concurrency", 2))
    with pytest.raises(InputError, match="burstiness"):
        validate_level(LoadLevel("request_rate", 10, num_requests=1, arrival="gamma", burstiness=0))
    with pytest.raises(InputError, match="arrival"):
        validate_level(LoadLevel("request_rate", 10, num_requests=1, arrival="uniform"))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="field mode"):
        validate_level(LoadLevel("closed", 1, num_requests=1))  # type: ignore[arg-type]


class Resp:
    """A 2-chunk streamed response that takes ``delay_s`` of real time; tracks in-flight requests."""

    def __init__(self, owner: CountingSession, delay_s: float) -> None:
        self.owner, self.delay_s, self.status = owner, delay_s, 200
        self.content = self

    async def __aenter__(self) -> Resp:
        self.owner.in_flight += 1
        self.owner.max_in_flight = max(self.owner.max_in_flight, self.owner.in_flight)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.owner.in_flight -= 1

    async def iter_any(self):  # noqa: ANN201
        await asyncio.sleep(self.delay_s / 2)
        yield b'data: {"choices": [{"text": "a"}]}\n\n'
        await asyncio.sleep(self.delay_s / 2)
        yield b'data: {"choices": [{"text": "b"}]}\n\ndata: {"choices": [], "usage": {"completion_tokens": 2}}\n\n'
        yield b"data: [DONE]\n\n"


class CountingSession:
    def __init__(self, delay_s: float = 0.005) -> None:
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.prompts: list[str] = []

    def post(self, url: str, data: bytes, headers: dict[str, str]) -> Resp:
        self.prompts.append(json.loads(data)["prompt"])
        return Resp(self, self.delay_s)


EP = EndpointConfig(base_url="http://x", model="m", api="completions", timeout_s=5)
PROMPTS = [Prompt(f"p{i}", 2, 2) for i in range(3)]


def test_concurrency_mode_holds_exactly_n_in_flight() -> None:
    s = CountingSession()
    res = asyncio.run(run_level(EP, PROMPTS, LoadLevel("concurrency", 4, num_requests=24), session=s))
    assert s.max_in_flight == 4
    assert len(res.records) == 24 and all(r.ok for r in res.records)
    assert all(r.scheduled_ns is None for r in res.records)
    assert s.prompts[:4] == ["p0", "p1", "p2", "p0"]  # prompts cycle in order


def test_rate_mode_concurrency_cap_is_honoured_and_waiting_is_dispatch_lag() -> None:
    s = CountingSession(delay_s=0.01)
    level = LoadLevel("request_rate", math.inf, max_concurrency=3, num_requests=15)
    res = asyncio.run(run_level(EP, PROMPTS, level, session=s))
    assert s.max_in_flight == 3
    assert all(r.scheduled_ns == 0 for r in res.records)
    lags = sorted(r.send_ns - r.scheduled_ns for r in res.records)
    # requests 4..15 had to wait for a slot: at least one 10 ms response each round
    assert lags[-1] >= 4 * 8_000_000


def test_duration_bound_and_warmup() -> None:
    s = CountingSession(delay_s=0.002)
    level = LoadLevel("request_rate", 400.0, duration_s=0.25, warmup_requests=3, seed=11)
    res = asyncio.run(run_level(EP, PROMPTS, level, session=s))
    warm = [r for r in res.records if r.warmup]
    measured = [r for r in res.records if not r.warmup]
    assert [r.seq for r in warm] == [0, 1, 2]
    assert all(r.send_ns < 0 and r.end_ns < 0 for r in warm)  # before t0
    expected = sum(1 for o in itertools.takewhile(lambda o: o < 250_000_000, arrival_offsets_ns(400.0, seed=11)))
    assert len(measured) == expected
    assert [r.seq for r in measured] == list(range(3, 3 + expected))
    assert all(0 <= r.scheduled_ns < 250_000_000 for r in measured)
    assert res.duration_s >= measured[-1].scheduled_ns / 1e9


def test_should_stop_cancels_in_flight_requests() -> None:
    s = CountingSession(delay_s=5.0)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    res = asyncio.run(run_level(EP, PROMPTS, LoadLevel("concurrency", 2, num_requests=100), session=s, should_stop=stop))
    assert res.records and all(r.error_reason == "cancelled" for r in res.records)
    assert len(res.records) == 2


def test_progress_callback_reports_final_count() -> None:
    seen: list[tuple[int, int]] = []
    s = CountingSession(delay_s=0.001)
    asyncio.run(run_level(EP, PROMPTS, LoadLevel("concurrency", 2, num_requests=10), session=s,
                          on_progress=lambda d, t: seen.append((d, t))))
    assert seen[-1] == (10, 10)
