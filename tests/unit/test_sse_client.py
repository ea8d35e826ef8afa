"""Unit tests of the streaming client: fake SSE byte streams with a scripted clock, no server.

A fake session replays scripted ``(arrival_ns, bytes)`` reads; before yielding each read it sets the
scripted clock to that arrival time, exactly as the real client reads the clock when bytes arrive.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from engine_runner.loadgen import EndpointConfig, LoadLevel, Prompt
from engine_runner.loadgen.client import StreamParser, build_body, send_request
from engine_runner.loadgen.runner import run_level
from profiles.llm_metrics import RequestRecord, point_report, request_metrics

MS = 1_000_000
T0 = 5_000_000_000  # an arbitrary absolute t0 on the scripted clock


class Clock:
    """Scripted integer-ns clock."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def chat(content: str | None = None, reasoning: str | None = None, role: str | None = None,
         usage: dict[str, int] | None = None, choices: bool = True) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    obj: dict[str, Any] = {"object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": None}] if choices else []}
    if usage is not None:
        obj["usage"] = usage
    return sse(obj)


def comp(text: str, usage: dict[str, int] | None = None) -> bytes:
    obj: dict[str, Any] = {"object": "text_completion", "choices": [{"index": 0, "text": text}]}
    if usage is not None:
        obj["usage"] = usage
    return sse(obj)


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


DONE = b"data: [DONE]\n\n"


class FakeContent:
    def __init__(self, reads: list[tuple[int, bytes]], clock: Clock, hang_s: float | None) -> None:
        self.reads, self.clock, self.hang_s = reads, clock, hang_s

    async def iter_any(self):  # noqa: ANN201 - async generator like aiohttp's StreamReader.iter_any
        for t, data in self.reads:
            self.clock.now = t
            yield data
        if self.hang_s is not None:
            await asyncio.sleep(self.hang_s)


class FakeResponse:
    def __init__(self, status: int, reads: list[tuple[int, bytes]], clock: Clock, hang_s: float | None = None) -> None:
        self.status = status
        self.content = FakeContent(reads, clock, hang_s)
        self._reads = reads

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def text(self) -> str:
        return b"".join(d for _, d in self._reads).decode()


