"""The stored report (``load_points.report``) of one imported load level: the same keys as
:func:`profiles.llm_metrics.point_report` writes for a measured level, so one reader
(``engine_runner.commands.serve_bench.runs_json``, the dashboard's ``llm_data.point_rows``) serves both.

- Per-request files with every chunk's time (AIPerf ``profile_export.jsonl``, vLLM ``--save-detailed``):
  :func:`profiles.llm_metrics.point_report` itself computes TTFT, TPOT, ITL and E2E with our definitions.
  ``itl_ms`` is kept only when each chunk carried one token (chunk count == output tokens); the per-chunk
  gaps stay in ``itl_chunk_ms``.
- Per-request files with only first-token and last-token times (GuideLLM ``requests``, LLMPerf
  ``individual_responses``): TTFT = first token - send, E2E = last token - send, TPOT = (E2E - TTFT) /
  (output tokens - 1) (undefined for one token), each summarised by :func:`profiles.stats.summarize`.
- Summary-only files: the tool's own numbers, converted (``"source": "file"`` in each metric's dict).

Throughputs count successful requests and their tokens over the tool's benchmark duration; ``None``
where the file has no duration and no throughput of its own.
"""

from __future__ import annotations

from typing import Any

from profiles.llm_import.records import ImportedPoint
from profiles.llm_metrics import NS_PER_MS, RequestRecord
from profiles.llm_metrics import point_report as measured_point_report
from profiles.stats import summarize

#: summary metrics a report may hold (ours, then those that only imports have; docs/llm.md "Importing other tools' results")
REPORT_METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "itl_chunk_ms", "e2e_ms", "tpot_incl_ttft_ms",
                  "request_latency_ms", "latency_ms")


def _span_s(records: list[RequestRecord]) -> float | None:
    sends = [r.send_ns for r in records if not r.warmup and r.send_ns is not None]
    ends = [r.end_ns for r in records if not r.warmup and r.end_ns is not None]
    if not sends or not ends or max(ends) <= min(sends):
        return None
    return (max(ends) - min(sends)) / 1e9


def _latency_only(records: list[RequestRecord], duration_s: float | None) -> dict[str, Any]:
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.error_reason is None and r.send_ns is not None
          and r.first_token_ns is not None and r.end_ns is not None]
    failures: dict[str, int] = {}
    for r in measured:
        if r.error_reason is not None:
            failures[r.error_reason] = failures.get(r.error_reason, 0) + 1
    ttft, e2e, tpot = [], [], []
    out_total = 0
    in_total = 0
    for r in ok:
        assert r.send_ns is not None and r.first_token_ns is not None and r.end_ns is not None
        t = (r.first_token_ns - r.send_ns) / NS_PER_MS
        e = (r.end_ns - r.send_ns) / NS_PER_MS
        ttft.append(t)
        e2e.append(e)
        n = r.output_tokens if r.output_tokens is not None else r.client_output_tokens
        if n is not None:
            out_total += n
            if n > 1:
                tpot.append((e - t) / (n - 1))
        in_total += r.input_tokens or 0
    rep: dict[str, Any] = {
        "completed": len(ok), "failed": len(measured) - len(ok), "failures_by_reason": dict(sorted(failures.items())),
        "duration_s": duration_s, "output_tokens_total": out_total, "input_tokens_total": in_total,
        "goodput_per_s": None, "slos": None,
    }
    for name, values in (("ttft_ms", ttft), ("e2e_ms", e2e), ("tpot_ms", tpot)):
        rep[name] = summarize(values, "ms").as_dict()
    if duration_s:
        rep["request_throughput_per_s"] = len(ok) / duration_s
        rep["output_token_throughput_per_s"] = out_total / duration_s
        rep["total_token_throughput_per_s"] = (out_total + in_total) / duration_s
    return rep


def build_report(pt: ImportedPoint) -> dict[str, Any]:
    """The ``load_points.report`` of ``pt`` (see the module docstring). Metrics computed here carry
    ``"source": "computed"``, the tool's own ``"source": "file"``; ``file_scalars`` keeps every scalar
    the file stated (throughputs, counts) even where we computed our own.

    Raises:
        InputError: a per-request record is inconsistent (from :func:`profiles.llm_metrics.request_metrics`).
    """
    rep: dict[str, Any] = {}
    duration = pt.duration_s
    if pt.requests:
        if duration is None and pt.timeline_known:
            duration = _span_s(pt.requests)
        if pt.chunks_known:
            rep = measured_point_report(pt.requests, duration or 1.0)
            if duration is None:
                for k in ("request_throughput_per_s", "output_token_throughput_per_s", "total_token_throughput_per_s"):
                    rep[k] = None
                rep["duration_s"] = None
            if not pt.one_token_per_chunk:
                rep.pop("itl_ms", None)
            for k in ("ttft_from_schedule_ms", "e2e_from_schedule_ms", "dispatch_lag_ms", "first_content_ms"):
                if not (rep.get(k) or {}).get("count"):
                    rep.pop(k, None)
        else:
            rep = _latency_only(pt.requests, duration)
        for k in REPORT_METRICS:
            if isinstance(rep.get(k), dict):
                rep[k]["source"] = "computed"
    else:
        rep = {"completed": pt.completed, "failed": pt.failed, "failures_by_reason": dict(pt.failures_by_reason),
               "duration_s": duration, "goodput_per_s": None, "slos": None}
    for name, st in pt.stats.items():
        if not (rep.get(name) or {}).get("count"):
            rep[name] = st.as_dict() | {"source": "computed" if st.computed else "file"}
    for name, (value, _unit) in pt.scalars.items():
        if rep.get(name) is None:
            rep[name] = value
    rep["file_scalars"] = {name: value for name, (value, _unit) in pt.scalars.items()}
    if rep.get("completed") is None and pt.completed is not None:
        rep["completed"] = pt.completed
    if rep.get("failed") is None and pt.failed is not None:
        rep["failed"] = pt.failed
    if pt.failures_by_reason and not rep.get("failures_by_reason"):
        rep["failures_by_reason"] = dict(pt.failures_by_reason)
    rep["info"] = dict(pt.info)
    return rep
