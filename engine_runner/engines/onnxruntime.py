"""ONNX Runtime engine for ``model_bench`` (CPU execution provider).

- Session: ``onnxruntime.InferenceSession`` with ``graph_optimization_level=ORT_ENABLE_ALL``,
  sequential execution, ``intra_op_num_threads`` from ``spec.intra_op_threads`` (0 = ONNX Runtime's
  default: one thread per physical core), providers ``["CPUExecutionProvider"]``.
- Timing: :func:`engine_runner.timing.time_calls` around ``session.run(None, feeds)``. On the CPU
  execution provider ``run`` is synchronous and inputs/outputs are host numpy arrays, so each sample
  is the full call: input binding, kernels, output allocation and the copy into numpy.
- Layers: a *separate* short session with ``enable_profiling=True`` after the timed loop (the
  profiler adds per-kernel bookkeeping, so it never runs during the headline measurement):
  :data:`PROFILE_WARMUP_RUNS` warm-up runs then up to :data:`PROFILE_RUNS` runs (at most
  :data:`PROFILE_MAX_S` seconds); the trace is parsed by :mod:`profiles.ort_profile` with the warm-up
  runs skipped, and kept as an ``ort_profile`` artifact.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from engine_runner.engines.base import EngineMeasurement, LayerRow, MeasureHooks, PreparedVariant, guard_layer_profile
from engine_runner.precision import ONNX_VARIANT_PRECISIONS
from engine_runner.timing import TimingPolicy, time_calls
from profiles.catalog import resolve_precision
from profiles.errors import EngineError, EngineScopeError, EngineUnavailableError, InputError, JobCancelled
from profiles.ort_profile import OrtNodeTiming, load_ort_trace
from profiles.specs import BenchSpec

PROVIDERS = ["CPUExecutionProvider"]
PROFILE_WARMUP_RUNS = 2
PROFILE_RUNS = 20
PROFILE_MAX_S = 3.0

TIMING_WINDOW = ("onnxruntime InferenceSession.run() on CPUExecutionProvider, synchronous: perf_counter_ns "
                 "around the call; includes input binding, all kernels, output allocation and copy to numpy; "
                 "no host-device copies (CPU)")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailableError(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from None
    return onnxruntime


def _session_options(spec: BenchSpec | None, profile_prefix: Path | None = None) -> tuple[Any, dict[str, Any]]:
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    threads = spec.intra_op_threads if spec is not None and spec.intra_op_threads else 0
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    config = {"providers": list(PROVIDERS), "intra_op_threads": threads or f"default ({os.cpu_count()} logical CPUs)",
              "inter_op_threads": "default (sequential execution)", "execution_mode": "ORT_SEQUENTIAL",
              "graph_optimization_level": "ORT_ENABLE_ALL"}
    return so, config


def _new_session(model_path: Path, so: Any, what: str) -> Any:
    ort = _ort()
    try:
        return ort.InferenceSession(str(model_path), sess_options=so, providers=PROVIDERS)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
        raise EngineError(f"onnxruntime could not load {what} ({Path(model_path).name}): {type(exc).__name__}: "
                          f"{str(exc).strip()[:2000]}") from exc


def _run(session: Any, inputs: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    try:
        values = session.run(None, inputs)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
        raise EngineError(f"onnxruntime failed to run {what}: {type(exc).__name__}: {str(exc).strip()[:2000]}") from exc
    names = [o.name for o in session.get_outputs()]
    return {n: np.asarray(v) for n, v in zip(names, values)}


def reference_outputs(model_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """fp32 outputs of ``model_path`` on ONNX Runtime CPU for ``inputs`` (the accuracy reference).

    Raises:
        EngineError: the session cannot be created or run.
    """
    so, _ = _session_options(None)
    return _run(_new_session(model_path, so, "the fp32 reference"), inputs, "the fp32 reference")


def layer_rows(nodes: list[OrtNodeTiming]) -> list[LayerRow]:
    """``layer_timings`` rows from parsed profiler nodes; ``precision`` is the node's first output dtype."""
    rows = []
    for n in nodes:
        details: dict[str, Any] = {"provider": n.provider, "input_shapes": n.input_shapes,
                                   "output_shapes": n.output_shapes,
                                   "inputs": [{"dtype": d, "shape": s} for d, s in zip(n.input_dtypes, n.input_shapes)],
                                   "outputs": [{"dtype": d, "shape": s} for d, s in zip(n.output_dtypes, n.output_shapes)]}
        rows.append(LayerRow(name=n.name, op_type=n.op_type, avg_ms=n.avg_ms, median_ms=n.median_ms,
                             total_ms=n.total_ms, count=n.count, percentage=n.percentage,
                             precision=n.output_dtypes[0] if n.output_dtypes else None, fused=n.fused,
                             details={k: v for k, v in details.items() if v not in (None, [])}))
    return rows


