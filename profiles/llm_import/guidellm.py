"""GuideLLM ``benchmarks.json`` (``guidellm benchmark --outputs json``; layout of GuideLLM 0.3-0.5).

``{"metadata": {"guidellm_version"}, "args": {...}, "benchmarks": [{"config": {"strategy": {"type_",
"max_concurrency" | "streams" | "rate"}}, "metrics": {name: {"successful": {"mean", "median", "std_dev",
"min", "max", "count", "percentiles": {"p50", ...}}}}, "requests": {"successful": [...], "errored": [...],
"incomplete": [...]}, "duration"}]}``: one benchmark per load level.

Units (GuideLLM's names say them, and they are mixed): ``time_to_first_token_ms``, ``inter_token_latency_ms``,
``time_per_output_token_ms`` in ms; ``request_latency`` in **seconds**; per-request timings
(``info.timings.request_start``, ``first_token_iteration``, ``last_token_iteration``; GuideLLM <= 0.3:
``start_time``, ``first_token_time``, ``last_token_time``) are epoch **seconds**.

Definitions (GuideLLM ``benchmark/schemas``; checked on the example file request by request):
- ``time_to_first_token_ms`` = first token iteration - request start: our TTFT.
- ``inter_token_latency_ms`` = (last token - first token) / (output tokens - 1): our **TPOT** (not our ITL).
- ``time_per_output_token_ms`` = (last token - request start) / output tokens: includes the first token's
  wait; stored as ``tpot_incl_ttft_ms`` (not ours).
- ``request_latency`` = request end - request start (the whole response, after the last token): stored as
  ``request_latency_ms``; our E2E stops at the last token (``last_token_iteration``).
- GuideLLM's aggregated latency distributions over tokens (``count`` = tokens) are token-weighted; ours are
  one sample per request. When the file keeps every request, ours are computed from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.llm_import.records import ImportedPoint, ImportedRun, Stat, as_dict, make_stat, num
from profiles.llm_metrics import RequestRecord

TOOL = "guidellm"
#: GuideLLM metric -> (our name, its unit)
STATS = {
    "time_to_first_token_ms": ("ttft_ms", "ms"), "inter_token_latency_ms": ("tpot_ms", "ms"),
    "time_per_output_token_ms": ("tpot_incl_ttft_ms", "ms"), "request_latency": ("request_latency_ms", "s"),
}
NOTES = [
    "GuideLLM's inter_token_latency_ms = (last token - first token) / (output tokens - 1): our TPOT, stored as tpot_ms",
    "GuideLLM's time_per_output_token_ms includes the wait for the first token: stored as tpot_incl_ttft_ms",
    "GuideLLM's request_latency (seconds) runs to the end of the response: stored as request_latency_ms; e2e_ms "
    "(to the last token) is computed from the per-request timings",
]


def is_guidellm(doc: Any) -> bool:
    """True for a GuideLLM benchmarks report dict."""
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        return False
    md = as_dict(doc.get("metadata"))
    b0 = doc["benchmarks"][0] if doc["benchmarks"] else {}
    return "guidellm_version" in md or (isinstance(b0, dict) and isinstance(b0.get("metrics"), dict)
                                        and "time_to_first_token_ms" in b0["metrics"])


def _stat(m: dict[str, Any], key: str, unit: str, where: str) -> Stat | None:
    d = m.get(key)
    if not isinstance(d, dict):
        return None
    s = d.get("successful")
    if not isinstance(s, dict):
        return None
    w = f"{where}: metrics.{key}.successful"
    vals: dict[str, float | None] = {"mean": num(s, "mean", where=w), "std": num(s, "std_dev", where=w),
                                     "min": num(s, "min", where=w), "max": num(s, "max", where=w),
                                     "median": num(s, "median", where=w)}
    pct = s.get("percentiles")
    if isinstance(pct, dict):
        for k in pct:
            q = k[1:]
            # GuideLLM spells p0.1 as "p001", p1 as "p01", p99.9 as "p999"
            name = {"001": "p0.1", "01": "p1", "05": "p5", "999": "p99.9"}.get(q, f"p{q}")
            vals[name] = num(pct, k, where=f"{w}.percentiles")
    cnt = s.get("count")
    return make_stat(vals, source_unit=unit, unit="ms", count=int(cnt) if isinstance(cnt, int) else None, where=w)


def _level(b: dict[str, Any]) -> tuple[str, float | None]:
    cfg = as_dict(b.get("config"))
    st = as_dict(cfg.get("strategy")) or as_dict(as_dict(b.get("args")).get("strategy"))
    typ = str(st.get("type_") or st.get("type") or "")
    if typ == "synchronous":
        return "concurrency", 1.0
    if typ == "concurrent":
        for k in ("streams", "max_concurrency", "worker_count"):
            if isinstance(st.get(k), (int, float)):
                return "concurrency", float(st[k])
    if typ in ("constant", "poisson", "async") and isinstance(st.get("rate"), (int, float)):
        return "request_rate", float(st["rate"])
    return "request_rate", None  # throughput: as fast as it can (an infinite rate)


def _times(r: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    t = as_dict(as_dict(r.get("info")).get("timings"))
    start = t.get("request_start", r.get("start_time", r.get("request_start_time")))
    first = t.get("first_token_iteration", r.get("first_token_time"))
    last = t.get("last_token_iteration", r.get("last_token_time"))
    return tuple(float(x) if isinstance(x, (int, float)) else None for x in (start, first, last))  # type: ignore[return-value]


def _records(b: dict[str, Any], where: str) -> tuple[list[RequestRecord], int] | None:
    reqs = b.get("requests")
    if not isinstance(reqs, dict) or not isinstance(reqs.get("successful"), list) or not reqs["successful"]:
        return None
    rows: list[tuple[str, dict[str, Any]]] = []
    for status in ("successful", "errored", "incomplete"):
        for r in reqs.get(status) or []:
            if isinstance(r, dict):
                rows.append((status, r))
    starts = [s for _, r in rows if (s := _times(r)[0]) is not None]
    if not starts:
        return None
    t0 = min(starts)
    recs = []
    for seq, (status, r) in enumerate(rows):
        w = f"{where}: requests.{status}[{seq}]"
        start, first, last = _times(r)
        send = round((start - t0) * 1e9) if start is not None else None
        out = num(r, "output_tokens", where=w)
        inp = num(r, "prompt_tokens", where=w)
        if status != "successful":
            err = (r.get("info") or {}).get("error") if isinstance(r.get("info"), dict) else r.get("error")
            recs.append(RequestRecord(seq=seq, send_ns=send, error_reason="cancelled" if status == "incomplete" else "stream_error",
                                      error=str(err or status)[:500], input_tokens=int(inp) if inp is not None else None))
            continue
        if start is None or first is None or last is None:
            raise ParseError(f"{w}: a successful request without request_start / first_token_iteration / "
                             "last_token_iteration timings")
        recs.append(RequestRecord(seq=seq, send_ns=send, first_token_ns=round((first - t0) * 1e9),
                                  end_ns=round((last - t0) * 1e9), output_tokens=int(out) if out is not None else None,
                                  input_tokens=int(inp) if inp is not None else None))
    totals = as_dict(as_dict(b.get("metrics")).get("request_totals"))
    total_ok = totals.get("successful")
    return recs, total_ok if isinstance(total_ok, int) else len(reqs["successful"])


def parse(doc: dict[str, Any], path: Path) -> ImportedRun:
    """A GuideLLM report -> one run, one point per benchmark (load level).

    Raises:
        ParseError: a benchmark without metrics, a non-number (names the file and key).
    """
    where = str(path)
    md = as_dict(doc.get("metadata"))
    args = as_dict(doc.get("args"))
    model = args.get("model")
    run = ImportedRun(tool=TOOL, tool_version=str(md["guidellm_version"]) if md.get("guidellm_version") else None,
                      engine="openai-endpoint", label=f"{model or '?'} (GuideLLM {args.get('profile') or ''})".replace(" )", ")"),
                      model=str(model) if model else None, notes=list(NOTES),
                      meta={k: args[k] for k in ("target", "profile", "rate", "backend", "request_format", "data",
                                                 "max_requests", "max_seconds") if k in args})
    for name, (ours, _unit) in STATS.items():
        run.metric_names[ours] = f"metrics.{name}"
    run.metric_names["e2e_ms"] = "info.timings.last_token_iteration - request_start"
    for i, b in enumerate(doc["benchmarks"]):
        w = f"{where}: benchmarks[{i}]"
        if not isinstance(b, dict) or not isinstance(b.get("metrics"), dict):
            raise ParseError(f"{w}: key 'metrics' is missing")
        m = b["metrics"]
        mode, level = _level(b)
        pt = ImportedPoint(mode=mode, level=level, duration_s=num(b, "duration", where=w))
        for name, (ours, unit) in STATS.items():
            st = _stat(m, name, unit, w)
            if st is not None:
                pt.stats[ours] = st
        totals = as_dict(m.get("request_totals"))
        pt.completed = int(totals["successful"]) if isinstance(totals.get("successful"), int) else None
        fails = {k: int(totals[k]) for k in ("errored", "incomplete") if isinstance(totals.get(k), int) and totals[k]}
        pt.failed = sum(fails.values()) if totals else None
        pt.failures_by_reason = {("cancelled" if k == "incomplete" else "stream_error"): v for k, v in fails.items()}
        got = _records(b, w)
        if got is not None:
            recs, total_ok = got
            if sum(1 for r in recs if r.ok) >= total_ok:
                pt.requests = recs
            else:
                run.notes.append(f"benchmarks[{i}]: the file keeps {sum(1 for r in recs if r.ok)} of {total_ok} "
                                 "successful requests (sampled): GuideLLM's own aggregates are stored, token-weighted")
        pt.info = {"strategy": ((b.get("config") or {}).get("strategy") if isinstance(b.get("config"), dict) else None)}
        run.points.append(pt)
    if not run.points:
        raise ParseError(f"{where}: key 'benchmarks' is empty")
    if any(p.requests for p in run.points):
        run.notes.append("per-request records are in the file: ttft_ms, tpot_ms and e2e_ms are computed by EngineScope "
                         "from them (one sample per request; no chunk times, so no itl_ms)")
    return run
