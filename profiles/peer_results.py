"""Results of peer LLM-benchmark clients, normalised so they sit beside EngineScope's own numbers.

Only vLLM's benchmark client is read today: the JSON that ``vllm bench serve --save-result`` (and the
older ``benchmarks/benchmark_serving.py --save-result [--append-result]``) writes, one JSON object per
run (a ``.jsonl`` when appended). Its metric definitions are vLLM's: TTFT and E2E from request send,
TPOT = (E2E - TTFT) / (output_tokens - 1) per request, ITL per chunk gap; percentiles by numpy's
linear interpolation. Throughputs count successful requests only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from profiles.errors import ParseError

#: metric prefix in vLLM's result JSON -> EngineScope's metric name
_VLLM_METRICS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": "itl_ms", "e2el": "e2e_ms"}


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def normalize_vllm_bench(result: dict[str, Any], *, source: str = "vllm bench serve") -> dict[str, Any]:
    """Normalise one vLLM benchmark-client result object.

    Args:
        result: the parsed JSON object (keys such as ``completed``, ``duration``, ``output_throughput``,
            ``median_ttft_ms``, ``p99_tpot_ms``).

    Returns:
        ``{"tool": "vllm-bench", "source", "completed", "failed", "duration_s", "num_prompts",
        "max_concurrency", "request_rate", "request_throughput_per_s", "output_token_throughput_per_s",
        "total_token_throughput_per_s", "ttft_ms"|"tpot_ms"|"itl_ms"|"e2e_ms": {"mean", "p50", "std",
        "p90", "p95", "p99"} (each None when vLLM did not print it)}``. ``request_rate`` is None for
        ``inf``.

    Raises:
        ParseError: ``result`` is not a vLLM result object (no ``completed``/``duration``).
    """
    if not isinstance(result, dict) or "completed" not in result or "duration" not in result:
        raise ParseError(f"{source}: not a vLLM benchmark result (needs 'completed' and 'duration')")
    out: dict[str, Any] = {
        "tool": "vllm-bench",
        "source": source,
        "completed": int(result["completed"]),
        "failed": int(result["failed"]) if _num(result.get("failed")) is not None else None,
        "duration_s": _num(result.get("duration")),
        "num_prompts": int(result["num_prompts"]) if _num(result.get("num_prompts")) is not None else None,
        "max_concurrency": _num(result.get("max_concurrency")),
        "request_rate": _num(result.get("request_rate")),
        "request_throughput_per_s": _num(result.get("request_throughput")),
        "output_token_throughput_per_s": _num(result.get("output_throughput")),
        "total_token_throughput_per_s": _num(result.get("total_token_throughput")),
    }
    for prefix, name in _VLLM_METRICS.items():
        out[name] = {
            "mean": _num(result.get(f"mean_{prefix}_ms")),
            "std": _num(result.get(f"std_{prefix}_ms")),
            "p50": _num(result.get(f"median_{prefix}_ms", result.get(f"p50_{prefix}_ms"))),
            "p90": _num(result.get(f"p90_{prefix}_ms")),
            "p95": _num(result.get(f"p95_{prefix}_ms")),
            "p99": _num(result.get(f"p99_{prefix}_ms")),
        }
    return out


def read_vllm_bench_file(path: Path) -> list[dict[str, Any]]:
    """Read a vLLM ``--save-result`` file (one JSON object, or JSON Lines when ``--append-result``).

    Raises:
        ParseError: unreadable file, invalid JSON (names the line), or an object that is not a result.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read vLLM benchmark result ({exc.strerror})") from None
    text = text.strip()
    if not text:
        raise ParseError(f"{path}: empty vLLM benchmark result file")
    try:
        objs = [json.loads(text)]
    except json.JSONDecodeError:
        objs = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                objs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ParseError(f"{path}:{i}: invalid JSON in vLLM benchmark result ({exc.msg})") from None
    return [normalize_vllm_bench(o, source=f"{path}#{i}") for i, o in enumerate(objs)]
