"""A minimal HTTP/1.1 keep-alive client on ``asyncio.Protocol`` for streamed POSTs (transport ``"raw"``).

Why: with aiohttp every network read wakes a coroutine and every request builds a ``ClientRequest``;
on a 2-core machine that shares its CPU with the server under test this costs about 1.4 ms of client CPU
per 8-chunk request, too much to hold 1,000 req/s (benchmarks/RESULTS.md). Here a request is one
pre-encoded ``transport.write``; response bytes are parsed (status, headers, chunked or
content-length body) inside ``data_received`` and handed to the SSE parser with a clock reading taken
when the bytes arrive, with no coroutine switch per chunk.

Scope: plain HTTP or HTTPS to one host, POST with a JSON body, responses with ``Transfer-Encoding:
chunked``, ``Content-Length`` or read-to-close bodies; no redirects, proxies, compression, 1xx
responses or trailers (ignored). A request that fails because a reused idle connection was closed by the
server before any response byte is retried once on a new connection, as HTTP clients do.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from profiles.errors import InputError


class RawConnectionError(OSError):
    """The connection failed or closed before the response was complete."""


class _Exchange:
    """One request/response on a connection."""

    __slots__ = ("sink", "clock", "done", "status", "error_body", "got_bytes")

    def __init__(self, sink: Callable[[bytes, int], None], clock: Callable[[], int]) -> None:
        self.sink = sink
        self.clock = clock
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.status = 0
        self.error_body = bytearray()
        self.got_bytes = False


class _Conn(asyncio.Protocol):
    """One keep-alive connection; parses responses incrementally in ``data_received``."""

    def __init__(self, pool: RawPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.ex: _Exchange | None = None
        self.closed = False
        self.used = False
        self.pending: list[bytes] = []
        self._reset()

    def _reset(self) -> None:
        self.state = 0  # 0 headers, 1 chunk size, 2 chunk data, 3 chunk CRLF, 4 length body, 5 to EOF, 6 trailers
        self.buf = b""
        self.remaining = 0
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        ex = self.ex
        if ex is not None and not ex.done.done():
            if self.state == 5:  # body delimited by EOF: complete
                ex.done.set_result(ex.status)
            else:
                ex.done.set_exception(RawConnectionError(f"connection closed before the response completed ({exc})"))
        self.ex = None

    def start(self, ex: _Exchange, request: bytes) -> None:
        self._reset()
        self.ex = ex
        self.used = True
        assert self.transport is not None
        self.transport.write(request)

    def _deliver(self, data: bytes, now: int) -> None:
        # body bytes of one network read are collected and handed over once (see data_received)
        if data:
            self.pending.append(data)

    def _finish(self) -> None:
        # the exchange's future resolves now; its waiter runs on a later loop turn, after
        # data_received has handed this read's body bytes to the sink
        ex, self.ex = self.ex, None
        if not self.keep_alive and self.transport is not None:
            self.transport.close()
            self.closed = True
        else:
            self.pool._release(self)
        if ex is not None and not ex.done.done():
            ex.done.set_result(ex.status)

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:  # unsolicited bytes on an idle connection: drop it
            if self.transport is not None:
                self.transport.close()
            return
        now = ex.clock()
        ex.got_bytes = True
        self.pending = []
        self._parse(data, now)
        if self.pending:
            body = b"".join(self.pending) if len(self.pending) > 1 else self.pending[0]
            if 200 <= ex.status < 300:
                try:
                    ex.sink(body, now)
                except Exception as exc:  # a parser bug must fail this request, not the event loop's transport
                    self._fail(f"client could not parse the response: {type(exc).__name__}: {exc}")
            elif len(ex.error_body) < 4096:
                ex.error_body += body

    def _parse(self, data: bytes, now: int) -> None:
        buf = self.buf + data if self.buf else data
        self.buf = b""
        pos = 0
        n = len(buf)
        while pos < n or self.state == 0:
            st = self.state
            if st == 0:  # status line + headers
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    self.buf = buf[pos:]
                    return
                self._headers(buf[pos:end])
                pos = end + 4
                if self.ex is None:
                    return
                if self.state == 7:  # no body
                    self._finish()
                    return
            elif st == 1:  # chunk-size line
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self.buf = buf[pos:]
                    return
                size_s = buf[pos:end].split(b";", 1)[0].strip()
                try:
                    size = int(size_s, 16)
                except ValueError:
                    self._fail(f"bad chunk size {size_s[:20]!r}")
                    return
                pos = end + 2
                if size == 0:
                    self.state = 6
                else:
                    self.remaining = size
                    self.state = 2
            elif st == 2:  # chunk data
                take = min(self.remaining, n - pos)
                self._deliver(buf[pos:pos + take], now)
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = 3
            elif st == 3:  # CRLF after chunk data
                if n - pos < 2:
                    self.buf = buf[pos:]
                    return
                pos += 2
                self.state = 1
            elif st == 4:  # Content-Length body
                take = min(self.remaining, n - pos)
                self._deliver(buf[pos:pos + take], now)
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self._finish()
                    return
            elif st == 5:  # read until the server closes
                self._deliver(buf[pos:], now)
                return
            elif st == 6:  # trailers: lines until an empty one
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self.buf = buf[pos:]
                    return
                empty = end == pos
                pos = end + 2
                if empty:
                    self._finish()
                    return
            else:
                return

    def _headers(self, head: bytes) -> None:
        ex = self.ex
        assert ex is not None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self._fail(f"bad HTTP status line {lines[0][:80]!r}")
            return
        if 100 <= status < 200:  # interim response: wait for the real one
            self.state = 0
            return
        ex.status = status
        version = parts[0]
        chunked = False
        length = None
        conn_hdr = b""
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
            elif k == b"content-length":
                try:
                    length = int(v.strip())
                except ValueError:
                    self._fail(f"bad Content-Length {v[:20]!r}")
                    return
            elif k == b"connection":
                conn_hdr = v.strip().lower()
        self.keep_alive = conn_hdr != b"close" and (version != b"HTTP/1.0" or conn_hdr == b"keep-alive")
        if chunked:
            self.state = 1
        elif length is not None:
            self.remaining = length
            self.state = 4 if length > 0 else 7
        else:
            self.keep_alive = False
            self.state = 5

    def _fail(self, why: str) -> None:
        ex, self.ex = self.ex, None
        if self.transport is not None:
            self.transport.abort()
        self.closed = True
        if ex is not None and not ex.done.done():
            ex.done.set_exception(RawConnectionError(why))


class RawPool:
    """Keep-alive connections to one ``base_url``; at most ``limit`` open (0 = unlimited).

    Raises:
        InputError: ``base_url`` is not ``http://`` or ``https://`` with a host.
    """

    def __init__(self, base_url: str, limit: int = 0) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise InputError(f"endpoint base_url {base_url!r} must be http:// or https:// with a host")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if u.scheme == "https" else None
        self.host_header = u.netloc
        self.prefix = u.path.rstrip("/")
        self.limit = limit
        self.idle: list[_Conn] = []
        self.open = 0
        self._sem = asyncio.Semaphore(limit) if limit else None

    def request_bytes(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The full HTTP/1.1 POST request for ``path`` (appended to the base URL's path)."""
        head = [f"POST {self.prefix}{path} HTTP/1.1", f"Host: {self.host_header}",
                f"Content-Length: {len(body)}", "Accept: text/event-stream"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    async def _acquire(self) -> _Conn:
        while self.idle:
            c = self.idle.pop()
            if not c.closed:
                return c
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: _Conn(self), self.host, self.port, ssl=self.ssl)
        self.open += 1
        return proto

    def _release(self, c: _Conn) -> None:
        if not c.closed:
            self.idle.append(c)

    def _forget(self, c: _Conn) -> None:
        if c in self.idle:
            self.idle.remove(c)

    async def exchange(self, request: bytes, sink: Callable[[bytes, int], None], clock: Callable[[], int]) -> tuple[int, bytes]:
        """Send ``request``; feed 2xx body bytes to ``sink(data, now_ns)``; return ``(status, error_body)``.

        Raises:
            OSError: connect failure or the connection closed mid-response (``RawConnectionError``).
        """
        if self._sem is not None:
            await self._sem.acquire()
        try:
            for attempt in (0, 1):
                conn = await self._acquire()
                reused = conn.used
                ex = _Exchange(sink, clock)
                conn.start(ex, request)
                try:
                    status = await ex.done
                except RawConnectionError:
                    if attempt == 0 and reused and not ex.got_bytes:
                        continue  # a stale keep-alive connection: retry once on a fresh one
                    raise
                except BaseException:
                    # cancelled or timed out mid-response: this connection cannot be reused
                    if conn.transport is not None:
                        conn.transport.abort()
                    raise
                return status, bytes(ex.error_body)
            raise RawConnectionError("unreachable")  # pragma: no cover
        finally:
            if self._sem is not None:
                self._sem.release()

    async def close(self) -> None:
        """Close idle connections."""
        for c in self.idle:
            if c.transport is not None:
                c.transport.close()
        self.idle.clear()


