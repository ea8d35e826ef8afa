"""NVIDIA AIPerf and GenAI-Perf profile exports.

Files:
- ``profile_export_aiperf.json`` / ``profile_export_genai_perf.json``: one dict per metric tag
  ``{"unit", "avg", "min", "max", "p1".."p99", "std", "count"}`` (AIPerf <= 0.1 nests them under
  ``"records"``; later AIPerf and GenAI-Perf put them at the top level), plus ``input_config`` (the run's
  configuration: ``loadgen.concurrency`` / ``request_rate`` in AIPerf, ``concurrency`` / ``request_rate``
  in GenAI-Perf).
- ``profile_export_aiperf.csv`` / ``profile_export_genai_perf.csv``: a ``Metric,avg,min,max,p..`` table
  whose first column is ``"<Header> (<unit>)"``, then a ``Metric,Value`` table of scalars.
- ``profile_export.jsonl`` (AIPerf): one request per line, ``{"metadata": {"timestamp_ns" |
  "request_start_ns", ...}, "metrics": {tag: {"value", "unit"}}, "error": {...} | null}``.

Units come from each metric's ``unit`` field (``ms``, ``ns``, ``sec``, ``tokens/sec``...) or the CSV
header's parenthesis, and are converted to ms / per second.

Definitions (AIPerf docs/metrics_reference.md; GenAI-Perf README "Metrics"):
- ``ttft`` / ``time_to_first_token``: request start to the first response carrying output (content or
  reasoning) -> ``ttft_ms`` (ours).
- ``request_latency``: request start to the last response -> ``e2e_ms`` (AIPerf: equals TTFT + the sum of
  inter-chunk gaps, i.e. the last token chunk; checked on the example export).
- ``inter_token_latency``: per request (request_latency - TTFT) / (output_sequence_length - 1), summarised
  over requests -> ``tpot_ms`` (that is our TPOT; it is not our ITL).
- ``inter_chunk_latency`` (AIPerf): every gap between consecutive responses, pooled -> ``itl_chunk_ms`` (our
  per-chunk gaps). Our ITL (``itl_ms``) divides a gap by the tokens its chunk carried, which AIPerf does not
  record: in the example per-request export 4 of 89 requests have one chunk more or fewer than tokens, so
  ``itl_ms`` is computed only from a per-request export where every chunk count equals the token count.
- ``output_sequence_length`` counts output and reasoning tokens; ``output_token_count`` only visible output.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.llm_import.records import (
    as_dict,
    MS_PER_UNIT,
    ImportedPoint,
    ImportedRun,
    Stat,
    make_stat,
    num,
    per_second_factor,
    to_ms,
)
from profiles.llm_metrics import RequestRecord

#: tool tag (and aliases) -> our metric name, for distributions
STAT_TAGS = {
    "ttft": "ttft_ms", "time_to_first_token": "ttft_ms",
    "request_latency": "e2e_ms",
    "inter_token_latency": "tpot_ms",
    "inter_chunk_latency": "itl_chunk_ms",
    "ttst": "ttst_ms", "time_to_second_token": "ttst_ms",
    "output_sequence_length": "output_tokens", "input_sequence_length": "input_tokens",
    "output_token_count": "visible_output_tokens", "reasoning_token_count": "reasoning_tokens",
    "output_token_throughput_per_user": "output_token_throughput_per_user_per_s",
    "output_token_throughput_per_request": "output_token_throughput_per_user_per_s",
}
#: tool tag -> our scalar name
SCALAR_TAGS = {
    "request_throughput": "request_throughput_per_s", "output_token_throughput": "output_token_throughput_per_s",
    "total_token_throughput": "total_token_throughput_per_s", "goodput": "goodput_per_s",
    "request_count": "completed", "error_request_count": "failed", "benchmark_duration": "duration_s",
    "total_isl": "input_tokens_total", "total_osl": "output_tokens_total",
}
#: CSV header (lower case, unit stripped) -> tool tag
HEADER_TAGS = {
    "time to first token": "ttft", "request latency": "request_latency", "inter token latency": "inter_token_latency",
    "inter chunk latency": "inter_chunk_latency", "time to second token": "ttst",
    "output sequence length": "output_sequence_length", "input sequence length": "input_sequence_length",
    "output token count": "output_token_count", "reasoning token count": "reasoning_token_count",
    "output token throughput per user": "output_token_throughput_per_user",
    "output token throughput per request": "output_token_throughput_per_request",
    "request throughput": "request_throughput", "output token throughput": "output_token_throughput",
    "total token throughput": "total_token_throughput", "request count": "request_count",
    "error request count": "error_request_count", "benchmark duration": "benchmark_duration",
    "total input sequence length": "total_isl", "total output sequence length": "total_osl",
}

NOTES = [
    "inter_token_latency is a per-request (request_latency - TTFT) / (output_sequence_length - 1): our TPOT, "
    "stored as tpot_ms (not itl_ms)",
    "inter_chunk_latency (AIPerf) is the pooled gap between consecutive responses: stored as itl_chunk_ms; our "
    "itl_ms divides a gap by the tokens its chunk carried, which AIPerf does not record",
    "output_sequence_length counts reasoning tokens too; TPOT and token throughputs use it",
]


def _unit_of(d: dict[str, Any], tag: str, where: str) -> str:
    unit = d.get("unit")
    if not isinstance(unit, str) or not unit:
        raise ParseError(f"{where}: metric {tag!r} has no 'unit'")
    return unit


def _is_time(unit: str) -> bool:
    return unit.strip().lower() in MS_PER_UNIT


def _from_metric(tag: str, d: dict[str, Any], where: str) -> tuple[str, Stat | tuple[float | None, str]] | None:
    """(our name, Stat or scalar) of one metric dict, or None when we do not map ``tag``."""
    unit = _unit_of(d, tag, where)
    w = f"{where}: metric {tag!r}"
    if tag in SCALAR_TAGS:
        ours = SCALAR_TAGS[tag]
        v = num(d, "avg", where=w) if "avg" in d else num(d, "value", where=w)
        if v is None:
            return ours, (None, unit)
        if ours == "duration_s":
            return ours, (to_ms(v, unit, where=w) / 1e3, "s")
        f = per_second_factor(unit)
        if ours.endswith("_per_s"):
            if f is None:
                raise ParseError(f"{w}: unit {unit!r} is not a rate")
            return ours, (v * f, "1/s")
        return ours, (v, unit)
    if tag not in STAT_TAGS:
        return None
    ours = STAT_TAGS[tag]
    vals = {("mean" if k == "avg" else k): num(d, k, where=w) for k in d
            if k in ("avg", "min", "max", "std") or re.fullmatch(r"p\d+(\.\d+)?", k)}
    count = d.get("count") if isinstance(d.get("count"), int) else None
    if _is_time(unit) or ours.endswith("_ms"):
        # a latency metric in a unit that is not a time fails here, naming it (it is never stored as ms unconverted)
        st = make_stat(vals, source_unit=unit, unit="ms", count=count, where=w)
    elif ours.endswith("_per_s"):
        st = make_stat(vals, source_unit=unit, unit="tok/s", count=count, where=w)
    else:
        st = make_stat(vals, source_unit=unit, unit=unit, count=count, where=w)
    return ours, st


def _level(cfg: dict[str, Any]) -> tuple[str, float | None, bool]:
    lg = as_dict(cfg.get("loadgen")) or cfg
    perf = as_dict(cfg.get("perf_analyzer"))
    for src in (lg, perf, cfg):
        rate = src.get("request_rate")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0:
            return "request_rate", float(rate), True
        conc = src.get("concurrency")
        if isinstance(conc, (int, float)) and not isinstance(conc, bool) and conc > 0:
            return "concurrency", float(conc), True
        stim = src.get("stimulus")
        if isinstance(stim, dict):
            for k in ("concurrency", "request_rate"):
                if isinstance(stim.get(k), (int, float)):
                    return k, float(stim[k]), True
    return "concurrency", None, False


def tool_of_json(doc: dict[str, Any]) -> str:
    """``aiperf`` or ``genai-perf`` for a profile-export dict (AIPerf writes ``records`` (<= 0.1),
    ``aiperf_version`` or an ``aiperf`` command line; anything else with the same layout is GenAI-Perf)."""
    cfg = as_dict(doc.get("input_config"))
    cmd = str(cfg.get("cli_command") or "")
    if "records" in doc or "aiperf_version" in doc or cmd.startswith("aiperf"):
        return "aiperf"
    return "genai-perf"


def is_profile_json(doc: Any) -> bool:
    """True for an AIPerf / GenAI-Perf aggregated export dict."""
    if not isinstance(doc, dict):
        return False
    body = as_dict(doc.get("records")) or doc
    hits = [t for t in ("ttft", "time_to_first_token", "request_latency", "request_throughput", "inter_token_latency")
            if isinstance(body.get(t), dict) and "unit" in body[t]]
    return len(hits) >= 2


def _run_from_metrics(tool: str, body: dict[str, dict[str, Any]], cfg: dict[str, Any], doc: dict[str, Any],
                      where: str, names: dict[str, str]) -> ImportedRun:
    mode, level, known = _level(cfg)
    pt = ImportedPoint(mode=mode, level=level, level_known=known)
    metric_names: dict[str, str] = {}
    for tag, d in body.items():
        if not isinstance(d, dict) or "unit" not in d:
            continue
        got = _from_metric(tag, d, where)
        if got is None:
            continue
        ours, val = got
        metric_names[ours] = names.get(tag, tag)
        if isinstance(val, Stat):
            pt.stats[ours] = val
        elif ours == "duration_s":
            pt.duration_s = val[0]
        elif ours == "completed":
            pt.completed = int(val[0]) if val[0] is not None else None
        elif ours == "failed":
            pt.failed = int(val[0]) if val[0] is not None else None
        else:
            pt.scalars[ours] = val
    if not pt.stats:
        raise ParseError(f"{where}: no latency metric found (expected 'ttft'/'time_to_first_token', 'request_latency')")
    if pt.failed:
        errs = doc.get("error_summary")
        if isinstance(errs, list):
            for e in errs:
                det = e.get("error_details") if isinstance(e, dict) else None
                if isinstance(det, dict):
                    reason = _reason(det)
                    pt.failures_by_reason[reason] = pt.failures_by_reason.get(reason, 0) + int(e.get("count") or 0)
    ep = as_dict(cfg.get("endpoint"))
    models = ep.get("model_names") or cfg.get("model_names") or cfg.get("model")
    model = models[0] if isinstance(models, list) and models else (models if isinstance(models, str) else None)
    version = doc.get("aiperf_version") if tool == "aiperf" else (doc.get("genai_perf_version") or cfg.get("genai_perf_version"))
    notes = list(NOTES)
    if not known:
        notes.append("the file does not say the load level (concurrency or request rate)")
    meta = {k: cfg[k] for k in ("cli_command",) if k in cfg} | {k: doc[k] for k in ("start_time", "end_time") if k in doc}
    return ImportedRun(tool=tool, tool_version=str(version) if version else None, engine="openai-endpoint",
                       label=f"{model or '?'} ({'AIPerf' if tool == 'aiperf' else 'GenAI-Perf'})", model=model,
                       points=[pt], metric_names=metric_names, notes=notes, meta=meta)


def parse_json(doc: dict[str, Any], path: Path) -> ImportedRun:
    """An aggregated ``profile_export_*.json`` -> one run of one point.

    Raises:
        ParseError: a metric without ``unit``, a non-number, an unknown unit (names the file and metric).
    """
    tool = tool_of_json(doc)
    body = doc["records"] if isinstance(doc.get("records"), dict) else doc
    cfg = as_dict(doc.get("input_config"))
    return _run_from_metrics(tool, body, cfg, doc, str(path), {})


def is_profile_csv(text: str) -> bool:
    """True when ``text`` starts like an AIPerf / GenAI-Perf CSV export (``Metric,avg,...``)."""
    first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    return first.replace(" ", "").lower().startswith("metric,avg")


def parse_csv(text: str, path: Path) -> ImportedRun:
    """A ``profile_export_*.csv`` -> one run of one point (the CSV has no load level).

    Raises:
        ParseError: a row whose header has no ``(unit)`` for a time metric, or a non-number (names file and line).
    """
    body: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    cols: list[str] | None = None
    has_p1 = False
    for lineno, row in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"))), 1):
        if not row or not any(c.strip() for c in row):
            cols = None
            continue
        if row[0].strip().lower() == "metric":
            cols = [c.strip() for c in row]
            has_p1 = has_p1 or "p1" in cols
            continue
        if cols is None:
            raise ParseError(f"{path}:{lineno}: row before a 'Metric,...' header line")
        m = re.fullmatch(r"\s*(.*?)\s*(?:\(([^)]*)\))?\s*", row[0])
        header, unit = (m.group(1), m.group(2)) if m else (row[0], None)
        tag = HEADER_TAGS.get(header.lower())
        if tag is None:
            continue
        if unit is None:
            unit = "tokens" if "length" in header.lower() or "count" in header.lower() else ""
        if unit.lower() == "per sec":
            unit = "1/sec"
        d: dict[str, Any] = {"unit": unit}
        for c, v in zip(cols[1:], row[1:]):
            key = "avg" if c.lower() in ("value",) and len(cols) == 2 else c.lower()
            try:
                d[key] = float(v.replace(",", "")) if v.strip() not in ("", "N/A") else None
            except ValueError:
                raise ParseError(f"{path}:{lineno}: column {c!r} of {row[0]!r} is {v!r}, expected a number") from None
        body[tag] = d
        names[tag] = row[0]
    if not body:
        raise ParseError(f"{path}: no known metric row (expected e.g. 'Time to First Token (ms)')")
    tool = "aiperf" if has_p1 else "genai-perf"
    run = _run_from_metrics(tool, body, {}, {}, str(path), names)
    run.notes.append("a CSV export has no load level (concurrency or rate) and no tool version; import the JSON export for them")
    return run


def _reason(err: dict[str, Any]) -> str:
    code = err.get("code")
    typ = str(err.get("type") or "")
    if "cancel" in typ.lower() or code == 499:
        return "cancelled"
    if "timeout" in typ.lower():
        return "timeout"
    if isinstance(code, int) and 500 <= code < 600:
        return "http_5xx"
    if isinstance(code, int) and 400 <= code < 500:
        return "http_4xx"
    return "stream_error"


def is_request_line(obj: Any) -> bool:
    """True for one line of AIPerf's per-request ``profile_export.jsonl``."""
    return isinstance(obj, dict) and isinstance(obj.get("metrics"), dict) and isinstance(obj.get("metadata"), dict)


def _value_ms(metrics: dict[str, Any], tag: str, where: str) -> float | None:
    d = metrics.get(tag)
    if not isinstance(d, dict):
        return None
    v = num(d, "value", where=f"{where}: metric {tag!r}")
    if v is None:
        return None
    return to_ms(v, _unit_of(d, tag, where), where=f"{where}: metric {tag!r}")


def parse_jsonl(objs: list[Any], path: Path) -> ImportedRun:
    """AIPerf's per-request ``profile_export.jsonl`` -> one run whose point holds every request; our
    summaries are then computed from them (send = the request's start timestamp; first token = send + TTFT;
    chunk times = first token + the cumulative ``inter_chunk_latency`` gaps; one token per chunk when the
    chunk count equals ``output_sequence_length``). Warm-up requests (``benchmark_phase``/``credit_phase``
    ``warmup``) are kept and flagged.

    Raises:
        ParseError: a line that is not a request record, a missing start timestamp, a bad value (names
            the file, line and key).
    """
    raw: list[tuple[int, int, dict[str, Any], dict[str, Any], Any]] = []
    for i, obj in enumerate(objs, 1):
        where = f"{path}:{i}"
        if not is_request_line(obj):
            raise ParseError(f"{where}: not an AIPerf per-request record (needs 'metadata' and 'metrics')")
        md = obj["metadata"]
        start = md.get("request_start_ns", md.get("timestamp_ns"))
        if not isinstance(start, int):
            raise ParseError(f"{where}: key 'metadata.request_start_ns' (or 'timestamp_ns') is missing or not an integer")
        raw.append((i, start, md, obj["metrics"], obj.get("error")))
    if not raw:
        raise ParseError(f"{path}: no request records")
    t0 = min(s for _, s, _, _, _ in raw)
    recs: list[RequestRecord] = []
    chunks_known = True
    mismatched = 0
    for seq, (i, start, md, metrics, err) in enumerate(raw):
        where = f"{path}:{i}"
        phase = str(md.get("benchmark_phase") or md.get("credit_phase") or "profiling")
        warm = phase.lower().startswith("warm")
        send = start - t0
        isl = metrics.get("input_sequence_length")
        in_tok = int(isl["value"]) if isinstance(isl, dict) and isinstance(isl.get("value"), (int, float)) else None
        if err:
            e: dict[str, Any] = err if isinstance(err, dict) else {"message": str(err)}
            code = e.get("code")
            recs.append(RequestRecord(seq=seq, warmup=warm, send_ns=send, error_reason=_reason(e),
                                      error=str(e.get("message") or e.get("type") or "")[:500],
                                      http_status=code if isinstance(code, int) else None,
                                      input_tokens=in_tok))
            continue
        ttft = _value_ms(metrics, "ttft", where)
        if ttft is None:
            ttft = _value_ms(metrics, "time_to_first_token", where)
        lat = _value_ms(metrics, "request_latency", where)
        if ttft is None or lat is None:
            raise ParseError(f"{where}: a successful request without metric 'ttft' and 'request_latency'")
        osl = metrics.get("output_sequence_length")
        out = int(osl["value"]) if isinstance(osl, dict) and isinstance(osl.get("value"), (int, float)) else None
        first = send + round(ttft * 1e6)
        icl = metrics.get("inter_chunk_latency")
        if isinstance(icl, dict) and isinstance(icl.get("value"), list):
            unit = _unit_of(icl, "inter_chunk_latency", where)
            chunks = [first]
            for g in icl["value"]:
                if not isinstance(g, (int, float)) or isinstance(g, bool):
                    raise ParseError(f"{where}: metric 'inter_chunk_latency' holds {g!r}, expected numbers")
                chunks.append(chunks[-1] + round(to_ms(float(g), unit, where=where) * 1e6))
            if out is not None and out != len(chunks) and not warm:
                mismatched += 1
            recs.append(RequestRecord(seq=seq, warmup=warm, send_ns=send, first_token_ns=first, end_ns=chunks[-1],
                                      chunk_ns=chunks, chunk_tokens=[1] * len(chunks), output_tokens=out,
                                      input_tokens=in_tok, http_status=200))
        else:
            chunks_known = False
            recs.append(RequestRecord(seq=seq, warmup=warm, send_ns=send, first_token_ns=first,
                                      end_ns=send + round(lat * 1e6), output_tokens=out, input_tokens=in_tok,
                                      http_status=200))
    if not chunks_known:
        for r in recs:
            r.chunk_ns, r.chunk_tokens = [], []
    pt = ImportedPoint(mode="concurrency", level=None, level_known=False, requests=recs, chunks_known=chunks_known,
                       one_token_per_chunk=chunks_known and not mismatched)
    notes = [
        "per-request export: TTFT, TPOT, ITL and E2E computed by EngineScope from every request (send = the "
        "request's start timestamp, chunk times = first token + the cumulative inter_chunk_latency gaps)",
        "the per-request export does not say the load level (concurrency or rate); it is in profile_export_aiperf.json",
        "duration = last response - first request start, as AIPerf's benchmark_duration",
    ]
    if chunks_known and mismatched:
        ok = sum(1 for r in recs if r.ok and not r.warmup)
        notes.append(f"{mismatched} of {ok} successful requests have a chunk count != output_sequence_length (a "
                     "chunk carried several tokens, or none): tokens per chunk are unknown, so itl_ms (gap / tokens "
                     "of its chunk) is left out; the per-chunk gaps are in itl_chunk_ms")
    names = {"ttft_ms": "ttft", "e2e_ms": "request_latency", "itl_chunk_ms": "inter_chunk_latency",
             "output_tokens": "output_sequence_length", "send": "metadata.timestamp_ns"}
    if chunks_known and not mismatched:
        names["itl_ms"] = "inter_chunk_latency"
    return ImportedRun(tool="aiperf", tool_version=None, engine="openai-endpoint", label="? (AIPerf per-request)",
                       model=None, points=[pt], metric_names=names, notes=notes)
