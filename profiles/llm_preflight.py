"""Pre-flight of an LLM serving benchmark: the checks ``enginescope serve-bench``, the dashboard's LLM
page and the ``llm_serve`` job all run on a spec before anything is queued or launched
(:func:`plan`, the LLM counterpart of ``engine_runner.jobs.model_bench.plan``).

It lives in ``profiles`` because the dashboard may import only ``db`` and ``profiles``. The checks are
local and cheap: files and folders exist, a local tokenizer folder holds tokenizer files, a local
model folder (launched by vLLM) holds ``config.json``, the dataset file parses as JSON or JSONL, and,
only when no tokenizer is local, one TCP connect to the Hugging Face hub (:func:`hub_reachable`, the
one network call in ``profiles``; without it transformers retries for ~50 s and then prints a confusing
message). Each problem is a :class:`PreflightIssue` that names the spec field, so the CLI can say
``--tokenizer`` and the page its form label.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from profiles.errors import InputError, ParseError
from profiles.llm_spec import ServeBenchSpec
from profiles.specs import validate_spec

#: Seconds the hub probe waits for a TCP connection.
HUB_PROBE_TIMEOUT_S = 3.0
#: Files of which a local tokenizer folder must hold at least one (fast tokenizer, config, SentencePiece
#: or BPE/WordPiece vocabularies).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model", "vocab.json",
                   "vocab.txt", "tekken.json")
#: The CLI flag of each checked spec field.
CLI_FLAGS: dict[str, str] = {"model": "--model", "tokenizer": "--tokenizer", "dataset": "--dataset",
                             "endpoint": "--endpoint"}


@dataclass(frozen=True)
class PreflightIssue:
    """One problem found by :func:`preflight`.

    Attributes:
        field: the ``ServeBenchSpec`` field (``model``, ``tokenizer``, ``dataset``).
        value: the value given.
        problem: what is wrong, e.g. ``"no such file or folder"``.
    """

    field: str
    value: str
    problem: str

    def describe(self, label: str | None = None) -> str:
        """``"LABEL VALUE: PROBLEM"``; ``label`` defaults to the CLI flag (``--tokenizer``)."""
        return f"{label or CLI_FLAGS.get(self.field, self.field)} {self.value}: {self.problem}"


class PreflightError(InputError):
    """The pre-flight refused the spec; ``issues`` has every problem found (the message joins them with
    CLI flags as labels)."""

    def __init__(self, issues: list[PreflightIssue], labels: Mapping[str, str] | None = None) -> None:
        self.issues = list(issues)
        labels = labels or {}
        super().__init__("; ".join(i.describe(labels.get(i.field)) for i in self.issues))


def path_like(value: str) -> bool:
    """True when ``value`` reads as a filesystem path rather than a Hugging Face hub id: it starts with
    ``/``, ``.`` or ``~``, or contains ``os.sep`` where that is not ``/`` (on POSIX a hub id such as
    ``Qwen/Qwen3-0.6B`` contains ``/``, so ``/`` inside a name does not make it a path)."""
    return value.startswith(("/", ".", "~")) or (os.sep != "/" and os.sep in value)


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face hub (``$HF_ENDPOINT``, default huggingface.co:443)
    opens within ``timeout_s`` seconds. With an HTTP(S) proxy configured the probe cannot tell, so it
    answers True (the hub client then behaves as it would without the probe)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return True
    u = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((u.hostname or "huggingface.co", u.port or (80 if u.scheme == "http" else 443)),
                                 timeout=timeout_s).close()
    except OSError:
        return False
    return True


def hub_cached(repo_id: str) -> bool:
    """Whether the local Hugging Face cache already holds ``repo_id``'s tokenizer files."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return any(isinstance(try_to_load_from_cache(repo_id, f), str)
                   for f in ("tokenizer.json", "tokenizer_config.json"))
    except (ImportError, ValueError):  # not a valid repo id: the loader reports it
        return False


def read_dataset_entries(path: str | Path) -> list[Any]:
    """The raw entries of a dataset file: a JSON array, else JSON Lines (one object per non-empty line).

    Raises:
        InputError: the file is missing or unreadable; ParseError: invalid JSON (names the file, and the
            line for JSONL).
    """
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"dataset file {p} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read dataset file {p}: {exc}") from exc
    if raw.lstrip().startswith("["):
        try:
            return list(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise ParseError(f"dataset file {p} is not valid JSON: {exc}") from exc
    entries = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ParseError(f"dataset file {p} line {lineno} is not valid JSON: {exc}") from exc
    return entries


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def preflight(spec: ServeBenchSpec) -> list[PreflightIssue]:
    """Every problem of a validated spec's local inputs (empty list: go ahead).

    - ``tokenizer`` and ``model`` (when vLLM is launched here, or when the model doubles as the
      tokenizer) that look like a path (:func:`path_like`) but do not exist;
    - a local tokenizer folder (``tokenizer``, else a local ``model`` folder) without any of
      :data:`TOKENIZER_FILES`, or a tokenizer path that is a file (a ``.gguf`` excepted);
    - a local ``model`` folder launched by vLLM without ``config.json`` (or Mistral's ``params.json``);
    - ``dataset`` missing or not valid JSON/JSONL (:func:`read_dataset_entries`);
    - no local tokenizer, ``HF_HUB_OFFLINE`` unset, not in the local hub cache, and the hub does not
      answer a TCP connect within :data:`HUB_PROBE_TIMEOUT_S` (:func:`hub_reachable`). Users with
      network access are unaffected: the probe succeeds and the hub id is used as before.
    """
    issues: list[PreflightIssue] = []
    checks = [("tokenizer", spec.tokenizer)]
    if spec.engine != "endpoint" or not spec.tokenizer:
        checks.append(("model", spec.model))
    for name, value in checks:
        if value and path_like(value) and not Path(value).expanduser().exists():
            extra = " (it is also the client tokenizer; give a tokenizer folder)" \
                if name == "model" and spec.engine == "endpoint" else ""
            issues.append(PreflightIssue(name, value, f"no such file or folder{extra}"))
    if issues:
        return issues
    tok_field = "tokenizer" if spec.tokenizer else "model"
    tok = Path(spec.tokenizer or spec.model).expanduser()
    if tok.is_file() and tok.suffix != ".gguf":
        issues.append(PreflightIssue(tok_field, str(spec.tokenizer or spec.model),
                                     "is a file; a tokenizer is a folder (with tokenizer.json, ...) or a hub id"))
    elif tok.is_dir() and not any((tok / f).is_file() for f in TOKENIZER_FILES):
        issues.append(PreflightIssue(tok_field, str(spec.tokenizer or spec.model),
                                     f"the folder has no tokenizer files (none of {', '.join(TOKENIZER_FILES[:3])}, ...)"))
    model = Path(spec.model).expanduser()
    if spec.engine == "vllm" and model.is_dir() and not any((model / f).is_file() for f in ("config.json", "params.json")):
        issues.append(PreflightIssue("model", spec.model, "the folder has no config.json: not a model vLLM can load"))
    if spec.dataset:
        try:
            read_dataset_entries(Path(spec.dataset).expanduser())
        except InputError as exc:
            issues.append(PreflightIssue("dataset", spec.dataset, str(exc)))
    name = spec.tokenizer or spec.model
    if not (tok.is_dir() or path_like(name) or _offline() or hub_cached(name) or hub_reachable()):
        issues.append(PreflightIssue(
            tok_field, name, f"not a local folder, and the Hugging Face hub did not answer within "
                             f"{HUB_PROBE_TIMEOUT_S:g} s; pass --tokenizer DIR (a local tokenizer folder; no network "
                             "access to the Hugging Face hub from here?)"))
    return issues


def plan(spec_data: Mapping[str, Any] | ServeBenchSpec, labels: Mapping[str, str] | None = None) -> ServeBenchSpec:
    """Validate an ``llm_serve`` spec and run :func:`preflight`: what ``serve-bench``, the LLM page and
    the job run before anything is queued or launched.

    Args:
        spec_data: the spec (a dict as stored in ``jobs.spec``, or a ``ServeBenchSpec``).
        labels: how to name fields in error messages (default: CLI flags for the pre-flight's fields, field
            names for the spec's; the page passes its form labels).

    Returns:
        The validated :class:`ServeBenchSpec`.

    Raises:
        InputError: a spec field is invalid (names the field); PreflightError (an InputError): the
            pre-flight found problems (``.issues``; the message names each field).
    """
    spec = spec_data if isinstance(spec_data, ServeBenchSpec) else validate_spec(ServeBenchSpec, dict(spec_data), labels)
    issues = preflight(spec)
    if issues:
        raise PreflightError(issues, labels)
    return spec
