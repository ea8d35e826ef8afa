"""Kernel timelines of an engine's inference: ``torch.profiler`` (Kineto/CUPTI) around a few calls.

One function, :func:`kineto_capture`, used by every engine's ``capture_kernels``
(``engine_runner.engines.base.BenchEngine`` docs): PyTorch's own calls and ONNX Runtime's ``session.run``
alike (CUPTI records every kernel of the process, whoever launched it). torch is imported lazily, so this
module imports on machines without it.

What a capture holds: ``warmup_calls`` unprofiled calls (each followed by a device synchronize), then
``iterations`` calls inside ``torch.profiler.profile(activities=[CPU, CUDA])``, each call and a device
synchronize inside ``record_function("iteration N")``, so the range holds every kernel of that call and the
parsed kernels get ``iteration`` N (``profiles.kernels.assign_iterations``). The profiler's overhead makes the
host side slower than in the measured run; the GPU kernels are the same kernels, timed by CUPTI. The trace is
written as gzip-compressed Chrome trace JSON and parsed by ``profiles.kineto_trace.parse_kineto_trace``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiles.errors import EngineError, EngineUnavailableError
from profiles.kineto_trace import parse_kineto_trace

if TYPE_CHECKING:
    from engine_runner.engines.base import MeasureHooks
    from profiles.kernels import KernelTrace

#: Unprofiled calls before the profiled ones (allocator, cuDNN/cuBLAS algorithm choice, lazy module loads).
CAPTURE_WARMUP_CALLS = 3

#: Artifact kinds of the raw files a capture keeps.
KINETO_ARTIFACT = "kineto_trace"
ORT_PROFILE_ARTIFACT = "ort_profile"

#: What a kernel capture refuses on a device without CUDA (``model_bench.plan`` and the engines say it).
CUDA_ONLY = "kernel timelines need a CUDA device: CUPTI records GPU kernels"


def kineto_capture(call: Callable[[], Any], *, device: str, iterations: int, workdir: Path,
                   hooks: MeasureHooks | None = None, warmup_calls: int = CAPTURE_WARMUP_CALLS,
                   file_name: str = "kineto_trace.json.gz") -> tuple[KernelTrace, Path]:
    """Profile ``iterations`` calls of ``call`` on ``device`` with torch.profiler and parse the trace.

    Args:
        call: one inference (an eager forward pass, a CUDA-graph replay, ``session.run_with_iobinding``).
        device: ``cuda:N``: the device synchronized after each call.
        iterations: profiled calls (>= 1), each in ``record_function(f"iteration {i}")``.
        workdir: where the trace file goes (created).
        hooks: ``check_cancelled`` is called between calls; ``stage`` announces the profiled part.
        warmup_calls: unprofiled calls first.
        file_name: the trace's file name under ``workdir`` (``.gz``: torch writes it gzip-compressed).

    Returns:
        ``(trace, path)``: the parsed :class:`profiles.kernels.KernelTrace` (``tool_version`` ``torch X``,
        ``meta["capture"]``: iterations, warm-up calls, device) and the trace file.

    Raises:
        EngineUnavailableError: torch is not installed, or has no CUDA on this machine.
        EngineError: ``iterations`` < 1, or the trace had no kernels for any iteration.
        JobCancelled: from ``hooks.check_cancelled``.
        ParseError: the exported trace could not be read.
    """
    if iterations < 1:
        raise EngineError(f"kernel capture: iterations must be >= 1, got {iterations}")
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile, record_function
    except ImportError as exc:
        raise EngineUnavailableError(f"--profile-kernels: kernel timelines use torch.profiler, and torch is not "
                                     f"importable here ({exc}); pip install torch") from None
    if not torch.cuda.is_available():
        raise EngineUnavailableError(f"--profile-kernels: torch {torch.__version__} sees no CUDA device here; "
                                     f"{CUDA_ONLY}")
    dev = torch.device(device)
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(warmup_calls):
        call()
        torch.cuda.synchronize(dev)
    if hooks is not None:
        hooks.stage(f"kernel timeline: {iterations} iterations under torch.profiler")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(iterations):
            if hooks is not None:
                hooks.check_cancelled()
            with record_function(f"iteration {i}"):
                call()
                torch.cuda.synchronize(dev)
    path = workdir / file_name
    prof.export_chrome_trace(str(path))
    trace = parse_kineto_trace(path)
    trace.tool_version = f"torch {torch.__version__}"
    trace.meta["capture"] = {"iterations": iterations, "warmup_calls": warmup_calls, "device": device,
                             "range": "record_function('iteration N') around each call and a device synchronize"}
    if not any(a.iteration is not None for a in trace.kernels()):
        raise EngineError(f"kernel capture on {device}: torch.profiler recorded no GPU kernel inside the "
                          f"{iterations} iteration ranges ({'; '.join(trace.notes) or 'CUPTI saw nothing'}); "
                          f"trace kept at {path}")
    return trace, path
