"""Nsight Compute captures: run one measured configuration under ``ncu`` in a child process and return its top
kernels' metrics (``profiles.ncu``), plus the device ceilings the roofline needs (:func:`measure_ceilings`).

``ncu`` is found as ``$ENGINESCOPE_NCU``, else on PATH, else ``/usr/local/cuda/bin/ncu``. The command (argv list,
never a shell)::

    ncu --clock-control none --target-processes all --csv --page raw --print-units base
        --metrics <profiles.ncu.NCU_METRICS> --nvtx --nvtx-include enginescope_capture/
        --launch-count <limit> <python> -m engine_runner.profile_child <request.json>

Every kernel launched inside the child's measured iterations (the NVTX range) is profiled, up to ``limit`` launches;
the ``top`` kernel names by summed duration are kept. ncu replays each kernel several times to read its counters, so
an ncu run's durations are its own (the clocks are left alone: ``--clock-control none``) and it is stored as its own
run, never as the measured run's latency.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine_runner.profile_child import NVTX_RANGE
from profiles.errors import EngineError, EngineUnavailableError
from profiles.ncu import NCU_METRICS, NcuKernel, parse_ncu_csv, top_by_duration

#: most kernel launches one capture profiles (each costs several replays)
DEFAULT_LAUNCH_LIMIT = 400


def find_ncu() -> str | None:
    """Path of the ``ncu`` executable (``$ENGINESCOPE_NCU``, PATH, ``/usr/local/cuda/bin/ncu``), or None."""
    env = os.environ.get("ENGINESCOPE_NCU")
    if env:
        return env if Path(env).is_file() else None
    found = shutil.which("ncu")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/ncu")
    return str(default) if default.is_file() else None


def ncu_version(ncu: str) -> str | None:
    """``2025.3.1.0`` from ``ncu --version``, or None when it does not say."""
    try:
        out = subprocess.run([ncu, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Version\s+([\d.]+)", out)
    return m.group(1) if m else None


@dataclass
class NcuCapture:
    """Result of :func:`run_ncu`: the kept kernels (top names, every profiled launch of each), all parsed launches,
    the command, the tool version and the raw CSV path."""

    kernels: list[NcuKernel]
    all_launches: int
    command: list[str]
    version: str | None
    csv_path: Path
    metrics: tuple[str, ...]


def ncu_command(ncu: str, request: Path, limit: int = DEFAULT_LAUNCH_LIMIT, python: str | None = None) -> list[str]:
    """The argv of a capture (see the module doc)."""
    return [ncu, "--clock-control", "none", "--target-processes", "all", "--csv", "--page", "raw",
            "--print-units", "base", "--metrics", ",".join(NCU_METRICS), "--nvtx", "--nvtx-include", f"{NVTX_RANGE}/",
            "--launch-count", str(limit), python or sys.executable, "-m", "engine_runner.profile_child", str(request)]


def run_ncu(request: Path, top: int, workdir: Path, timeout_s: float = 900.0, limit: int = DEFAULT_LAUNCH_LIMIT,
            ncu: str | None = None) -> NcuCapture:
    """Profile the request's iterations under ncu; keep the ``top`` kernel names by summed duration.

    Args:
        request: a ``engine_runner.profile_child`` request (``write_request``).
        top: kernel names to keep (>= 1).
        workdir: where the CSV (``ncu_raw.csv``) and ncu's stderr (``ncu.log``) are written.

    Raises:
        EngineUnavailableError: no ncu (the message says how to point EngineScope at one).
        EngineError: ncu or the child failed, timed out, or profiled no kernel (stderr tail quoted).
    """
    exe = ncu or find_ncu()
    if exe is None:
        raise EngineUnavailableError("--ncu-top: Nsight Compute (ncu) is not installed here; install it with the CUDA "
                                     "toolkit or set ENGINESCOPE_NCU to its path")
    cmd = ncu_command(exe, request, limit)
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path, log_path = workdir / "ncu_raw.csv", workdir / "ncu.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parent.parent),
                                                                   os.environ.get("PYTHONPATH", "")] if p)}
    try:
        with open(csv_path, "w") as out, open(log_path, "w") as err:
            proc = subprocess.run(cmd, stdout=out, stderr=err, timeout=timeout_s, env=env, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise EngineError(f"--ncu-top: ncu did not finish within {timeout_s:g} s ({log_path})") from None
    except OSError as exc:
        raise EngineError(f"--ncu-top: cannot run {exe}: {exc}") from exc
    tail = log_path.read_text(errors="replace")[-1500:]
    if proc.returncode != 0:
        raise EngineError(f"--ncu-top: ncu exited with {proc.returncode}: {tail.strip()}")
    from profiles.errors import ParseError

    try:
        launches = parse_ncu_csv(csv_path)
    except ParseError as exc:
        raise EngineError(f"--ncu-top: {exc}; ncu said: {tail.strip()[-600:]}") from exc
    return NcuCapture(kernels=top_by_duration(launches, top), all_launches=len(launches), command=cmd,
                      version=ncu_version(exe), csv_path=csv_path, metrics=NCU_METRICS)


_CEILINGS: dict[int, dict[str, Any]] = {}


def measure_ceilings(device_index: int = 0) -> dict[str, Any]:
    """The device's roofline ceilings, measured here with PyTorch and CUDA events (cached per process):

    - ``matrix_flop_per_s``: a bf16 8192 x 8192 x 8192 matmul (2 * 8192**3 FLOP), best of 5 rounds of 20 calls;
    - ``copy_bytes_per_s``: a 2 GiB device-to-device ``copy_`` (read + write: 2 x 2 GiB per call), best of 5 x 10.

    Returns ``{"matrix_flop_per_s", "copy_bytes_per_s", "gpu", "source"}``.

    Raises:
        EngineUnavailableError: no torch or no CUDA device.
    """
    if device_index in _CEILINGS:
        return _CEILINGS[device_index]
    try:
        import torch
    except ImportError:
        raise EngineUnavailableError("--ncu-top: the roofline ceilings are measured with PyTorch, which is not "
                                     "installed here") from None
    if not torch.cuda.is_available():
        raise EngineUnavailableError("--ncu-top: no CUDA device to measure ceilings on")
    dev = torch.device("cuda", device_index)

    def best_s(fn: Any, calls: int) -> float:
        for _ in range(3):
            fn()
        torch.cuda.synchronize(dev)
        times = []
        for _ in range(5):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for _ in range(calls):
                fn()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1) / 1e3 / calls)
        return min(times)

    n = 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    mm = 2 * n ** 3 / best_s(lambda: a @ b, 20)
    del a, b
    size = 2 * 1024 ** 3
    src = torch.empty(size, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    cp = 2 * size / best_s(lambda: dst.copy_(src), 10)
    del src, dst
    torch.cuda.empty_cache()
    out = {"matrix_flop_per_s": mm, "copy_bytes_per_s": cp, "gpu": torch.cuda.get_device_name(dev),
           "source": ("measured in this job with PyTorch and CUDA events: bf16 8192^3 matmul (2*8192^3 FLOP) and a "
                      "2 GiB device copy (read + write), best of 5")}
    _CEILINGS[device_index] = out
    return out
