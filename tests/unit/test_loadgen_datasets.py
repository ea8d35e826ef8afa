"""Unit tests of loadgen datasets with a real BPE tokenizer trained here (``tokenizers``), wrapped as a
``transformers`` fast tokenizer with a BOS token, like a served model's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine_runner.loadgen import load_dataset_file, synthetic_prompts
from engine_runner.loadgen.datasets import count_tokens, load_tokenizer
from profiles.errors import InputError, ParseError

CORPUS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
    "Inference engines trade latency for throughput; batching and the KV cache matter most.",
    "Streaming responses carry tokens in chunks; time to first token is what users feel.",
    "Numbers like 12345 and symbols like #, $, % and unicode like café or naïve appear too.",
] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    folder = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(folder)
    return load_tokenizer(folder)  # the served model's tokenizer, loaded from a local folder


@pytest.mark.parametrize("input_len", [2, 17, 128])
def test_synthetic_prompts_have_exact_length(tok, input_len: int) -> None:  # noqa: ANN001
    ps = synthetic_prompts(tok, 12, input_len, 32, seed=5)
    assert len(ps) == 12
    for p in ps:
        assert count_tokens(tok, p.text) == input_len == p.input_tokens  # BOS included
        assert p.output_tokens == 32
    again = synthetic_prompts(tok, 12, input_len, 32, seed=5)
    assert [p.text for p in again] == [p.text for p in ps]  # seeded


def test_synthetic_output_range(tok) -> None:  # noqa: ANN001
    outs = [p.output_tokens for p in synthetic_prompts(tok, 200, 8, (4, 9), seed=1)]
    assert min(outs) == 4 and max(outs) == 9


def test_synthetic_bad_arguments(tok) -> None:  # noqa: ANN001
    with pytest.raises(InputError, match="special tokens"):
        synthetic_prompts(tok, 1, 1, 4, seed=0)
    with pytest.raises(InputError, match="output_len"):
        synthetic_prompts(tok, 1, 8, (5, 2), seed=0)
    with pytest.raises(InputError, match="cannot load tokenizer"):
        load_tokenizer("/nonexistent/tokenizer/dir")


def test_sharegpt_json(tok, tmp_path: Path) -> None:  # noqa: ANN001
    data = [
        {"id": "a", "conversations": [{"from": "human", "value": "Tell me about foxes."},
                                      {"from": "gpt", "value": "Foxes are quick and brown."}]},
        {"id": "b", "conversations": [{"from": "human", "value": "only a question"}]},  # no reply: skipped
        {"id": "c", "conversations": [{"from": "system", "value": "be brief"},
                                      {"from": "human", "value": "Why cache keys?"},
                                      {"from": "gpt", "value": "To reuse attention state."}]},
    ]
    f = tmp_path / "sharegpt.json"
    f.write_text(json.dumps(data))
    ps = load_dataset_file(f, tok, n=2, seed=0)
    by_text = {p.text: p for p in ps}
    assert set(by_text) == {"Tell me about foxes.", "Why cache keys?"}
    p = by_text["Tell me about foxes."]
    assert p.input_tokens == count_tokens(tok, "Tell me about foxes.")
    assert p.output_tokens == count_tokens(tok, "Foxes are quick and brown.", special=False)
    # a fixed output length overrides the reference reply; fewer usable entries than n -> they repeat
    ps = load_dataset_file(f, tok, n=5, seed=0, output_len=7)
    assert len(ps) == 5 and {p.output_tokens for p in ps} == {7}


def test_jsonl_prompts_and_messages(tok, tmp_path: Path) -> None:  # noqa: ANN001
    f = tmp_path / "p.jsonl"
    f.write_text(
        json.dumps({"prompt": "hello there", "output_tokens": 5}) + "\n\n"
        + json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}) + "\n"
    )
    ps = sorted(load_dataset_file(f, tok, n=2, seed=1), key=lambda p: p.output_tokens)
    assert ps[0].text == [{"role": "user", "content": "hi"}] and ps[0].output_tokens == 3
    assert ps[1].text == "hello there" and ps[1].input_tokens == count_tokens(tok, "hello there")


def test_dataset_errors_name_file_and_line(tok, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(InputError, match="does not exist"):
        load_dataset_file(tmp_path / "missing.json", tok, 1, 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "output_tokens": 2}\n{oops\n')
    with pytest.raises(ParseError, match=r"bad.jsonl line 2"):
        load_dataset_file(bad, tok, 1, 0)
    useless = tmp_path / "u.json"
    useless.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(ParseError, match="no usable entry"):
        load_dataset_file(useless, tok, 1, 0)


def test_exact_length_with_a_byte_level_vocab_of_raw_byte_tokens(shared) -> None:  # type: ignore[no-untyped-def]
    """The 327-token tokenizer of the H200 recipe's model is mostly raw-byte tokens that are not valid
    UTF-8 alone; prompts must still come out at exactly input_len tokens."""
    from transformers import AutoTokenizer

    from engine_runner.loadgen import synthetic_prompts
    from engine_runner.loadgen.datasets import count_tokens

    tok = AutoTokenizer.from_pretrained(str(shared / "tools/vllm-on-h200/model"))
    prompts = synthetic_prompts(tok, 20, 128, 16, seed=3)
    assert {count_tokens(tok, p.text) for p in prompts} == {128}
