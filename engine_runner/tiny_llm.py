"""A tiny random-weight Llama that vLLM can serve: the test model of the LLM-serving path.

:func:`write_tiny_llm` writes a Hugging Face model folder (``config.json``, ``model.safetensors``,
``tokenizer.json``, ``tokenizer_config.json`` with a chat template, ``generation_config.json``):

- architecture ``LlamaForCausalLM``: 2 layers, hidden 256, 4 attention heads and 4 KV heads
  (head_dim 64: vLLM's CPU attention rejects head_dim 16), intermediate 512, vocab = the tokenizer's
  size, ``max_position_embeddings`` 2048, float32 weights drawn with a fixed torch seed;
- a byte-level BPE tokenizer trained locally with ``tokenizers`` on generated text (no download),
  saved as a ``PreTrainedTokenizerFast`` with ``<s>``/``</s>``/``<unk>``/``<pad>`` specials.

Deterministic: the same ``seed`` writes byte-identical weights and tokenizer. Outputs are gibberish;
benchmark it with fixed output lengths (``ignore_eos``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from profiles.errors import InputError

#: Config of the tiny model (see module docstring). ``vocab_size`` is set from the tokenizer.
TINY_LLAMA_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}

#: A ChatML-like template: one line per message, then the assistant prefix when asked to generate.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<s>' + message['role'] + '\\n' + message['content'] + '</s>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<s>assistant\\n' }}{% endif %}"
)

_WORDS = (
    "engine latency token batch cache tensor layer kernel memory graph model server request stream "
    "throughput queue decode prefill attention head block page scheduler sample prompt output input "
    "the a of to and in is for on with as by at from that this it be are was were can will not"
).split()


def _corpus(seed: int, n_lines: int = 4000) -> list[str]:
    """Generated training text for the tokenizer: words, numbers and punctuation, seeded."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 16))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 10_000)))
        lines.append(" ".join(words) + rng.choice([".", "?", "!", ","]))
    return lines


def write_tiny_llm(out_dir: str | Path, *, seed: int = 0, vocab_size: int = 1024) -> Path:
    """Write the tiny Llama into ``out_dir`` (created; must be empty or absent) and return its path.

    Args:
        out_dir: target folder.
        seed: seeds the tokenizer corpus and ``torch.manual_seed`` for the weights.
        vocab_size: BPE vocabulary target (256..32000); the model's ``vocab_size`` equals the trained
            tokenizer's length.

    Raises:
        InputError: ``out_dir`` exists and is not an empty folder, or ``vocab_size`` out of range.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"OUT_DIR {out}: exists and is not an empty folder")
    if not 256 <= vocab_size <= 32_000:
        raise InputError(f"--vocab-size {vocab_size}: must be within 256..32000")
    out.mkdir(parents=True, exist_ok=True)

    fast = write_tokenizer(out, seed=seed, vocab_size=vocab_size)

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        **TINY_LLAMA_CONFIG,
        vocab_size=len(fast),
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    (out / "enginescope_tiny_llm.json").write_text(json.dumps({"seed": seed, "vocab_size": len(fast),
                                                              "generator": "enginescope tiny-llm"}, indent=2))
    return out


def write_tokenizer(out_dir: str | Path, *, seed: int = 0, vocab_size: int = 1024) -> Any:
    """Train the tiny model's byte-level BPE tokenizer on generated text and save it into ``out_dir``
    (``tokenizer.json``, ``tokenizer_config.json`` with :data:`CHAT_TEMPLATE`); return the
    ``PreTrainedTokenizerFast``. Deterministic for a ``seed``. No torch import (fast, for tests)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)

    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=TINY_LLAMA_CONFIG["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast
