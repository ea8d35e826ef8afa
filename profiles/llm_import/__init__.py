"""Parsers of the results other LLM benchmark tools write (pure: read one file, return records).

- :mod:`.vllm`: vLLM ``bench serve --save-result`` JSON / JSON Lines (``vllm-bench``).
- :mod:`.aiperf`: AIPerf and GenAI-Perf profile exports (JSON, CSV, AIPerf per-request JSONL).
- :mod:`.guidellm`: GuideLLM ``benchmarks.json``.
- :mod:`.llmperf`: LLMPerf summary and individual-responses JSON.
- :mod:`.model_analyzer`: Triton Model Analyzer ``metrics-model-{inference,gpu}.csv``.

:func:`detect` sniffs the content (keys, CSV headers), not the file name; :func:`parse_file` returns an
:class:`~profiles.llm_import.records.ImportedFile`. Units, definitions and their sources are in each
module's docstring and in docs/llm.md "Importing other tools' results".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.llm_import import aiperf, guidellm, llmperf, model_analyzer, vllm
from profiles.llm_import.records import ImportedFile, ImportedPoint, ImportedRun, Stat

__all__ = ["SUFFIXES", "TOOLS", "ImportedFile", "ImportedPoint", "ImportedRun", "Stat", "detect", "parse_file"]

#: every tool this package reads (``runs.source`` is ``import:<tool>``)
TOOLS = ("vllm-bench", "aiperf", "genai-perf", "guidellm", "llmperf", "model-analyzer")
#: file endings these tools write (the dashboard's upload check)
SUFFIXES = (".json", ".jsonl", ".csv")
#: bytes read to sniff a file
SNIFF_BYTES = 1 << 16
#: strings whose presence in a file's head marks it as one of ours even when its JSON is broken
_MARKERS = ('"mean_ttft_ms"', '"median_ttft_ms"', '"guidellm_version"', '"results_ttft_s', '"ttft_s"',
            '"time_to_first_token', '"inter_token_latency"', '"request_throughput"', '"inter_chunk_latency"')


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from None


def _json_lines(text: str, path: Path) -> list[Any]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ParseError(f"{path}:{i}: invalid JSON at column {exc.colno} ({exc.msg})") from None
    return out


def _classify(doc: Any) -> str | None:
    if vllm.is_vllm_result(doc):
        return "vllm-bench"
    if guidellm.is_guidellm(doc):
        return "guidellm"
    if llmperf.is_summary(doc) or llmperf.is_individual(doc):
        return "llmperf"
    if aiperf.is_profile_json(doc):
        return aiperf.tool_of_json(doc)
    return None


def _load(text: str, path: Path) -> tuple[str | None, str, Any]:
    """(tool or None, format, parsed content). Raises ParseError for a broken file that is clearly ours."""
    head = text.lstrip("\ufeff")[:SNIFF_BYTES]
    stripped = head.lstrip()
    if not stripped:
        return None, "empty", None
    if stripped[0] in "{[":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if len(lines) > 1 and all(ln.lstrip().startswith("{") for ln in lines[:3]):
                try:
                    objs = _json_lines(text, path)
                except ParseError:
                    if any(m in head for m in _MARKERS) or str(path).lower().endswith(".jsonl"):
                        raise
                    return None, "json", None
                if objs and all(vllm.is_vllm_result(o) for o in objs):
                    return "vllm-bench", "jsonl", objs
                if objs and aiperf.is_request_line(objs[0]):
                    return "aiperf", "per_request_jsonl", objs
                return None, "jsonl", objs
            if any(m in head for m in _MARKERS) or str(path).lower().endswith(".jsonl"):
                raise ParseError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
            return None, "json", None
        if isinstance(doc, dict) and aiperf.is_request_line(doc):
            return "aiperf", "per_request_jsonl", [doc]
        tool = _classify(doc)
        fmt = "individual" if llmperf.is_individual(doc) else "json"
        return tool, fmt, doc
    if model_analyzer.is_model_analyzer_csv(head):
        return "model-analyzer", "csv", text
    if aiperf.is_profile_csv(head):
        return ("aiperf" if ",p1," in head.splitlines()[0].replace(" ", "") else "genai-perf"), "csv", text
    return None, "text", None


def detect(path: Path) -> str | None:
    """The tool that wrote ``path`` (one of :data:`TOOLS`), or ``None`` when it is none of them.

    Raises:
        ParseError: the file is unreadable, or is clearly one of these tools' files but its JSON is broken
            (names the line and column).
    """
    return _load(_read(path), Path(path))[0]


def parse_file(path: Path) -> ImportedFile:
    """Parse one result file of any supported tool.

    Raises:
        ParseError: not a supported file, or a bad value (the message names the file and the key/line/column).
    """
    path = Path(path)
    text = _read(path)
    tool, fmt, doc = _load(text, path)
    if tool is None:
        raise ParseError(f"{path}: not a result file of {', '.join(TOOLS)} (no known keys or CSV header)")
    runs: list[ImportedRun]
    if tool == "vllm-bench":
        runs = vllm.parse_objects(doc if fmt == "jsonl" else [doc], path)
    elif tool in ("aiperf", "genai-perf"):
        if fmt == "per_request_jsonl":
            runs = [aiperf.parse_jsonl(doc, path)]
        elif fmt == "csv":
            runs = [aiperf.parse_csv(doc, path)]
        else:
            runs = [aiperf.parse_json(doc, path)]
    elif tool == "guidellm":
        runs = [guidellm.parse(doc, path)]
    elif tool == "llmperf":
        runs = [llmperf.parse_individual(doc, path) if fmt == "individual" else llmperf.parse_summary(doc, path)]
    else:
        runs = model_analyzer.parse(doc, path)
    if not runs or not any(r.points for r in runs):
        raise ParseError(f"{path}: no results in this {tool} file")
    return ImportedFile(path=path, tool=tool, format=fmt, runs=runs)
