"""A scripted OpenAI-compatible streaming server (aiohttp.web) for calibrating and testing the load generator.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (streaming and non-streaming),
``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus text; gauge/counter names mimic
vLLM's ``vllm:*`` so a scraper can be tested against it), ``GET /mock/timeline`` (when recording).

Schedule of one streamed request of ``n`` output tokens (``n`` = ``max_tokens`` or
``max_completion_tokens``, else ``default_max_tokens``), times from the moment the request body was read:
- chat only: a role-only chunk (``delta = {"role": "assistant", "content": ""}``) at once (not a token);
- each chunk carries ``K = tokens_per_chunk`` tokens (the last may carry fewer); the chunk ending with
  token ``b`` (exclusive) is written at ``ttft_ms + (b - K) * itl_ms``, so TTFT = ``ttft_ms`` and every
  per-token ITL (chunk gap / tokens in the chunk) = ``itl_ms``.
  Deadlines are absolute (timer lateness does not accumulate); one token's text is ``" t<i>"``;
- the first ``reasoning_tokens`` tokens go to ``delta.reasoning_content`` (chat), the rest to ``content``;
- with ``stream_options.continuous_usage_stats`` every chunk carries cumulative ``usage`` (as vLLM);
- with ``stream_options.include_usage`` a final ``choices: []`` usage chunk, then ``data: [DONE]``.
Prompt tokens are counted as whitespace-separated words (an approximation; the mock has no tokenizer).
``fail_rate`` is the probability (seeded) that a request gets HTTP 500 instead.

With ``record_timeline`` the server keeps, per ``X-Request-Id`` header, the ``time.perf_counter_ns``
at which the body was read and each chunk was handed to the socket; on Linux that clock is
CLOCK_MONOTONIC, shared by processes on one machine, so a client can separate server timer lateness
from its own measurement delay.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from profiles.errors import InputError

try:
    import orjson as _orjson

    def _dumps(obj: Any) -> bytes:
        return _orjson.dumps(obj)
except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class MockConfig:
    """The mock server's script (times in ms; see module docstring).

    Raises (via :meth:`validate`): InputError naming the flag when a value is out of range.
    """

    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    tokens_per_chunk: int = 1
    reasoning_tokens: int = 0
    fail_rate: float = 0.0
    seed: int = 0
    model: str = "mock-llm"
    default_max_tokens: int = 16
    max_model_len: int = 1_000_000
    record_timeline: bool = False

    def validate(self) -> None:
        """Check ranges; raise :class:`InputError` naming the CLI flag."""
        if self.ttft_ms < 0:
            raise InputError(f"--ttft-ms must be >= 0, got {self.ttft_ms}")
        if self.itl_ms < 0:
            raise InputError(f"--itl-ms must be >= 0, got {self.itl_ms}")
        if self.tokens_per_chunk < 1:
            raise InputError(f"--tokens-per-chunk must be >= 1, got {self.tokens_per_chunk}")
        if self.reasoning_tokens < 0:
            raise InputError(f"--reasoning-tokens must be >= 0, got {self.reasoning_tokens}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise InputError(f"--fail-rate must be in [0, 1], got {self.fail_rate}")


class MockState:
    """Counters for ``/metrics`` and the optional timeline."""

    def __init__(self, cfg: MockConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.running = 0
        self.success = 0
        self.failures = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.timeline: dict[str, dict[str, Any]] = {}


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        total = 0
        for m in body.get("messages") or []:
            c = m.get("content") if isinstance(m, dict) else None
            if isinstance(c, str):
                total += len(c.split())
            elif isinstance(c, list):
                total += sum(len(str(p.get("text", "")).split()) for p in c if isinstance(p, dict))
        return total
    p = body.get("prompt", "")
    if isinstance(p, list):
        return len(p) if p and isinstance(p[0], int) else sum(len(str(x).split()) for x in p)
    return len(str(p).split())


def _error(status: int, message: str) -> Any:
    from aiohttp import web

    return web.json_response(
        {"error": {"message": message, "type": "BadRequestError" if status < 500 else "InternalServerError",
                   "code": status}}, status=status)


def _state_key() -> Any:
    from aiohttp import web

    return web.AppKey("enginescope_mock_state", MockState)


STATE_KEY = _state_key()


def make_app(cfg: MockConfig) -> Any:
    """The ``aiohttp.web.Application`` serving ``cfg``'s script."""
    from aiohttp import web

    cfg.validate()
    state = MockState(cfg)
    app = web.Application()
    app[STATE_KEY] = state
    ns_ms = 1_000_000

    async def generate(request: web.Request, chat: bool) -> web.StreamResponse:
        t_recv = time.perf_counter_ns()
        try:
            body = await request.json(loads=json.loads)
        except ValueError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        n = body.get("max_tokens") or body.get("max_completion_tokens") or cfg.default_max_tokens
        if not isinstance(n, int) or n < 1:
            return _error(400, f"max_tokens must be a positive integer, got {n!r}")
        if chat and not body.get("messages"):
            return _error(400, "field 'messages' is required")
        if not chat and "prompt" not in body:
            return _error(400, "field 'prompt' is required")
        if state.rng.random() < cfg.fail_rate:
            state.failures += 1
            return _error(500, "mock failure (--fail-rate)")
        prompt_tokens = _prompt_tokens(body)
        opts = body.get("stream_options") or {}
        include_usage = bool(opts.get("include_usage"))
        continuous = bool(opts.get("continuous_usage_stats"))
        rid = request.headers.get("X-Request-Id")
        emits: list[int] | None = None
        if cfg.record_timeline and rid is not None:
            emits = []
            state.timeline[rid] = {"recv_ns": t_recv, "emit_ns": emits}
        K = cfg.tokens_per_chunk
        R = cfg.reasoning_tokens if chat else 0
        ttft_ns = int(cfg.ttft_ms * ns_ms)
        itl_ns = int(cfg.itl_ms * ns_ms)
        first_k = min(K, n)
        obj_kind = "chat.completion.chunk" if chat else "text_completion"
        rid_out = f"{'chatcmpl' if chat else 'cmpl'}-{id(request):x}"
        created = int(time.time())
        base = {"id": rid_out, "object": obj_kind, "created": created, "model": cfg.model}
        state.running += 1
        state.prompt_tokens += prompt_tokens
        try:
            if not body.get("stream"):
                await asyncio.sleep((ttft_ns + max(0, (n - 1)) * int(cfg.itl_ms * ns_ms)) / 1e9)
                text = "".join(f" t{i}" for i in range(R, n))
                reasoning = "".join(f" t{i}" for i in range(R))
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
                if chat:
                    msg: dict[str, Any] = {"role": "assistant", "content": text}
                    if R:
                        msg["reasoning_content"] = reasoning
                    choice: dict[str, Any] = {"index": 0, "message": msg, "finish_reason": "length"}
                else:
                    choice = {"index": 0, "text": text, "finish_reason": "length"}
                state.generation_tokens += n
                state.success += 1
                return web.json_response({**base, "object": "chat.completion" if chat else "text_completion",
                                          "choices": [choice], "usage": usage})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
            if chat:
                role = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None}]}
                if continuous:
                    role["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": 0,
                                     "total_tokens": prompt_tokens}
                await resp.write(b"data: " + _dumps(role) + b"\n\n")
            sent = 0
            while sent < n:
                k = min(K, n - sent)
                # chunk [sent, sent+k) is due ttft + (tokens after the first chunk) x itl after receipt
                deadline = t_recv + ttft_ns + (sent + k - first_k) * itl_ns
                wait = deadline - time.perf_counter_ns()
                if wait > 0:
                    await asyncio.sleep(wait / 1e9)
                toks = range(sent, sent + k)
                reasoning = "".join(f" t{i}" for i in toks if i < R)
                content = "".join(f" t{i}" for i in toks if i >= R)
                last = sent + k >= n
                if chat:
                    delta: dict[str, Any] = {}
                    if reasoning:
                        delta["reasoning_content"] = reasoning
                    if content:
                        delta["content"] = content
                    ch: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": "length" if last else None}
                else:
                    ch = {"index": 0, "text": content, "finish_reason": "length" if last else None}
                chunk: dict[str, Any] = {**base, "choices": [ch]}
                sent += k
                if continuous:
                    chunk["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": sent,
                                      "total_tokens": prompt_tokens + sent}
                payload = b"data: " + _dumps(chunk) + b"\n\n"
                if emits is not None:
                    emits.append(time.perf_counter_ns())
                await resp.write(payload)
            if include_usage:
                u = {**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                                      "total_tokens": prompt_tokens + n}}
                await resp.write(b"data: " + _dumps(u) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            state.generation_tokens += n
            state.success += 1
            return resp
        finally:
            state.running -= 1

    async def completions(request: web.Request) -> web.StreamResponse:
        return await generate(request, chat=False)

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        return await generate(request, chat=True)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": cfg.model, "object": "model", "created": 0, "owned_by": "enginescope-mock",
             "max_model_len": cfg.max_model_len}]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics(request: web.Request) -> web.Response:
        lbl = f'{{model_name="{cfg.model}"}}'
        lines = [
            "# HELP vllm:num_requests_running Requests being streamed now (mock).",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{lbl} {state.running}",
            "# HELP vllm:num_requests_waiting Requests waiting (always 0 in the mock).",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{lbl} 0",
            "# HELP vllm:prompt_tokens_total Prompt tokens received (mock: whitespace words).",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{lbl} {state.prompt_tokens}",
            "# HELP vllm:generation_tokens_total Output tokens of completed requests.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{lbl} {state.generation_tokens}",
            "# HELP vllm:request_success_total Completed requests.",
            "# TYPE vllm:request_success_total counter",
            f"vllm:request_success_total{lbl} {state.success}",
            "# HELP mock:request_failures_total Requests failed on purpose (--fail-rate).",
            "# TYPE mock:request_failures_total counter",
            f"mock:request_failures_total{lbl} {state.failures}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def timeline(request: web.Request) -> web.Response:
        data = state.timeline
        if request.query.get("clear") == "1":
            state.timeline = {}
        return web.Response(body=_dumps(data), content_type="application/json")

    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/mock/timeline", timeline)
    return app


async def start(cfg: MockConfig, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, str]:
    """Start the server on the running loop; return ``(runner, base_url)``. ``port=0`` picks a free port.
    Stop it with ``await runner.cleanup()``.

    Raises:
        InputError: ``port`` on ``host`` is already in use (EADDRINUSE), or ``host`` cannot be bound.
    """
    import errno

    from aiohttp import web

    runner = web.AppRunner(make_app(cfg), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is in use") from exc
        raise InputError(f"cannot listen on {host}:{port} (--host/--port): {exc.strerror or exc}") from exc
    addr = runner.addresses[0]
    return runner, f"http://{addr[0]}:{addr[1]}"


def serve_forever(cfg: MockConfig, host: str = "127.0.0.1", port: int = 8000, *, use_uvloop: bool = False) -> None:
    """Run the server until interrupted. Prints ``listening on URL``.

    ``use_uvloop``: uvloop serves more chunks per CPU second, but libuv keeps loop time in whole
    milliseconds, so its timers fire up to ~1 ms early or late; asyncio's default loop (the default here)
    never fires early and, when busy, fires close to the due time, which keeps the script accurate.
    """
    cfg.validate()

    async def main() -> None:
        runner, url = await start(cfg, host, port)
        print(f"listening on {url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    loop_factory = None
    if use_uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as r:
            r.run(main())
    except KeyboardInterrupt:
        pass
