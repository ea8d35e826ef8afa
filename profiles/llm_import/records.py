"""Common records of imported LLM-benchmark results (pure; no I/O but reading the file being parsed).

Every parser in :mod:`profiles.llm_import` turns one file into an :class:`ImportedFile`: one or more
:class:`ImportedRun` (a sweep of one configuration), each with :class:`ImportedPoint` (one load level).
A point carries either the tool's own summaries (:class:`Stat`, converted to EngineScope's units, the
tool's unit kept beside it as data) or raw per-request records (:class:`profiles.llm_metrics.RequestRecord`),
from which :mod:`profiles.llm_import.report` computes our own summaries with :func:`profiles.stats.summarize`.

EngineScope's units: latency summaries in **ms**, throughputs **per second**, memory in **bytes**,
power in **W**, utilisation in **%** (docs/metrics.md, /work/shared/DESIGN.md "Conventions").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.llm_metrics import RequestRecord

#: milliseconds per unit of time, for every spelling the tools use ("sec" AIPerf/GenAI-Perf, "us"/"µs" perf_analyzer)
MS_PER_UNIT: dict[str, float] = {
    "ns": 1e-6, "us": 1e-3, "µs": 1e-3, "usec": 1e-3, "ms": 1.0, "msec": 1.0, "s": 1e3, "sec": 1e3,
    "secs": 1e3, "second": 1e3, "seconds": 1e3, "min": 60e3, "minute": 60e3,
}

#: factor to "per second" for rate units ("requests/sec", "tokens/sec", "infer/sec", "per sec", "req/min")
def per_second_factor(unit: str) -> float | None:
    """Factor turning a value in rate ``unit`` into per second (``None`` when ``unit`` is not a rate).

    ``"tokens/sec"`` -> 1, ``"requests/min"`` -> 1/60, ``"per sec"`` -> 1, ``"tokens/sec/user"`` -> 1.
    """
    u = unit.strip().lower().replace("per ", "/")
    if "/" not in u:
        return None
    denom = u.split("/")[1].strip()
    if denom in ("s", "sec", "second", "seconds", "secs"):
        return 1.0
    if denom in ("min", "minute", "minutes"):
        return 1.0 / 60.0
    if denom in ("ms", "msec"):
        return 1e3
    return None


def as_dict(v: Any) -> dict[str, Any]:
    """``v`` when it is a dict, else an empty dict (for optional nested sections of a tool's JSON)."""
    return v if isinstance(v, dict) else {}


def as_list(v: Any) -> list[Any]:
    """``v`` when it is a list, else an empty list."""
    return v if isinstance(v, list) else []


def to_ms(value: float, unit: str, *, where: str) -> float:
    """``value`` in time ``unit`` converted to milliseconds.

    Raises:
        ParseError: ``unit`` is not a time unit (names ``where``: file and key).
    """
    factor = MS_PER_UNIT.get(unit.strip().lower())
    if factor is None:
        raise ParseError(f"{where}: unknown time unit {unit!r} (expected one of {sorted(MS_PER_UNIT)})")
    return value * factor


def num(d: Mapping[str, Any], key: str, *, where: str, required: bool = False) -> float | None:
    """``d[key]`` as a float; ``None`` when absent, null or not finite (``"inf"``). A string holding a
    number (``"550"``, as LLMPerf writes min/max) is accepted.

    Raises:
        ParseError: the value is present but not a number (or absent while ``required``), naming ``where``
            (the file) and ``key``.
    """
    if key not in d or d[key] is None:
        if required:
            raise ParseError(f"{where}: key {key!r} is missing")
        return None
    v = d[key]
    if isinstance(v, bool):
        raise ParseError(f"{where}: key {key!r} is {v!r}, expected a number")
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ParseError(f"{where}: key {key!r} is {d[key]!r}, expected a number") from None
    if not isinstance(v, (int, float)):
        raise ParseError(f"{where}: key {key!r} is {type(v).__name__} {v!r}, expected a number")
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Stat:
    """One metric's distribution as the tool summarised it, converted to ``unit`` (EngineScope's unit).

    ``source_unit`` is the unit the file used; ``count`` the tool's sample count where it says;
    ``extra`` holds percentiles other than p50/p90/p95/p99 (``{"p25": ...}``) in ``unit``.
    """

    unit: str
    source_unit: str
    count: int | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    #: True when EngineScope computed it from the file's per-request values (``profiles.stats.summarize``)
    computed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The shape of :meth:`profiles.stats.Summary.as_dict` (median CI ``None``: a tool's summary has
        none) plus ``source_unit`` and ``extra``."""
        return {"unit": self.unit, "source_unit": self.source_unit, "count": self.count, "mean": self.mean,
                "std": self.std, "min": self.min, "max": self.max, "p50": self.p50, "p90": self.p90,
                "p95": self.p95, "p99": self.p99, "median_ci_low": None, "median_ci_high": None,
                "extra": dict(self.extra)}


STAT_FIELDS = ("mean", "std", "min", "max", "p50", "p90", "p95", "p99")


def make_stat(values: Mapping[str, float | None], *, source_unit: str, unit: str = "ms",
              count: int | None = None, where: str = "", computed: bool = False) -> Stat:
    """A :class:`Stat` from ``{"mean"|"std"|"min"|"max"|"pNN": value in source_unit}`` (``median`` is p50),
    converted to ``unit`` (``"ms"`` for times; for any other ``unit`` the values are scaled by
    :func:`per_second_factor` of ``source_unit`` when it is a rate, else kept as they are)."""
    def conv(v: float) -> float:
        if unit == "ms":
            return to_ms(v, source_unit, where=where)
        f = per_second_factor(source_unit) if unit.endswith("/s") else None
        return v * f if f is not None else v

    main: dict[str, float | None] = {}
    extra: dict[str, float] = {}
    for k, v in values.items():
        if v is None:
            continue
        key = "p50" if k == "median" else k
        if key in STAT_FIELDS:
            main[key] = conv(v)
        elif key.startswith("p"):
            extra[key] = conv(v)
    return Stat(unit=unit, source_unit=source_unit, count=count, extra=extra, computed=computed,  # type: ignore[arg-type]
                **main)


@dataclass
class ImportedPoint:
    """One load level of an imported result.

    Attributes:
        mode: ``"concurrency"`` or ``"request_rate"`` (as ``load_points.mode``).
        level: concurrency or requests/s; ``None`` for an infinite rate, or when the file does not say
            (``level_known`` False).
        duration_s: the tool's benchmark duration, s (``None`` when the file has none).
        completed, failed: request counts (successful / failed) where the file says.
        failures_by_reason: ``{reason: count}``.
        stats: our metric name -> :class:`Stat` (the tool's summaries, in our units).
        scalars: our scalar name -> ``(value, unit)``, e.g. ``request_throughput_per_s``.
        requests: per-request records (times in integer ns from each point's origin) when the file is
            per-request; our summaries are then computed from them.
        chunks_known: the records carry every token chunk's time (ITL computable); else only
            ``first_token_ns``/``end_ns`` are known.
        one_token_per_chunk: every successful record's chunk count equals its output tokens (then the
            per-chunk gaps are per-token ITL samples; else ``itl_ms`` is left out).
        level_known: False when the file does not say the level (``level`` is then ``None``).
        timeline_known: the records' send times share one clock (AIPerf, GuideLLM); False when every request's
            times are relative to its own send (vLLM ``--save-detailed``, LLMPerf): no duration from them.
        info: tool-specific facts of the level (batch size, model config path...), JSON-safe.
    """

    mode: str
    level: float | None
    duration_s: float | None = None
    completed: int | None = None
    failed: int | None = None
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Stat] = field(default_factory=dict)
    scalars: dict[str, tuple[float | None, str]] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
    chunks_known: bool = False
    one_token_per_chunk: bool = False
    level_known: bool = True
    timeline_known: bool = True
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportedRun:
    """One configuration's results as one tool wrote them.

    Attributes:
        tool: ``vllm-bench`` | ``aiperf`` | ``genai-perf`` | ``guidellm`` | ``llmperf`` | ``model-analyzer``.
        tool_version: the tool's version where the file has it.
        engine: what ``runs.engine`` records (``openai-endpoint`` for a served LLM, ``triton`` for Model Analyzer).
        label: a human label (model, deployment, config).
        model: the model name the tool recorded.
        points: load levels in file order.
        metric_names: our metric name -> the tool's key (or header) it came from.
        notes: definition differences and gaps, in words (stored in ``runs.config["import"]["notes"]``).
        meta: the tool's own configuration facts (command line, args), JSON-safe.
        batch_size: ``runs.batch_size`` (Model Analyzer), else ``None``.
    """

    tool: str
    tool_version: str | None
    engine: str
    label: str
    model: str | None
    points: list[ImportedPoint] = field(default_factory=list)
    metric_names: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None


@dataclass
class ImportedFile:
    """One parsed file: ``format`` says which export of the tool it is (``summary``, ``per_request``, ``csv``...)."""

    path: Path
    tool: str
    format: str
    runs: list[ImportedRun]
