"""``enginescope import FILE... --json`` as a user runs it (the console script in a subprocess, a fresh
ENGINESCOPE_HOME) on every file in ../shared/fixtures/llm_bench and ../shared/fixtures/model_analyzer:
the JSON is the shape of ``serve-bench --json`` (``runs[].points[]`` with ``ttft_ms``/``tpot_ms``/``itl_ms``/
``e2e_ms`` each ``{"mean", "p50", "p90", "p99", "count"}`` or null, throughputs, ``concurrency`` or
``request_rate``) plus ``source_tool``, with the files' values; importing the same file again adds no run
and says so; a foreign file exits 2 naming it, without a traceback, and stores nothing."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from test_bench_cli import enginescope  # tests/integration is on sys.path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LLM = "fixtures/llm_bench"
MA = "fixtures/model_analyzer"
SERIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
THROUGHPUTS = ("request_throughput_per_s", "output_token_throughput_per_s", "total_token_throughput_per_s",
               "goodput_per_s")
#: the keys of one run of serve-bench --json (db.llm_import.serve_results), imports add "import", "existing", "file"
RUN_KEYS = {"run_id", "engine", "engine_version", "model", "status", "error", "source", "source_tool", "tool_version",
            "label", "kv_cache", "kv_cache_sizing", "vllm_python", "startup_report", "device_dirty", "server_log",
            "points"}
#: fixture -> (source_tool, runs, points per run, level key)
EXPECT = {
    f"{LLM}/vllm_benchmark_serving_results_llmd.jsonl": ("vllm-bench", 3, 3, "request_rate"),
    f"{LLM}/aiperf_profile_export_aiperf.json": ("aiperf", 1, 1, "concurrency"),
    f"{LLM}/aiperf_profile_export_aiperf.csv": ("aiperf", 1, 1, "concurrency"),
    f"{LLM}/aiperf_profile_export.jsonl": ("aiperf", 1, 1, "concurrency"),
    f"{LLM}/guidellm_Qwen3-4B-Thinking_tp4_fp8_sanity_benchmarks.json": ("guidellm", 1, 1, "concurrency"),
    f"{LLM}/llmperf_summary_anyscale_7b.json": ("llmperf", 1, 1, "concurrency"),
    f"{LLM}/llmperf_individual_responses_anyscale_7b.json": ("llmperf", 1, 1, "concurrency"),
    f"{MA}/model_analyzer_metrics-model-inference.csv": ("model-analyzer", 8, 2, "concurrency"),
    f"{MA}/model_analyzer_metrics-model-gpu.csv": ("model-analyzer", 8, 2, "concurrency"),
}


def _count(home: Path, table: str) -> int:
    db = home / "enginescope.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as c:
        return int(c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _check_shape(run: dict[str, Any], tool: str, level_key: str) -> None:
    assert RUN_KEYS | {"import", "existing", "file"} == set(run)
    assert run["source_tool"] == tool and run["source"] == f"import:{tool}" and run["status"] == "succeeded"
    for p in run["points"]:
        assert level_key in p and ({"concurrency", "request_rate"} - {level_key}).isdisjoint(p)
        for m in SERIES:
            assert p[m] is None or set(p[m]) == {"mean", "p50", "p90", "p99", "count"}, (m, p[m])
        for k in THROUGHPUTS + ("completed", "failed", "duration_s"):
            assert k in p


def test_every_fixture_json_shape_and_values(shared: Path, tmp_path: Path) -> None:
    assert {str(p.relative_to(shared)) for d in (LLM, MA) for p in (shared / d).iterdir()} == set(EXPECT)
    home = tmp_path / "home"
    docs: dict[str, list[dict[str, Any]]] = {}
    for rel, (tool, n_runs, n_points, level_key) in EXPECT.items():
        res = enginescope(home, "import", "--json", str(shared / rel))
        assert res.returncode == 0, res.stderr
        runs = json.loads(res.stdout)["runs"]  # exactly one JSON document on stdout
        assert len(runs) == n_runs and all(len(r["points"]) == n_points for r in runs), rel
        for r in runs:
            _check_shape(r, tool, level_key)
            assert r["existing"] is False and r["file"] == str(shared / rel)
        docs[rel] = runs
    assert _count(home, "runs") == sum(e[1] for e in EXPECT.values())

    # values against the files (read here), in our units
    v = [json.loads(ln) for ln in (shared / f"{LLM}/vllm_benchmark_serving_results_llmd.jsonl").read_text().splitlines()]
    pts = [p for r in docs[f"{LLM}/vllm_benchmark_serving_results_llmd.jsonl"] for p in r["points"]]
    for obj, p in zip(v, pts):
        assert p["request_rate"] == obj["request_rate"]  # 10.0, 30.0, "inf"
        assert p["ttft_ms"] == {"mean": obj["mean_ttft_ms"], "p50": obj["median_ttft_ms"], "p90": None,
                                "p99": obj["p99_ttft_ms"], "count": None}
        assert p["itl_ms"]["p99"] == obj["p99_itl_ms"] and p["tpot_ms"]["p50"] == obj["median_tpot_ms"]
        assert p["e2e_ms"] is None  # the file has no e2el
        assert p["request_throughput_per_s"] == obj["request_throughput"]
        assert p["output_token_throughput_per_s"] == obj["output_throughput"]
        assert p["total_token_throughput_per_s"] == obj["total_token_throughput"]
        assert (p["completed"], p["failed"], p["duration_s"]) == (obj["completed"], 0, obj["duration"])

    rec = json.loads((shared / f"{LLM}/aiperf_profile_export_aiperf.json").read_text())["records"]
    (p,) = docs[f"{LLM}/aiperf_profile_export_aiperf.json"][0]["points"]
    assert p["concurrency"] == 100 and p["itl_ms"] is None
    assert p["ttft_ms"] == {"mean": rec["ttft"]["avg"], "p50": rec["ttft"]["p50"], "p90": rec["ttft"]["p90"],
                            "p99": rec["ttft"]["p99"], "count": 89}
    assert p["tpot_ms"]["p50"] == rec["inter_token_latency"]["p50"]  # AIPerf's per-request ITL = our TPOT
    assert p["e2e_ms"]["p99"] == rec["request_latency"]["p99"]
    assert p["itl_chunk_ms"]["p50"] == rec["inter_chunk_latency"]["p50"]
    assert p["request_throughput_per_s"] == rec["request_throughput"]["avg"]
    assert p["duration_s"] == rec["benchmark_duration"]["avg"]  # sec -> s
    assert (p["completed"], p["failed"], p["failures_by_reason"]) == (89, 11, {"cancelled": 11})
    imp = docs[f"{LLM}/aiperf_profile_export_aiperf.json"][0]["import"]
    assert imp["metric_names"]["tpot_ms"] == "inter_token_latency" and imp["tool_version"] is None
    assert any("our TPOT" in n for n in imp["notes"])

    (p,) = docs[f"{LLM}/aiperf_profile_export_aiperf.csv"][0]["points"]
    assert p["concurrency"] is None and p["ttft_ms"]["p50"] == 2369.32 and p["duration_s"] == 9.32

    (p,) = docs[f"{LLM}/aiperf_profile_export.jsonl"][0]["points"]
    assert p["concurrency"] is None and p["ttft_ms"]["count"] == 89 and p["itl_ms"] is None
    assert p["ttft_ms"]["p50"] == pytest.approx(rec["ttft"]["p50"], abs=1e-5)
    assert p["e2e_ms"]["p99"] == pytest.approx(rec["request_latency"]["p99"], abs=1e-3)
    assert p["request_throughput_per_s"] == pytest.approx(rec["request_throughput"]["avg"], rel=1e-6)

    g = json.loads((shared / f"{LLM}/guidellm_Qwen3-4B-Thinking_tp4_fp8_sanity_benchmarks.json").read_text())
    (gb,) = g["benchmarks"]
    (grun,) = docs[f"{LLM}/guidellm_Qwen3-4B-Thinking_tp4_fp8_sanity_benchmarks.json"]
    (p,) = grun["points"]
    assert grun["tool_version"] == "0.5.0.dev0" and p["concurrency"] == 4 and p["itl_ms"] is None
    reqs = gb["requests"]["successful"]
    assert p["ttft_ms"]["mean"] == pytest.approx(sum(r["time_to_first_token_ms"] for r in reqs) / 4, abs=1e-3)
    assert p["request_latency_ms"]["mean"] == pytest.approx(gb["metrics"]["request_latency"]["successful"]["mean"] * 1e3)
    assert p["request_throughput_per_s"] == pytest.approx(4 / gb["duration"])

    s = json.loads((shared / f"{LLM}/llmperf_summary_anyscale_7b.json").read_text())
    (lrun,) = docs[f"{LLM}/llmperf_summary_anyscale_7b.json"]
    (p,) = lrun["points"]
    assert lrun["tool_version"] == "2023-08-31" and p["concurrency"] == 5
    assert p["ttft_ms"]["p90"] == pytest.approx(s["results_ttft_s_quantiles_p90"] * 1e3)  # s -> ms
    assert p["itl_ms"] is None and p["tpot_ms"] is None and p["e2e_ms"] is None
    assert p["tpot_incl_ttft_ms"]["p50"] == pytest.approx(s["results_inter_token_latency_s_quantiles_p50"] * 1e3)
    assert p["request_throughput_per_s"] == pytest.approx(s["results_num_completed_requests_per_min"] / 60)

    ind = json.loads((shared / f"{LLM}/llmperf_individual_responses_anyscale_7b.json").read_text())
    (p,) = docs[f"{LLM}/llmperf_individual_responses_anyscale_7b.json"][0]["points"]
    assert p["concurrency"] is None and p["ttft_ms"]["count"] == len(ind) == 150
    assert p["ttft_ms"]["p50"] == pytest.approx(s["results_ttft_s_quantiles_p50"] * 1e3)
    assert p["request_throughput_per_s"] is None  # no send times or duration in that file

    ma = docs[f"{MA}/model_analyzer_metrics-model-inference.csv"]
    default_b2 = next(r for r in ma if r["label"].startswith("add_sub add_sub_config_default batch 2"))
    assert [(p["concurrency"], p["latency_ms"]["p99"], p["throughput_per_s"]) for p in default_b2["points"]] == [
        (1, 0.7, 4876.1), (2, 0.5, 13205.0)]
    assert default_b2["engine"] == "triton" and all(p[m] is None for p in default_b2["points"] for m in SERIES)
    assert all(p["completed"] is None for r in ma for p in r["points"])  # the CSV counts no requests
    gpu = docs[f"{MA}/model_analyzer_metrics-model-gpu.csv"]
    g3 = next(r for r in gpu if r["label"].startswith("add_sub add_sub_config_3 batch 1"))
    assert [(p["concurrency"], p["gpu_mem_used_bytes"], p["gpu_util_pct"], p["power_w"]) for p in g3["points"]] == [
        (1, 874.5e6, 1.7, 56.7), (2, 874.5e6, 3.0, 56.6)]


def test_reimport_adds_no_runs(shared: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    files = [str(shared / rel) for rel in EXPECT]
    first = enginescope(home, "import", "--json", *files)
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)["runs"]
    counts = {t: _count(home, t) for t in ("runs", "load_points", "llm_requests", "summaries", "artifacts")}
    assert counts["runs"] == len(made) == 25 and counts["llm_requests"] == 100 + 4 + 150
    again = enginescope(home, "import", "--json", *files)
    assert again.returncode == 0, again.stderr
    redo = json.loads(again.stdout)["runs"]
    assert [r["run_id"] for r in redo] == [r["run_id"] for r in made] and all(r["existing"] for r in redo)
    assert {t: _count(home, t) for t in counts} == counts
    # the same content under another name is the same import (content hash, not the path)
    copy = tmp_path / "renamed.jsonl"
    copy.write_bytes((shared / f"{LLM}/vllm_benchmark_serving_results_llmd.jsonl").read_bytes())
    text = enginescope(home, "import", str(copy))
    assert text.returncode == 0, text.stderr
    assert text.stdout.count("(already imported)") == 3 and _count(home, "runs") == counts["runs"]


@pytest.mark.parametrize("name,content", [("results.json", '{"hello": 1}'), ("bench.csv", "a,b\n1,2\n"),
                                          ("bench.jsonl", '{"completed": 3, "mean_ttft_ms": 1.0, "duration": \n')])
def test_foreign_file_exits_2(shared: Path, tmp_path: Path, name: str, content: str) -> None:
    home = tmp_path / "home"
    bad = tmp_path / name
    bad.write_text(content)
    good = shared / f"{LLM}/llmperf_summary_anyscale_7b.json"
    res = enginescope(home, "import", "--json", str(good), str(bad))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert name in res.stderr and "Traceback" not in res.stderr + res.stdout
    assert res.stdout == ""
    assert _count(home, "runs") == 0 and _count(home, "artifacts") == 0  # the good file was not written either
