"""``enginescope serve-bench``: an LLM serving benchmark (vLLM launched here, or an existing endpoint),
run in-process as an ``llm_serve`` job with origin ``cli``; results go to the same database.

Inputs are checked before any job row is written by :func:`profiles.llm_preflight.plan` (paths,
tokenizer files, dataset, hub reachability), the same function the dashboard's LLM page runs.

Exit codes: 0 every run succeeded, 1 a run failed (or the job was cancelled), 2 bad input.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from typing import Any

import typer


def _device(spec: Any) -> str:
    """The device the job occupies: ``endpoint:HOST`` for an endpoint, ``cuda:N`` when NVML sees a GPU
    (first of CUDA_VISIBLE_DEVICES), else ``cpu``."""
    if spec.engine == "endpoint":
        from urllib.parse import urlparse

        return f"endpoint:{urlparse(spec.endpoint).netloc}"[:64]
    from engine_runner import gpu

    snaps = gpu.snapshot(gpu.visible_indices())
    return f"cuda:{snaps[0].index}" if snaps else "cpu"


def results_json(job_id: int, url: str | None = None) -> dict[str, Any]:
    """The ``--json`` document of a job: ``{"job_id", "status", "error", "runs": [...]}``; the runs come from
    :func:`db.llm_import.serve_results` (the one reader of stored LLM results, shared with ``import --json``
    and the dashboard): ``{"run_id", "engine", "model", "status", "error", "source", "source_tool", "kv_cache",
    "kv_cache_sizing", "vllm_python", "startup_report", "points": [...]}``; each point has
    ``concurrency`` or ``request_rate`` (``"inf"`` for an infinite rate; with ``--repeats N`` still one point
    per level, its repeats pooled, with ``repeats``, and the run with ``repeats``: count and order), counts,
    throughputs, goodput
    and ``ttft_ms``/``tpot_ms``/``itl_ms``/``e2e_ms``/``ttft_first_event_ms`` as ``{"mean", "p50", "p90", "p99",
    "count"}``, with ``empty_first_token_requests`` (see :func:`profiles.llm_metrics.point_report`)."""
    from sqlalchemy import select

    from db.llm_import import serve_results
    from db.models import Job, Run
    from db.session import session_scope

    with session_scope(url) as s:
        job = s.get(Job, job_id)
        run_ids = [int(i) for i in s.execute(select(Run.id).where(Run.job_id == job_id).order_by(Run.id)).scalars()]
        status, error = (job.status, job.error) if job else (None, None)
    return {"job_id": job_id, "status": status, "error": error, "runs": serve_results(run_ids, url=url)}


def _print_table(doc: dict[str, Any]) -> None:
    for r in doc["runs"]:
        typer.echo(f"run {r['run_id']}: {r['engine']} {r['model']} -> {r['status']}" + (f" ({r['error']})" if r["error"] else ""))
        if r.get("vllm_python"):
            typer.echo(f"  vLLM interpreter: {r['vllm_python']['path']} ({r['vllm_python']['source']})")
        if r.get("kv_cache_sizing"):
            typer.echo(f"  KV-cache size: {r['kv_cache_sizing'].get('message')}")
        kv = r.get("kv_cache") or {}
        if kv.get("kv_cache_tokens") is not None:
            pred = kv.get("predicted_max_concurrency")
            typer.echo(f"  KV cache: {kv['kv_cache_tokens']:,} tokens, {kv.get('bytes_per_token')} B/token; predicted max "
                       f"concurrency at {kv['tokens_per_request']} tokens/request: {pred:.1f}; vLLM says "
                       f"{kv.get('vllm_max_concurrency')}x at {kv.get('vllm_max_concurrency_tokens')} tokens; "
                       f"measured max running: {kv.get('measured_max_running')}")
        if not r["points"]:
            continue
        typer.echo(f"  {'level':>10} {'ok':>5} {'fail':>5} {'req/s':>8} {'out tok/s':>10} {'TTFT p50/p99 ms':>18} "
                   f"{'TPOT p50/p99 ms':>18} {'E2E p50 ms':>11}")
        for p in r["points"]:
            lvl = p.get("concurrency", p.get("request_rate"))
            name = f"c={lvl}" if "concurrency" in p else f"rate={lvl}"
            if p.get("repeats"):
                name += f" x{p['repeats']['count']}"  # the level's repeats pooled

            def f(x: Any) -> str:
                return "-" if x is None else f"{x:.1f}"

            typer.echo(f"  {name:>10} {p['completed']:>5} {p['failed']:>5} {f(p['request_throughput_per_s']):>8} "
                       f"{f(p['output_token_throughput_per_s']):>10} "
                       f"{f(p['ttft_ms']['p50']) + '/' + f(p['ttft_ms']['p99']):>18} "
                       f"{f(p['tpot_ms']['p50']) + '/' + f(p['tpot_ms']['p99']):>18} {f(p['e2e_ms']['p50']):>11}")


def register(app: typer.Typer) -> None:
    """Add ``serve-bench``."""

    @app.command("serve-bench")
    def serve_bench_cmd(
        model: str = typer.Option(..., "--model", help="Local folder or HF id (vllm), or the served model name (--endpoint)."),
        endpoint: str = typer.Option(None, "--endpoint", help="Base URL of a running OpenAI-compatible server (no launch)."),
        engine: str = typer.Option(None, "--engine", help="vllm (default without --endpoint) or endpoint."),
        api_key: str = typer.Option(None, "--api-key", envvar="ENGINESCOPE_ENDPOINT_API_KEY", help="Bearer token for --endpoint."),
        concurrency: str = typer.Option(None, "--concurrency", help="Closed-loop levels, e.g. 1,4,16."),
        request_rate: str = typer.Option(None, "--request-rate", help="Open-loop rates in requests/s, e.g. 2,8,inf."),
        input_len: int = typer.Option(128, "--input-len", help="Synthetic prompt length, tokens."),
        output_len: int = typer.Option(128, "--output-len", help="Output length, tokens (ignore_eos)."),
        dataset: str = typer.Option(None, "--dataset", help="ShareGPT-style JSON/JSONL file instead of synthetic prompts."),
        num_prompts: int = typer.Option(64, "--num-prompts", help="Measured requests per level."),
        prompts_per_concurrency: int = typer.Option(None, "--prompts-per-concurrency", help="A concurrency-C level sends max(--num-prompts, this x C) requests."),
        warmup: int = typer.Option(2, "--warmup", help="Warm-up requests per level (not measured)."),
        repeats: int = typer.Option(1, "--repeats", help="Measure each level N times (1..50), interleaved with the other levels (L1 L2 L3, L1 L2 L3, ...); one run, one load point per repeat; verdicts use the spread between repeats."),
        api: str = typer.Option("completions", "--api", help="chat or completions."),
        tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer folder or HF id (default: the model)."),
        dtype: str = typer.Option("auto", "--dtype", help="vLLM --dtype."),
        quantization: str = typer.Option(None, "--quantization", help="vLLM --quantization."),
        kv_cache_dtype: str = typer.Option("auto", "--kv-cache-dtype", help="vLLM --kv-cache-dtype."),
        max_num_seqs: int = typer.Option(None, "--max-num-seqs", help="vLLM --max-num-seqs."),
        max_model_len: int = typer.Option(None, "--max-model-len", help="vLLM --max-model-len."),
        prefix_caching: bool = typer.Option(None, "--prefix-caching/--no-prefix-caching", help="vLLM prefix caching."),
        tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vLLM --tensor-parallel-size."),
        gpu_memory_utilization: float = typer.Option(None, "--gpu-memory-utilization", help="vLLM fraction of device memory (CPU: of RAM)."),
        kv_cache_memory_bytes: int = typer.Option(None, "--kv-cache-memory-bytes", help="vLLM fixed KV-cache size, bytes."),
        load_format: str = typer.Option(None, "--load-format", help="vLLM --load-format (dummy = random weights)."),
        vllm_arg: list[str] = typer.Option(None, "--vllm-arg", help="Extra vLLM flag (repeat), e.g. --vllm-arg=--enforce-eager."),
        slo: list[str] = typer.Option(None, "--slo", help="SLO NAME=MS for goodput (repeat): ttft_ms, tpot_ms, e2e_ms."),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Let the model repository run its code."),
        continuous_usage: bool = typer.Option(False, "--continuous-usage/--no-continuous-usage", help="Ask for usage on every chunk: exact per-chunk token counts, but it slows vLLM's server (-29% throughput at concurrency 256 on an H200)."),
        peer: list[str] = typer.Option(None, "--peer", help="Also run this client with each level's load on the same server, stored beside ours: vllm-bench."),
        startup_timeout_s: float = typer.Option(900.0, "--startup-timeout-s", help="Give up waiting for vLLM after this long."),
        max_level_duration_s: float = typer.Option(600.0, "--max-level-duration-s", help="Stop sending new requests in a level after this long."),
        seed: int = typer.Option(0, "--seed", help="Seeds prompts and arrivals."),
        client_processes: int = typer.Option(1, "--client-processes", help="Send each level from this many client processes (one event loop and core each); for hundreds of streams."),
        device: str = typer.Option(None, "--device", help="Device the job occupies (default: cuda:N if a GPU is seen, else cpu)."),
        as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout (progress on stderr)."),
    ) -> None:
        """Benchmark LLM serving: launch vLLM on --model (or use --endpoint), send a load sweep, store every
        request and the server's /metrics, and print TTFT/TPOT/ITL/E2E and throughput per level."""
        from db.config import db_url, home
        from db.jobs import start_inline_job
        from db.session import migrate
        from engine_runner.cli import exit_for_job_error, fail
        from engine_runner.interrupts import execute_interruptible
        from engine_runner.jobctx import JobContext
        from profiles.errors import EngineScopeError
        from profiles.llm_preflight import plan
        from profiles.llm_spec import parse_int_list, parse_rate_list, parse_slo_flags

        try:
            home()  # creates the data folder (the SQLite file lives there by default)
            migrate(db_url())
            data: dict[str, Any] = {
                "engine": engine or ("endpoint" if endpoint else "vllm"), "model": model, "endpoint": endpoint,
                "api_key": api_key, "api": api, "tokenizer": tokenizer,
                "concurrency": parse_int_list(concurrency, "--concurrency") if concurrency else None,
                "request_rate": parse_rate_list(request_rate) if request_rate else None,
                "input_len": input_len, "output_len": output_len, "dataset": dataset, "num_prompts": num_prompts, "prompts_per_concurrency": prompts_per_concurrency,
                "warmup": warmup, "dtype": dtype, "quantization": quantization, "kv_cache_dtype": kv_cache_dtype,
                "max_num_seqs": max_num_seqs, "max_model_len": max_model_len, "enable_prefix_caching": prefix_caching,
                "tensor_parallel_size": tensor_parallel_size, "gpu_memory_utilization": gpu_memory_utilization,
                "kv_cache_memory_bytes": kv_cache_memory_bytes, "load_format": load_format,
                "vllm_args": list(vllm_arg or []), "slos": parse_slo_flags(list(slo or [])),
                "trust_remote_code": trust_remote_code, "startup_timeout_s": startup_timeout_s,
                "max_level_duration_s": max_level_duration_s, "seed": seed, "peer_clients": list(peer or []),
                "continuous_usage_stats": continuous_usage, "client_processes": client_processes,
                "repeats": repeats,
            }
            if data["concurrency"] is None and data["request_rate"] is None:
                data["concurrency"] = [1]
            spec = plan(data)  # the same pre-flight as the dashboard's LLM page
            spec_json = spec.model_dump(mode="json")
            # JSON has no infinity: keep "inf" rates as strings pydantic parses back
            if spec.request_rate:
                spec_json["request_rate"] = ["inf" if math.isinf(r) else r for r in spec.request_rate]
            job_id = start_inline_job("llm_serve", spec_json, device=device or _device(spec), origin="cli")
        except EngineScopeError as exc:
            fail(exc)

        out = sys.stderr if as_json else sys.stdout

        def hook(kind: str, message: str, progress: float | None, data: dict[str, Any]) -> None:
            if kind == "stage" and re.match(r"job (succeeded|failed|cancelled)\b", message):
                return  # the outcome (and its error) is printed once, below
            pct = f"{progress:4.0%} " if progress is not None else "     "
            print(f"[job {job_id}] {pct}{kind}: {message}", file=out, flush=True)

        # the job logger has no handler in the CLI: without one, Python's last-resort handler would print
        # "job failed: ..." on stderr a third time
        log = logging.getLogger("enginescope.job.serve_bench")
        if not log.handlers:
            log.addHandler(logging.NullHandler())
        ctx = JobContext(job_id=job_id, kind="llm_serve", spec=spec_json, hooks=[hook], log=log)
        # SIGINT / SIGTERM cancel the job (recorded, level in flight failed, launched server stopped)
        status, interrupted = execute_interruptible(ctx)
        doc = results_json(job_id)
        if as_json:
            typer.echo(json.dumps(doc, indent=2, default=str))
        else:
            _print_table(doc)
        if status != "succeeded" and doc["error"] and not any(r["error"] for r in doc["runs"]):
            typer.echo(f"error: job {status}: {doc['error'].splitlines()[0]}", err=True)
        if interrupted.exit_code is not None:
            raise typer.Exit(interrupted.exit_code)
        if status != "succeeded" or any(r["status"] != "succeeded" for r in doc["runs"]):
            errors = [doc["error"]] + [r["error"] for r in doc["runs"]]
            raise typer.Exit(max(exit_for_job_error(e) for e in errors if e) if any(errors) else 1)