class Engine:
    """ONNX Runtime (CPU) implementation of ``BenchEngine``; precisions come from ONNX variants."""

    name = "onnxruntime"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def version(self) -> str:
        """``onnxruntime.__version__``."""
        return str(_ort().__version__)

    def onnx_variant_for(self, precision: str) -> str:
        """The precision itself: each ONNX Runtime precision of ``profiles.catalog`` is an ONNX variant
        (fp32/fp16/int8-dynamic/int8-qdq, made by ``engine_runner.precision``).

        Raises:
            InputError: ``--precision``: not a precision of onnxruntime (bf16, fp8, best...; lists the choices).
        """
        canonical, _ = resolve_precision(self.name, precision)
        if canonical not in ONNX_VARIANT_PRECISIONS:  # the catalogue and the variant maker disagree
            raise InputError(f"--precision: {canonical!r} has no ONNX variant maker in engine_runner.precision "
                             f"(it makes {', '.join(ONNX_VARIANT_PRECISIONS)})")
        return canonical

    def prepare(self, model_path: Path, precision: str, shapes_by_batch: dict[int, dict[str, list[int]]],
                spec: BenchSpec, workdir: Path) -> PreparedVariant:
        """An ``InferenceSession`` on the variant (dynamic shapes need nothing more on ONNX Runtime).

        Raises:
            EngineUnavailableError: ``spec.device`` is not ``cpu`` (no CUDA provider in this engine yet).
            EngineError: the session cannot be created (e.g. no CPU kernel for an op at this precision:
                the message is ONNX Runtime's, naming the node).
        """
        if spec.device != "cpu":  # never a silent CPU run for a CUDA request
            raise EngineUnavailableError(f"--device {spec.device}: this ONNX Runtime engine runs the "
                                         f"CPUExecutionProvider only (CUDAExecutionProvider support is not built yet); "
                                         f"use --device cpu")
        so, config = _session_options(spec)
        t0 = time.perf_counter_ns()
        session = _new_session(model_path, so, f"the {precision} variant")
        config["session_create_s"] = (time.perf_counter_ns() - t0) / 1e9
        return PreparedVariant(precision=precision, model_path=Path(model_path), handle=session, config=config)

    def infer(self, variant: PreparedVariant, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ``session.run``; outputs by name.

        Raises:
            EngineError: ONNX Runtime failed (its message names the node).
        """
        return _run(variant.handle, inputs, f"the {variant.precision} variant")

    def measure(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                hooks: MeasureHooks, workdir: Path) -> EngineMeasurement:
        """First inference (outputs for accuracy), warm-up + timed loop, then a separate profiling session.

        Raises:
            EngineError: the variant fails to run; the profiler trace cannot be read.
            JobCancelled: from ``hooks.check_cancelled``.
        """
        session = variant.handle
        what = f"the {variant.precision} variant"
        outputs = self.infer(variant, inputs)  # also proves the variant runs before timing it
        policy = TimingPolicy(warmup_iterations=spec.warmup_iterations, warmup_s=spec.warmup_s,
                              iterations=spec.iterations, min_duration_s=spec.min_duration_s,
                              max_duration_s=spec.max_duration_s)
        weight = 0.85 if spec.profile_layers else 1.0

        def on_progress(phase: str, done: int, target: int, elapsed_ns: int) -> None:
            if phase == "warmup":
                hooks.progress(f"warm-up {done}/{target}", 0.1 * weight)
            else:
                frac = max(done / target, elapsed_ns / max(policy.min_duration_s * 1e9, 1.0))
                hooks.progress(f"timing {done}/{target}", weight * (0.1 + 0.9 * min(frac, 1.0)))

        def call() -> None:
            session.run(None, inputs)

        hooks.stage("warm-up and timing")
        try:
            result = time_calls(call, policy, check_cancelled=hooks.check_cancelled, progress=on_progress)
        except EngineScopeError:  # JobCancelled and our own errors pass through
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise EngineError(f"onnxruntime failed while timing {what}: {type(exc).__name__}: {exc}") from exc

        layers: list[LayerRow] = []
        artifacts: list[tuple[str, Path, dict[str, Any]]] = []
        config: dict[str, Any] = {**result.as_config()}
        if spec.profile_layers:
            hooks.stage("profiling layers (separate session)")
            hooks.progress("profiling", 0.9)
            profiled, prof_error = guard_layer_profile(
                lambda: self._profile(variant, inputs, spec, workdir, hooks), what)
            if prof_error is not None:
                config["layer_profile_error"] = prof_error
            else:
                layers, trace, prof_cfg = profiled
                artifacts.append(("ort_profile", trace, {"format": "onnxruntime chrome trace JSON", **prof_cfg}))
                config["layer_profile"] = prof_cfg
        hooks.progress("measured", 1.0)
        return EngineMeasurement(samples_ns=result.samples_ns, outputs=outputs, timing_window=TIMING_WINDOW,
                                 layers=layers, artifacts=artifacts, config=config)

    def _profile(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec, workdir: Path,
                 hooks: MeasureHooks) -> tuple[list[LayerRow], Path, dict[str, Any]]:
        workdir.mkdir(parents=True, exist_ok=True)
        so, _ = _session_options(spec, profile_prefix=workdir / "ort_profile")
        what = f"the {variant.precision} variant (profiling session)"
        session = _new_session(variant.model_path, so, what)
        t0 = time.perf_counter_ns()
        runs = 0
        try:
            for _ in range(PROFILE_WARMUP_RUNS):
                session.run(None, inputs)
            while runs < PROFILE_RUNS and (runs < 2 or time.perf_counter_ns() - t0 < PROFILE_MAX_S * 1e9):
                hooks.check_cancelled()
                session.run(None, inputs)
                runs += 1
        except JobCancelled:
            session.end_profiling()
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise EngineError(f"onnxruntime failed to run {what}: {type(exc).__name__}: {exc}") from exc
        trace = Path(session.end_profiling())
        prof = load_ort_trace(trace, skip_runs=PROFILE_WARMUP_RUNS)
        cfg = {"warmup_runs": PROFILE_WARMUP_RUNS, "profiled_runs": prof.inferences, "nodes": len(prof.nodes),
               "note": "separate profiling session after the timed loop; times per inference"}
        return layer_rows(prof.nodes), trace, cfg

    def release(self, variant: PreparedVariant) -> None:
        """Drop the session (ONNX Runtime frees it when the last reference goes)."""
        variant.handle = None
