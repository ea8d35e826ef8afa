"""Run one load level: closed-loop concurrency or open-loop request rate, with warm-up and bounds.

- **Concurrency mode**: ``value`` workers each send a request, wait for it to finish, and send the next;
  ``scheduled_ns`` is ``None`` (there is no schedule to be late against).
- **Request-rate mode**: a dispatcher sends request *i* at ``t0 + offset_i`` from
  :func:`engine_runner.loadgen.schedule.arrival_offsets_ns` (``scheduled_ns = offset_i``), optionally
  waiting for a slot under ``max_concurrency``; the time the client was late (timer slack, a busy loop,
  the concurrency cap) is ``send_ns - scheduled_ns`` (dispatch lag).
- **Warm-up**: ``warmup_requests`` requests run closed-loop before t0 at the level's concurrency (rate
  mode: ``max_concurrency``, else ``min(warmup_requests, 8)``); their records are flagged ``warmup``
  and their times are relative to the same t0 (so negative).
- **Bounds**: stop issuing measured requests after ``num_requests`` or ``duration_s`` (first reached);
  requests in flight finish. ``should_stop()`` (polled every 0.1 s and before every send) cancels the
  level: in-flight requests are cancelled and recorded with reason ``cancelled``.
- One ``aiohttp`` connection pool per level, sized to the concurrency (unbounded in uncapped rate mode,
  so the pool never queues requests behind the schedule).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine_runner.loadgen import EndpointConfig, LevelResult, LoadLevel, Prompt
from engine_runner.loadgen.client import StreamParser, build_body, endpoint_path, send_request
from engine_runner.loadgen.rawhttp import RawPool, send_request_raw
from engine_runner.loadgen.schedule import arrival_offsets_ns, validate_rate
from profiles.errors import InputError
from profiles.llm_metrics import RequestRecord

PROGRESS_INTERVAL_NS = 250_000_000  # at most 4 progress callbacks per second
STOP_POLL_S = 0.1


def validate_level(level: LoadLevel) -> None:
    """Check a level's fields.

    Raises:
        InputError: naming the field (``mode``, ``value``, ``max_concurrency``, ``num_requests``,
            ``duration_s``, ``warmup_requests``, ``arrival``, ``burstiness``).
    """
    if level.mode == "concurrency":
        if not (level.value >= 1) or math.isinf(level.value) or level.value != int(level.value):
            raise InputError(f"concurrency must be an integer >= 1, got {level.value!r} (field value)")
    elif level.mode == "request_rate":
        validate_rate(level.value, level.arrival, level.burstiness)
    else:
        raise InputError(f"unknown load mode {level.mode!r} (field mode); expected 'concurrency' or 'request_rate'")
    if level.max_concurrency is not None and level.max_concurrency < 1:
        raise InputError(f"max_concurrency must be >= 1, got {level.max_concurrency} (field max_concurrency)")
    if level.num_requests is None and level.duration_s is None:
        raise InputError("a load level needs num_requests or duration_s (fields num_requests, duration_s)")
    if level.num_requests is not None and level.num_requests < 1:
        raise InputError(f"num_requests must be >= 1, got {level.num_requests} (field num_requests)")
    if level.duration_s is not None and not (level.duration_s > 0):
        raise InputError(f"duration_s must be > 0, got {level.duration_s} (field duration_s)")
    if level.warmup_requests < 0:
        raise InputError(f"warmup_requests must be >= 0, got {level.warmup_requests} (field warmup_requests)")
    if level.mode == "request_rate" and math.isinf(level.value) and level.num_requests is None:
        raise InputError("an infinite request rate needs num_requests (field num_requests)")


def pool_limit(level: LoadLevel) -> int:
    """Connection-pool size for ``level``: the concurrency, the rate-mode cap, or 0 (aiohttp: unlimited)."""
    if level.mode == "concurrency":
        return int(level.value)
    return level.max_concurrency or 0


class _Level:
    """State of one running level (shared by workers, dispatcher and the stop watcher)."""

    def __init__(self, endpoint: EndpointConfig, prompts: Sequence[Prompt], level: LoadLevel, session: Any,
                 clock: Callable[[], int], count_tokens: Callable[[str], int] | None,
                 on_progress: Callable[[int, int], None] | None, should_stop: Callable[[], bool] | None) -> None:
        self.endpoint = endpoint
        self.level = level
        self.session = session
        self.clock = clock
        self.count_tokens = count_tokens
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.url = endpoint.base_url.rstrip("/") + endpoint_path(endpoint.api)
        self.headers = {"Content-Type": "application/json", **endpoint.headers}
        if endpoint.api_key:
            self.headers["Authorization"] = f"Bearer {endpoint.api_key}"
        self.chat = endpoint.api == "chat"
        # request bodies encoded once per distinct prompt, before any timing starts
        self.bodies = [json.dumps(build_body(endpoint, p)).encode() for p in prompts]
        self.raw = isinstance(session, RawPool)
        self.path = endpoint_path(endpoint.api)
        if self.raw:
            self.raw_requests = [session.request_bytes(self.path, b, self.headers) for b in self.bodies]
        self.input_tokens = [p.input_tokens for p in prompts]
        self.records: list[RequestRecord] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopped = False
        self.done = 0
        self.total = 0
        self.last_progress_ns = 0

    def stop_requested(self) -> bool:
        if not self.stopped and self.should_stop is not None and self.should_stop():
            self.stopped = True
        return self.stopped

    async def one(self, seq: int, prompt_index: int, t0_ns: int, *, warmup: bool, scheduled_ns: int | None) -> None:
        i = prompt_index % len(self.bodies)
        rec = RequestRecord(seq=seq, warmup=warmup, scheduled_ns=scheduled_ns, input_tokens=self.input_tokens[i],
                            client_input_tokens=self.input_tokens[i])
        self.records.append(rec)
        headers = self.headers
        if self.endpoint.request_id_prefix is not None:
            headers = {**headers, "X-Request-Id": f"{self.endpoint.request_id_prefix}{seq}"}
        if self.raw:
            req = self.raw_requests[i] if headers is self.headers else \
                self.session.request_bytes(self.path, self.bodies[i], headers)
            parser = StreamParser(rec, t0_ns, chat=self.chat, keep_text=self.count_tokens is not None)
            await send_request_raw(self.session, req, rec, parser, t0_ns=t0_ns, clock=self.clock,
                                   timeout_s=self.endpoint.timeout_s, count_tokens=self.count_tokens)
        else:
            await send_request(
                self.session, self.url, self.bodies[i], headers, rec, t0_ns=t0_ns, clock=self.clock,
                chat=self.chat, timeout_s=self.endpoint.timeout_s, count_tokens=self.count_tokens,
            )
        if not warmup:
            self.done += 1
            self._progress()

    def _progress(self, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.perf_counter_ns()
        if force or now - self.last_progress_ns >= PROGRESS_INTERVAL_NS:
            self.last_progress_ns = now
            self.on_progress(self.done, self.total)

    async def closed_loop(self, concurrency: int, n: int | None, end_ns: int | None, t0_ns: int, *,
                          warmup: bool, first_seq: int) -> None:
        """``concurrency`` workers sending back to back until ``n`` requests or ``end_ns``."""
        counter = iter(range(n if n is not None else 2**62))

        async def worker() -> None:
            for k in counter:
                if self.stop_requested() or (end_ns is not None and self.clock() >= end_ns):
                    return
                await self.one(first_seq + k, first_seq + k, t0_ns, warmup=warmup, scheduled_ns=None)

        await self._supervise([worker() for _ in range(concurrency)])

    async def open_loop(self, t0_ns: int, first_seq: int, offsets_ns: Sequence[int] | None = None) -> None:
        """Dispatch requests at their scheduled offsets (see module docstring; ``offsets_ns`` given: those)."""
        lv = self.level
        n = lv.num_requests
        end_off = int(lv.duration_s * 1e9) if lv.duration_s is not None else None
        sem = asyncio.Semaphore(lv.max_concurrency) if lv.max_concurrency else None
        clock = self.clock
        loop = asyncio.get_running_loop()

        async def guarded(seq: int, off: int) -> None:
            try:
                await self.one(seq, seq, t0_ns, warmup=False, scheduled_ns=off)
            finally:
                if sem is not None:
                    sem.release()

        offsets = offsets_ns if offsets_ns is not None else arrival_offsets_ns(lv.value, lv.arrival, lv.burstiness, lv.seed)
        for k, off in enumerate(offsets):
            if (n is not None and k >= n) or (end_off is not None and off >= end_off):
                break
            if self.stop_requested():
                break
            # a loop's timers may fire early (uvloop's have 1 ms resolution: sends up to 0.5 ms before
            # their time were seen), so sleep again until the scheduled time has passed
            while (wait_ns := t0_ns + off - clock()) > 0:
                await asyncio.sleep(wait_ns / 1e9)
            if sem is not None:
                await sem.acquire()
            if self.stop_requested():
                if sem is not None:
                    sem.release()
                break
            task = loop.create_task(guarded(first_seq + k, off))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _supervise(self, coros: list[Any]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        for t in tasks:
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def watch_stop(self) -> None:
        """Poll ``should_stop``; when it turns true cancel every in-flight request."""
        while True:
            await asyncio.sleep(STOP_POLL_S)
            if self.stop_requested():
                for t in list(self.tasks):
                    t.cancel()
                return


async def run_level(
    endpoint: EndpointConfig,
    prompts: Sequence[Prompt],
    level: LoadLevel,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    count_tokens: Callable[[str], int] | None = None,
    session: Any | None = None,
    monitor: bool = True,
    after_warmup: Callable[[], None] | None = None,
    offsets_ns: Sequence[int] | None = None,
) -> LevelResult:
    """Run one load level and return every request's raw record.

    Args:
        endpoint: server and API kind.
        prompts: used in order, cycling (request *i* gets ``prompts[i % len(prompts)]``; warm-up first).
        level: mode, value and bounds (see :class:`LoadLevel`).
        on_progress: ``on_progress(done, total)`` at most 4 times a second and at the end; ``done``
            counts finished measured requests, ``total`` is ``num_requests`` or, when only a duration
            bounds the level, the expected count (rate x duration; 0 in concurrency mode).
        should_stop: polled; when true the level ends early and in-flight requests are cancelled.
        clock: integer-ns monotonic clock (tests inject a scripted one).
        count_tokens: the client tokenizer (text -> token count) for ``client_output_tokens``; without
            it the client counts the tokens it saw per chunk.
        session: an existing ``aiohttp.ClientSession`` or :class:`~engine_runner.loadgen.rawhttp.RawPool`
            (or a fake for tests); by default one is created per level (``endpoint.transport``) with a pool
            sized by :func:`pool_limit`.
        monitor: measure the client's own health over the measured phase (event-loop lag and the loop
            thread's run-queue wait: :mod:`engine_runner.loadgen.health`), in ``LevelResult.client_health``.
        after_warmup: called (blocking, nothing in flight) between the warm-up and t0; the client shards of
            :mod:`engine_runner.loadgen.shards` wait on a barrier there so that they start together.
        offsets_ns: rate mode only: the arrival offsets to send at (ascending ns from t0) instead of drawing
            them from ``level``'s arrival process; a shard gets its share of one schedule this way.

    Returns:
        :class:`LevelResult` with all records sorted by ``seq``, the measured phase's duration and the
        client-health summary (``None`` when ``monitor`` is false), and the ``X-Request-Id`` of each record
        (``f"{endpoint.request_id_prefix}{seq}"``; ``None`` without a prefix).

    Raises:
        InputError: invalid level fields or no prompts.
    """
    validate_level(level)
    if not prompts:
        raise InputError("no prompts to send (argument prompts is empty)")
    own_session = session is None
    if own_session and endpoint.transport == "raw":
        session = RawPool(endpoint.base_url, pool_limit(level))
    elif own_session:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=pool_limit(level), limit_per_host=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False,
        )
    st = _Level(endpoint, prompts, level, session, clock, count_tokens, on_progress, should_stop)
    health = None
    watcher = asyncio.ensure_future(st.watch_stop()) if should_stop is not None else None
    try:
        w = level.warmup_requests
        if level.num_requests is not None:
            st.total = level.num_requests
        elif level.mode == "request_rate" and level.duration_s is not None:
            st.total = int(level.value * level.duration_s)
        if w:
            wconc = int(level.value) if level.mode == "concurrency" else (level.max_concurrency or min(w, 8))
            tw = clock()
            await st.closed_loop(min(wconc, w), w, None, tw, warmup=True, first_seq=0)
            # re-base warm-up times on t0 (set below) so all records share one origin
        if after_warmup is not None:
            after_warmup()
        t0 = clock()
        if monitor:
            from engine_runner.loadgen.health import LoopHealth

            health = LoopHealth().start()
        if w:
            shift = t0 - tw
            for r in st.records:
                for name in ("send_ns", "first_token_ns", "first_content_ns", "first_event_ns", "end_ns"):
                    v = getattr(r, name)
                    if v is not None:
                        setattr(r, name, v - shift)
                r.chunk_ns = [c - shift for c in r.chunk_ns]
        if not st.stop_requested():
            if level.mode == "concurrency":
                end_ns = t0 + int(level.duration_s * 1e9) if level.duration_s is not None else None
                await st.closed_loop(int(level.value), level.num_requests, end_ns, t0, warmup=False, first_seq=w)
            else:
                await st.open_loop(t0, first_seq=w, offsets_ns=offsets_ns)
        t_end = clock()
    finally:
        if health is not None:
            health.stop()
        if watcher is not None:
            watcher.cancel()
        if own_session and session is not None:
            await session.close()
    st._progress(force=True)
    records = sorted(st.records, key=lambda r: r.seq)
    prefix = endpoint.request_id_prefix
    return LevelResult(records=records, t0_ns=t0, duration_s=max(t_end - t0, 1) / 1e9,
                       client_health=health.result if health is not None else None,
                       request_ids=[f"{prefix}{r.seq}" for r in records] if prefix is not None else None)


def run_level_blocking(*args: Any, use_uvloop: bool | None = None, **kwargs: Any) -> LevelResult:
    """Run :func:`run_level` in a fresh event loop: uvloop's when installed (``use_uvloop=None``) or
    when ``use_uvloop`` is true, asyncio's default when false. uvloop cuts the client's CPU per request.

    For callers without their own loop (CLI, jobs, benchmarks). Other arguments as :func:`run_level`.
    """
    loop_factory = None
    if use_uvloop is not False:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            if use_uvloop:
                raise
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run_level(*args, **kwargs))
