"""engine_runner.tiny_llm: the tiny Llama is what vLLM's CPU backend accepts (head_dim 64) and is
deterministic for a seed (weights and tokenizer byte-identical)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from engine_runner.tiny_llm import write_tiny_llm, write_tokenizer
from profiles.errors import InputError


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_tiny_llm_is_deterministic_and_servable_shape(tmp_path: Path) -> None:
    a = write_tiny_llm(tmp_path / "a", seed=7)
    b = write_tiny_llm(tmp_path / "b", seed=7)
    assert _sha(a / "model.safetensors") == _sha(b / "model.safetensors")
    assert _sha(a / "tokenizer.json") == _sha(b / "tokenizer.json")
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]) == (2, 256, 4)
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64  # CPU attention rejects head_dim 16
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(a))
    assert cfg["vocab_size"] == len(tok)
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<s>assistant\n")
    with pytest.raises(InputError, match="not an empty folder"):
        write_tiny_llm(a)


def test_other_seed_other_tokenizer(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "x", seed=1)
    write_tokenizer(tmp_path / "y", seed=2)
    assert _sha(tmp_path / "x" / "tokenizer.json") != _sha(tmp_path / "y" / "tokenizer.json")
    with pytest.raises(InputError, match="--vocab-size"):
        write_tiny_llm(tmp_path / "z", vocab_size=10)
