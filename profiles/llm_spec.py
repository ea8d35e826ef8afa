"""``ServeBenchSpec``: the validated spec of an ``llm_serve`` job (vLLM launched by EngineScope, or an
existing OpenAI-compatible endpoint, load-tested at several concurrency levels or request rates).

Validate with ``profiles.specs.validate_spec(ServeBenchSpec, data)`` (turns errors into an
``InputError`` naming the field). Units are in field names; request rates are requests per second
(``inf``: all requests sent at once, as vLLM's benchmark ``--request-rate inf``).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from profiles.errors import InputError

#: vLLM ``--dtype`` values.
VllmDtype = Literal["auto", "float16", "bfloat16", "float32", "half", "float"]
#: vLLM ``--kv-cache-dtype`` values (most common; vLLM checks the rest).
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16"]

#: Flags EngineScope sets itself; refused in ``vllm_args`` so the server stays reachable and measured.
RESERVED_VLLM_FLAGS = ("--host", "--port", "--api-key", "--model", "--trust-remote-code", "--served-model-name")


def reserved_vllm_flag(arg: str) -> str | None:
    """The reserved flag ``arg`` sets, or None: the flag itself, ``--flag=value``, or an abbreviation that
    argparse (vLLM's parser allows abbreviations) would expand to it (``--ho`` -> ``--host``)."""
    flag = arg.split("=", 1)[0]
    if not flag.startswith("--") or len(flag) < 3:
        return None
    return next((r for r in RESERVED_VLLM_FLAGS if r == flag or r.startswith(flag)), None)


class SloSpec(BaseModel):
    """Service-level objectives in milliseconds (each optional, > 0); goodput counts requests meeting all."""

    model_config = ConfigDict(extra="forbid")
    ttft_ms: float | None = Field(None, gt=0, le=3_600_000)
    tpot_ms: float | None = Field(None, gt=0, le=3_600_000)
    e2e_ms: float | None = Field(None, gt=0, le=86_400_000)

    def as_dict(self) -> dict[str, float]:
        """Only the SLOs that are set (the ``slos`` argument of ``point_report``)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


#: ``ServeBenchSpec`` field -> the ``enginescope serve-bench`` flag that sets it (validation errors name the flag).
LLM_SPEC_FLAGS: dict[str, str] = {
    **{f: "--" + f.replace("_", "-") for f in (
        "model", "endpoint", "engine", "api_key", "concurrency", "request_rate", "input_len", "output_len",
        "dataset", "num_prompts", "prompts_per_concurrency", "warmup", "api", "tokenizer", "dtype", "quantization",
        "kv_cache_dtype", "max_num_seqs", "max_model_len", "tensor_parallel_size", "gpu_memory_utilization",
        "kv_cache_memory_bytes", "load_format", "trust_remote_code", "startup_timeout_s", "max_level_duration_s",
        "seed", "client_processes", "repeats")},
    "enable_prefix_caching": "--prefix-caching", "vllm_args": "--vllm-arg", "slos": "--slo",
    "continuous_usage_stats": "--continuous-usage", "peer_clients": "--peer",
}


class ServeBenchSpec(BaseModel):
    """Spec of an ``llm_serve`` job.

    Target: ``engine="vllm"`` launches ``vllm`` serving ``model`` (a local folder or a Hugging Face id);
    ``engine="endpoint"`` uses the running server at ``endpoint`` (base URL) whose model is ``model``.
    Load: exactly one of ``concurrency`` (closed loop) or ``request_rate`` (open loop; ``inf`` allowed).
    Prompts: ``dataset`` (ShareGPT-style JSON/JSONL on the server) or synthetic prompts of exactly
    ``input_len`` tokens; ``output_len`` tokens each (``ignore_eos``).
    ``num_prompts`` measured requests per level (at a concurrency level, at least
    ``prompts_per_concurrency`` x concurrency when that is set, so every level reaches a steady state),
    after ``warmup`` warm-up requests; a level also stops sending after ``max_level_duration_s``.
    ``repeats``: each level is measured that many times in interleaved rounds (every repeat with the same
    prompts, seed and warm-up), see :attr:`schedule`.
    """

    model_config = ConfigDict(extra="forbid")
    FIELD_FLAGS: ClassVar[dict[str, str]] = LLM_SPEC_FLAGS

    engine: Literal["vllm", "endpoint"] = "vllm"
    model: str = Field(min_length=1, max_length=2048, description="local path or HF id (vllm); served name (endpoint)")
    endpoint: str | None = Field(None, description="base URL of an OpenAI-compatible server, e.g. http://host:8000")
    api_key: str | None = Field(None, max_length=4096, description="bearer token for `endpoint`")
    api: Literal["chat", "completions"] = "completions"
    tokenizer: str | None = Field(None, max_length=2048, description="tokenizer path/id; default: the model")

    concurrency: list[int] | None = None
    request_rate: list[float] | None = None
    input_len: int = Field(128, ge=1, le=1_000_000)
    output_len: int = Field(128, ge=1, le=1_000_000)
    dataset: str | None = Field(None, max_length=4096)
    num_prompts: int = Field(64, ge=1, le=1_000_000)
    prompts_per_concurrency: int | None = Field(
        None, ge=1, le=10_000, description="a concurrency-C level sends max(num_prompts, this x C) requests")
    warmup: int = Field(2, ge=0, le=10_000)
    max_level_duration_s: float = Field(600.0, gt=0, le=86_400)
    client_processes: int = Field(
        1, ge=1, le=64, description="send each level from this many client processes, each with its own "
                                    "event loop (engine_runner.loadgen.shards): for hundreds of streams, where "
                                    "one loop's queue of chunks to stamp adds client delay")
    request_timeout_s: float = Field(600.0, gt=0, le=86_400)
    repeats: int = Field(
        1, ge=1, le=50, description="measure each load level this many times, interleaved with the other levels "
                                    "(L1 L2 L3, L1 L2 L3, ...; order in runs.config['repeats']); one run per server "
                                    "configuration, one load point per (level, repeat) with its repeat index; the "
                                    "dashboard and --json pool the repeats of a level; verdicts then include "
                                    "between-repeat variance (profiles.verdict). A peer client runs after the "
                                    "last repeat of each level only")
    slos: SloSpec = Field(default_factory=lambda: SloSpec.model_validate({}))
    seed: int = Field(0, ge=0)

    # vLLM engine options (engine="vllm" only)
    dtype: VllmDtype = "auto"
    quantization: str | None = Field(None, max_length=64)
    kv_cache_dtype: KvCacheDtype = "auto"
    max_num_seqs: int | None = Field(None, ge=1, le=65_536)
    max_model_len: int | None = Field(None, ge=16, le=10_000_000)
    enable_prefix_caching: bool | None = None
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    kv_cache_memory_bytes: int | None = Field(None, ge=1 << 20, description="fixed KV-cache size (vLLM flag)")
    load_format: str | None = Field(None, max_length=64, description="e.g. dummy: random weights, no download")
    vllm_args: list[str] = Field(default_factory=list, max_length=64)
    trust_remote_code: bool = False
    continuous_usage_stats: bool = Field(
        False, description="ask for usage on every chunk (vLLM's stream_options.continuous_usage_stats) for "
                           "exact per-chunk token counts. Off by default: on the H200 it cost vLLM 0.25.1 29% "
                           "of its output throughput at concurrency 256 (benchmarks/RESULTS.md), so it "
                           "perturbs what is measured; off, each content delta counts one token and the "
                           "end-of-stream usage still gives exact totals (a mismatch is flagged)")
    peer_clients: list[Literal["vllm-bench"]] = Field(
        default_factory=list,
        description="after each level, run this peer client with the same load on the same server "
                    "and store its numbers beside ours (vllm-bench: vLLM's own benchmark client)")
    startup_timeout_s: float = Field(900.0, ge=10, le=7200)
    timeout_s: float = Field(7200.0, gt=0, le=7 * 86_400)

    @field_validator("concurrency")
    @classmethod
    def _conc(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one concurrency level")
        for c in v:
            if not 1 <= c <= 100_000:
                raise ValueError(f"concurrency {c} is outside 1..100000")
        return list(dict.fromkeys(v))

    @field_validator("request_rate")
    @classmethod
    def _rate(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one request rate")
        for r in v:
            if math.isnan(r) or not r > 0:
                raise ValueError(f"request rate {r} must be > 0 requests/s (inf allowed)")
        return list(dict.fromkeys(v))

    @field_validator("vllm_args")
    @classmethod
    def _args(cls, v: list[str]) -> list[str]:
        for a in v:
            reserved = reserved_vllm_flag(a)
            if reserved is not None:
                flag = a.split("=", 1)[0]
                what = flag if flag == reserved else f"{flag} (an abbreviation of {reserved})"
                raise ValueError(f"{what} is set by EngineScope (use the spec field instead)")
        return v

    @model_validator(mode="after")
    def _cross(self) -> ServeBenchSpec:
        if (self.concurrency is None) == (self.request_rate is None):
            raise ValueError("set exactly one of --concurrency or --request-rate (the page: concurrency or request rate)")
        if self.engine == "endpoint":
            if not self.endpoint:
                raise ValueError("engine 'endpoint' needs endpoint (base URL)")
            if not self.endpoint.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {self.endpoint!r} must start with http:// or https://")
        elif self.endpoint:
            raise ValueError("endpoint is only used with engine 'endpoint'")
        return self

    def requests_for(self, mode: str, value: float) -> int:
        """Measured requests of the level ``(mode, value)``: ``num_prompts``, raised to
        ``prompts_per_concurrency * value`` at a concurrency level when that is set."""
        if mode == "concurrency" and self.prompts_per_concurrency:
            return max(self.num_prompts, int(self.prompts_per_concurrency * value))
        return self.num_prompts

    @property
    def schedule(self) -> list[tuple[int, int]]:
        """``[(level index, repeat), ...]`` in the order measured: every level once per round, ``repeats``
        rounds (levels L1 L2 L3 then again ...); with one repeat simply the levels in order."""
        return [(i, r) for r in range(self.repeats) for i in range(len(self.levels))]

    @property
    def levels(self) -> list[tuple[Literal["concurrency", "request_rate"], float]]:
        """``[(mode, value), ...]`` in the order given: mode ``concurrency`` or ``request_rate``."""
        if self.concurrency is not None:
            return [("concurrency", float(c)) for c in self.concurrency]
        return [("request_rate", float(r)) for r in self.request_rate or []]


def parse_int_list(text: str, flag: str) -> list[int]:
    """``"1,4,16"`` -> ``[1, 4, 16]``.

    Raises:
        InputError: a non-integer item (names ``flag``).
    """
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected integers separated by commas, e.g. 1,4,16") from None


def parse_rate_list(text: str, flag: str = "--request-rate") -> list[float]:
    """``"2,8,inf"`` -> ``[2.0, 8.0, inf]``.

    Raises:
        InputError: an item that is not a number or ``inf`` (names ``flag``).
    """
    out = []
    for x in (t.strip() for t in text.split(",")):
        if not x:
            continue
        try:
            out.append(float(x))
        except ValueError:
            raise InputError(f"{flag} {text!r}: expected numbers or inf separated by commas, e.g. 2,8,inf") from None
    return out


def parse_slo_flags(items: list[str], flag: str = "--slo") -> dict[str, float]:
    """``["ttft_ms=500", "tpot_ms=50"]`` -> ``{"ttft_ms": 500.0, "tpot_ms": 50.0}``.

    Raises:
        InputError: malformed item or unknown SLO name (names ``flag`` and the item).
    """
    out: dict[str, float] = {}
    for it in items:
        name, sep, value = it.partition("=")
        if not sep or name not in SloSpec.model_fields:
            raise InputError(f"{flag} {it!r}: expected NAME=MS with NAME one of {list(SloSpec.model_fields)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise InputError(f"{flag} {it!r}: {value!r} is not a number of milliseconds") from None
    return out
