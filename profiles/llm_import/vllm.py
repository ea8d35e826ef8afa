"""vLLM's serving benchmark results: ``vllm bench serve --save-result`` (and the older
``benchmarks/benchmark_serving.py --save-result [--append-result]``, one JSON object per line).

Keys (vLLM ``benchmarks/serve.py`` / ``benchmark_serving.py``): ``duration`` (s), ``completed``, ``failed``,
``total_input_tokens``, ``total_output_tokens``, ``request_throughput`` (req/s), ``output_throughput`` and
``total_token_throughput`` (tok/s), ``request_rate`` (req/s or ``"inf"``), ``max_concurrency`` (null when
unset), ``burstiness``, and per metric ``mean_/median_/std_/p<N>_{ttft,tpot,itl,e2el}_ms`` (ms; ``p<N>``
from ``--metric-percentiles``, e.g. ``p99`` or ``p99.9``). Old spellings: ``request_goodput:`` (with the
colon, ``benchmark_serving.py`` of 2025), ``request_inthroughput`` (the request throughput, req/s) and
``input_throughput`` (tok/s) with only ``mean_/median_/p99_{ttft,tpot}_ms`` (``benchmark_serving.py`` of
vLLM 0.4), no ``failed`` (then ``num_prompts - completed``: the client sends exactly ``num_prompts``). With ``--save-detailed``: per-request ``ttfts`` (s), ``itls``
(list per request of chunk gaps, s), ``input_lens``, ``output_lens``, ``errors``.

Definitions (vLLM's client): TTFT from request send to the first chunk with text; E2E (``e2el``) to the
last chunk; TPOT = (E2E - TTFT) / (output tokens - 1) per request, one-token outputs excluded (ours: same);
ITL = every gap between consecutive streamed chunks, pooled over requests (ours divides a gap by the tokens
its chunk carried: the same when each chunk carries one token, which is how vLLM's server streams without
speculative decoding). Percentiles: numpy linear interpolation (ours: same).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.llm_import.records import ImportedPoint, as_list, ImportedRun, Stat, make_stat, num
from profiles.llm_metrics import RequestRecord

TOOL = "vllm-bench"
#: vLLM metric prefix -> our metric name
METRICS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": "itl_ms", "e2el": "e2e_ms"}
_STAT_KEY = re.compile(r"^(mean|median|std|p\d+(?:\.\d+)?)_(ttft|tpot|itl|e2el)_ms$")
#: keys that identify a vLLM result object (any two of them, with ``duration`` and ``completed``)
SIGNATURE = ("request_throughput", "request_inthroughput", "output_throughput", "mean_ttft_ms", "median_ttft_ms", "total_token_throughput")
#: keys of a result that describe the level or the measurement, not the configuration (for grouping lines into runs)
_LEVEL_KEYS = {"date", "request_rate", "max_concurrency", "num_prompts", "duration", "completed", "failed",
               "burstiness", "total_input_tokens", "total_output_tokens", "request_throughput", "request_inthroughput",
               "request_goodput",
               "request_goodput:", "output_throughput", "input_throughput", "total_token_throughput",
               "max_output_tokens_per_s", "max_concurrent_requests", "rtfx"}

NOTES = [
    "vLLM's ITL is the pooled gap between consecutive streamed chunks; stored as itl_ms (our ITL divides a "
    "gap by the tokens its chunk carried: equal when each chunk carries one token, as vLLM's server streams "
    "without speculative decoding)",
    "vLLM's TPOT = (E2E - TTFT) / (output tokens - 1) per request, the first token excluded: the same as our tpot_ms",
    "vLLM's TTFT stops at the first streamed chunk, even one whose text is empty; ours waits for non-empty text",
]


def is_vllm_result(obj: Any) -> bool:
    """True for a dict that looks like one vLLM ``--save-result`` object."""
    return (isinstance(obj, dict) and "duration" in obj and "completed" in obj
            and sum(1 for k in SIGNATURE if k in obj) >= 2)


def _stats(obj: dict[str, Any], where: str) -> tuple[dict[str, Stat], dict[str, str]]:
    vals: dict[str, dict[str, float | None]] = {}
    names: dict[str, str] = {}
    for key in obj:
        m = _STAT_KEY.match(key)
        if not m:
            continue
        stat, prefix = m.groups()
        v = num(obj, key, where=where)
        vals.setdefault(prefix, {})[stat] = v
        ours = METRICS[prefix]
        names[ours] = f"{{mean,median,std,p..}}_{prefix}_ms"
    return ({METRICS[p]: make_stat(v, source_unit="ms", where=where) for p, v in vals.items()}, names)


def _records(obj: dict[str, Any], where: str) -> list[RequestRecord] | None:
    """Per-request records from ``--save-detailed`` keys, or None without them. Times are relative to each
    request's own send (the file has no send times): send_ns = 0."""
    ttfts, itls, outs = obj.get("ttfts"), obj.get("itls"), obj.get("output_lens")
    if not isinstance(ttfts, list) or not isinstance(itls, list) or not ttfts:
        return None
    if not isinstance(outs, list) or len(outs) != len(ttfts) or len(itls) != len(ttfts):
        raise ParseError(f"{where}: keys 'ttfts', 'itls' and 'output_lens' must be lists of the same length")
    ins: list[Any] = as_list(obj.get("input_lens")) or [None] * len(ttfts)
    errors: list[Any] = as_list(obj.get("errors")) or [""] * len(ttfts)
    recs = []
    for i, (t, gaps, n) in enumerate(zip(ttfts, itls, outs)):
        if errors[i] if i < len(errors) else "":
            recs.append(RequestRecord(seq=i, send_ns=0, error_reason="stream_error", error=str(errors[i])[:500]))
            continue
        if not isinstance(t, (int, float)) or not isinstance(gaps, list) or not all(isinstance(g, (int, float)) for g in gaps):
            raise ParseError(f"{where}: request {i}: key 'ttfts'/'itls' holds a non-number")
        first = round(t * 1e9)
        chunks = [first]
        for g in gaps:
            chunks.append(chunks[-1] + round(g * 1e9))
        recs.append(RequestRecord(seq=i, send_ns=0, first_token_ns=first, end_ns=chunks[-1], chunk_ns=chunks,
                                  chunk_tokens=[1] * len(chunks), output_tokens=int(n) if n is not None else None,
                                  input_tokens=int(ins[i]) if i < len(ins) and isinstance(ins[i], (int, float)) else None))
    return recs


