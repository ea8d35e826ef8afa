"""Per-chunk stamps are never batched by the client: a lock-step server proves it without timing.

The server (a real asyncio TCP server on loopback, in the test's loop) writes one SSE token chunk, then
waits until the client has *stamped* that chunk (``len(record.chunk_ns)`` grew) before it writes the
next. A client that reads correctly stamps every chunk on its own read, so each response gets one
distinct, increasing stamp per server write. A client that let reads pile up (buffering, a blocked loop,
parsing only at the end) leaves the server waiting: the wait runs out, the server writes on, and the
chunks arrive in one read with one stamp, which the check below reports. No assertion depends on how
fast anything ran: the lock step orders the events.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine_runner.loadgen import EndpointConfig, LoadLevel, Prompt
from engine_runner.loadgen.client import StreamParser, send_request
from engine_runner.loadgen.rawhttp import RawPool, send_request_raw
from engine_runner.loadgen.runner import run_level
from profiles.llm_metrics import RequestRecord

CHUNKS = 12


class LockStepServer:
    """``/v1/completions`` that streams ``CHUNKS`` one-token chunks, each only after the client stamped the
    previous one (``records[prompt]``), or after ``wait_s`` (then ``self.timeouts`` counts it)."""

    def __init__(self, records: Callable[[str], RequestRecord | None], wait_s: float = 20.0) -> None:
        self.records = records
        self.wait_s = wait_s
        self.timeouts = 0
        self.writes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = json.loads(await reader.readexactly(length))
            rec_of = lambda: self.records(body["prompt"])  # noqa: E731
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for k in range(CHUNKS):
                self._chunk(writer, {"choices": [{"index": 0, "text": f" t{k}"}]})
                await writer.drain()
                self.writes += 1
                deadline = time.monotonic() + self.wait_s
                while True:
                    rec = rec_of()
                    if rec is not None and len(rec.chunk_ns) > k:
                        break
                    if time.monotonic() > deadline:
                        self.timeouts += 1
                        break
                    await asyncio.sleep(0.0005)
            self._chunk(writer, {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": CHUNKS}})
            writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
            await writer.drain()

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        data = b"data: " + json.dumps(obj).encode() + b"\n\n"
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    async def __aenter__(self) -> str:
        async def guarded(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await self.handle(r, w)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                w.close()

        self.server = await asyncio.start_server(guarded, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()


class HoldingParser(StreamParser):
    """A broken client for the negative control: keeps every read and parses them only at the end."""

    __slots__ = ("held",)

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.held: list[tuple[bytes, int]] = []

    def feed(self, data: bytes, now_ns: int) -> None:
        self.held.append((data, now_ns))

    def finish(self, count_tokens: Any = None) -> None:
        held, self.held = self.held, []
        for data, _ in held:
            super().feed(data, held[-1][1])
        super().finish(count_tokens)


def batched(records: list[RequestRecord]) -> list[str]:
    """Problems that show chunks of separate server writes sharing a read."""
    bad = []
    for r in records:
        if r.error_reason is not None:
            bad.append(f"request {r.seq}: {r.error_reason} {r.error}")
        elif len(r.chunk_ns) != CHUNKS or len(set(r.chunk_ns)) != CHUNKS or r.chunk_ns != sorted(r.chunk_ns):
            bad.append(f"request {r.seq}: {len(set(r.chunk_ns))} distinct stamps for {len(r.chunk_ns)} chunks")
    return bad


def _endpoint(url: str, transport: str) -> EndpointConfig:
    return EndpointConfig(base_url=url, model="m", api="completions", transport=transport, timeout_s=60)  # type: ignore[arg-type]


async def _raw_streams(n: int, buffer_client: bool = False, wait_s: float = 20.0) -> tuple[list[RequestRecord], LockStepServer]:
    recs = {f"p{i}": RequestRecord(seq=i) for i in range(n)}
    srv = LockStepServer(recs.get, wait_s)
    async with srv as url:
        pool = RawPool(url, n)
        req_of = {p: pool.request_bytes("/v1/completions", json.dumps({"prompt": p, "stream": True}).encode(),
                                        {"Content-Type": "application/json"}) for p in recs}

        async def one(p: str) -> None:
            rec = recs[p]
            parser = (HoldingParser if buffer_client else StreamParser)(rec, 0, chat=False)
            await send_request_raw(pool, req_of[p], rec, parser, t0_ns=0, clock=time.perf_counter_ns, timeout_s=60)

        await asyncio.gather(*(one(p) for p in recs))
        await pool.close()
    return list(recs.values()), srv


def test_raw_transport_stamps_every_server_write_on_its_own_read() -> None:
    records, srv = asyncio.run(_raw_streams(8))
    assert srv.writes == 8 * CHUNKS
    assert srv.timeouts == 0
    assert batched(records) == []
    for r in records:
        assert r.output_tokens == CHUNKS and r.chunk_tokens == [1] * CHUNKS


def test_the_check_catches_a_client_that_batches_reads() -> None:
    # the negative control: the same server and check fail a client that holds its reads
    records, srv = asyncio.run(_raw_streams(2, buffer_client=True, wait_s=0.05))
    assert srv.timeouts == 2 * CHUNKS
    assert len(batched(records)) == 2


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
def test_run_level_keeps_one_stamp_per_chunk_with_client_health(transport: str) -> None:
    """The whole runner (pool, workers, stop watcher, loop-health probe) at concurrency 4."""
    holder: dict[str, RequestRecord] = {}

    async def main() -> Any:
        # the runner makes its own records; find them by prompt through a session wrapper
        srv = LockStepServer(holder.get)
        async with srv as url:
            ep = _endpoint(url, transport)
            prompts = [Prompt(text=f"q{i}", input_tokens=3, output_tokens=CHUNKS) for i in range(8)]
            orig_init = RequestRecord.__init__

            def tracking_init(self: RequestRecord, *a: Any, **k: Any) -> None:
                orig_init(self, *a, **k)
                holder[f"q{self.seq % 8}"] = self

            RequestRecord.__init__ = tracking_init  # type: ignore[method-assign]
            try:
                lv = LoadLevel(mode="concurrency", value=4, num_requests=8)
                res = await run_level(ep, prompts, lv, should_stop=lambda: False)
            finally:
                RequestRecord.__init__ = orig_init  # type: ignore[method-assign]
            return res, srv

    res, srv = asyncio.run(main())
    assert srv.timeouts == 0
    assert batched(res.records) == []
    health = res.client_health
    assert health is not None and health["loop_lag_ms"]["count"] >= 0
    assert set(health) >= {"loop_lag_ms", "runqueue_wait_s", "loop_cpu_s", "starved", "why"}


def test_aiohttp_transport_stamps_every_server_write() -> None:
    import aiohttp

    async def main() -> tuple[list[RequestRecord], LockStepServer]:
        recs = {f"p{i}": RequestRecord(seq=i) for i in range(4)}
        srv = LockStepServer(recs.get)
        async with srv as url:
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(*(send_request(
                    session, url + "/v1/completions", json.dumps({"prompt": p}).encode(),
                    {"Content-Type": "application/json"}, rec, t0_ns=0, clock=time.perf_counter_ns, chat=False,
                    timeout_s=60) for p, rec in recs.items()))
        return list(recs.values()), srv

    records, srv = asyncio.run(main())
    assert srv.timeouts == 0
    assert batched(records) == []
