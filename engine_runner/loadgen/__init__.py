"""LLM load generator: streams OpenAI-compatible requests at a fixed concurrency or an open-loop
request rate and records raw per-request timings (:class:`profiles.llm_metrics.RequestRecord`).

Public interface (used by the ``llm_serve`` job and ``benchmarks/loadgen_overhead.py``):
:class:`EndpointConfig`, :class:`Prompt`, :class:`LoadLevel`, :class:`LevelResult`, :func:`run_level`,
:func:`synthetic_prompts`, :func:`load_dataset_file`. Metrics: :func:`profiles.llm_metrics.point_report`.
See docs/loadgen.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from profiles.llm_metrics import RequestRecord


@dataclass
class EndpointConfig:
    """An OpenAI-compatible server endpoint.

    Attributes:
        base_url: server root, e.g. ``http://127.0.0.1:8000`` (``/v1/...`` is appended).
        model: the ``model`` field sent with every request.
        api: ``"completions"`` (``/v1/completions``) or ``"chat"`` (``/v1/chat/completions``).
        api_key: sent as ``Authorization: Bearer ...`` when set.
        timeout_s: total time limit of one request (send to ``[DONE]``); exceeded -> failure ``timeout``.
        ignore_eos: send vLLM's ``ignore_eos`` and ``min_tokens`` so output lengths are honoured.
        continuous_usage: ask for per-chunk usage (vLLM's ``stream_options.continuous_usage_stats``).
        extra_body: extra JSON fields merged into every request body.
        headers: extra HTTP headers.
        request_id_prefix: when set, each request carries ``X-Request-Id: <prefix><seq>`` (vLLM with
            ``--enable-request-id-headers`` and the mock server's timeline use it).
        transport: ``"raw"`` (default; engine_runner/loadgen/rawhttp.py: a minimal HTTP/1.1 keep-alive
            client on ``asyncio.Protocol`` that stamps bytes in ``data_received``) or ``"aiohttp"`` (the
            library client, for proxies/redirects/compression). On the 2-core machine raw measured ~20x
            less client delay at 256 streams and held 1,000 req/s where aiohttp held 68% (benchmarks/RESULTS.md).
    """

    base_url: str
    model: str
    api: Literal["chat", "completions"] = "completions"
    api_key: str | None = None
    timeout_s: float = 600.0
    ignore_eos: bool = True
    continuous_usage: bool = True
    extra_body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    request_id_prefix: str | None = None
    transport: Literal["aiohttp", "raw"] = "raw"


@dataclass
class Prompt:
    """One request's input.

    Attributes:
        text: a prompt string, or chat ``messages`` (list of ``{"role", "content"}`` dicts).
        input_tokens: prompt length in the served model's tokens.
        output_tokens: requested output length, honoured via ``max_tokens`` + ``min_tokens`` + ``ignore_eos``.
    """

    text: str | list[dict[str, Any]]
    input_tokens: int
    output_tokens: int


@dataclass
class LoadLevel:
    """One load level.

    Attributes:
        mode: ``"concurrency"`` (closed loop: ``value`` requests in flight) or ``"request_rate"``
            (open loop: ``value`` requests/s, ``float("inf")`` sends all at once).
        value: concurrency (integer >= 1) or rate in requests/s (> 0).
        max_concurrency: cap on requests in flight in rate mode (waiting for the cap counts as dispatch lag).
        num_requests: measured requests to send (after warm-up).
        duration_s: stop sending new measured requests after this many seconds; in-flight ones finish.
            At least one of ``num_requests``/``duration_s`` must be set; with both, the first reached stops.
        warmup_requests: requests sent before t0 (closed loop at the level's concurrency), flagged warm-up.
        arrival: inter-arrival distribution in rate mode: ``poisson`` (exponential gaps), ``gamma``
            (shape = ``burstiness``), ``constant``.
        burstiness: gamma shape; 1.0 = Poisson, < 1 burstier, > 1 more regular (as vLLM's benchmark).
        seed: seeds arrivals and prompt order.
    """

    mode: Literal["concurrency", "request_rate"]
    value: float
    max_concurrency: int | None = None
    num_requests: int | None = None
    duration_s: float | None = None
    warmup_requests: int = 0
    arrival: Literal["poisson", "gamma", "constant"] = "poisson"
    burstiness: float = 1.0
    seed: int = 0


@dataclass
class LevelResult:
    """Raw outcome of one level: records (warm-up included, flagged), the absolute ``t0_ns``
    (``time.perf_counter_ns``) all record times are relative to, and the measured phase's duration
    (t0 to the last measured completion) in seconds, and ``client_health``: whether the client itself could
    run during the measured phase (:func:`engine_runner.loadgen.health.assess`; ``None`` when not measured),
    and ``request_ids``: the ``X-Request-Id`` each record was sent with, in ``records``' order (``None`` when
    the endpoint sets no ``request_id_prefix``)."""

    records: list[RequestRecord]
    t0_ns: int
    duration_s: float
    client_health: dict[str, Any] | None = None
    request_ids: list[str] | None = None


async def run_level(
    endpoint: EndpointConfig,
    prompts: Sequence[Prompt],
    level: LoadLevel,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **kwargs: Any,
) -> LevelResult:
    """Run one load level against ``endpoint`` and return every request's raw record.

    Keyword extras (``clock``, ``count_tokens``, ``session``) and the full contract: see
    :func:`engine_runner.loadgen.runner.run_level`. For a blocking call with uvloop use
    :func:`engine_runner.loadgen.runner.run_level_blocking`.
    """
    from engine_runner.loadgen.runner import run_level as _run

    return await _run(endpoint, prompts, level, on_progress=on_progress, should_stop=should_stop, **kwargs)


def synthetic_prompts(tokenizer: Any, n: int, input_len: int, output_len: int | tuple[int, int], seed: int) -> list[Prompt]:
    """Random prompts of exactly ``input_len`` tokens; see :mod:`engine_runner.loadgen.datasets`."""
    from engine_runner.loadgen.datasets import synthetic_prompts as _f

    return _f(tokenizer, n, input_len, output_len, seed)


def load_dataset_file(path: Any, tokenizer: Any, n: int, seed: int, output_len: int | None = None,
                      max_input_tokens: int | None = None) -> list[Prompt]:
    """Prompts from a ShareGPT-style JSON or JSONL file; see :mod:`engine_runner.loadgen.datasets`."""
    from engine_runner.loadgen.datasets import load_dataset_file as _f

    return _f(path, tokenizer, n, seed, output_len, max_input_tokens)


__all__ = [
    "EndpointConfig", "LevelResult", "LoadLevel", "Prompt", "RequestRecord", "load_dataset_file",
    "run_level", "synthetic_prompts",
]
