"""Prompt sets for the load generator: synthetic prompts of exact token length, and ShareGPT-style files.

Token counts use the served model's tokenizer (a ``transformers`` tokenizer object, or a local folder /
hub name given to :func:`load_tokenizer`). An input length counts tokens the way ``/v1/completions``
does: ``len(tokenizer(text).input_ids)``, special tokens (e.g. BOS) included. Chat requests add the chat
template's tokens on the server side; the server's ``usage.prompt_tokens`` is recorded beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from profiles.errors import InputError, ParseError

#: Re-encode/adjust rounds per random draw, and draws per prompt, before giving up on an exact length.
ADJUST_ROUNDS = 12
DRAWS = 8
#: Longest prompt a dataset entry may hold, in tokens (the bound of ``--input-len`` too).
MAX_PROMPT_TOKENS = 1_000_000
#: Longer prompt texts are refused without tokenizing them (no tokenizer makes a token of under 1/32 char).
MAX_PROMPT_CHARS = 32 * MAX_PROMPT_TOKENS


def load_tokenizer(name_or_path: str | Path) -> Any:
    """``transformers.AutoTokenizer`` from a local folder or hub name (imported lazily).

    Raises:
        InputError: the tokenizer cannot be loaded (message names ``name_or_path``).
    """
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        raise InputError(f"transformers is not installed; cannot load tokenizer {name_or_path}") from exc
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load tokenizer {name_or_path}: {exc}") from exc


def load_fast_tokenizer(name_or_path: str | Path) -> Any:
    """The client tokenizer for counting: for a local folder with ``tokenizer.json``,
    ``PreTrainedTokenizerFast`` directly (``AutoTokenizer`` first imports the model's config class, which
    pulls in torch.distributed: ~15 s on a loaded 2-core machine); otherwise :func:`load_tokenizer`.

    Raises:
        InputError: the tokenizer cannot be loaded (message names ``name_or_path``).
    """
    if (Path(name_or_path) / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        try:
            return PreTrainedTokenizerFast.from_pretrained(str(name_or_path))
        except (OSError, ValueError) as exc:
            raise InputError(f"tokenizer {name_or_path}: cannot load tokenizer.json: {exc}") from None
    return load_tokenizer(name_or_path)


def _tok(tokenizer: Any) -> Any:
    return load_tokenizer(tokenizer) if isinstance(tokenizer, str | Path) else tokenizer


def count_tokens(tokenizer: Any, text: str, *, special: bool = True) -> int:
    """Tokens in ``text`` (with special tokens, as a completions server counts a prompt, when ``special``)."""
    return len(tokenizer(text, add_special_tokens=special)["input_ids"])


def _output_lengths(output_len: int | tuple[int, int], n: int, rng: np.random.Generator) -> list[int]:
    if isinstance(output_len, tuple | list):
        if len(output_len) != 2:
            raise InputError(f"output_len range must be (low, high), got {output_len!r}")
        lo, hi = int(output_len[0]), int(output_len[1])
        if not 1 <= lo <= hi:
            raise InputError(f"output_len range must satisfy 1 <= low <= high, got {output_len!r}")
        return rng.integers(lo, hi + 1, size=n).tolist()
    if int(output_len) < 1:
        raise InputError(f"output_len must be >= 1, got {output_len!r}")
    return [int(output_len)] * n


def synthetic_prompts(tokenizer: Any, n: int, input_len: int, output_len: int | tuple[int, int], seed: int) -> list[Any]:
    """``n`` random prompts of exactly ``input_len`` tokens (served model's tokenizer), seeded.

    Method (as vLLM's random dataset): draw ``input_len - specials`` random non-special token ids, decode
    to text, re-encode, and truncate or top up with new random ids until the re-encoded text has exactly
    ``input_len`` tokens (special tokens included). ``output_len``: a fixed count or an inclusive
    ``(low, high)`` range drawn uniformly per prompt.

    Returns:
        list of :class:`engine_runner.loadgen.Prompt` with ``input_tokens == input_len``.

    Raises:
        InputError: ``n`` < 1, ``input_len`` not above the tokenizer's special-token count, a bad
            ``output_len``, or no exact-length text found (names ``input_len``).
    """
    from engine_runner.loadgen import Prompt

    tok = _tok(tokenizer)
    if n < 1:
        raise InputError(f"number of prompts must be >= 1, got {n}")
    specials = count_tokens(tok, "")
    body_len = input_len - specials
    if body_len < 1:
        raise InputError(f"input_len {input_len} must exceed the tokenizer's {specials} special tokens")
    rng = np.random.default_rng(seed)
    special_ids = set(getattr(tok, "all_special_ids", []) or [])
    vocab = np.array([i for i in range(len(tok)) if i not in special_ids], dtype=np.int64)
    if vocab.size == 0:
        raise InputError("the tokenizer has no non-special tokens")
    outs = _output_lengths(output_len, n, rng)
    prompts = []
    stable: np.ndarray | None = None
    for i in range(n):
        text = _exact_text(tok, rng, vocab if stable is None else stable, body_len, input_len)
        if text is None and stable is None:
            # Byte-level vocabularies hold tokens that are not valid UTF-8 alone (a tiny tokenizer is
            # mostly such tokens): random draws of them decode to replacement characters that re-encode
            # to other lengths. Retry with the tokens that survive decode -> encode on their own.
            stable = _round_trip_vocab(tok, vocab)
            text = _exact_text(tok, rng, stable, body_len, input_len) if stable.size else None
        if text is None:
            raise InputError(
                f"could not build a prompt of exactly input_len={input_len} tokens with this tokenizer "
                f"after {DRAWS} draws"
            )
        prompts.append(Prompt(text=text, input_tokens=input_len, output_tokens=outs[i]))
    return prompts


def _round_trip_vocab(tok: Any, vocab: np.ndarray) -> np.ndarray:
    """The ids of ``vocab`` whose decoded text re-encodes to exactly that one id."""
    keep = [int(i) for i in vocab if tok(tok.decode([int(i)]), add_special_tokens=False)["input_ids"] == [int(i)]]
    return np.array(keep, dtype=np.int64)


def _exact_text(tok: Any, rng: np.random.Generator, vocab: np.ndarray, body_len: int, input_len: int) -> str | None:
    for _ in range(DRAWS):
        ids = rng.choice(vocab, size=body_len).tolist()
        for _ in range(ADJUST_ROUNDS):
            text = tok.decode(ids, skip_special_tokens=True)
            total = count_tokens(tok, text)
            if total == input_len:
                return text
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if total > input_len:
                ids = ids[: len(ids) - (total - input_len)]
            else:
                ids = ids + rng.choice(vocab, size=input_len - total).tolist()
    return None


def _turn_text(turn: Any) -> tuple[str | None, str | None]:
    """(role, text) of a ShareGPT turn (``from``/``value``) or an OpenAI message (``role``/``content``)."""
    if not isinstance(turn, dict):
        return None, None
    role = turn.get("from", turn.get("role"))
    text = turn.get("value", turn.get("content"))
    return (str(role) if role is not None else None), (text if isinstance(text, str) else None)


def _entry(obj: Any) -> tuple[str | list[dict[str, Any]], str | None, int | None] | None:
    """(prompt, reference completion, explicit output tokens) of one dataset entry, or None if unusable."""
    if not isinstance(obj, dict):
        return None
    conv = obj.get("conversations", obj.get("conversation"))
    if isinstance(conv, list):
        prompt = completion = None
        for turn in conv:
            role, text = _turn_text(turn)
            if text is None:
                continue
            if prompt is None and role in ("human", "user"):
                prompt = text
            elif prompt is not None and role in ("gpt", "assistant", "bot", "chatgpt"):
                completion = text
                break
        return (prompt, completion, None) if prompt else None
    explicit = obj.get("output_tokens", obj.get("output_len", obj.get("max_tokens")))
    explicit = int(explicit) if isinstance(explicit, int | float) and explicit > 0 else None
    if isinstance(obj.get("messages"), list) and obj["messages"]:
        msgs = [m for m in obj["messages"] if isinstance(m, dict) and "role" in m and "content" in m]
        return (msgs, None, explicit) if msgs else None
    prompt = obj.get("prompt", obj.get("text", obj.get("input")))
    if isinstance(prompt, str) and prompt:
        comp = obj.get("completion", obj.get("output", obj.get("response")))
        return prompt, comp if isinstance(comp, str) else None, explicit
    return None


def _read_entries(path: Path) -> list[Any]:
    from profiles.llm_preflight import read_dataset_entries as _read

    return _read(path)


def read_dataset_entries(path: str | Path) -> list[Any]:
    """The raw entries of a JSON-array or JSONL dataset file (no tokenizer needed), for up-front checks.

    Raises:
        InputError: missing/unreadable file; ParseError: invalid JSON (names the file, and the line for JSONL).
    """
    return _read_entries(Path(path))


def load_dataset_file(path: str | Path, tokenizer: Any, n: int, seed: int, output_len: int | None = None,
                      max_input_tokens: int | None = None) -> list[Any]:
    """``n`` prompts from a ShareGPT-style JSON array or a JSONL file, sampled with a seeded shuffle.

    Accepted entries: ShareGPT ``{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}``
    (first human turn = prompt, the reply after it = reference completion); ``{"prompt": ..., "completion"?,
    "output_tokens"?}``; ``{"messages": [...], "output_tokens"?}`` (chat). Output length: ``output_len``
    when given, else the entry's ``output_tokens``/``output_len``/``max_tokens``, else the reference
    completion's token count (as vLLM's ShareGPT loader); entries with none of these, or with an output
    under 1 token, are skipped. Input length: the prompt's token count (messages: their contents joined
    by newlines). When fewer than ``n`` entries are usable, entries repeat (shuffled order, cycled).

    Entries with an empty prompt (0 tokens) are skipped like other unusable ones. A prompt over
    :data:`MAX_PROMPT_TOKENS` tokens, or over ``max_input_tokens`` (the served model's context, when known), is
    refused naming the file and the entry: a server would fail every request that draws it.

    Raises:
        InputError: missing/unreadable file or ``n`` < 1, a prompt too long (names file and entry);
            ParseError: invalid JSON (names file and line), or no usable entry in the file.
    """
    from engine_runner.loadgen import Prompt

    p = Path(path)
    if n < 1:
        raise InputError(f"number of prompts must be >= 1, got {n}")
    entries = _read_entries(p)
    tok = _tok(tokenizer)
    order = np.random.default_rng(seed).permutation(len(entries)).tolist()
    prompts: list[Prompt] = []
    for idx in order:
        e = _entry(entries[idx])
        if e is None:
            continue
        prompt, completion, explicit = e
        if output_len is not None:
            out = int(output_len)
        elif explicit is not None:
            out = explicit
        elif completion is not None:
            out = count_tokens(tok, completion, special=False)
        else:
            continue
        if out < 1:
            continue
        text = prompt if isinstance(prompt, str) else "\n".join(str(m["content"]) for m in prompt)
        limit = min(MAX_PROMPT_TOKENS, max_input_tokens or MAX_PROMPT_TOKENS)
        where = f"dataset file {p} entry {idx + 1}"
        if len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"{where}: the prompt has {len(text)} characters, more than {MAX_PROMPT_CHARS} "
                             f"(max {limit} tokens); shorten or drop it")
        n_tokens = count_tokens(tok, text)
        if n_tokens > limit:
            raise InputError(f"{where}: the prompt has {n_tokens} tokens, more than the max {limit}"
                             + (" (the served model's context)" if limit == max_input_tokens else "")
                             + "; shorten or drop it")
        prompts.append(Prompt(text=prompt, input_tokens=n_tokens, output_tokens=out))
        if len(prompts) == n:
            break
    if not prompts:
        raise ParseError(f"dataset file {p} has no usable entry (prompt plus an output length)")
    i = 0
    base = len(prompts)
    while len(prompts) < n:
        prompts.append(prompts[i % base])
        i += 1
    return prompts
