"""Run one load level from several client processes (shards) that start their measured phase together.

One asyncio loop stamps every chunk it reads; when hundreds of streams deliver chunks at once, the loop
reads them one after another and the last ones get a later stamp than their arrival (the *client delay* of
``benchmarks/loadgen_overhead.py``: p99 2.56 ms at 256 streams on one core of the H200 machine). Splitting
the level over N processes, each with its own loop and core, divides that queue by N.

How a level is split (shard k of N, ``split(x) = x // N + (1 if k < x % N else 0)``):

- **Concurrency mode**: shard k runs ``split(C)`` workers, ``split(num_requests)`` measured and
  ``split(warmup_requests)`` warm-up requests; a duration bound applies to every shard. N is capped at C.
- **Request-rate mode**: the parent draws the level's one arrival schedule
  (:func:`engine_runner.loadgen.schedule.arrival_offsets_ns`, cut at ``num_requests`` / ``duration_s``) and
  shard k sends offsets ``k, k + N, k + 2N, ...`` of it; ``max_concurrency`` is split like C.
- **Prompts**: shard k gets ``prompts[k::N]`` (all prompts, rotated by k, when there are fewer than N).
- **Start**: every shard runs its warm-up, then waits on one barrier, then takes its own t0
  (``time.perf_counter_ns``, CLOCK_MONOTONIC on Linux: one clock for all processes of the host).

Merging: record times are re-based from each shard's t0 to the earliest one (``t0 = min(t0_k)``; every
``*_ns`` field, ``scheduled_ns`` included, moves by ``t0_k - t0``, so dispatch lag is unchanged); the measured
duration is ``max(t0_k + duration_k) - t0``; ``seq`` is renumbered by send time (warm-up first), and
``LevelResult.request_ids`` keeps each record's ``X-Request-Id`` (shard k sends ``{prefix}s{k}-{seq}``).
Client health: the worst shard's summary (highest loop-lag p99) with ``starved`` true if any shard was, and
every shard's own summary under ``"shards"``.

Processes are started with the ``spawn`` method (no inherited threads or sockets); ``should_stop`` is polled
by the parent and passed on through an event; a shard that fails stops the others and its exception is
raised here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from engine_runner.loadgen import EndpointConfig, LevelResult, LoadLevel, Prompt
from profiles.errors import EngineScopeError, InputError

#: How often the parent polls results, progress, ``should_stop`` and the shards' liveness (s).
POLL_S = 0.25
_TIME_FIELDS = ("send_ns", "first_token_ns", "first_content_ns", "first_event_ns", "end_ns", "scheduled_ns")


def split_count(x: int, n: int, k: int) -> int:
    """Shard ``k``'s share of ``x`` items over ``n`` shards (the first ``x % n`` shards take one more)."""
    return x // n + (1 if k < x % n else 0)


def shard_count(level: LoadLevel, processes: int) -> int:
    """How many shards a level can use: ``processes`` capped by the concurrency (concurrency mode) or by
    ``max_concurrency`` (rate mode, when set).

    Raises:
        InputError: ``processes`` < 1 (flag ``--client-processes``).
    """
    if processes < 1:
        raise InputError(f"--client-processes must be >= 1, got {processes}")
    if level.mode == "concurrency":
        return max(1, min(processes, int(level.value)))
    if level.max_concurrency:
        return max(1, min(processes, level.max_concurrency))
    return processes


def schedule(level: LoadLevel) -> list[int]:
    """The rate-mode level's whole arrival schedule (ns from t0), cut where :func:`run_level` would stop.

    Raises:
        InputError: a rate level bounded by neither ``num_requests`` nor ``duration_s``.
    """
    from engine_runner.loadgen.schedule import arrival_offsets_ns

    if level.num_requests is None and level.duration_s is None:
        raise InputError("a load level needs num_requests or duration_s (fields num_requests, duration_s)")
    end = int(level.duration_s * 1e9) if level.duration_s is not None else None
    out: list[int] = []
    for off in arrival_offsets_ns(level.value, level.arrival, level.burstiness, level.seed):
        if (level.num_requests is not None and len(out) >= level.num_requests) or (end is not None and off >= end):
            break
        out.append(off)
    return out


@dataclasses.dataclass
class ShardPlan:
    """What one shard runs (picklable: it crosses into a spawned process)."""

    index: int
    endpoint: EndpointConfig
    prompts: list[Prompt]
    level: LoadLevel
    offsets_ns: list[int] | None
    tokenizer_path: str | None
    use_uvloop: bool | None
    cpus: list[int] | None


