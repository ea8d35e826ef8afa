"""Streaming OpenAI-compatible client: request bodies, a fast SSE parser, one request -> one record.

Timing: the clock (``time.perf_counter_ns`` unless injected) is read once per network read, right
when ``aiohttp`` hands the bytes over; every SSE event in that read gets that timestamp. The send time
is read immediately before the request is handed to the connection pool (the body is encoded first).

Token accounting per chunk (see :mod:`profiles.llm_metrics` for the metric definitions):
- a token chunk is an event whose ``choices[0]`` carries non-empty ``text`` (completions) or
  ``delta.content`` / ``delta.reasoning_content`` / ``delta.reasoning`` (chat);
- its token count is the growth of ``usage.completion_tokens`` since the previous token chunk when
  the server sends usage on every chunk (vLLM's ``continuous_usage_stats``), else 1;
- ``output_tokens``/``input_tokens`` come from the last ``usage`` seen (the final usage chunk);
- ``first_event_ns`` is the first event with a non-empty ``choices`` list, token text or not: where vLLM's
  benchmark client reads its TTFT, kept so the two clients can be compared like with like.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from profiles.llm_metrics import RequestRecord

try:  # optional fast JSON decoder; the stdlib one is the fallback
    import orjson as _orjson

    _loads: Callable[[bytes], Any] = _orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

DONE = b"[DONE]"
#: Longest SSE line the parser buffers while waiting for its newline; a longer one fails the request
#: (``stream_error``) instead of growing the client's memory without bound.
MAX_SSE_LINE_BYTES = 8 * 2**20


def one_line(text: str, limit: int = 500) -> str:
    """``text`` with every run of whitespace (newlines included) made one space, cut at ``limit`` chars."""
    return " ".join(str(text).split())[:limit]


def endpoint_path(api: str) -> str:
    """URL path of an API kind: ``completions`` -> ``/v1/completions``, ``chat`` -> ``/v1/chat/completions``."""
    return "/v1/chat/completions" if api == "chat" else "/v1/completions"


def build_body(endpoint: Any, prompt: Any) -> dict[str, Any]:
    """JSON body of one streaming request for ``endpoint`` (an ``EndpointConfig``) and ``prompt``.

    ``max_tokens`` = ``prompt.output_tokens``; with ``endpoint.ignore_eos`` also ``min_tokens`` (same
    value) and ``ignore_eos`` (vLLM extensions) so the output length is honoured;
    ``stream_options.include_usage`` always, ``continuous_usage_stats`` when ``endpoint.continuous_usage``.
    """
    body: dict[str, Any] = {"model": endpoint.model, "stream": True, "max_tokens": int(prompt.output_tokens)}
    if endpoint.api == "chat":
        text = prompt.text
        body["messages"] = [{"role": "user", "content": text}] if isinstance(text, str) else text
    else:
        if not isinstance(prompt.text, str):
            # a chat-style prompt on /v1/completions: send the concatenated message contents
            body["prompt"] = "\n".join(str(m.get("content", "")) for m in prompt.text)
        else:
            body["prompt"] = prompt.text
    opts: dict[str, Any] = {"include_usage": True}
    if endpoint.continuous_usage:
        opts["continuous_usage_stats"] = True
    body["stream_options"] = opts
    if endpoint.ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = int(prompt.output_tokens)
    body.update(endpoint.extra_body)
    return body


class StreamParser:
    """Incremental SSE parser that fills one :class:`RequestRecord` from raw response bytes.

    Feed it every network read with its arrival time (``feed(data, now_ns)``), then call ``finish()``.
    Times written to the record are ``now_ns - t0_ns``. Lines other than ``data:`` (comments, ``event:``,
    blank separators) are ignored; ``\\r\\n`` line ends are accepted.

    Args:
        record: the record to fill (``chunk_ns``, ``chunk_tokens``, first/last token times, usage).
        t0_ns: the level's t0 on the same clock as ``now_ns``.
        chat: parse chat ``delta`` objects (else completions ``text``).
        keep_text: accumulate the output text (content and reasoning) in ``self.text_parts``.
    """

    __slots__ = ("rec", "t0_ns", "chat", "keep_text", "text_parts", "buf", "done", "events",
                 "usage_base", "error", "first_bytes", "last_ns")

    def __init__(self, record: RequestRecord, t0_ns: int, *, chat: bool, keep_text: bool = False) -> None:
        self.rec = record
        self.t0_ns = t0_ns
        self.chat = chat
        self.keep_text = keep_text
        self.text_parts: list[str] = []
        self.buf = b""
        self.done = False
        self.events = 0
        self.usage_base = 0  # completion_tokens at the previous token chunk (per-chunk usage)
        self.error: str | None = None
        self.first_bytes = b""
        self.last_ns = t0_ns

    def feed(self, data: bytes, now_ns: int) -> None:
        """Parse every complete line in ``self.buf + data``; events get time ``now_ns``."""
        if not self.first_bytes:
            self.first_bytes = data[:300]
        self.last_ns = now_ns
        buf = self.buf + data if self.buf else data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line[:5] != b"data:":
                continue
            payload = line[5:].strip()
            if not payload:
                continue
            if payload == DONE:
                self.done = True
                continue
            self._event(payload, now_ns)
        self.buf = buf[start:]
        if len(self.buf) > MAX_SSE_LINE_BYTES:
            if self.error is None:
                self.error = (f"SSE line longer than {MAX_SSE_LINE_BYTES} bytes without a newline: "
                              f"{self.buf[:100]!r}...")
            self.buf = b""

    def _event(self, payload: bytes, now_ns: int) -> None:
        self.events += 1
        try:
            obj = _loads(payload)
        except ValueError as exc:
            self.error = f"malformed SSE event JSON ({exc}): {payload[:200]!r}"
            return
        if not isinstance(obj, dict):
            self.error = f"SSE event is not a JSON object: {payload[:200]!r}"
            return
        usage = obj.get("usage")
        ct = None
        if usage:
            if not isinstance(usage, dict):
                self.error = f"SSE event's usage is not an object: {payload[:200]!r}"
                return
            ct = usage.get("completion_tokens")
            pt = usage.get("prompt_tokens")
            if not all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in (ct, pt)):
                self.error = f"SSE event's usage token counts are not integers >= 0: {payload[:200]!r}"
                return
            if ct is not None:
                self.rec.output_tokens = ct
            if pt is not None:
                self.rec.input_tokens = pt
        choices = obj.get("choices")
        if not choices:
            err = obj.get("error")
            if err:
                self.error = f"server error in stream: {str(err)[:300]}"
            return
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            self.error = f"SSE event's choices is not a list of objects: {payload[:200]!r}"
            return
        c = choices[0]
        rec = self.rec
        if rec.first_event_ns is None:
            rec.first_event_ns = now_ns - self.t0_ns  # vLLM's client's TTFT point: any choice event
        if self.chat:
            delta = c.get("delta") or {}
            if not isinstance(delta, dict):
                self.error = f"SSE event's delta is not an object: {payload[:200]!r}"
                return
            content = delta.get("content")
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        else:
            content = c.get("text")
            reasoning = None
        if not all(v is None or isinstance(v, str) for v in (content, reasoning)):
            self.error = f"SSE event's text is not a string: {payload[:200]!r}"
            return
        if not content and not reasoning:
            return  # role-only, usage-only, finish-only or empty chunk: not a token
        t = now_ns - self.t0_ns
        if ct is not None and ct > self.usage_base:
            k = ct - self.usage_base
            self.usage_base = ct
        else:
            k = 1
            self.usage_base += 1
        rec.chunk_ns.append(t)
        rec.chunk_tokens.append(k)
        if rec.first_token_ns is None:
            rec.first_token_ns = t
        if content and rec.first_content_ns is None:
            rec.first_content_ns = t
        if self.keep_text:
            if reasoning:
                self.text_parts.append(reasoning)
            if content:
                self.text_parts.append(content)

    def finish(self, count_tokens: Callable[[str], int] | None = None) -> None:
        """Close the stream: set ``end_ns``, the client token count, and failure ``empty``/``stream_error``.

        ``client_output_tokens`` = ``count_tokens(text)`` when given (client tokenizer), else the sum of
        chunk token counts.
        """
        if self.buf.strip():
            self.feed(b"\n", self.last_ns)  # a last line without its newline: time of its bytes
        rec = self.rec
        if rec.chunk_ns:
            rec.end_ns = rec.chunk_ns[-1]
        if count_tokens is not None and self.keep_text:
            rec.client_output_tokens = count_tokens("".join(self.text_parts))
        else:
            rec.client_output_tokens = sum(rec.chunk_tokens)
        if self.error is not None:
            rec.error_reason, rec.error = "stream_error", self.error
        elif not rec.chunk_ns:
            rec.error_reason = "empty"
            what = "no token chunk" if self.events or self.done or not self.first_bytes else \
                "a body that is not an SSE stream (no 'data:' line)"
            rec.error = (
                f"HTTP {rec.http_status} with {what} ({self.events} events, "
                f"[DONE] {'seen' if self.done else 'missing'}); first bytes: {self.first_bytes[:200]!r}"
            )


def classify_status(status: int) -> str | None:
    """Failure reason for an HTTP status: ``http_5xx`` (>= 500), ``http_4xx`` (>= 400), else ``None``."""
    if status >= 500:
        return "http_5xx"
    if status >= 400:
        return "http_4xx"
    return None


async def send_request(
    session: Any,
    url: str,
    body_bytes: bytes,
    headers: dict[str, str],
    record: RequestRecord,
    *,
    t0_ns: int,
    clock: Callable[[], int],
    chat: bool,
    timeout_s: float,
    count_tokens: Callable[[str], int] | None = None,
) -> RequestRecord:
    """Send one streaming POST and fill ``record`` (never raises for a failed request).

    ``session`` is an ``aiohttp.ClientSession`` (or anything with the same ``post()`` async-context
    protocol, ``.status``, ``.content.iter_any()`` and ``.text()``). Failures are recorded in
    ``record.error_reason``: ``http_5xx``/``http_4xx`` (status >= 500/400, body excerpt in ``error``),
    ``timeout`` (``timeout_s`` from send to end of stream exceeded), ``connection`` (connect/reset/
    payload errors), ``empty``, ``stream_error``, ``cancelled`` (the task was cancelled; re-raised).
    """
    import aiohttp

    parser = StreamParser(record, t0_ns, chat=chat, keep_text=count_tokens is not None)
    record.send_ns = clock() - t0_ns
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=body_bytes, headers=headers) as resp:
                record.http_status = resp.status
                reason = classify_status(resp.status)
                if reason is not None:
                    text = await resp.text()
                    record.error_reason = reason
                    record.error = f"HTTP {resp.status}: {text[:500]}"
                    return record
                async for data in resp.content.iter_any():
                    parser.feed(data, clock())
        parser.finish(count_tokens)
    except TimeoutError:
        record.error_reason = "timeout"
        record.error = f"no complete response within {timeout_s} s ({len(record.chunk_ns)} token chunks received)"
    except (aiohttp.ClientError, OSError) as exc:
        record.error_reason = "connection"
        record.error = one_line(f"{type(exc).__name__}: {exc}")
    except asyncio.CancelledError:
        record.error_reason = "cancelled"
        record.error = "cancelled before the response completed"
        raise
    if record.error_reason is not None and record.chunk_ns and record.end_ns is None:
        record.end_ns = record.chunk_ns[-1]
    return record