class FakeSession:
    """``post()`` returns the next scripted response (or raises the scripted exception)."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []

    def post(self, url: str, data: bytes, headers: dict[str, str]) -> Any:
        self.bodies.append(json.loads(data))
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


async def send(resp_or_exc: Any, clock: Clock, *, chat_api: bool = True, send_at: int = T0 + 1 * MS,
               timeout_s: float = 5.0, count_tokens: Any = None) -> RequestRecord:
    clock.now = send_at
    rec = RequestRecord(seq=0)
    return await send_request(FakeSession([resp_or_exc]), "http://x/v1/chat/completions", b"{}", {}, rec,
                              t0_ns=T0, clock=clock, chat=chat_api, timeout_s=timeout_s, count_tokens=count_tokens)


def at(ms: float) -> int:
    return T0 + int(ms * MS)


def test_role_only_first_chunk_is_not_a_token() -> None:
    clock = Clock()
    reads = [(at(2), chat(role="assistant", content="")), (at(11), chat("Hel")), (at(21), chat("lo")),
             (at(22), chat(choices=False, usage=usage(7, 2))), (at(23), DONE)]
    rec = asyncio.run(send(FakeResponse(200, reads, clock), clock))
    assert rec.error_reason is None and rec.http_status == 200
    assert rec.send_ns == 1 * MS
    assert rec.chunk_ns == [11 * MS, 21 * MS]
    assert rec.chunk_tokens == [1, 1]
    assert rec.first_token_ns == rec.first_content_ns == 11 * MS
    assert rec.end_ns == 21 * MS  # the usage chunk and [DONE] are not the end
    assert (rec.input_tokens, rec.output_tokens, rec.client_output_tokens) == (7, 2, 2)
    m = request_metrics(rec)
    assert (m.ttft_ms, m.e2e_ms, m.tpot_ms) == (10.0, 20.0, 10.0)


def test_per_chunk_usage_gives_tokens_per_chunk() -> None:
    clock = Clock()
    reads = [
        (at(1), chat(role="assistant", content="", usage=usage(5, 0))),
        (at(11), chat("a b", usage=usage(5, 2))),
        (at(61), chat("c d e f g", usage=usage(5, 7))),
        (at(62), chat(choices=False, usage=usage(5, 7))),
        (at(62), DONE),
    ]
    rec = asyncio.run(send(FakeResponse(200, reads, clock), clock))
    assert rec.chunk_tokens == [2, 5]
    assert rec.output_tokens == rec.client_output_tokens == 7
    m = request_metrics(rec)
    assert m.itl_ms == [10.0] * 5
    assert m.itl_chunk_ms == [50.0]
    assert m.tpot_ms == pytest.approx(50.0 / 6)
    assert m.e2e_minus_ttft_ns == m.sum_chunk_gaps_ns


def test_events_split_across_reads_and_crlf_and_comments() -> None:
    clock = Clock()
    whole = b": keep-alive\r\n\r\n" + comp("x").replace(b"\n", b"\r\n") + comp("y") + DONE
    cut1, cut2 = 20, len(whole) - len(DONE) - 1  # read 2 ends right after the 'y' event's line end
    reads = [(at(5), whole[:cut1]), (at(9), whole[cut1:cut2]), (at(12), whole[cut2:])]
    rec = asyncio.run(send(FakeResponse(200, reads, clock), clock, chat_api=False))
    # both events complete only in the second read; the clock is read per network read
    assert rec.chunk_ns == [9 * MS, 9 * MS]
    assert rec.output_tokens is None  # no usage sent
    assert rec.client_output_tokens == 2


def test_stream_with_no_tokens_is_empty_failure() -> None:
    clock = Clock()
    reads = [(at(3), chat(role="assistant", content="")), (at(4), chat(choices=False, usage=usage(3, 0))),
             (at(5), DONE)]
    rec = asyncio.run(send(FakeResponse(200, reads, clock), clock))
    assert rec.error_reason == "empty"
    assert rec.http_status == 200
    assert "[DONE] seen" in rec.error


def test_reasoning_content_before_content() -> None:
    clock = Clock()
    reads = [(at(2), chat(role="assistant", content="")), (at(11), chat(reasoning="think")),
             (at(21), chat(reasoning="more")), (at(31), chat("answer")), (at(32), DONE)]
    rec = asyncio.run(send(FakeResponse(200, reads, clock), clock))
    assert rec.first_token_ns == 11 * MS
    assert rec.first_content_ns == 31 * MS
    m = request_metrics(rec)
    assert m.ttft_ms == 10.0 and m.first_content_ms == 30.0


def test_missing_usage_uses_client_tokenizer_count() -> None:
    clock = Clock()
    reads = [(at(11), comp("one two")), (at(21), comp(" three")), (at(22), DONE)]
    rec = asyncio.run(send(FakeResponse(200, reads, clock), clock, chat_api=False,
                           count_tokens=lambda text: len(text.split())))
    assert rec.output_tokens is None
    assert rec.client_output_tokens == 3  # the tokenizer's count of "one two three"
    m = request_metrics(rec)
    assert m.usage_missing and m.output_tokens == 3
    assert m.tpot_ms == pytest.approx(10.0 / 2)


def test_one_token_output() -> None:
    clock = Clock()
    reads = [(at(9), comp("x", usage=usage(4, 1))), (at(10), comp("", usage=usage(4, 1))), (at(10), DONE)]
    rec = asyncio.run(send(FakeResponse(200, reads, clock), clock, chat_api=False))
    m = request_metrics(rec)
    assert rec.chunk_ns == [9 * MS]
    assert m.tpot_ms is None and m.ttft_ms == m.e2e_ms == 8.0


def test_http_500_timeout_connection_and_stream_error() -> None:
    clock = Clock()
    r500 = asyncio.run(send(FakeResponse(500, [(at(2), b'{"error": "boom"}')], clock), clock))
    assert (r500.error_reason, r500.http_status) == ("http_5xx", 500)
    assert "boom" in r500.error
    r404 = asyncio.run(send(FakeResponse(404, [(at(2), b"no such model")], clock), clock))
    assert r404.error_reason == "http_4xx"
    hang = FakeResponse(200, [(at(5), chat("a"))], clock, hang_s=10)
    rto = asyncio.run(send(hang, clock, timeout_s=0.05))
    assert rto.error_reason == "timeout"
    assert rto.chunk_ns == [5 * MS]  # the partial stream is kept for inspection, excluded from metrics
    rconn = asyncio.run(send(aiohttp.ClientConnectionError("refused"), clock))
    assert rconn.error_reason == "connection" and rconn.http_status is None
    rerr = asyncio.run(send(FakeResponse(200, [(at(3), sse({"error": {"message": "oom"}})), (at(4), DONE)], clock),
                            clock))
    assert rerr.error_reason == "stream_error" and "oom" in rerr.error


def test_failures_mixed_with_successes_in_a_level() -> None:
    """run_level over a fake session: 500s and a timeout among successes; metrics count successes only."""

    def good() -> FakeResponse:
        return FakeResponse(200, [(0, comp("a", usage(3, 1))), (0, comp("b", usage(3, 2))), (0, DONE)], Clock())

    script = [good(), FakeResponse(500, [(0, b"err")], Clock()), good(),
              FakeResponse(200, [], Clock(), hang_s=10), good(), FakeResponse(503, [(0, b"busy")], Clock())]
    session = FakeSession(script)
    ep = EndpointConfig(base_url="http://x", model="m", api="completions", timeout_s=0.2)
    level = LoadLevel("concurrency", 1, num_requests=6)
    res = asyncio.run(run_level(ep, [Prompt("p", 3, 2)], level, session=session))
    reasons = [r.error_reason for r in res.records]
    assert reasons == [None, "http_5xx", None, "timeout", None, "http_5xx"]
    rep = point_report(res.records, duration_s=1.0)
    assert rep["completed"] == 3 and rep["failed"] == 3
    assert rep["failures_by_reason"] == {"http_5xx": 2, "timeout": 1}
    assert rep["request_throughput_per_s"] == 3.0
    assert rep["output_token_throughput_per_s"] == 6.0
    assert rep["ttft_ms"]["count"] == 3
    # the body asks for exact lengths and usage on every chunk
    body = session.bodies[0]
    assert body["max_tokens"] == body["min_tokens"] == 2 and body["ignore_eos"] is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def test_build_body_chat_and_completions() -> None:
    p = Prompt("hi", 1, 4)
    b = build_body(EndpointConfig("http://x", "m", "chat", ignore_eos=False, continuous_usage=False), p)
    assert b["messages"] == [{"role": "user", "content": "hi"}] and "prompt" not in b
    assert "ignore_eos" not in b and b["stream_options"] == {"include_usage": True}
    b = build_body(EndpointConfig("http://x", "m", "completions", extra_body={"temperature": 0}), p)
    assert b["prompt"] == "hi" and b["temperature"] == 0 and b["stream"] is True


def test_parser_handles_last_line_without_newline() -> None:
    rec = RequestRecord(seq=0, send_ns=0)
    p = StreamParser(rec, 0, chat=False)
    p.feed(comp("a") + b'data: {"choices": [{"text": "b"}]}', 7)
    p.finish()
    assert rec.chunk_ns == [7, 7] and rec.end_ns == 7 and rec.error_reason is None


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> None:
        return None


@pytest.mark.parametrize("split", [1, 3, 7, 1000])
def test_raw_http_parser_chunked_stream_split_anywhere(split: int) -> None:
    """The raw transport's HTTP/1.1 parser: chunked SSE body split at every `split` bytes, one clock
    reading per network read, body handed to the SSE parser, connection kept alive."""
    from engine_runner.loadgen.rawhttp import RawPool, _Conn, _Exchange

    events = comp("a", usage(3, 1)) + comp("b", usage(3, 2)) + DONE
    body = b"".join(f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in (events[:30], events[30:])) + b"0\r\n\r\n"
    wire = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + body

    async def main() -> tuple[RequestRecord, int, RawPool, bytes]:
        pool = RawPool("http://127.0.0.1:9/base", limit=0)
        conn = _Conn(pool)
        t = FakeTransport()
        conn.connection_made(t)  # type: ignore[arg-type]
        rec = RequestRecord(seq=0, send_ns=0)
        parser = StreamParser(rec, 0, chat=False)
        clock = Clock(0)
        ex = _Exchange(parser.feed, clock)
        req = pool.request_bytes("/v1/completions", b"{}", {"X-Request-Id": "r1"})
        conn.start(ex, req)
        for k, i in enumerate(range(0, len(wire), split)):
            clock.now = 1000 + k
            conn.data_received(wire[i:i + split])
        status = await ex.done
        parser.finish()
        return rec, status, pool, t.written

    rec, status, pool, written = asyncio.run(main())
    assert status == 200
    assert written.startswith(b"POST /base/v1/completions HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Length: 2\r\n")
    assert b"X-Request-Id: r1\r\n" in written and written.endswith(b"\r\n\r\n{}")
    assert rec.error_reason is None and rec.chunk_tokens == [1, 1] and rec.output_tokens == 2
    assert all(t >= 1000 for t in rec.chunk_ns) and rec.chunk_ns == sorted(rec.chunk_ns)
    assert len(pool.idle) == 1  # keep-alive: back in the pool


def test_raw_http_error_status_with_content_length_and_connection_close() -> None:
    from engine_runner.loadgen.rawhttp import RawPool, _Conn, _Exchange

    wire = b'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{"e":"x"}'

    async def main() -> tuple[int, bytes, RawPool, FakeTransport]:
        pool = RawPool("http://h:1")
        conn = _Conn(pool)
        t = FakeTransport()
        conn.connection_made(t)  # type: ignore[arg-type]
        got: list[bytes] = []
        ex = _Exchange(lambda d, n: got.append(d), Clock(5))
        conn.start(ex, b"x")
        conn.data_received(wire)
        status = await ex.done
        assert got == []  # error bodies do not reach the SSE parser
        return status, bytes(ex.error_body), pool, t

    status, err, pool, t = asyncio.run(main())
    assert status == 503 and err == b'{"e":"x"}'
    assert t.closed and not pool.idle


def test_empty_text_first_token_is_where_vllms_client_starts_ttft() -> None:
    """A byte-level tokenizer's first token can be half a UTF-8 character: the server streams it with empty
    text. It is not a token for our TTFT (metric definitions), but vLLM's client stops its TTFT clock there;
    the record keeps that instant as ``first_event_ns`` so the two can be compared like with like."""
    clock = Clock()
    reads = [(at(5), comp("")), (at(9), comp("\u00e9")), (at(13), comp("x")),
             (at(14), sse({"choices": [], "usage": usage(4, 3)})), (at(14), DONE)]
    rec = asyncio.run(send(FakeResponse(200, reads, clock), clock, chat_api=False))
    assert rec.first_event_ns == 5 * MS and rec.first_token_ns == 9 * MS  # times from t0; sent at 1 ms
    assert rec.chunk_ns == [9 * MS, 13 * MS]
    m = request_metrics(rec)
    assert (m.ttft_first_event_ms, m.ttft_ms) == (4.0, 8.0)
    rep = point_report([rec], duration_s=1.0)
    assert rep["empty_first_token_requests"] == 1
    assert rep["ttft_first_event_ms"]["p50"] == 4.0 and rep["ttft_ms"]["p50"] == 8.0
    # a first chunk with text: both clocks stop at the same instant
    clock2 = Clock()
    rec2 = asyncio.run(send(FakeResponse(200, [(at(5), comp("a")), (at(9), comp("b")), (at(9), DONE)], clock2), clock2,
                            chat_api=False))
    assert rec2.first_event_ns == rec2.first_token_ns == 5 * MS
    assert point_report([rec2], duration_s=1.0)["empty_first_token_requests"] == 0