def plan_shards(endpoint: EndpointConfig, prompts: Sequence[Prompt], level: LoadLevel, n: int, *,
                tokenizer_path: str | None = None, use_uvloop: bool | None = None,
                cpus: Sequence[int] | None = None) -> list[ShardPlan]:
    """Split one level over ``n`` shards as the module docstring describes.

    ``cpus``: when given, shard k is pinned to ``cpus[k % len(cpus)]``. Shards that would get no measured
    request (rate mode, a schedule shorter than ``n``) are left out, so fewer than ``n`` plans may return.
    """
    prompts = list(prompts)
    plans = []
    offsets = schedule(level) if level.mode == "request_rate" else None
    for k in range(n):
        ps = prompts[k::n] if len(prompts) >= n else prompts[k % len(prompts):] + prompts[:k % len(prompts)]
        ep = endpoint if endpoint.request_id_prefix is None else \
            dataclasses.replace(endpoint, request_id_prefix=f"{endpoint.request_id_prefix}s{k}-")
        if level.mode == "concurrency":
            lv = dataclasses.replace(
                level, value=float(split_count(int(level.value), n, k)),
                num_requests=split_count(level.num_requests, n, k) if level.num_requests is not None else None,
                warmup_requests=split_count(level.warmup_requests, n, k))
            if lv.num_requests == 0:
                continue
            own = None
        else:
            own = offsets[k::n]
            if not own:
                continue
            lv = dataclasses.replace(
                level, num_requests=len(own), warmup_requests=split_count(level.warmup_requests, n, k),
                max_concurrency=split_count(level.max_concurrency, n, k) if level.max_concurrency else None)
        plans.append(ShardPlan(index=k, endpoint=ep, prompts=ps, level=lv, offsets_ns=own,
                               tokenizer_path=tokenizer_path, use_uvloop=use_uvloop,
                               cpus=[list(cpus)[k % len(cpus)]] if cpus else None))
    return plans


def token_counter(tokenizer_path: str | None) -> Callable[[str], int] | None:
    """The client tokenizer as ``text -> completion tokens`` (no special tokens), or ``None`` without a path."""
    if tokenizer_path is None:
        return None
    from engine_runner.loadgen.datasets import count_tokens, load_fast_tokenizer

    tok = load_fast_tokenizer(tokenizer_path)
    return lambda text: count_tokens(tok, text, special=False)


@contextlib.contextmanager
def _no_main_rerun() -> Iterator[None]:
    """While shards start, present a bare ``__main__`` to multiprocessing: ``spawn`` would otherwise re-run the
    parent's main script in every shard (as it does for a script's ``if __name__ == "__main__"`` guard), and a
    caller's ``__main__`` may be any file (a Streamlit page run by the dashboard's tests was). A shard needs
    nothing from it: its entry point, :func:`_shard_main`, is imported from this module by name."""
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _shard_main(plan: ShardPlan, barrier: Any, stop: Any, done: Any, results: Any) -> None:
    """Entry point of one shard process: run its level, put ``(index, "ok", LevelResult)`` or
    ``(index, "error", exception)`` on ``results``."""
    from threading import BrokenBarrierError

    from engine_runner.loadgen.runner import run_level_blocking

    try:
        if plan.cpus:
            os.sched_setaffinity(0, plan.cpus)

        def after_warmup() -> None:
            try:
                barrier.wait()
            except BrokenBarrierError:
                if not stop.is_set():
                    raise EngineScopeError("another client shard failed before the measured phase") from None

        def progress(n_done: int, _total: int) -> None:
            done.value = n_done

        res = run_level_blocking(plan.endpoint, plan.prompts, plan.level, on_progress=progress,
                                 should_stop=stop.is_set, count_tokens=token_counter(plan.tokenizer_path),
                                 after_warmup=after_warmup, offsets_ns=plan.offsets_ns, use_uvloop=plan.use_uvloop)
        results.put((plan.index, "ok", res))
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent, which re-raises it
        try:
            results.put((plan.index, "error", e))
        except Exception:  # noqa: BLE001 - an exception that does not pickle goes as its text
            results.put((plan.index, "error", EngineScopeError(f"{type(e).__name__}: {e}")))


def merge(results: dict[int, LevelResult], prefixes: dict[int, str | None]) -> LevelResult:
    """One :class:`LevelResult` from the shards' results (``{shard index: result}``), as the module
    docstring describes. ``prefixes``: each shard's ``request_id_prefix`` (``None``: no ids kept)."""
    t0 = min(r.t0_ns for r in results.values())
    end = max(r.t0_ns + int(r.duration_s * 1e9) for r in results.values())
    tagged = []
    for k, res in results.items():
        shift = res.t0_ns - t0
        for rec in res.records:
            for name in _TIME_FIELDS:
                v = getattr(rec, name)
                if v is not None:
                    setattr(rec, name, v + shift)
            rec.chunk_ns = [c + shift for c in rec.chunk_ns]
            rid = f"{prefixes[k]}{rec.seq}" if prefixes.get(k) is not None else None
            tagged.append((rec, rid))
    never = 2**62
    tagged.sort(key=lambda t: (not t[0].warmup, t[0].send_ns if t[0].send_ns is not None else never))
    ids = []
    for i, (rec, rid) in enumerate(tagged):
        rec.seq = i
        ids.append(rid)
    healths = {k: r.client_health for k, r in sorted(results.items()) if r.client_health is not None}
    health = None
    if healths:
        def lag(h: dict[str, Any]) -> float:
            return (h.get("loop_lag_ms") or {}).get("p99") or 0.0

        worst_k = max(healths, key=lambda k: lag(healths[k]))
        health = dict(healths[worst_k])
        starved = [k for k, h in healths.items() if h.get("starved")]
        health["starved"] = bool(starved)
        health["why"] = "; ".join(f"client shard {k}: {healths[k]['why']}" for k in starved) or None
        health["worst_shard"] = worst_k
        health["shards"] = [{"shard": k, **h} for k, h in healths.items()]
    return LevelResult(records=[t[0] for t in tagged], t0_ns=t0, duration_s=max(end - t0, 1) / 1e9,
                       client_health=health, request_ids=ids if any(i is not None for i in ids) else None)


