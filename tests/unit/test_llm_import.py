"""Parsers of other LLM benchmark tools' results (profiles.llm_import) on every real file in
../shared/fixtures/llm_bench and ../shared/fixtures/model_analyzer, each value checked against the raw file
read here independently (json / csv), with the unit the tool documents converted in the test:

- vLLM ``--save-result``: ms already (``*_ms`` keys), throughputs per second, ``duration`` s.
- AIPerf: each metric's own ``unit`` (``ms``, ``sec``, ``ns``, ``requests/sec``), CSV headers ``(ms)``/``(sec)``.
- GuideLLM 0.5: ``*_ms`` metrics in ms, ``request_latency`` in **s**, per-request timings epoch **s**.
- LLMPerf (v2, 2023-12): every ``*_s`` metric in **s**; completed requests per **minute**.
- Model Analyzer: latency columns in ms (header), memory in MB (10^6 bytes), power W, utilisation %.

Plus files written here for what the fixtures lack: vLLM 0.4's old key spellings (``request_inthroughput``,
``input_throughput``, no ``failed``) and the newer ``vllm bench serve`` keys (``failed``, ``e2el``,
``--save-detailed`` lists, ``p99.9``), a GenAI-Perf ``profile_export_genai_perf.json`` (one metric in ns),
and bad / foreign files (a ParseError naming the file).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from profiles.errors import InputError, ParseError
from profiles.llm_import import detect, parse_file
from profiles.llm_import.report import build_report

LLM = "fixtures/llm_bench"
MA = "fixtures/model_analyzer"
VLLM = f"{LLM}/vllm_benchmark_serving_results_llmd.jsonl"
AIPERF_JSON = f"{LLM}/aiperf_profile_export_aiperf.json"
AIPERF_CSV = f"{LLM}/aiperf_profile_export_aiperf.csv"
AIPERF_JSONL = f"{LLM}/aiperf_profile_export.jsonl"
GUIDELLM = f"{LLM}/guidellm_Qwen3-4B-Thinking_tp4_fp8_sanity_benchmarks.json"
LLMPERF_SUMMARY = f"{LLM}/llmperf_summary_anyscale_7b.json"
LLMPERF_INDIVIDUAL = f"{LLM}/llmperf_individual_responses_anyscale_7b.json"
MA_INFERENCE = f"{MA}/model_analyzer_metrics-model-inference.csv"
MA_GPU = f"{MA}/model_analyzer_metrics-model-gpu.csv"
ALL = [VLLM, AIPERF_JSON, AIPERF_CSV, AIPERF_JSONL, GUIDELLM, LLMPERF_SUMMARY, LLMPERF_INDIVIDUAL, MA_INFERENCE, MA_GPU]

approx = pytest.approx


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def test_fixture_list_is_complete(shared: Path) -> None:
    """Every file in both fixture folders is covered by a test below (a new fixture fails here first)."""
    on_disk = {str(p.relative_to(shared)) for d in (LLM, MA) for p in (shared / d).iterdir() if p.is_file()}
    assert on_disk == set(ALL)


@pytest.mark.parametrize("rel,tool", [(VLLM, "vllm-bench"), (AIPERF_JSON, "aiperf"), (AIPERF_CSV, "aiperf"),
                                      (AIPERF_JSONL, "aiperf"), (GUIDELLM, "guidellm"), (LLMPERF_SUMMARY, "llmperf"),
                                      (LLMPERF_INDIVIDUAL, "llmperf"), (MA_INFERENCE, "model-analyzer"),
                                      (MA_GPU, "model-analyzer")])
def test_detect_by_content(shared: Path, tmp_path: Path, rel: str, tool: str) -> None:
    """Routing is by content: the same bytes under a meaningless name are still recognised."""
    assert detect(shared / rel) == tool
    renamed = tmp_path / ("data" + Path(rel).suffix)
    renamed.write_bytes((shared / rel).read_bytes())
    assert detect(renamed) == tool


# --------------------------------------------------------------------------------------------- vLLM


def test_vllm_jsonl_three_deployments(shared: Path) -> None:
    raw = _lines(shared / VLLM)
    f = parse_file(shared / VLLM)
    assert (f.tool, f.format) == ("vllm-bench", "jsonl")
    # 9 results: 3 deployments (configs) x 3 request rates -> 3 runs of 3 points
    assert [r.meta["deployment"] for r in f.runs] == ["no-features", "base", "kvcache"]
    assert sum(len(r.points) for r in f.runs) == len(raw) == 9
    for i, obj in enumerate(raw):
        run, pt = f.runs[i // 3], f.runs[i // 3].points[i % 3]
        assert run.tool == "vllm-bench" and run.engine == "openai-endpoint"
        assert run.tool_version is None and "vllm_version" not in obj  # the file does not say it
        assert run.model == obj["model_id"] == "meta-llama/Llama-3.2-3B-Instruct"
        assert run.meta["deployment"] == obj["deployment"]
        # level: request_rate (req/s), "inf" -> None (an infinite rate); max_concurrency null
        assert pt.mode == "request_rate"
        assert pt.level == (None if obj["request_rate"] == "inf" else obj["request_rate"])
        assert pt.duration_s == obj["duration"] and pt.completed == obj["completed"]
        assert pt.failed == obj["num_prompts"] - obj["completed"] == 0  # no 'failed' key in this version
        for theirs, ours in (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("itl", "itl_ms")):
            st = pt.stats[ours]  # vLLM writes ms: no conversion
            assert (st.unit, st.source_unit) == ("ms", "ms")
            assert st.mean == obj[f"mean_{theirs}_ms"] and st.p50 == obj[f"median_{theirs}_ms"]
            assert st.std == obj[f"std_{theirs}_ms"] and st.p99 == obj[f"p99_{theirs}_ms"]
            assert st.p90 is None  # not in the file (--metric-percentiles 99)
        assert "e2e_ms" not in pt.stats and not any("e2el" in k for k in obj)
        assert pt.scalars["request_throughput_per_s"][0] == obj["request_throughput"]
        assert pt.scalars["output_token_throughput_per_s"][0] == obj["output_throughput"]
        assert pt.scalars["total_token_throughput_per_s"][0] == obj["total_token_throughput"]
        assert pt.scalars["goodput_per_s"][0] is None and obj["request_goodput:"] is None
        rep = build_report(pt)
        assert rep["ttft_ms"]["source"] == "file" and rep["ttft_ms"]["p50"] == obj["median_ttft_ms"]
        assert rep["request_throughput_per_s"] == obj["request_throughput"]
    names = f.runs[0].metric_names
    assert names["itl_ms"] == "{mean,median,std,p..}_itl_ms" and names["goodput_per_s"] == "request_goodput:"
    assert names["request_throughput_per_s"] == "request_throughput"
    notes = " ".join(f.runs[0].notes)
    assert "pooled gap between consecutive streamed chunks" in notes  # vLLM's ITL vs ours
    assert "failed = num_prompts - completed" in notes


def _write(tmp_path: Path, name: str, content: Any, *, lines: bool = False) -> Path:
    p = tmp_path / name
    if lines:
        p.write_text("".join(json.dumps(o) + "\n" for o in content))
    else:
        p.write_text(json.dumps(content))
    return p


#: a result of vLLM 0.4's benchmarks/benchmark_serving.py --save-result: "request_inthroughput" (sic),
#: "input_throughput", only mean/median/p99 of TTFT and TPOT, no "failed", no ITL/E2EL
VLLM_04 = {"date": "20240410-101500", "backend": "vllm", "model_id": "facebook/opt-125m",
           "tokenizer_id": "facebook/opt-125m", "best_of": 1, "use_beam_search": False, "num_prompts": 100,
           "request_rate": 4.0, "duration": 30.5, "completed": 97, "total_input_tokens": 24000,
           "total_output_tokens": 12000, "request_inthroughput": 3.18, "input_throughput": 786.9,
           "output_throughput": 393.4, "mean_ttft_ms": 21.5, "median_ttft_ms": 20.25, "p99_ttft_ms": 48.0,
           "mean_tpot_ms": 6.5, "median_tpot_ms": 6.25, "p99_tpot_ms": 9.75}


def test_vllm_old_key_spellings(tmp_path: Path) -> None:
    f = parse_file(_write(tmp_path, "old.json", VLLM_04))
    (run,) = f.runs
    (pt,) = run.points
    assert (f.tool, f.format, pt.mode, pt.level) == ("vllm-bench", "json", "request_rate", 4.0)
    assert pt.scalars["request_throughput_per_s"] == (3.18, "req/s")  # from "request_inthroughput"
    assert run.metric_names["request_throughput_per_s"] == "request_inthroughput"
    assert pt.scalars["total_token_throughput_per_s"][0] == approx(786.9 + 393.4)
    assert run.metric_names["total_token_throughput_per_s"] == "input_throughput + output_throughput"
    assert pt.failed == 3 and pt.completed == 97
    assert (pt.stats["ttft_ms"].mean, pt.stats["ttft_ms"].p50, pt.stats["ttft_ms"].p99) == (21.5, 20.25, 48.0)
    assert pt.stats["tpot_ms"].p99 == 9.75 and "itl_ms" not in pt.stats and "e2e_ms" not in pt.stats
    # two old results appended (--append-result) at two rates form one run of two points
    two = parse_file(_write(tmp_path, "old.jsonl", [VLLM_04, VLLM_04 | {"request_rate": 8.0, "request_inthroughput": 6.1}],
                            lines=True))
    assert len(two.runs) == 1 and [p.level for p in two.runs[0].points] == [4.0, 8.0]
    assert two.runs[0].points[1].scalars["request_throughput_per_s"][0] == 6.1


#: ``vllm bench serve --save-result --save-detailed --max-concurrency 2 --metric-percentiles 50,99,99.9``
#: (vllm/benchmarks/serve.py): "failed", "request_goodput" without the colon, e2el, per-request lists in seconds
VLLM_NEW = {"date": "20251101-120000", "endpoint_type": "openai-chat", "backend": "openai-chat", "label": None,
            "model_id": "Qwen/Qwen3-0.6B", "tokenizer_id": "Qwen/Qwen3-0.6B", "num_prompts": 4,
            "request_rate": "inf", "burstiness": 1.0, "max_concurrency": 2, "duration": 1.5, "completed": 3,
            "failed": 1, "total_input_tokens": 30, "total_output_tokens": 9, "request_throughput": 2.0,
            "request_goodput": 1.5, "output_throughput": 6.0, "total_token_throughput": 26.0,
            "max_output_tokens_per_s": 8.0, "max_concurrent_requests": 2,
            "input_lens": [10, 10, 10, 10], "output_lens": [3, 3, 3, 0],
            "ttfts": [0.1, 0.2, 0.15, 0.0], "itls": [[0.01, 0.03], [0.02, 0.02], [0.05, 0.01], []],
            "generated_texts": ["a b c", "d e f", "g h i", ""], "errors": ["", "", "", "Bad Request"],
            "mean_ttft_ms": 150.0, "median_ttft_ms": 150.0, "std_ttft_ms": 40.8, "p50_ttft_ms": 150.0,
            "p99_ttft_ms": 199.0, "p99.9_ttft_ms": 199.9,
            "mean_e2el_ms": 180.0, "median_e2el_ms": 190.0, "std_e2el_ms": 36.0, "p99_e2el_ms": 239.0}


def test_vllm_new_keys_and_save_detailed(tmp_path: Path) -> None:
    (run,) = parse_file(_write(tmp_path, "new.json", VLLM_NEW)).runs
    (pt,) = run.points
    assert (pt.mode, pt.level) == ("concurrency", 2.0)  # rate inf + max_concurrency -> a concurrency level
    assert (pt.completed, pt.failed) == (3, 1)
    assert pt.scalars["goodput_per_s"] == (1.5, "req/s") and run.metric_names["goodput_per_s"] == "request_goodput"
    assert pt.stats["e2e_ms"].p99 == 239.0 and pt.stats["ttft_ms"].extra == {"p99.9": 199.9}
    # --save-detailed: our summaries from the per-request lists (seconds -> ms, numpy linear percentiles)
    assert len(pt.requests) == 4 and pt.requests[3].error_reason == "stream_error"
    rep = build_report(pt)
    ttft = np.array([0.1, 0.2, 0.15]) * 1e3
    e2e = np.array([0.1 + 0.04, 0.2 + 0.04, 0.15 + 0.06]) * 1e3
    assert rep["ttft_ms"]["source"] == "computed" and rep["ttft_ms"]["count"] == 3
    assert rep["ttft_ms"]["mean"] == approx(ttft.mean()) and rep["ttft_ms"]["p50"] == approx(np.percentile(ttft, 50))
    assert rep["e2e_ms"]["p99"] == approx(np.percentile(e2e, 99))
    assert rep["tpot_ms"]["mean"] == approx(((e2e - ttft) / 2).mean())
    assert rep["itl_ms"]["count"] == 6 and rep["itl_ms"]["p50"] == approx(np.percentile([10, 30, 20, 20, 50, 10], 50))
    assert rep["completed"] == 3 and rep["failed"] == 1 and rep["request_throughput_per_s"] == approx(3 / 1.5)
    assert rep["file_scalars"]["request_throughput_per_s"] == 2.0


# ------------------------------------------------------------------------------------ AIPerf / GenAI-Perf


def test_aiperf_json(shared: Path) -> None:
    doc = json.loads((shared / AIPERF_JSON).read_text())
    rec = doc["records"]
    f = parse_file(shared / AIPERF_JSON)
    (run,) = f.runs
    (pt,) = run.points
    assert (f.tool, f.format, run.tool) == ("aiperf", "json", "aiperf")
    assert run.tool_version is None and "aiperf_version" not in doc  # this AIPerf (<= 0.1) does not write it
    assert run.model == doc["input_config"]["endpoint"]["model_names"][0] == "openai/gpt-oss-20b"
    assert (pt.mode, pt.level, pt.level_known) == ("concurrency", doc["input_config"]["loadgen"]["concurrency"], True)
    assert run.meta["cli_command"].startswith("aiperf profile")
    for tag, ours in (("ttft", "ttft_ms"), ("request_latency", "e2e_ms"), ("inter_token_latency", "tpot_ms"),
                      ("inter_chunk_latency", "itl_chunk_ms"), ("ttst", "ttst_ms")):
        assert rec[tag]["unit"] == "ms"
        st = pt.stats[ours]
        assert (st.unit, st.source_unit, st.count) == ("ms", "ms", rec[tag]["count"])
        assert (st.mean, st.p50, st.p90, st.p99) == (rec[tag]["avg"], rec[tag]["p50"], rec[tag]["p90"], rec[tag]["p99"])
        assert (st.min, st.max, st.std) == (rec[tag]["min"], rec[tag]["max"], rec[tag]["std"])
        assert st.extra == {k: rec[tag][k] for k in ("p1", "p5", "p25", "p75")}
        assert run.metric_names[ours] == tag
    assert "itl_ms" not in pt.stats  # AIPerf's "inter_token_latency" is a per-request average: our TPOT
    assert rec["benchmark_duration"]["unit"] == "sec" and pt.duration_s == rec["benchmark_duration"]["avg"]
    assert pt.scalars["request_throughput_per_s"][0] == rec["request_throughput"]["avg"]  # requests/sec
    assert pt.scalars["output_token_throughput_per_s"][0] == rec["output_token_throughput"]["avg"]
    assert pt.completed == rec["request_count"]["avg"] == 89 and pt.failed == rec["error_request_count"]["avg"] == 11
    assert pt.failures_by_reason == {"cancelled": 11}  # error_summary: code 499 RequestCancellationError
    assert pt.stats["output_token_throughput_per_user_per_s"].mean == rec["output_token_throughput_per_user"]["avg"]
    notes = " ".join(run.notes)
    assert "inter_token_latency is a per-request" in notes and "stored as tpot_ms (not itl_ms)" in notes
    rep = build_report(pt)
    assert rep["tpot_ms"]["source"] == "file" and rep["tpot_ms"]["p99"] == rec["inter_token_latency"]["p99"]


def test_aiperf_csv(shared: Path) -> None:
    rows = list(csv.reader((shared / AIPERF_CSV).read_text().splitlines()))
    head = rows[0]
    table = {r[0]: dict(zip(head[1:], map(float, r[1:]))) for r in rows[1:] if r and len(r) == len(head)}
    scalars = {r[0]: float(r[1]) for r in rows if len(r) == 2 and r[0] != "Metric"}
    f = parse_file(shared / AIPERF_CSV)
    (run,) = f.runs
    (pt,) = run.points
    assert (f.tool, f.format, run.tool_version) == ("aiperf", "csv", None)  # a "p1" column: AIPerf, not GenAI-Perf
    assert (pt.level, pt.level_known) == (None, False)
    for header, ours in (("Time to First Token (ms)", "ttft_ms"), ("Request Latency (ms)", "e2e_ms"),
                         ("Inter Token Latency (ms)", "tpot_ms"), ("Inter Chunk Latency (ms)", "itl_chunk_ms")):
        st, want = pt.stats[ours], table[header]
        assert (st.unit, st.source_unit) == ("ms", "ms") and run.metric_names[ours] == header
        assert (st.mean, st.p50, st.p90, st.p99, st.min, st.max, st.std) == (
            want["avg"], want["p50"], want["p90"], want["p99"], want["min"], want["max"], want["std"])
    assert pt.duration_s == scalars["Benchmark Duration (sec)"] == 9.32  # sec -> s
    assert pt.scalars["request_throughput_per_s"][0] == scalars["Request Throughput (requests/sec)"]
    assert pt.scalars["output_token_throughput_per_s"][0] == scalars["Output Token Throughput (tokens/sec)"]
    assert (pt.completed, pt.failed) == (scalars["Request Count"], scalars["Error Request Count"]) == (89, 11)
    assert "itl_ms" not in pt.stats
    assert any("CSV export has no load level" in n for n in run.notes)
    # the CSV and the JSON of the same AIPerf run agree (to the CSV's two decimals)
    js = parse_file(shared / AIPERF_JSON).runs[0].points[0]
    for m in ("ttft_ms", "e2e_ms", "tpot_ms"):
        assert pt.stats[m].p50 == approx(js.stats[m].p50, abs=0.005)


def test_aiperf_per_request_jsonl(shared: Path) -> None:
    lines = _lines(shared / AIPERF_JSONL)
    ok = [ln for ln in lines if not ln.get("error")]
    errs = [ln for ln in lines if ln.get("error")]
    assert (len(lines), len(ok), len(errs)) == (100, 89, 11)
    f = parse_file(shared / AIPERF_JSONL)
    (run,) = f.runs
    (pt,) = run.points
    assert (f.tool, f.format, len(pt.requests)) == ("aiperf", "per_request_jsonl", 100)
    assert (pt.level, pt.level_known, pt.chunks_known) == (None, False, True)
    assert {r.error_reason for r in pt.requests if not r.ok} == {"cancelled"}  # code 499
    m = [ln["metrics"] for ln in ok]
    assert {x[k]["unit"] for x in m for k in ("ttft", "request_latency", "inter_chunk_latency")} == {"ms"}
    ttft = np.array([x["ttft"]["value"] for x in m])
    lat = np.array([x["request_latency"]["value"] for x in m])
    osl = np.array([x["output_sequence_length"]["value"] for x in m])
    chunks = np.array([len(x["inter_chunk_latency"]["value"]) + 1 for x in m])
    rep = build_report(pt)
    # our summaries from every request; equal to AIPerf's own (same definitions, numpy linear percentiles)
    assert rep["ttft_ms"]["count"] == 89 and rep["ttft_ms"]["source"] == "computed"
    for q in (50, 90, 99):
        assert rep["ttft_ms"][f"p{q}"] == approx(np.percentile(ttft, q), abs=1e-5)
        assert rep["e2e_ms"][f"p{q}"] == approx(np.percentile(lat, q), abs=1e-3)  # ttft + sum of chunk gaps
    assert rep["ttft_ms"]["mean"] == approx(ttft.mean(), abs=1e-5)
    # AIPerf's per-request "inter_token_latency" = (latency - ttft) / (osl - 1): our TPOT, request by request
    itl = np.array([x["inter_token_latency"]["value"] for x in m])
    assert np.allclose(itl, (lat - ttft) / (osl - 1), rtol=1e-9)
    assert rep["tpot_ms"]["mean"] == approx(itl.mean(), abs=1e-5)
    # 4 requests have chunk count != output tokens: tokens per chunk unknown -> no itl_ms, per-chunk gaps kept
    mismatched = int((chunks != osl).sum())
    assert mismatched == 4 and "itl_ms" not in rep
    assert any(n.startswith(f"{mismatched} of 89 successful requests") for n in run.notes)
    gaps = np.concatenate([x["inter_chunk_latency"]["value"] for x in m])
    assert rep["itl_chunk_ms"]["count"] == len(gaps) == 21537
    assert rep["itl_chunk_ms"]["p50"] == approx(np.percentile(gaps, 50), abs=1e-5)
    # duration = last response - first request start (ns timestamps), as AIPerf's benchmark_duration
    t0 = min(ln["metadata"]["timestamp_ns"] for ln in lines)
    t1 = max(x["max_response_timestamp"]["value"] for x in m)
    assert rep["duration_s"] == approx((t1 - t0) / 1e9, abs=1e-6)
    agg = json.loads((shared / AIPERF_JSON).read_text())["records"]
    assert rep["duration_s"] == approx(agg["benchmark_duration"]["avg"], abs=1e-6)
    assert rep["request_throughput_per_s"] == approx(agg["request_throughput"]["avg"], rel=1e-6)
    assert rep["output_token_throughput_per_s"] == approx(agg["output_token_throughput"]["avg"], rel=1e-6)
    assert (rep["completed"], rep["failed"], rep["failures_by_reason"]) == (89, 11, {"cancelled": 11})


#: GenAI-Perf's profile_export_genai_perf.json: metrics at the top level, input_config with the level
GENAI_PERF = {
    "request_throughput": {"unit": "requests/sec", "avg": 3.5},
    "request_latency": {"unit": "ms", "avg": 1200.0, "p25": 1100.0, "p50": 1190.0, "p75": 1300.0, "p90": 1400.0,
                        "p95": 1450.0, "p99": 1490.0, "min": 900.0, "max": 1500.0, "std": 90.0},
    # in ns here, to prove the unit is read per metric (GenAI-Perf writes ms today)
    "time_to_first_token": {"unit": "ns", "avg": 45_000_000.0, "p50": 44_000_000.0, "p90": 60_000_000.0,
                            "p99": 80_000_000.0, "min": 20_000_000.0, "max": 90_000_000.0, "std": 9_000_000.0},
    "inter_token_latency": {"unit": "ms", "avg": 9.0, "p50": 8.9, "p90": 10.5, "p99": 12.0, "min": 7.0, "max": 13.0,
                            "std": 1.0},
    "output_token_throughput": {"unit": "tokens/sec", "avg": 450.0},
    "output_token_throughput_per_request": {"unit": "tokens/sec", "avg": 110.0, "p50": 111.0, "p99": 130.0},
    "output_sequence_length": {"unit": "tokens", "avg": 128.0, "p50": 128.0, "p99": 128.0},
    "input_sequence_length": {"unit": "tokens", "avg": 200.0, "p50": 200.0, "p99": 200.0},
    "input_config": {"model": ["gpt2"], "backend": "vllm", "endpoint_type": "completions", "concurrency": 8,
                     "request_rate": None, "streaming": True},
}


def test_genai_perf_json(tmp_path: Path) -> None:
    p = _write(tmp_path, "profile_export_genai_perf.json", GENAI_PERF)
    assert detect(p) == "genai-perf"
    f = parse_file(p)
    (run,) = f.runs
    (pt,) = run.points
    assert (f.tool, run.tool, run.model, pt.mode, pt.level) == ("genai-perf", "genai-perf", "gpt2", "concurrency", 8.0)
    ttft = pt.stats["ttft_ms"]
    assert ttft.source_unit == "ns" and (ttft.mean, ttft.p50, ttft.p99) == (45.0, 44.0, 80.0)  # ns -> ms
    assert run.metric_names["ttft_ms"] == "time_to_first_token"
    assert pt.stats["tpot_ms"].p99 == 12.0 and "itl_ms" not in pt.stats  # per-request ITL average = our TPOT
    assert pt.stats["e2e_ms"].extra == {"p25": 1100.0, "p75": 1300.0}
    assert pt.scalars["request_throughput_per_s"][0] == 3.5
    assert pt.scalars["output_token_throughput_per_s"][0] == 450.0
    assert pt.stats["output_token_throughput_per_user_per_s"].p50 == 111.0
    assert any("our TPOT" in n for n in run.notes)
    # the newer GenAI-Perf layout: the level under input_config.perf_analyzer.stimulus
    newer = GENAI_PERF | {"input_config": {"model_names": ["gpt2"], "perf_analyzer": {"stimulus": {"request_rate": 2.5}}}}
    (pt2,) = parse_file(_write(tmp_path, "newer.json", newer)).runs[0].points
    assert (pt2.mode, pt2.level) == ("request_rate", 2.5)


# ------------------------------------------------------------------------------------------- GuideLLM


def test_guidellm(shared: Path) -> None:
    doc = json.loads((shared / GUIDELLM).read_text())
    (b,) = doc["benchmarks"]
    mt = b["metrics"]
    f = parse_file(shared / GUIDELLM)
    (run,) = f.runs
    (pt,) = run.points
    assert (f.tool, run.tool_version) == ("guidellm", doc["metadata"]["guidellm_version"]) == ("guidellm", "0.5.0.dev0")
    assert run.model == doc["args"]["model"] == "Qwen/Qwen3-4B-Thinking-2507"
    assert (pt.mode, pt.level) == ("concurrency", b["config"]["strategy"]["streams"]) == ("concurrency", 4)
    assert pt.duration_s == b["duration"]
    assert (pt.completed, pt.failed) == (mt["request_totals"]["successful"], 0) == (4, 0)
    # the file's own aggregates: *_ms metrics in ms, request_latency in SECONDS
    s = mt["request_latency"]["successful"]
    rl = pt.stats["request_latency_ms"]
    assert rl.source_unit == "s" and rl.mean == approx(s["mean"] * 1e3) and rl.p99 == approx(s["percentiles"]["p99"] * 1e3)
    assert rl.extra["p99.9"] == approx(s["percentiles"]["p999"] * 1e3)  # "p999" is p99.9
    t = mt["time_to_first_token_ms"]["successful"]
    assert pt.stats["ttft_ms"].mean == t["mean"] and pt.stats["ttft_ms"].p50 == t["median"]
    i = mt["inter_token_latency_ms"]["successful"]
    assert pt.stats["tpot_ms"].mean == i["mean"] and pt.stats["tpot_ms"].count == i["count"] == 4092  # token-weighted
    assert pt.stats["tpot_incl_ttft_ms"].mean == mt["time_per_output_token_ms"]["successful"]["mean"]
    assert run.metric_names["tpot_ms"] == "metrics.inter_token_latency_ms"
    assert run.metric_names["tpot_incl_ttft_ms"] == "metrics.time_per_output_token_ms"
    # every request is in the file: ours are computed from its timings (epoch seconds), one sample per request
    reqs = b["requests"]["successful"]
    assert len(pt.requests) == len(reqs) == 4
    tm = [r["info"]["timings"] for r in reqs]
    ttft = np.array([(x["first_token_iteration"] - x["request_start"]) * 1e3 for x in tm])
    e2e = np.array([(x["last_token_iteration"] - x["request_start"]) * 1e3 for x in tm])
    n = np.array([r["output_tokens"] for r in reqs])
    rep = build_report(pt)
    assert rep["ttft_ms"]["source"] == "computed" and rep["ttft_ms"]["count"] == 4
    assert rep["ttft_ms"]["mean"] == approx(ttft.mean(), abs=1e-5)
    assert sorted(ttft) == approx(sorted(r["time_to_first_token_ms"] for r in reqs), abs=1e-3)  # GuideLLM's own
    assert rep["e2e_ms"]["p50"] == approx(np.percentile(e2e, 50), abs=1e-5)
    tpot = (e2e - ttft) / (n - 1)
    assert rep["tpot_ms"]["mean"] == approx(tpot.mean(), abs=1e-6)
    assert sorted(tpot) == approx(sorted(r["inter_token_latency_ms"] for r in reqs), abs=1e-5)  # = GuideLLM's ITL
    assert rep["request_latency_ms"]["mean"] == approx(s["mean"] * 1e3)  # the file's, kept beside e2e
    assert rep["request_latency_ms"]["mean"] > rep["e2e_ms"]["mean"]  # request end comes after the last token
    assert rep["request_throughput_per_s"] == approx(4 / b["duration"])
    assert rep["output_token_throughput_per_s"] == approx(n.sum() / b["duration"])
    assert "itl_ms" not in rep  # no chunk times in the file
    notes = " ".join(run.notes)
    assert "inter_token_latency_ms = (last token - first token) / (output tokens - 1): our TPOT" in notes
    assert "request_latency (seconds)" in notes


# -------------------------------------------------------------------------------------------- LLMPerf


def test_llmperf_summary(shared: Path) -> None:
    doc = json.loads((shared / LLMPERF_SUMMARY).read_text())
    f = parse_file(shared / LLMPERF_SUMMARY)
    (run,) = f.runs
    (pt,) = run.points
    assert (f.tool, f.format, run.tool_version) == ("llmperf", "json", doc["version"]) == ("llmperf", "json", "2023-08-31")
    assert run.model == doc["model"] and (pt.mode, pt.level) == ("concurrency", doc["num_concurrent_requests"]) == ("concurrency", 5)
    for stem, ours in (("ttft_s", "ttft_ms"), ("inter_token_latency_s", "tpot_incl_ttft_ms"),
                       ("end_to_end_latency_s", "request_latency_ms")):
        st = pt.stats[ours]  # LLMPerf's *_s are seconds
        assert st.source_unit == "s" and st.unit == "ms"
        assert st.mean == approx(doc[f"results_{stem}_mean"] * 1e3)
        assert st.std == approx(doc[f"results_{stem}_stddev"] * 1e3)
        for q in ("p50", "p90", "p95", "p99"):
            assert getattr(st, q) == approx(doc[f"results_{stem}_quantiles_{q}"] * 1e3)
        assert st.extra["p25"] == approx(doc[f"results_{stem}_quantiles_p25"] * 1e3)
        assert run.metric_names[ours] == f"results_{stem}_*"
    # LLMPerf's "inter_token_latency" is a per-request (last content chunk - send) / tokens: neither our ITL nor TPOT
    assert "itl_ms" not in pt.stats and "tpot_ms" not in pt.stats and "e2e_ms" not in pt.stats
    assert pt.scalars["request_throughput_per_s"][0] == approx(doc["results_num_completed_requests_per_min"] / 60)
    assert pt.scalars["output_token_throughput_per_s"][0] == doc["results_mean_output_throughput_token_per_s"]
    assert (pt.completed, pt.failed) == (doc["results_num_completed_requests"], doc["results_number_errors"]) == (150, 0)
    # duration = completed / rate (LLMPerf: completed / (end - start) * 60): consistent with its token throughput
    assert pt.duration_s == approx(150 / (doc["results_num_completed_requests_per_min"] / 60))
    assert doc["results_mean_output_throughput_token_per_s"] * pt.duration_s == approx(
        doc["results_number_output_tokens_mean"] * 150, rel=1e-9)
    notes = " ".join(run.notes)
    assert "stored as tpot_incl_ttft_ms, not as itl_ms" in notes and "[DONE] included" in notes


def test_llmperf_individual(shared: Path) -> None:
    rows = json.loads((shared / LLMPERF_INDIVIDUAL).read_text())
    f = parse_file(shared / LLMPERF_INDIVIDUAL)
    (run,) = f.runs
    (pt,) = run.points
    assert (f.tool, f.format, len(pt.requests)) == ("llmperf", "individual", len(rows)) == ("llmperf", "individual", 150)
    assert (pt.level, pt.level_known, pt.timeline_known) == (None, False, False)
    ttft = np.array([r["ttft_s"] for r in rows]) * 1e3
    n = np.array([r["number_output_tokens"] for r in rows])
    last = np.array([r["inter_token_latency_s"] for r in rows]) * n * 1e3  # = last content chunk - send
    rep = build_report(pt)
    assert rep["completed"] == 150 and rep["failed"] == 0
    assert rep["ttft_ms"]["mean"] == approx(ttft.mean(), abs=1e-6) and rep["ttft_ms"]["p99"] == approx(np.percentile(ttft, 99), abs=1e-6)
    assert rep["e2e_ms"]["p50"] == approx(np.percentile(last, 50), abs=1e-6)
    assert rep["tpot_ms"]["mean"] == approx(((last - ttft) / (n - 1)).mean(), abs=1e-6)
    e2e_s = np.array([r["end_to_end_latency_s"] for r in rows]) * 1e3
    assert rep["request_latency_ms"]["p90"] == approx(np.percentile(e2e_s, 90))
    assert (e2e_s >= last).all()  # the stream ends after the last content chunk
    assert rep.get("request_throughput_per_s") is None and rep["duration_s"] is None  # no send times, no duration
    # the individual file and the summary are one LLMPerf run: LLMPerf's pandas quantiles (linear) = ours
    summ = json.loads((shared / LLMPERF_SUMMARY).read_text())
    assert rep["ttft_ms"]["p50"] == approx(summ["results_ttft_s_quantiles_p50"] * 1e3)
    assert rep["request_latency_ms"]["p99"] == approx(summ["results_end_to_end_latency_s_quantiles_p99"] * 1e3)
    assert rep["tpot_incl_ttft_ms"]["mean"] == approx(summ["results_inter_token_latency_s_mean"] * 1e3)
    assert run.metric_names["e2e_ms"] == "inter_token_latency_s * number_output_tokens"


# ------------------------------------------------------------------------------------- Model Analyzer


def test_model_analyzer_inference(shared: Path) -> None:
    rows = list(csv.DictReader((shared / MA_INFERENCE).read_text().splitlines()))
    f = parse_file(shared / MA_INFERENCE)
    assert (f.tool, f.format) == ("model-analyzer", "csv")
    runs = {(r.meta["model_config_path"], r.batch_size): r for r in f.runs}
    assert set(runs) == {(r["Model Config Path"], int(r["Batch"])) for r in rows} and len(runs) == 8
    for row in rows:
        run = runs[(row["Model Config Path"], int(row["Batch"]))]
        assert (run.tool, run.engine, run.model, run.tool_version) == ("model-analyzer", "triton", row["Model"], None)
        assert run.meta["max_batch_size"] == row["Max Batch Size"]
        (pt,) = [p for p in run.points if p.level == float(row["Concurrency"])]
        assert pt.mode == "concurrency"
        assert pt.stats["latency_ms"].p99 == float(row["p99 Latency (ms)"])  # ms, as the header says
        assert pt.stats["latency_ms"].mean is None and pt.stats["latency_ms"].p50 is None
        assert pt.scalars["throughput_per_s"][0] == float(row["Throughput (infer/sec)"])
        assert pt.info["Satisfies Constraints"] == row["Satisfies Constraints"]
        assert {"ttft_ms", "e2e_ms", "tpot_ms", "itl_ms"}.isdisjoint(pt.stats)  # not an LLM stream
    for run in f.runs:
        assert [p.level for p in run.points] == sorted(p.level or 0.0 for p in run.points)  # points by concurrency
        assert run.metric_names["latency_ms"] == "p99 Latency (ms)"
    assert any("client-side request latency" in n for n in f.runs[0].notes)


def test_model_analyzer_gpu(shared: Path) -> None:
    rows = list(csv.DictReader((shared / MA_GPU).read_text().splitlines()))
    f = parse_file(shared / MA_GPU)
    runs = {(r.meta["model_config_path"], r.batch_size): r for r in f.runs}
    assert len(runs) == 8 and all(r.meta["csv"] == "gpu" for r in f.runs)
    for row in rows:
        (pt,) = [p for p in runs[(row["Model Config Path"], int(row["Batch"]))].points
                 if p.level == float(row["Concurrency"])]
        assert pt.scalars["gpu_mem_used_bytes"] == (float(row["GPU Memory Usage (MB)"]) * 1e6, "bytes")  # MB -> bytes
        assert pt.scalars["gpu_util_pct"] == (float(row["GPU Utilization (%)"]), "%")
        assert pt.scalars["power_w"] == (float(row["GPU Power Usage (W)"]), "W")
        assert pt.info["GPU UUID"] == row["GPU UUID"] and not pt.stats
    assert f.runs[0].metric_names["gpu_mem_used_bytes"] == "GPU Memory Usage (MB)"


# ------------------------------------------------------------------------------------ bad and foreign files


@pytest.mark.parametrize("name,content", [
    ("foreign.json", '{"hello": 1, "results": [1, 2]}'),
    ("foreign.csv", "a,b,c\n1,2,3\n"),
    ("notes.txt", "just some text\n"),
    ("empty.json", ""),
])
def test_foreign_file_names_it(tmp_path: Path, name: str, content: str) -> None:
    p = tmp_path / name
    p.write_text(content)
    assert detect(p) is None
    with pytest.raises(ParseError, match=name.replace(".", r"\.")) as exc:
        parse_file(p)
    assert isinstance(exc.value, InputError) and "not a result file of" in str(exc.value)


def test_bad_values_name_file_and_key(tmp_path: Path) -> None:
    p = _write(tmp_path, "bench.json", {"completed": 10, "duration": 2.0, "request_throughput": 5, "mean_ttft_ms": "fast"})
    with pytest.raises(ParseError, match=r"bench\.json.*'mean_ttft_ms'"):
        parse_file(p)
    broken = tmp_path / "cut.json"
    broken.write_text('{"completed": 10, "mean_ttft_ms": 3.0, "duration": ')
    with pytest.raises(ParseError, match=r"cut\.json: invalid JSON at line 1 column"):
        detect(broken)
    lines = tmp_path / "two.jsonl"
    lines.write_text(json.dumps(VLLM_04) + "\n" + '{"completed": 1, oops}\n')
    with pytest.raises(ParseError, match=r"two\.jsonl:2: invalid JSON"):
        parse_file(lines)
    unit = _write(tmp_path, "unit.json", GENAI_PERF | {"request_latency": {"unit": "fortnights", "avg": 1.0}})
    with pytest.raises(ParseError, match=r"unit\.json.*'request_latency'.*unknown time unit 'fortnights'"):
        parse_file(unit)
    ma = tmp_path / "ma.csv"
    ma.write_text("Model,Batch,Concurrency,p99 Latency (ms)\nm,1,x,0.5\n")
    with pytest.raises(ParseError, match=r"ma\.csv:2: column 'Concurrency' is 'x'"):
        parse_file(ma)
