"""Why EngineScope's TTFT at high concurrency on the H200 exceeds vLLM's client's (issue 8 part 2).

The same level, in one process, with one thing changed at a time, each beside vLLM's client on the same
server; around every run the server's prefix-cache counters (``vllm:prefix_cache_{hits,queries}_total``, in
tokens) are read from /metrics, so a difference in prefill work shows as a number:

- ``ours``: EngineScope's load generator as ``serve-bench`` runs it (its synthetic prompts, raw transport,
  ``min_tokens`` + ``ignore_eos``);
- ``ours, vLLM's prompts``: the same client sending the prompts vLLM's random dataset makes (same seed, same
  lengths), so only the client differs from vLLM's run;
- ``ours, no min_tokens`` and ``ours, aiohttp``: the request body and the transport;
- ``vllm``: vLLM's client (``vllm.benchmarks.serve``).

Prints one JSON line per run: TTFT p50 (ours also at vLLM's TTFT point, the first choice event), first-wave
TTFT p50, output tok/s, mean prompt tokens (server usage), prefix-cache hit tokens / query tokens.
Usage (device, server up): python3 benchmarks/h200/c64_diag.py [C ...]
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
import httpx  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from engine_runner.loadgen import EndpointConfig, LoadLevel, Prompt, synthetic_prompts  # noqa: E402
from engine_runner.loadgen.runner import run_level_blocking  # noqa: E402
from engine_runner.peers.vllm_bench import VllmBenchLevel, run as vrun  # noqa: E402
from profiles.prometheus import parse_prometheus_text, sum_by_name  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("concurrency", type=int, nargs="*", default=[64])
ap.add_argument("--url", default="http://127.0.0.1:8000")
ap.add_argument("--model", default="llama8b")
ap.add_argument("--tokenizer", default="/tmp/stage/model")
ap.add_argument("--len", type=int, default=128, help="input and output tokens")
ap.add_argument("--vllm-python", default=sys.executable)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
URL, MODEL, TOK, L = a.url, a.model, a.tokenizer, a.len
tok = AutoTokenizer.from_pretrained(TOK)
CACHE = ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total")


def cache() -> dict[str, float]:
    try:
        return sum_by_name(parse_prometheus_text(httpx.get(f"{URL}/metrics", timeout=10).text, CACHE))
    except httpx.HTTPError as exc:
        return {"error": str(exc)}


def cache_delta(before: dict[str, float]) -> dict[str, float | None]:
    after = cache()
    return {n.split(":")[1].removesuffix("_total"): (after.get(n, 0.0) - before.get(n, 0.0)) if n in after else None
            for n in CACHE}


def vllm_prompts(n: int, seed: int) -> list[Prompt] | str:
    """The prompts vLLM's random dataset makes for this load, or why they could not be made."""
    try:
        from vllm.benchmarks.datasets import RandomDataset
    except ImportError as exc:
        return f"no vllm.benchmarks.datasets: {exc}"
    try:
        reqs = RandomDataset(random_seed=seed).sample(tokenizer=tok, num_requests=n, input_len=L, output_len=L,
                                                      range_ratio=0.0)
    except TypeError as exc:
        return f"RandomDataset.sample signature: {exc}"
    return [Prompt(text=r.prompt, input_tokens=int(r.prompt_len), output_tokens=L) for r in reqs]


def ours(name: str, c: int, prompts: list[Prompt], **kw) -> None:
    extra = kw.pop("extra", {})
    ep = EndpointConfig(base_url=URL, model=MODEL, api="completions", extra_body=extra, **kw)
    lv = LoadLevel(mode="concurrency", value=c, num_requests=4 * c, warmup_requests=c)
    before = cache()
    r = run_level_blocking(ep, prompts, lv)
    ok = [x for x in r.records if not x.warmup and x.error_reason is None]
    ttft = sorted((x.first_token_ns - x.send_ns) / 1e6 for x in ok)
    ev = sorted((min(x.first_event_ns, x.first_token_ns) - x.send_ns) / 1e6 for x in ok)
    first = sorted(ok, key=lambda x: x.send_ns)[:c]
    print(json.dumps({
        "c": c, "client": "enginescope", "variant": name, "completed": len(ok), "ttft_p50_ms": ttft[len(ttft) // 2],
        "ttft_first_event_p50_ms": ev[len(ev) // 2],
        "empty_first_token": sum(1 for x in ok if x.first_event_ns < x.first_token_ns),
        "ttft_first_wave_p50_ms": sorted((x.first_token_ns - x.send_ns) / 1e6 for x in first)[c // 2],
        "send_spread_first_wave_ms": (first[-1].send_ns - first[0].send_ns) / 1e6,
        "output_tok_per_s": sum(x.output_tokens or 0 for x in ok) / r.duration_s,
        "mean_prompt_tokens": statistics.mean(x.input_tokens or 0 for x in ok),
        "one_read_responses": sum(1 for x in ok if len(set(x.chunk_ns)) == 1),
        "starved": (r.client_health or {}).get("starved"), "prefix_cache": cache_delta(before)}), flush=True)


def theirs(c: int) -> None:
    lv = VllmBenchLevel(base_url=URL, model=MODEL, tokenizer=TOK, api="completions", input_len=L, output_len=L,
                        num_prompts=4 * c, concurrency=c, request_rate=float("inf"), warmups=c, seed=a.seed)
    before = cache()
    v = vrun(a.vllm_python, lv, Path("/tmp/diag"), name=f"c{c}_{time.time_ns()}")
    raw = json.load(open(v["result_file"]))
    print(json.dumps({"c": c, "client": "vllm", "ttft_p50_ms": v["ttft_ms"]["p50"],
                      "output_tok_per_s": v["output_token_throughput_per_s"],
                      "mean_prompt_tokens": raw.get("total_input_tokens", 0) / max(raw.get("completed", 1), 1),
                      "prefix_cache": cache_delta(before)}), flush=True)


for C in a.concurrency:
    mine = synthetic_prompts(tok, 5 * C, L, L, a.seed)
    theirs_p = vllm_prompts(5 * C, a.seed)
    ours("ours", C, mine)
    theirs(C)
    if isinstance(theirs_p, str):
        print(json.dumps({"c": C, "variant": "ours, vLLM's prompts", "skipped": theirs_p}), flush=True)
    else:
        ours("ours, vLLM's prompts", C, theirs_p)
    ours("ours, no min_tokens", C, mine, ignore_eos=False, extra={"ignore_eos": True})
    ours("ours, aiohttp", C, mine, transport="aiohttp")
    theirs(C)
