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

Pure functions; no I/O except :func:`load_hf_config` (reads ``config.json`` of a local model folder).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