async def send_request_raw(
    pool: RawPool,
    request: bytes,
    record: Any,
    parser: Any,
    *,
    t0_ns: int,
    clock: Callable[[], int],
    timeout_s: float,
    count_tokens: Callable[[str], int] | None = None,
) -> Any:
    """Send one pre-encoded request through ``pool`` and fill ``record`` via ``parser`` (a
    :class:`engine_runner.loadgen.client.StreamParser`); failure reasons as
    :func:`engine_runner.loadgen.client.send_request`."""
    from engine_runner.loadgen.client import classify_status

    record.send_ns = clock() - t0_ns
    try:
        async with asyncio.timeout(timeout_s):
            status, err_body = await pool.exchange(request, parser.feed, clock)
        record.http_status = status
        reason = classify_status(status)
        if reason is not None:
            record.error_reason = reason
            record.error = f"HTTP {status}: {err_body[:500].decode('utf-8', 'replace')}"
        else:
            parser.finish(count_tokens)
    except TimeoutError:
        record.error_reason = "timeout"
        record.error = f"no complete response within {timeout_s} s ({len(record.chunk_ns)} token chunks received)"
    except OSError as exc:
        from engine_runner.loadgen.client import one_line

        record.error_reason = "connection"
        record.error = one_line(f"{type(exc).__name__}: {exc}")
    except asyncio.CancelledError:
        record.error_reason = "cancelled"
        record.error = "cancelled before the response completed"
        raise
    if record.error_reason is not None and record.chunk_ns and record.end_ns is None:
        record.end_ns = record.chunk_ns[-1]
    return record
