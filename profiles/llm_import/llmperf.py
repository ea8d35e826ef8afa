"""LLMPerf (ray-project/llmperf ``token_benchmark_ray.py``, v2 of 2023-12) results: ``*_summary.json`` and
``*_individual_responses.json``.

Summary keys: ``results_<metric>_quantiles_p25..p99``, ``results_<metric>_{mean,min,max,stddev}`` for
``ttft_s``, ``inter_token_latency_s``, ``end_to_end_latency_s`` (**seconds**),
``request_output_throughput_token_per_s``, ``number_input_tokens``, ``number_output_tokens``; scalars
``results_mean_output_throughput_token_per_s`` (tok/s over the run), ``results_num_completed_requests_per_min``
(per **minute**), ``results_number_errors``, ``results_error_code_frequency``; config ``num_concurrent_requests``,
``model``, ``version``. Individual responses: a list of ``{"ttft_s", "inter_token_latency_s",
"end_to_end_latency_s", "number_output_tokens", "number_input_tokens", "error_code", "error_msg"}``.

Definitions (llmperf ``ray_clients/openai_chat_completions_client.py`` and ``token_benchmark_ray.py``):
- ``ttft_s``: send to the first chunk whose ``delta.content`` is non-empty (reasoning-only chunks are not
  counted; for a model without reasoning output that is our TTFT) -> ``ttft_ms``.
- ``inter_token_latency_s``: the sum of every content chunk's gap *including TTFT* divided by the output
  tokens (the tokenizer's count of the text): (last content chunk - send) / output tokens, one value per
  request. Not our ITL (pooled gaps) nor our TPOT: stored as ``tpot_incl_ttft_ms``.
- ``end_to_end_latency_s``: send to the end of the response stream (after ``[DONE]``): stored as
  ``request_latency_ms``; our E2E stops at the last token chunk.
- From an individual-responses file our E2E is recovered exactly as ``inter_token_latency_s x
  number_output_tokens`` (= last content chunk - send, by the definition above), and TPOT =
  (E2E - TTFT) / (output tokens - 1) follows; the file has no send times or duration, so no throughput.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.llm_import.records import ImportedPoint, ImportedRun, make_stat, num
from profiles.llm_metrics import RequestRecord
from profiles.stats import summarize

TOOL = "llmperf"
#: LLMPerf metric stem -> (our name, unit)
STATS = {"ttft_s": ("ttft_ms", "s"), "inter_token_latency_s": ("tpot_incl_ttft_ms", "s"),
         "end_to_end_latency_s": ("request_latency_ms", "s")}
NOTES = [
    "LLMPerf's inter_token_latency_s = (last content chunk - send) / output tokens per request (TTFT included): "
    "stored as tpot_incl_ttft_ms, not as itl_ms",
    "LLMPerf's end_to_end_latency_s runs to the end of the stream ([DONE] included): stored as request_latency_ms",
    "LLMPerf's TTFT waits for the first non-empty content (reasoning-only chunks are not counted)",
    "LLMPerf counts output tokens with a LLaMA tokenizer on the text, not the server's usage",
]


def is_summary(doc: Any) -> bool:
    """True for an LLMPerf ``*_summary.json`` dict."""
    return isinstance(doc, dict) and any(k.startswith("results_ttft_s") for k in doc) and "num_concurrent_requests" in doc


def is_individual(doc: Any) -> bool:
    """True for an LLMPerf ``*_individual_responses.json`` list."""
    return (isinstance(doc, list) and bool(doc) and isinstance(doc[0], dict)
            and "ttft_s" in doc[0] and "end_to_end_latency_s" in doc[0])


def parse_summary(doc: dict[str, Any], path: Path) -> ImportedRun:
    """A summary file -> one run, one concurrency point with LLMPerf's own quantiles (converted s -> ms).

    Raises:
        ParseError: a non-number value or a missing ``num_concurrent_requests`` (names the file and key).
    """
    where = str(path)
    conc = num(doc, "num_concurrent_requests", where=where, required=True)
    pt = ImportedPoint(mode="concurrency", level=conc)
    names: dict[str, str] = {}
    done = num(doc, "results_num_completed_requests", where=where)
    for stem, (ours, unit) in STATS.items():
        base = f"results_{stem}"
        if not any(k.startswith(base) for k in doc):
            continue
        vals: dict[str, float | None] = {
            "mean": num(doc, f"{base}_mean", where=where), "min": num(doc, f"{base}_min", where=where),
            "max": num(doc, f"{base}_max", where=where), "std": num(doc, f"{base}_stddev", where=where)}
        for q in ("p25", "p50", "p75", "p90", "p95", "p99"):
            vals[q] = num(doc, f"{base}_quantiles_{q}", where=where)
        # LLMPerf's quantiles are over the completed requests (errored ones are dropped first)
        pt.stats[ours] = make_stat(vals, source_unit=unit, where=where, count=int(done) if done is not None else None)
        names[ours] = f"{base}_*"
    errs = num(doc, "results_number_errors", where=where)
    pt.completed = int(done) if done is not None else None
    pt.failed = int(errs) if errs is not None else None
    per_min = num(doc, "results_num_completed_requests_per_min", where=where)
    pt.scalars["request_throughput_per_s"] = (per_min / 60.0 if per_min is not None else None, "req/s")
    names["request_throughput_per_s"] = "results_num_completed_requests_per_min / 60"
    pt.scalars["output_token_throughput_per_s"] = (num(doc, "results_mean_output_throughput_token_per_s", where=where), "tok/s")
    names["output_token_throughput_per_s"] = "results_mean_output_throughput_token_per_s"
    if per_min and done:
        pt.duration_s = done / (per_min / 60.0)
        names["duration_s"] = "results_num_completed_requests / (results_num_completed_requests_per_min / 60)"
    pt.info = {k: doc[k] for k in ("mean_input_tokens", "mean_output_tokens", "stddev_input_tokens",
                                   "stddev_output_tokens") if k in doc}
    model = doc.get("model")
    return ImportedRun(tool=TOOL, tool_version=str(doc["version"]) if doc.get("version") else None,
                       engine="openai-endpoint", label=f"{model or '?'} (LLMPerf {doc.get('name') or ''})".replace(" )", ")"),
                       model=str(model) if model else None, points=[pt], metric_names=names, notes=list(NOTES),
                       meta={k: doc[k] for k in ("name", "framework", "model_size", "api", "timestamp") if k in doc})


def parse_individual(doc: list[Any], path: Path) -> ImportedRun:
    """An individual-responses file -> one run of one point whose requests carry TTFT and E2E (see the module
    docstring); our summaries are computed from them. The file has no concurrency: the level is unknown.

    Raises:
        ParseError: an entry that is not a response dict or holds a non-number (names the file, index and key).
    """
    recs = []
    for i, r in enumerate(doc):
        w = f"{path}: [{i}]"
        if not isinstance(r, dict):
            raise ParseError(f"{w}: not an LLMPerf response object")
        if r.get("error_code") not in (None, 0, "") or r.get("error_msg"):
            code = r.get("error_code")
            reason = "http_5xx" if isinstance(code, int) and code >= 500 else ("http_4xx" if isinstance(code, int) and code >= 400 else "stream_error")
            recs.append(RequestRecord(seq=i, send_ns=0, error_reason=reason, error=str(r.get("error_msg") or code)[:500],
                                      http_status=code if isinstance(code, int) else None))
            continue
        ttft = num(r, "ttft_s", where=w, required=True)
        itl = num(r, "inter_token_latency_s", where=w, required=True)
        out = num(r, "number_output_tokens", where=w, required=True)
        inp = num(r, "number_input_tokens", where=w)
        assert ttft is not None and itl is not None and out is not None
        last_s = itl * out if out > 0 else ttft
        recs.append(RequestRecord(seq=i, send_ns=0, first_token_ns=round(ttft * 1e9), end_ns=round(max(last_s, ttft) * 1e9),
                                  output_tokens=int(out), input_tokens=int(inp) if inp is not None else None))
    pt = ImportedPoint(mode="concurrency", level=None, level_known=False, requests=recs, timeline_known=False)
    for key, (ours, unit) in STATS.items():
        vals = [v for r in doc if isinstance(r, dict) and isinstance(v := r.get(key), (int, float)) and not r.get("error_msg")]
        if vals:
            s = summarize(vals, unit).as_dict()  # in the file's seconds; make_stat converts (linear, so exact)
            pt.stats[ours] = make_stat({k: s[k] for k in ("mean", "std", "min", "max", "p50", "p90", "p95", "p99")},
                                       source_unit=unit, count=s["count"], where=str(path), computed=True)
    names = {"ttft_ms": "ttft_s", "e2e_ms": "inter_token_latency_s * number_output_tokens",
             "tpot_ms": "(e2e - ttft_s) / (number_output_tokens - 1)", "tpot_incl_ttft_ms": "inter_token_latency_s",
             "request_latency_ms": "end_to_end_latency_s"}
    notes = list(NOTES) + [
        "per-request file: ttft_ms, e2e_ms (= inter_token_latency_s x number_output_tokens, the last content chunk) "
        "and tpot_ms computed by EngineScope; it has no send times, concurrency or duration (no throughput)",
    ]
    return ImportedRun(tool=TOOL, tool_version=None, engine="openai-endpoint", label="? (LLMPerf individual responses)",
                       model=None, points=[pt], metric_names=names, notes=notes)