def run_level_sharded(
    endpoint: EndpointConfig,
    prompts: Sequence[Prompt],
    level: LoadLevel,
    *,
    processes: int,
    tokenizer_path: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    use_uvloop: bool | None = None,
    cpus: Sequence[int] | None = None,
) -> LevelResult:
    """Run one level from ``processes`` client processes and merge their records (module docstring).

    Args:
        endpoint, prompts, level: as :func:`engine_runner.loadgen.runner.run_level`.
        processes: shards wanted (``--client-processes``); capped by :func:`shard_count`. 1 runs the level
            in this process with :func:`~engine_runner.loadgen.runner.run_level_blocking`.
        tokenizer_path: the client tokenizer's folder or hub id; each shard loads it to count
            ``client_output_tokens`` (a callable cannot cross processes).
        on_progress: ``on_progress(done, total)``, the shards' finished measured requests summed, at most
            4 times a second and at the end.
        should_stop: polled every :data:`POLL_S`; when true every shard cancels its requests.
        use_uvloop: as :func:`~engine_runner.loadgen.runner.run_level_blocking`, in every shard.
        cpus: pin shard k to ``cpus[k % len(cpus)]`` (``None``: inherit this process's affinity).

    Returns:
        The merged :class:`LevelResult` (times relative to the earliest shard's t0).

    Raises:
        InputError: invalid level fields, no prompts, ``processes`` < 1.
        EngineScopeError: a shard process died without a result (its exit code is named); the exception a
            shard raised is re-raised as it was.
    """
    from engine_runner.loadgen.runner import run_level_blocking, validate_level

    validate_level(level)
    if not prompts:
        raise InputError("no prompts to send (argument prompts is empty)")
    n = shard_count(level, processes)
    if n == 1:
        return run_level_blocking(endpoint, prompts, level, on_progress=on_progress, should_stop=should_stop,
                                  count_tokens=token_counter(tokenizer_path), use_uvloop=use_uvloop)
    plans = plan_shards(endpoint, prompts, level, n, tokenizer_path=tokenizer_path, use_uvloop=use_uvloop, cpus=cpus)
    total = level.num_requests if level.num_requests is not None else \
        sum(len(p.offsets_ns or ()) for p in plans)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(plans))
    stop = ctx.Event()
    results_q = ctx.Queue()
    dones = {p.index: ctx.Value("q", 0, lock=False) for p in plans}
    procs = {p.index: ctx.Process(target=_shard_main, args=(p, barrier, stop, dones[p.index], results_q),
                                  name=f"enginescope-shard-{p.index}", daemon=True) for p in plans}
    results: dict[int, LevelResult] = {}
    failure: BaseException | None = None
    last_progress = 0.0
    try:
        with _no_main_rerun():
            for proc in procs.values():
                proc.start()
        def take(timeout_s: float) -> bool:
            """Read one shard message into ``results`` / ``failure``; False when none came in time."""
            nonlocal failure
            try:
                k, status, payload = results_q.get(timeout=timeout_s)
            except queue_mod.Empty:
                return False
            if status == "ok":
                results[k] = payload
            else:
                failure = payload
            return True

        while len(results) < len(procs) and failure is None:
            if take(POLL_S):
                continue
            if should_stop is not None and not stop.is_set() and should_stop():
                stop.set()
                barrier.abort()
            dead = [k for k, p in procs.items() if k not in results and p.exitcode is not None]
            if dead:
                # a result put just before exit may still be in the pipe: one more short look
                if not take(1.0):
                    failure = EngineScopeError(f"client shard {dead[0]} exited with code "
                                               f"{procs[dead[0]].exitcode} without a result")
                continue
            now = time.monotonic()
            if on_progress is not None and now - last_progress >= POLL_S:
                last_progress = now
                on_progress(sum(v.value for v in dones.values()), total)
        if failure is not None:
            stop.set()
            barrier.abort()
            raise failure
    finally:
        stop.set()
        deadline = time.monotonic() + 30
        for proc in procs.values():
            # keep draining: a shard cannot exit while its result is still in the queue's pipe
            while proc.is_alive() and time.monotonic() < deadline:
                try:
                    results_q.get(timeout=POLL_S)
                except queue_mod.Empty:
                    pass
            if proc.is_alive():
                proc.kill()
            proc.join()
        results_q.close()
    if on_progress is not None:
        on_progress(sum(v.value for v in dones.values()), total)
    return merge(results, {p.index: p.endpoint.request_id_prefix for p in plans})