def parse_result(obj: dict[str, Any], where: str) -> tuple[ImportedPoint, dict[str, str], list[str]]:
    """One result object -> (point, metric names, notes).

    Raises:
        ParseError: a key holds a non-number (names ``where`` and the key), or ``completed``/``duration`` missing.
    """
    completed = num(obj, "completed", where=where, required=True)
    duration = num(obj, "duration", where=where, required=True)
    failed = num(obj, "failed", where=where)
    rate_raw = obj.get("request_rate")
    rate = None if isinstance(rate_raw, str) and rate_raw.strip().lower() in ("inf", "infinity") else num(obj, "request_rate", where=where)
    conc = num(obj, "max_concurrency", where=where)
    notes: list[str] = []
    if rate is not None or conc is None:
        mode, level = "request_rate", rate  # None = inf
        if conc is not None:
            notes.append(f"{where}: open-loop rate {rate:g} req/s capped at max_concurrency {conc:g}")
    else:
        mode, level = "concurrency", conc
    stats, names = _stats(obj, where)
    scalars: dict[str, tuple[float | None, str]] = {}
    for theirs, ours, unit in (("request_throughput", "request_throughput_per_s", "req/s"),
                               ("request_inthroughput", "request_throughput_per_s", "req/s"),  # vLLM 0.4's spelling
                               ("output_throughput", "output_token_throughput_per_s", "tok/s"),
                               ("total_token_throughput", "total_token_throughput_per_s", "tok/s"),
                               ("request_goodput", "goodput_per_s", "req/s"),
                               ("request_goodput:", "goodput_per_s", "req/s"),
                               ("total_input_tokens", "input_tokens_total", "tokens"),
                               ("total_output_tokens", "output_tokens_total", "tokens")):
        if theirs in obj:
            v = num(obj, theirs, where=where)
            if v is not None or ours not in scalars:
                scalars[ours] = (v, unit)
                names[ours] = theirs
    if "total_token_throughput_per_s" not in scalars and "input_throughput" in obj and "output_throughput" in obj:
        i_t, o_t = num(obj, "input_throughput", where=where), num(obj, "output_throughput", where=where)
        if i_t is not None and o_t is not None:
            scalars["total_token_throughput_per_s"] = (i_t + o_t, "tok/s")
            names["total_token_throughput_per_s"] = "input_throughput + output_throughput"
    prompts = num(obj, "num_prompts", where=where)
    if failed is None and prompts is not None and completed is not None and prompts >= completed:
        failed = prompts - completed
        notes.append("no 'failed' key (older vLLM): failed = num_prompts - completed")
    pt = ImportedPoint(mode=mode, level=level, duration_s=duration, completed=int(completed or 0),
                       failed=int(failed) if failed is not None else None, stats=stats, scalars=scalars,
                       info={k: obj[k] for k in ("date", "num_prompts", "burstiness", "max_concurrency") if k in obj})
    recs = _records(obj, where)
    if recs is not None:
        pt.requests = recs
        pt.chunks_known = True
        pt.timeline_known = False
        ok = [r for r in recs if r.ok]
        pt.one_token_per_chunk = all(r.output_tokens == len(r.chunk_ns) for r in ok)
        notes.append(f"{where}: per-request ttfts/itls (--save-detailed): our summaries are computed from them; "
                     "the file has no send times, so each request's times are relative to its own send")
        if not pt.one_token_per_chunk:
            notes.append(f"{where}: some chunks carried several tokens (chunk count != output_lens): itl_ms left "
                         "out, the per-chunk gaps are in itl_chunk_ms")
    return pt, names, notes


