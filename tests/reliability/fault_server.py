"""A misbehaving OpenAI-compatible streaming endpoint for the fault tests (raw asyncio, no framework).

Every request to ``/v1/completions`` or ``/v1/chat/completions`` with an odd sequence number (the 1st,
3rd, ...) gets a good stream (4 one-token chunks, a usage chunk, ``[DONE]``); every even one (2nd, 4th
...) gets the fault of ``mode``:

- ``forever``: token chunks every 20 ms that never end;
- ``stall``: the headers and half of one SSE chunk, then silence with the socket open;
- ``close``: the headers and half of one SSE chunk, then the socket is closed.

``GET /v1/models`` lists ``mock-llm``; ``GET /metrics`` is a 404 (not vLLM).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MODES = ("forever", "stall", "close")


def _chunk(i: int) -> bytes:
    body = {"id": "x", "object": "text_completion", "model": "mock-llm",
            "choices": [{"index": 0, "text": f" t{i}", "finish_reason": None}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class FaultServer:
    def __init__(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.n = 0
        self.faulted = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:  # keep-alive: several requests per connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for ln in lines[1:]:
                    if ln.lower().startswith("content-length:"):
                        length = int(ln.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if path.startswith("/v1/models"):
                    await self._json(writer, 200, {"object": "list", "data": [{"id": "mock-llm", "object": "model"}]})
                elif path.startswith("/v1/") and method == "POST":
                    self.n += 1
                    if self.n % 2 == 1:
                        await self._good(writer)
                    else:
                        self.faulted += 1
                        await self._fault(writer)
                        return
                else:
                    await self._json(writer, 404, {"error": "not found"})
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _json(self, w: asyncio.StreamWriter, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        w.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n".encode() + data)
        await w.drain()

    @staticmethod
    def _sse_head() -> bytes:
        return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

    @staticmethod
    def _http_chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    async def _good(self, w: asyncio.StreamWriter) -> None:
        w.write(self._sse_head())
        for i in range(4):
            w.write(self._http_chunk(_chunk(i)))
            await w.drain()
            await asyncio.sleep(0.005)
        usage = {"id": "x", "object": "text_completion", "model": "mock-llm", "choices": [],
                 "usage": {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}}
        w.write(self._http_chunk(b"data: " + json.dumps(usage).encode() + b"\n\n"))
        w.write(self._http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await w.drain()

    async def _fault(self, w: asyncio.StreamWriter) -> None:
        w.write(self._sse_head())
        if self.mode == "forever":
            i = 0
            while True:
                w.write(self._http_chunk(_chunk(i)))
                await w.drain()
                i += 1
                await asyncio.sleep(0.02)
        half = _chunk(0)[:20]
        w.write(f"{len(_chunk(0)):x}\r\n".encode() + half)  # an HTTP chunk (and an SSE event) cut in half
        await w.drain()
        if self.mode == "stall":
            await asyncio.sleep(3600)
        # close: drop the connection mid-chunk


@contextmanager
def fault_server(mode: str) -> Iterator[tuple[str, FaultServer]]:
    """Run a :class:`FaultServer` on a free port in a thread; yield (base URL, server)."""
    srv = FaultServer(mode)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        box["server"] = loop.run_until_complete(asyncio.start_server(srv.handle, "127.0.0.1", 0))
        box["port"] = box["server"].sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=main, daemon=True)
    t.start()
    assert ready.wait(30), "fault server did not start"
    try:
        yield f"http://127.0.0.1:{box['port']}", srv
    finally:
        async def shutdown() -> None:
            box["server"].close()
            for w in list(srv.writers):
                w.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
