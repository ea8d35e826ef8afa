"""The model_bench job's GPU evidence, end to end through the job and ``enginescope bench``'s JSON, on a
machine without a GPU: NVML is faked at the pynvml boundary (300 W, an energy counter advancing 300 mJ per
ms of real time, power capping, a foreign process) and the ``cuda:0`` target is pointed at ONNX Runtime's
CPU provider, so the real engine, sampler, window marks, storage and JSON run; only the device is
simulated. The real thing runs in tests/gpu on a GPU."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from fake_nvml import fake_pynvml
from onnx_builders import linear_model, save_plain


def test_energy_power_clocks_and_warnings_of_a_gpu_run(es_env: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from db.jobs import start_inline_job
    from db.models import Run, RunMetric, TelemetrySample
    from db.session import session_scope
    from db.store import add_model
    from engine_runner.commands.bench import collect_results
    from engine_runner.engines import onnxruntime as ortx
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute
    from profiles.specs import BenchSpec, validate_spec

    fake = fake_pynvml(reasons=0x4, processes=[(os.getpid(), 2**30), (31337, 3 * 2**30)])
    t0 = time.perf_counter_ns()
    fake.state["power_mw"] = 300_000
    fake.state["energy_mj"] = lambda: 5_000_000 + (time.perf_counter_ns() - t0) * 300 // 1_000_000
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    # the fake NVML lives in this process: sample here instead of in the job's telemetry child process
    import engine_runner.telemetry as telemetry

    monkeypatch.setattr(telemetry, "OutOfProcessSampler",
                        lambda interval_s, device_index=None: telemetry.TelemetrySampler(interval_s, device_index))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    real_target_for = ortx.target_for
    monkeypatch.setattr(ortx, "target_for", lambda device, cuda_graph=False: ortx.Target(
        real_target_for(device).device, ortx.CPU_PROVIDER, "cpu", 0))

    model_id = int(add_model(save_plain(linear_model(0, in_features=8, out_features=5), tmp_path / "m.onnx")).id)
    spec = validate_spec(BenchSpec, {"model_id": model_id, "device": "cuda:0", "batch_sizes": [4],
                                     "iterations": 50, "min_duration_s": 0.6, "warmup_iterations": 2,
                                     "warmup_s": 0.0}).model_dump(mode="json")
    job_id = start_inline_job("model_bench", spec, model_id=model_id, url=es_env)
    events: list[tuple[str, str]] = []
    ctx = JobContext(job_id=job_id, kind="model_bench", spec=spec, db_url=es_env,
                     hooks=[lambda kind, msg, prog, data: events.append((kind, msg))])
    assert execute(ctx) == "succeeded"

    with session_scope(es_env) as s:
        run = s.execute(select(Run).where(Run.job_id == job_id)).scalar_one()
        metrics = {m.name: (m.value, m.unit) for m in s.execute(select(RunMetric).where(RunMetric.run_id == run.id)).scalars()}
        tel = list(s.execute(select(TelemetrySample).where(TelemetrySample.run_id == run.id)
                             .order_by(TelemetrySample.ts_ns)).scalars())
        cfg = dict(run.config)
    assert run.status == "succeeded", run.error
    win = cfg["telemetry_window"]
    assert win["energy_method"] == "energy_counter"
    # the counter advances at exactly 300 W of real time, so the window's average power is 300 W and the
    # energy per inference is 300 W x window / inferences, whatever the machine's speed
    assert metrics["avg_power_w"] == (pytest.approx(300.0, rel=0.01), "W")
    n = win["inferences"]
    assert metrics["energy_per_inference_j"][0] == pytest.approx(300.0 * win["duration_s"] / n, rel=0.01)
    assert metrics["energy_per_item_j"][0] == pytest.approx(metrics["energy_per_inference_j"][0] / 4)
    assert metrics["sm_clock_median_mhz"] == (1980.0, "MHz") and metrics["mem_clock_median_mhz"] == (3201.0, "MHz")
    assert win["duration_s"] >= 0.6 and n >= 50
    # telemetry rows carry the new NVML fields
    assert tel and tel[0].device == "cuda:0" and tel[0].energy_mj >= 5_000_000 and tel[0].throttle_reasons == 4
    assert tel[0].processes == [{"pid": os.getpid(), "used_bytes": 2**30}, {"pid": 31337, "used_bytes": 3 * 2**30}]
    assert np.all(np.diff([t.energy_mj for t in tel]) >= 0)
    # warnings: power capping and the foreign process, as events and in bench --json
    warns = [m for k, m in events if k == "warning"]
    assert any("sw_power_cap in 100% of samples" in w for w in warns)
    assert any("pid 31337 proc31337" in w for w in warns)
    doc = collect_results(job_id, es_env)
    r = doc["runs"][0]
    assert r["device"] == "cuda:0" and r["avg_power_w"] == pytest.approx(300.0, rel=0.01)
    assert r["energy_per_inference_j"] == metrics["energy_per_inference_j"][0]
    assert r["gpu"]["energy_method"] == "energy_counter" and r["gpu"]["throttle"]["sw_power_cap"] == 1.0
    assert r["gpu"]["other_processes"][0]["pid"] == 31337
    assert any("another process used the GPU" in w for w in r["warnings"])
    assert any("GPU clocks were limited" in w for w in r["warnings"])


def test_window_metrics_names_and_units() -> None:
    from engine_runner.jobs.model_bench import window_metrics
    from profiles.telemetry_window import WindowSample, summarize_window

    s = [WindowSample(ts_ns=i * 50_000_000, energy_mj=i * 10_000, power_w=200.0, sm_clock_mhz=1755.0 + i,
                      mem_clock_mhz=2619.0, temp_c=50.0 + i, util_pct=90.0) for i in range(21)]
    rep = summarize_window(s, 0, 1_000_000_000, inferences=100)
    m = window_metrics(rep, batch=8)
    assert m["energy_window_j"] == (pytest.approx(200.0), "J") and m["avg_power_w"] == (pytest.approx(200.0), "W")
    assert m["energy_per_inference_j"] == (pytest.approx(2.0), "J") and m["energy_per_item_j"] == (pytest.approx(0.25), "J")
    assert m["sm_clock_min_mhz"] == (1755.0, "MHz") and m["gpu_temp_max_c"] == (70.0, "C")
    assert m["gpu_util_mean_pct"] == (90.0, "%")
