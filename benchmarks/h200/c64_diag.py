"""Why EngineScope's TTFT at concurrency 64 on the H200 exceeds vLLM's client's (issue 8 part 2): the same
level in-process with variants of the request (min_tokens or not), the transport (raw / aiohttp) and the
prompts (ours / vLLM's random dataset's token count), each beside vLLM's client. Prints one line per run."""
import json, os, statistics, subprocess, sys, time
sys.path.insert(0, os.getcwd())
from transformers import AutoTokenizer
from engine_runner.loadgen import EndpointConfig, LoadLevel, synthetic_prompts
from engine_runner.loadgen.runner import run_level_blocking
from engine_runner.peers.vllm_bench import VllmBenchLevel, run as vrun

URL, MODEL, TOK = "http://127.0.0.1:8000", "llama8b", "/tmp/stage/model"
C = int(sys.argv[1]) if len(sys.argv) > 1 else 64
tok = AutoTokenizer.from_pretrained(TOK)
prompts = synthetic_prompts(tok, 4 * C + C, 128, 128, 0)

def ours(name, **kw):
    extra = kw.pop("extra", {})
    ep = EndpointConfig(base_url=URL, model=MODEL, api="completions", extra_body=extra, **kw)
    lv = LoadLevel(mode="concurrency", value=C, num_requests=4 * C, warmup_requests=C)
    r = run_level_blocking(ep, prompts, lv)
    ok = [x for x in r.records if not x.warmup and x.error_reason is None]
    ttft = sorted((x.first_token_ns - x.send_ns) / 1e6 for x in ok)
    toks = sum(x.output_tokens or 0 for x in ok)
    first = sorted(ok, key=lambda x: x.send_ns)[:C]
    print(json.dumps({"client": "enginescope", "variant": name, "ttft_p50_ms": ttft[len(ttft) // 2],
                      "ttft_first_wave_p50_ms": sorted((x.first_token_ns - x.send_ns) / 1e6 for x in first)[C // 2],
                      "send_spread_first_wave_ms": (first[-1].send_ns - first[0].send_ns) / 1e6,
                      "output_tok_per_s": toks / r.duration_s, "mean_prompt_tokens": statistics.mean(x.input_tokens or 0 for x in ok),
                      "client_health_starved": (r.client_health or {}).get("starved")}), flush=True)

def theirs():
    lv = VllmBenchLevel(base_url=URL, model=MODEL, tokenizer=TOK, api="completions", input_len=128, output_len=128,
                        num_prompts=4 * C, concurrency=C, request_rate=float("inf"), warmups=C)
    v = vrun(sys.executable, lv, __import__("pathlib").Path("/tmp/diag"), name=f"c{C}_{time.time_ns()}")
    raw = json.load(open(v["result_file"]))
    print(json.dumps({"client": "vllm", "ttft_p50_ms": v["ttft_ms"]["p50"], "output_tok_per_s": v["output_token_throughput_per_s"],
                      "mean_prompt_tokens": raw.get("total_input_tokens", 0) / max(raw.get("completed", 1), 1)}), flush=True)

ours("default (raw, min_tokens)")
theirs()
ours("no min_tokens", ignore_eos=False, extra={"ignore_eos": True})
ours("aiohttp transport", transport="aiohttp")
theirs()
