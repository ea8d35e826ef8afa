"""LLM serving metrics from raw per-request records (pure functions; no I/O).

Definitions (docs/metrics.md, /work/shared/DESIGN.md; they follow vLLM's ``benchmarks/serve.py``):

- **Token chunk**: a streamed chunk that carries output text on any channel (``content`` or
  ``reasoning_content``). A chunk with only a role, only usage, or empty text is *not* a token chunk.
  Its token count is the server's per-chunk usage delta where offered (vLLM's
  ``stream_options.continuous_usage_stats``), else 1.
- **TTFT** = first token chunk arrival - send time.
- **E2E** = last token chunk arrival - send time (usage-only chunk and ``[DONE]`` excluded).
- **TPOT** = (E2E - TTFT) / (output_tokens - 1); undefined (``None``) for one-token outputs
  (as vLLM's benchmark defines TPOT).
- **ITL per token**: each gap between consecutive token chunks divided by the tokens the later chunk
  carried, repeated once per token (a 5-token chunk 50 ms after the previous gives five 10 ms samples).
  **ITL per chunk**: the raw gaps. Invariant, exact in integer ns: ``E2E - TTFT == sum(chunk gaps)``.
- **From schedule** (open-loop request-rate mode): TTFT and E2E measured from the scheduled send time;
  **dispatch lag** = send - scheduled, so a late client cannot make a server look fast.
- **Output tokens**: the server's ``usage.completion_tokens``; where usage is missing the client's count
  is used and the request is counted in ``usage_missing``; where both exist and differ it is counted in
  ``usage_mismatches``.
- **Failures** (``error_reason`` not ``None``: ``http_5xx``, ``http_4xx``, ``timeout``, ``connection``,
  ``empty``, ``stream_error``, ``cancelled``) are counted by reason and excluded from every latency
  percentile and throughput.
- **Goodput** = successful requests meeting every SLO given (``ttft_ms``, ``tpot_ms``, ``e2e_ms``) per
  second of the level's duration. A request with undefined TPOT (one output token) meets a TPOT SLO,
  as in vLLM's benchmark (which scores its TPOT as 0).

Every summary comes from :func:`profiles.stats.summarize` (p50/p90/p95/p99 linear, with counts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from profiles.errors import InputError
from profiles.stats import summarize

NS_PER_MS = 1_000_000

#: SLO names accepted by :func:`point_report` (all in milliseconds).
SLO_KEYS: tuple[str, ...] = ("ttft_ms", "tpot_ms", "e2e_ms")

#: Failure reasons the load generator records.
FAILURE_REASONS: tuple[str, ...] = (
    "http_5xx", "http_4xx", "timeout", "connection", "empty", "stream_error", "cancelled",
)


@dataclass
class RequestRecord:
    """One request of a load level, raw. Times are integer ns relative to the level's ``t0_ns``
    (``time.perf_counter_ns`` clock); warm-up requests may have negative times.

    Attributes:
        seq: request index within the level (warm-up requests first).
        warmup: excluded from every result when true.
        scheduled_ns: planned send time (open-loop rate mode); ``None`` in closed-loop concurrency mode.
        send_ns: time the request was handed to the HTTP client.
        first_token_ns: arrival of the first token chunk (content or reasoning); ``None`` if none.
        first_content_ns: arrival of the first chunk with visible ``content`` (not reasoning).
        first_event_ns: arrival of the first SSE event that carries a choice with a token, even one whose
            text is empty (a token the server's detokenizer holds back, e.g. half of a UTF-8 character).
            This is where vLLM's benchmark client stops its TTFT clock; ours (``first_token_ns``) waits
            for the first non-empty token, as the metric definitions say. ``<= first_token_ns``.
        end_ns: arrival of the last token chunk (``== chunk_ns[-1]``).
        chunk_ns: arrival time of every token-carrying chunk, ascending.
        chunk_tokens: tokens carried by each of those chunks (>= 1 each).
        input_tokens: prompt tokens (server usage; else the prompt's known length).
        output_tokens: completion tokens from server usage; ``None`` when the server sent no usage.
        client_output_tokens: the client's count (its tokenizer on the text, else the chunk token sum).
        client_input_tokens: the prompt's length in the client's tokenizer (as it was built); kept beside
            ``input_tokens`` when the server's usage replaces that, so the two can be compared
            (:func:`token_check`); not a column of ``llm_requests``.
        http_status: HTTP status code, ``None`` if no response arrived.
        error_reason: one of :data:`FAILURE_REASONS`, ``None`` when successful.
        error: human-readable detail, ``None`` when successful.
    """

    seq: int
    warmup: bool = False
    scheduled_ns: int | None = None
    send_ns: int | None = None
    first_token_ns: int | None = None
    first_content_ns: int | None = None
    first_event_ns: int | None = None
    end_ns: int | None = None
    chunk_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    client_output_tokens: int | None = None
    http_status: int | None = None
    error_reason: str | None = None
    error: str | None = None
    client_input_tokens: int | None = None

    @classmethod
    def from_attrs(cls, obj: Any) -> RequestRecord:
        """A record from any object with the fields as attributes (an ``llm_requests`` row); fields the
        object lacks (``client_input_tokens`` is not a column) keep their defaults."""
        return cls(**{f: getattr(obj, f) for f in cls.__dataclass_fields__ if hasattr(obj, f)})

    @property
    def ok(self) -> bool:
        """True for a successful request (no ``error_reason``)."""
        return self.error_reason is None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict with the same keys as the ``llm_requests`` table columns (JSON-safe)."""
        return {
            "seq": self.seq, "warmup": self.warmup, "scheduled_ns": self.scheduled_ns,
            "send_ns": self.send_ns, "first_token_ns": self.first_token_ns,
            "first_content_ns": self.first_content_ns, "first_event_ns": self.first_event_ns,
            "end_ns": self.end_ns,
            "chunk_ns": list(self.chunk_ns), "chunk_tokens": list(self.chunk_tokens),
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "client_output_tokens": self.client_output_tokens, "http_status": self.http_status,
            "error_reason": self.error_reason, "error": self.error,
        }


@dataclass(frozen=True)
class RequestMetrics:
    """Per-request metrics of one successful request, in milliseconds.

    Attributes:
        ttft_ms, e2e_ms: see module docstring (from send time).
        tpot_ms: ``None`` for one-token outputs.
        itl_ms: one sample per token after the first chunk (chunk gap / chunk tokens).
        itl_chunk_ms: one sample per chunk gap.
        first_content_ms: first visible content - send; ``None`` when only reasoning was streamed.
        ttft_first_event_ms: first choice-carrying event - send (vLLM's benchmark client's TTFT, which
            counts an empty-text token chunk); equals ``ttft_ms`` unless the first token's text was empty.
        ttft_from_schedule_ms, e2e_from_schedule_ms, dispatch_lag_ms: ``None`` without ``scheduled_ns``.
        output_tokens: tokens used for TPOT and throughput (usage, else the client's count).
        usage_missing: the server sent no usage; ``output_tokens`` is the client's count.
        e2e_minus_ttft_ns, sum_chunk_gaps_ns: the integer-ns terms of the invariant (equal by construction).
    """

    ttft_ms: float
    e2e_ms: float
    tpot_ms: float | None
    itl_ms: list[float]
    itl_chunk_ms: list[float]
    first_content_ms: float | None
    ttft_first_event_ms: float
    ttft_from_schedule_ms: float | None
    e2e_from_schedule_ms: float | None
    dispatch_lag_ms: float | None
    output_tokens: int
    usage_missing: bool
    e2e_minus_ttft_ns: int
    sum_chunk_gaps_ns: int


def _ms(ns: int | float) -> float:
    return ns / NS_PER_MS


def request_metrics(r: RequestRecord) -> RequestMetrics:
    """Metrics of one successful request (see module docstring for every formula).

    Raises:
        InputError: the record failed, or its raw fields are inconsistent (no send time, no token
            chunk, ``chunk_ns``/``chunk_tokens`` lengths differ, a chunk with < 1 token, times out of order).
    """
    where = f"request seq={r.seq}"
    if r.error_reason is not None:
        raise InputError(f"{where} failed ({r.error_reason}); failed requests have no latency metrics")
    if r.send_ns is None:
        raise InputError(f"{where}: field send_ns is missing")
    if not r.chunk_ns:
        raise InputError(f"{where}: no token chunk recorded (field chunk_ns is empty)")
    if len(r.chunk_ns) != len(r.chunk_tokens):
        raise InputError(
            f"{where}: fields chunk_ns ({len(r.chunk_ns)}) and chunk_tokens ({len(r.chunk_tokens)}) differ in length"
        )
    first, last = r.chunk_ns[0], r.chunk_ns[-1]
    if r.first_token_ns is not None and r.first_token_ns != first:
        raise InputError(f"{where}: first_token_ns {r.first_token_ns} != chunk_ns[0] {first}")
    if r.end_ns is not None and r.end_ns != last:
        raise InputError(f"{where}: end_ns {r.end_ns} != chunk_ns[-1] {last}")

    gaps_ns: list[int] = []
    itl_ms: list[float] = []
    prev = first
    for t, k in zip(r.chunk_ns[1:], r.chunk_tokens[1:]):
        gap = t - prev
        if gap < 0:
            raise InputError(f"{where}: chunk_ns is not ascending ({prev} then {t})")
        if k < 1:
            raise InputError(f"{where}: a token chunk carries {k} tokens (field chunk_tokens)")
        gaps_ns.append(gap)
        itl_ms.extend([_ms(gap) / k] * k)
        prev = t
    if r.chunk_tokens[0] < 1:
        raise InputError(f"{where}: the first token chunk carries {r.chunk_tokens[0]} tokens")

    ttft_ns = first - r.send_ns
    e2e_ns = last - r.send_ns
    usage_missing = r.output_tokens is None
    if r.output_tokens is not None:
        out = r.output_tokens
    elif r.client_output_tokens is not None:
        out = r.client_output_tokens
    else:
        out = sum(r.chunk_tokens)
    tpot = _ms(e2e_ns - ttft_ns) / (out - 1) if out > 1 else None
    sched = r.scheduled_ns
    return RequestMetrics(
        ttft_ms=_ms(ttft_ns),
        e2e_ms=_ms(e2e_ns),
        tpot_ms=tpot,
        itl_ms=itl_ms,
        itl_chunk_ms=[_ms(g) for g in gaps_ns],
        first_content_ms=_ms(r.first_content_ns - r.send_ns) if r.first_content_ns is not None else None,
        ttft_first_event_ms=_ms(min(first, r.first_event_ns) - r.send_ns) if r.first_event_ns is not None else _ms(ttft_ns),
        ttft_from_schedule_ms=_ms(first - sched) if sched is not None else None,
        e2e_from_schedule_ms=_ms(last - sched) if sched is not None else None,
        dispatch_lag_ms=_ms(r.send_ns - sched) if sched is not None else None,
        output_tokens=out,
        usage_missing=usage_missing,
        e2e_minus_ttft_ns=e2e_ns - ttft_ns,
        sum_chunk_gaps_ns=sum(gaps_ns),
    )


def meets_slos(m: RequestMetrics, slos: dict[str, float]) -> bool:
    """True when ``m`` meets every SLO in ``slos`` (keys from :data:`SLO_KEYS`, values in ms, inclusive).

    An undefined TPOT (one-token output) meets a TPOT SLO (vLLM's benchmark scores it 0).
    """
    for key, limit in slos.items():
        value = getattr(m, key)
        if value is not None and value > limit:
            return False
    return True


def _check_slos(slos: dict[str, float]) -> None:
    for key, limit in slos.items():
        if key not in SLO_KEYS:
            raise InputError(f"unknown SLO {key!r}; expected one of {list(SLO_KEYS)}")
        if not isinstance(limit, int | float) or not limit > 0:
            raise InputError(f"SLO {key} must be a positive number of milliseconds, got {limit!r}")


def point_report(
    records: Iterable[RequestRecord], duration_s: float, slos: dict[str, float] | None = None
) -> dict[str, Any]:
    """Aggregate one load level's records into a JSON-safe report (stored as ``load_points.report``).

    Warm-up records are ignored. Failed records are counted by reason and excluded from latencies and
    throughput. Throughputs divide by ``duration_s`` (the measured phase, t0 to last completion).

    Returns keys: ``completed``, ``failed``, ``failures_by_reason``, ``duration_s``,
    ``request_throughput_per_s``, ``output_token_throughput_per_s``, ``total_token_throughput_per_s``,
    ``goodput_per_s`` (``None`` without SLOs), ``slos``, ``ttft_ms``, ``tpot_ms``, ``itl_ms``,
    ``itl_chunk_ms``, ``e2e_ms``, ``ttft_from_schedule_ms``, ``e2e_from_schedule_ms``,
    ``dispatch_lag_ms``, ``first_content_ms`` (each ``summarize(...).as_dict()``: count, mean, std,
    min, max, p50, p90, p95, p99, median CI), ``output_tokens_total``, ``input_tokens_total``,
    ``usage_missing``, ``usage_mismatches``, ``ttft_first_event_ms`` (vLLM's client's TTFT point, see
    :class:`RequestRecord`) and ``empty_first_token_requests`` (how many requests it differs for).

    Raises:
        InputError: ``duration_s`` is not positive, an SLO key is unknown or its value not positive,
            or a successful record is inconsistent (see :func:`request_metrics`).
    """
    if not duration_s > 0:
        raise InputError(f"duration_s must be > 0, got {duration_s!r}")
    if slos:
        _check_slos(slos)
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.error_reason is None]
    failures = Counter(r.error_reason for r in measured if r.error_reason is not None)
    metrics = [request_metrics(r) for r in ok]

    def col(name: str) -> list[float]:
        return [v for m in metrics if (v := getattr(m, name)) is not None]

    out_total = sum(m.output_tokens for m in metrics)
    in_total = sum(r.input_tokens or 0 for r in ok)
    good = sum(1 for m in metrics if meets_slos(m, slos)) if slos else None
    report: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(measured) - len(ok),
        "failures_by_reason": dict(sorted(failures.items())),
        "duration_s": duration_s,
        "request_throughput_per_s": len(ok) / duration_s,
        "output_token_throughput_per_s": out_total / duration_s,
        "total_token_throughput_per_s": (out_total + in_total) / duration_s,
        "goodput_per_s": good / duration_s if good is not None else None,
        "slos": dict(slos) if slos else None,
        "output_tokens_total": out_total,
        "input_tokens_total": in_total,
        "usage_missing": sum(1 for m in metrics if m.usage_missing),
        # requests whose first token chunk had empty text (vLLM's client starts TTFT there, we do not)
        "empty_first_token_requests": sum(1 for m in metrics if m.ttft_first_event_ms < m.ttft_ms),
        "usage_mismatches": sum(
            1 for r in ok
            if r.output_tokens is not None and r.client_output_tokens is not None
            and r.output_tokens != r.client_output_tokens
        ),
    }
    itl_all = [v for m in metrics for v in m.itl_ms]
    itl_chunk_all = [v for m in metrics for v in m.itl_chunk_ms]
    for name, values in (
        ("ttft_ms", col("ttft_ms")), ("tpot_ms", col("tpot_ms")), ("itl_ms", itl_all),
        ("itl_chunk_ms", itl_chunk_all), ("e2e_ms", col("e2e_ms")),
        ("ttft_from_schedule_ms", col("ttft_from_schedule_ms")),
        ("e2e_from_schedule_ms", col("e2e_from_schedule_ms")),
        ("dispatch_lag_ms", col("dispatch_lag_ms")), ("first_content_ms", col("first_content_ms")),
        ("ttft_first_event_ms", col("ttft_first_event_ms")),
    ):
        report[name] = summarize(values, "ms").as_dict()
    return report