def _config_key(obj: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in obj.items()
                        if k not in _LEVEL_KEYS and not _STAT_KEY.match(k) and not isinstance(v, (list, dict))))


def parse_objects(objs: list[Any], path: Path) -> list[ImportedRun]:
    """Result objects (file order) -> runs: consecutive results with the same configuration (every scalar
    key that is not a measurement or a level: model, backend, deployment labels...) form one run, and a
    level seen again starts a new one.

    Raises:
        ParseError: an object is not a vLLM result or holds a bad value (names the file, line and key).
    """
    runs: list[ImportedRun] = []
    prev_key: tuple[tuple[str, str], ...] | None = None
    seen_levels: set[tuple[str, float | None]] = set()
    for i, obj in enumerate(objs, 1):
        where = f"{path}:{i}" if len(objs) > 1 else str(path)
        if not is_vllm_result(obj):
            raise ParseError(f"{where}: not a vLLM benchmark result (needs 'duration', 'completed' and "
                             f"metrics such as 'request_throughput', 'mean_ttft_ms')")
        pt, names, notes = parse_result(obj, where)
        key = _config_key(obj)
        lvl = (pt.mode, pt.level)
        if not runs or key != prev_key or lvl in seen_levels:
            model = obj.get("model_id") or obj.get("model")
            extras = [f"{k}={obj[k]}" for k in ("label", "deployment", "backend") if isinstance(obj.get(k), str) and obj.get(k)]
            label = f"{model or '?'} (vLLM bench" + (", " + ", ".join(extras) if extras else "") + ")"
            meta = {k: v for k, v in obj.items() if not _STAT_KEY.match(k) and not isinstance(v, (list, dict))
                    and k not in _LEVEL_KEYS}
            runs.append(ImportedRun(tool=TOOL, tool_version=obj.get("vllm_version") if isinstance(obj.get("vllm_version"), str) else None,
                                    engine="openai-endpoint", label=label, model=str(model) if model else None,
                                    notes=list(NOTES), meta=meta))
            seen_levels = set()
        run = runs[-1]
        run.points.append(pt)
        run.metric_names.update(names)
        run.notes.extend(n for n in notes if n not in run.notes)
        seen_levels.add(lvl)
        prev_key = key
    return runs
