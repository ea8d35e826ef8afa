"""Parse the Prometheus text exposition format (a server's ``/metrics``) into flat samples, and pick the
vLLM serving metrics EngineScope stores.

Parsing is done by ``prometheus_client.parser.text_string_to_metric_families`` (the reference
implementation of the text format 0.0.4); this module flattens families into :class:`PromSample`
and keeps only what is asked.

vLLM metric names (vLLM V1, ``vllm/v1/metrics/loggers.py``); older servers used ``gpu_cache_usage_perc``:
- ``vllm:kv_cache_usage_perc`` (gauge, 0..1: fraction of KV-cache blocks in use; despite the name,
  not percent), ``vllm:gpu_cache_usage_perc`` (older name, same meaning);
- ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (gauges);
- ``vllm:num_preemptions_total`` (counter); ``vllm:prefix_cache_hits_total`` /
  ``vllm:prefix_cache_queries_total`` (counters, in tokens);
- ``vllm:prompt_tokens_total`` / ``vllm:generation_tokens_total`` (counters);
- ``vllm:request_success_total`` (counter, label ``finished_reason``: ``stop``, ``length``, ``abort``,
  ``error``, ``repetition`` in vLLM 0.32; every reason has a series from start-up on).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from profiles.errors import ParseError

#: The serving metrics scraped during a load level (the ``_total`` suffix is the counter sample name).
VLLM_SERVING_METRICS: tuple[str, ...] = (
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:num_preemptions_total",
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
)

#: ``finished_reason`` values of ``vllm:request_success_total`` that are not a completed request.
NOT_COMPLETED_REASONS: tuple[str, ...] = ("abort", "error")

#: Metric names that mean "KV-cache usage, fraction 0..1", newest first.
KV_USAGE_NAMES: tuple[str, ...] = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


@dataclass(frozen=True)
class PromSample:
    """One sample: ``name`` as exposed (counters carry ``_total``), ``labels``, ``value`` (float)."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def parse_prometheus_text(text: str, names: Iterable[str] | None = None) -> list[PromSample]:
    """Parse Prometheus text into samples, keeping only ``names`` when given (sample names, e.g.
    ``vllm:num_preemptions_total``). Histogram buckets/sums/counts are samples like any other
    (``..._bucket`` with an ``le`` label).

    Raises:
        ParseError: the text is not valid Prometheus exposition format (message quotes the parser's
            reason).
    """
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(names) if names is not None else None
    if wanted is not None:
        text = _prefilter(text, wanted)
    out: list[PromSample] = []
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if wanted is None or s.name in wanted:
                    out.append(PromSample(s.name, float(s.value), dict(s.labels)))
    except ValueError as exc:
        raise ParseError(f"/metrics: not valid Prometheus text format: {exc}") from None
    return out


def _prefilter(text: str, wanted: set[str]) -> str:
    """The sample lines of ``text`` whose sample name is in ``wanted`` (comments dropped), so only they are
    parsed. A vLLM ``/metrics`` page is ~50 KB of histograms; parsing all of it costs 20-60 ms of
    CPU (with the GIL held) on an idle 2-core machine and several hundred ms on a loaded one, inside the
    load generator's process. Without their ``# TYPE`` lines the kept samples parse as untyped with the
    same names, labels and values.
    """
    keep = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        end = len(line)
        for sep in ("{", " "):
            i = line.find(sep)
            if 0 <= i < end:
                end = i
        if line[:end] in wanted:
            keep.append(line)
    return "\n".join(keep) + "\n"


def sum_by_name(samples: Iterable[PromSample]) -> dict[str, float]:
    """Sum of values per sample name over all label sets (e.g. over ``model_name``/``engine`` labels)."""
    out: dict[str, float] = {}
    for s in samples:
        out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def kv_cache_usage(values: dict[str, float]) -> float | None:
    """KV-cache usage fraction (0..1) from :func:`sum_by_name` output, under either vLLM name."""
    for n in KV_USAGE_NAMES:
        if n in values:
            return values[n]
    return None


def cache_config(samples: Iterable[PromSample]) -> dict[str, int | float | None]:
    """vLLM's KV-cache configuration from the ``vllm:cache_config_info`` info-gauge labels:
    ``num_gpu_blocks`` (KV-cache blocks; named so on every device), ``block_size`` (tokens per block),
    ``kv_cache_size_tokens``, ``kv_cache_max_concurrency``, ``kv_cache_memory_bytes``,
    ``gpu_memory_utilization``. Missing or ``"None"`` labels give ``None``; ``{}`` when the server does
    not expose the gauge."""
    for s in samples:
        if s.name == "vllm:cache_config_info":
            out: dict[str, int | float | None] = {}
            for key, conv in (("num_gpu_blocks", int), ("block_size", int), ("kv_cache_size_tokens", int),
                              ("kv_cache_max_concurrency", float), ("kv_cache_memory_bytes", int),
                              ("gpu_memory_utilization", float)):
                raw = s.labels.get(key)
                try:
                    out[key] = conv(raw) if raw not in (None, "None", "") else None
                except ValueError:
                    out[key] = None
            return out
    return {}


def finished_requests(samples: Iterable[PromSample]) -> dict[str, float]:
    """``vllm:request_success_total`` per ``finished_reason`` (summed over the other labels); a series
    without the label (older servers, the mock server) counts under ``""``."""
    out: dict[str, float] = {}
    for s in samples:
        if s.name == "vllm:request_success_total":
            reason = s.labels.get("finished_reason", "")
            out[reason] = out.get(reason, 0.0) + s.value
    return out


def completed_requests(by_reason: dict[str, float]) -> float:
    """Requests that finished with output (every reason but :data:`NOT_COMPLETED_REASONS`) from
    :func:`finished_requests` output."""
    return sum(v for k, v in by_reason.items() if k not in NOT_COMPLETED_REASONS)
