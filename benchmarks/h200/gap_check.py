"""Why EngineScope's throughput trails vLLM's client at high concurrency on the H200 (issue: "explain any
gap over 3%"). One vLLM server, launched by EngineScope's own launcher; on it, at concurrency 64 and 256
(128 in / 128 out): EngineScope with per-chunk usage (stream_options.continuous_usage_stats, the
default), EngineScope without it, and vLLM's client after each of our levels (--peer vllm-bench).
Each serve-bench also records the client's CPU use per level (client_cpu_s_per_s).

Run on the device after staging (benchmarks/h200/README.md): python3 benchmarks/h200/gap_check.py
Writes $OUT/gap_*.json and prints a table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine_runner.engines.vllm_server import VllmServer, VllmServerConfig

OUT = Path(os.environ["OUT"])
MODEL = "/tmp/stage/model"
cfg = VllmServerConfig(model=MODEL, dtype="bfloat16", load_format="dummy", max_model_len=4096)
with VllmServer(cfg, "/tmp/gap_vllm.log") as srv:
    print("server up in", round(srv.startup_s, 1), "s at", srv.base_url, flush=True)
    for name, extra in (("usage_on", ["--continuous-usage"]), ("usage_off", ["--no-continuous-usage", "--peer", "vllm-bench"])):
        argv = [sys.executable, "-m", "engine_runner.cli", "serve-bench", "--endpoint", srv.base_url, "--api-key",
                srv.api_key, "--model", cfg.name, "--tokenizer", MODEL, "--concurrency", "64,256", "--input-len", "128",
                "--output-len", "128", "--num-prompts", "32", "--prompts-per-concurrency", "4", "--warmup", "4",
                "--device", "cuda:0", "--json", *extra]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=400)
        (OUT / f"gap_{name}.json").write_text(p.stdout or "{}")
        if p.returncode:
            print(name, "exit", p.returncode, p.stderr[-2000:], flush=True)
            continue
        for pt in json.loads(p.stdout)["runs"][0]["points"]:
            peer = (pt.get("peers") or {}).get("vllm-bench") or {}
            print(f"{name:9s} c{pt['concurrency']:<4} ours {pt['output_token_throughput_per_s']:8.0f} tok/s  "
                  f"TTFT p50 {pt['ttft_ms']['p50']:7.1f}  TPOT p50 {pt['tpot_ms']['p50']:6.2f}  "
                  f"client CPU {pt.get('client_cpu_s_per_s') or 0:.2f} s/s  waiting max "
                  f"{(pt.get('server') or {}).get('max_num_requests_waiting')}", flush=True)
            if peer:
                print(f"{'':9s} c{pt['concurrency']:<4} vLLM {peer.get('output_token_throughput_per_s') or 0:8.0f} tok/s  "
                      f"TTFT p50 {(peer.get('ttft_ms') or {}).get('p50') or 0:7.1f}  TPOT p50 "
                      f"{(peer.get('tpot_ms') or {}).get('p50') or 0:6.2f}", flush=True)
