"""profiles.peer_results on vLLM's benchmark-client JSON (the real appended-results fixture)."""

import json
from pathlib import Path

import pytest

from profiles.errors import ParseError
from profiles.peer_results import normalize_vllm_bench, read_vllm_bench_file


def test_real_vllm_append_result_file(shared: Path) -> None:
    runs = read_vllm_bench_file(shared / "fixtures/llm_bench/vllm_benchmark_serving_results_llmd.jsonl")
    assert len(runs) == 9
    first = runs[0]
    # values as printed in the file's first line
    assert first["completed"] == 300 and first["request_rate"] == 10.0 and first["max_concurrency"] is None
    assert first["output_token_throughput_per_s"] == pytest.approx(2258.212337970085)
    assert first["ttft_ms"]["p50"] == pytest.approx(52.868896000063614)
    assert first["ttft_ms"]["p99"] == pytest.approx(98.69780922984769)
    assert first["tpot_ms"]["mean"] == pytest.approx(13.710971568239172)
    assert first["itl_ms"]["p99"] == pytest.approx(34.48662216016601)
    assert first["e2e_ms"]["p50"] is None  # this run did not ask for e2el percentiles


def test_single_object_and_errors(tmp_path: Path) -> None:
    obj = {"completed": 4, "failed": 0, "duration": 2.0, "output_throughput": 256.0, "median_ttft_ms": 17.3,
           "p99_ttft_ms": 20.0, "median_tpot_ms": 4.72, "request_rate": float("inf"), "max_concurrency": 1}
    p = tmp_path / "r.json"
    p.write_text(json.dumps(obj))
    (r,) = read_vllm_bench_file(p)
    assert r["request_rate"] is None and r["max_concurrency"] == 1.0 and r["tpot_ms"]["p50"] == 4.72
    with pytest.raises(ParseError, match="completed"):
        normalize_vllm_bench({"duration": 1})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"completed": 1, "duration": 1}\n{oops\n')
    with pytest.raises(ParseError, match=r"bad.jsonl:2"):
        read_vllm_bench_file(bad)