def summarize_records(records: Sequence[RequestRecord]) -> dict[str, int]:
    """Counts of a record list: total, warm-up, measured successes and failures (for progress lines)."""
    measured = [r for r in records if not r.warmup]
    return {
        "total": len(records),
        "warmup": len(records) - len(measured),
        "completed": sum(1 for r in measured if r.ok),
        "failed": sum(1 for r in measured if not r.ok),
    }


#: Share of a level's requests whose client and server token counts must differ before the tokenizer is
#: called a mismatch (re-tokenizing decoded text can legitimately differ by a token now and then).
TOKEN_MISMATCH_SHARE = 0.5


def token_check(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Client vs server token counts of a level's successful, measured requests: is the client's tokenizer the
    served model's?

    Returns:
        ``{"requests", "prompt_compared", "prompt_mismatches", "prompt_ratio_median" (server / client prompt
        tokens), "output_compared", "output_mismatches", "suspect" (bool), "message" (str | None)}``.
        ``suspect`` when more than :data:`TOKEN_MISMATCH_SHARE` of the compared prompts or outputs differ.
    """
    ok = [r for r in records if r.ok and not r.warmup]
    pr = [(r.client_input_tokens, r.input_tokens) for r in ok
          if r.client_input_tokens is not None and r.input_tokens is not None]
    out = [(r.client_output_tokens, r.output_tokens) for r in ok
           if r.client_output_tokens is not None and r.output_tokens is not None]
    p_bad = sum(1 for c, s in pr if c != s)
    o_bad = sum(1 for c, s in out if c != s)
    ratios = sorted(s / c for c, s in pr if c)
    med = ratios[len(ratios) // 2] if ratios else None
    suspect = (bool(pr) and p_bad > TOKEN_MISMATCH_SHARE * len(pr)) or (bool(out) and o_bad > TOKEN_MISMATCH_SHARE * len(out))
    msg = None
    if suspect:
        msg = (f"the client's tokenizer does not seem to match the served model: server and client token counts "
               f"differ for {p_bad} of {len(pr)} prompts (median server/client {med:.2f})" if med is not None else
               f"the client's tokenizer does not seem to match the served model: prompt counts not compared")
        msg += f" and {o_bad} of {len(out)} outputs; input lengths and client-side token counts are then off (--tokenizer)"
    return {"requests": len(ok), "prompt_compared": len(pr), "prompt_mismatches": p_bad, "prompt_ratio_median": med,
            "output_compared": len(out), "output_mismatches": o_bad, "suspect": suspect, "message": msg}
