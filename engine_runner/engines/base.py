"""The engine contract of ``model_bench``: what an engine implements and the records it returns.

Engines (``engine_runner/engines/<name>.py``) import this module; the job
(``engine_runner.jobs.model_bench``) imports the engines through :func:`engine_runner.engines.get_engine_impl`.
Nothing under ``engine_runner.engines`` imports ``engine_runner.jobs`` (tests/unit/test_engine_contract.py
checks it), so there is no import cycle.

- :class:`BenchEngine`: the protocol the job loop drives (context manager; ``version``,
  ``onnx_variant_for``, ``prepare``, ``infer``, ``measure``, ``release``).
- :class:`PreparedVariant`, :class:`EngineMeasurement`, :class:`LayerRow`: what an engine returns.
- :class:`MeasureHooks`: callbacks the job gives an engine while it measures.
- :func:`guard_layer_profile`: keeps timed samples when per-layer profiling fails.
- :class:`NativeModelEngine`, :class:`ModelInputs`, :func:`model_formats`: an engine that runs a model
  format of its own (PyTorch: Hugging Face folders, ``.pt2``) rather than ONNX variants.
- :class:`KernelCaptureEngine`: an engine that can record a kernel timeline of a prepared variant
  (``--profile-kernels N``; optional: engines without ``capture_kernels`` are refused by ``plan``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from profiles.errors import JobCancelled

if TYPE_CHECKING:
    from profiles.kernels import KernelTrace
    from profiles.specs import BenchSpec


@dataclass
class LayerRow:
    """One per-layer timing to store in ``layer_timings`` (see ``db.models.LayerTiming``).

    Times are ms per inference (``avg_ms`` mean, ``median_ms``), ``total_ms`` over ``count``
    invocations, ``percentage`` of the run's summed layer time. ``details``: JSON (provider,
    ``input_shapes``/``output_shapes`` as ``[[dims]]``, ``inputs``/``outputs`` as
    ``[{"dtype", "shape"}]``, tool-specific fields).
    """

    name: str
    op_type: str | None
    avg_ms: float | None
    median_ms: float | None = None
    total_ms: float | None = None
    count: int | None = None
    percentage: float | None = None
    precision: str | None = None
    tactic: str | None = None
    fused: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedVariant:
    """What :meth:`BenchEngine.prepare` returns: an engine-owned handle ready to run.

    Attributes:
        precision: the requested precision.
        model_path: the ONNX file the handle was made from.
        handle: engine-specific (an ``onnxruntime.InferenceSession``, a TensorRT engine...).
        config: JSON-safe settings actually used (providers, threads, builder flags...); merged into
            ``runs.config``.
        artifacts: ``(kind, absolute path, meta)`` files made while preparing (e.g. a TensorRT engine).
    """

    precision: str
    model_path: Path
    handle: Any
    config: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[str, Path, dict[str, Any]]] = field(default_factory=list)


@dataclass
class EngineMeasurement:
    """What :meth:`BenchEngine.measure` returns for one (precision, batch size).

    Attributes:
        samples_ns: int64 array ``[n]``: per-iteration latency, ns, after warm-up.
        outputs: ``{output_name: array}`` of one inference on the given inputs (for accuracy).
        timing_window: what a sample includes (call, copies, synchronisation, CUDA graphs...).
        layers: per-layer rows (empty when profiling was off or unsupported).
        artifacts: ``(kind, absolute path, meta)`` (profiler traces, logs).
        config: JSON-safe facts of this measurement (warm-up/iterations used...), into ``runs.config``.
        metrics: extra ``run_metrics``: ``name -> (value, unit)``.
        extra_samples_ns: other per-iteration series (``h2d`` -> samples), summarised as ``<name>_ms``.
    """

    samples_ns: np.ndarray
    outputs: dict[str, np.ndarray]
    timing_window: str
    layers: list[LayerRow] = field(default_factory=list)
    artifacts: list[tuple[str, Path, dict[str, Any]]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, tuple[float, str]] = field(default_factory=dict)
    extra_samples_ns: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class MeasureHooks:
    """Callbacks an engine calls while measuring.

    Attributes:
        check_cancelled: call between iterations; raises ``JobCancelled`` (cheap: it reads the DB at
            most every 0.5 s).
        progress: ``progress(message, fraction)``, fraction in [0, 1] of this measurement.
        stage: ``stage(message)`` marks a new stage (``warm-up``, ``timing``, ``profiling``).
        mark_window: ``mark_window(start_ns, end_ns)``: the timed loop's window as ``time.perf_counter_ns()``
            readings (``engine_runner.timing.TimingResult.timed_start_ns`` / ``timed_end_ns``); the job
            restricts GPU telemetry (energy per inference, average power, clocks, throttling) to it. An engine
            that never calls it gets no energy figures. Default: does nothing.
    """

    check_cancelled: Callable[[], None]
    progress: Callable[[str, float], None]
    stage: Callable[[str], None]
    mark_window: Callable[[int, int], None] = field(default=lambda start_ns, end_ns: None)

    def timing_progress(self, min_duration_s: float, weight: float) -> Callable[[str, int, int, int], None]:
        """The ``progress`` callback of :func:`engine_runner.timing.time_calls` for this measurement.

        Warm-up reports 10% of ``weight``; the timed loop the rest, by the larger of iterations done/target and
        elapsed/``min_duration_s`` (whichever bound ends the loop). ``weight`` is the share of the measurement
        the timed loop takes (the rest is per-layer profiling), in [0, 1].
        """
        def on_progress(phase: str, done: int, target: int, elapsed_ns: int) -> None:
            if phase == "warmup":
                self.progress(f"warm-up {done}/{target}" if done <= target else f"warm-up {done} (min {target})",
                              0.1 * weight)
            else:
                frac = max(done / max(target, 1), elapsed_ns / max(min_duration_s * 1e9, 1.0))
                # past the iteration minimum the loop runs on for min_duration_s: say that, not "3673/100"
                text = (f"timing {done}/{target}" if done <= target else
                        f"timing {done} iterations (min {target}), {elapsed_ns / 1e9:.1f}/{min_duration_s:g} s")
                self.progress(text, weight * (0.1 + 0.9 * min(frac, 1.0)))

        return on_progress


@runtime_checkable
class BenchEngine(Protocol):
    """An inference engine the ``model_bench`` loop can drive (a context manager, Polygraphy-style).

    Construction must be cheap and must not import the engine's package (do that in :meth:`version`
    / :meth:`prepare`), so that ``engine_runner.jobs.model_bench.plan`` can ask :meth:`onnx_variant_for` on any machine.

    Errors: bad input -> ``InputError``; the engine's package missing -> ``EngineUnavailableError``;
    a failed build/session/run -> ``EngineError`` whose message names the precision and the model.
    """

    name: str

    def __enter__(self) -> BenchEngine: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def version(self) -> str:
        """The engine's version string (stored as ``runs.engine_version``)."""
        ...

    def onnx_variant_for(self, precision: str) -> str:
        """Which ONNX variant (``fp32``/``fp16``/``int8-dynamic``/``int8-qdq``) to feed
        :meth:`prepare` for ``precision`` (e.g. TensorRT 10 may take ``fp32`` and build with
        ``--fp16``). Raises ``InputError`` when the engine does not support ``precision``."""
        ...

    def prepare(self, model_path: Path, precision: str, shapes_by_batch: dict[int, dict[str, list[int]]],
                spec: BenchSpec, workdir: Path) -> PreparedVariant:
        """Make the variant runnable for every shape in ``shapes_by_batch`` (batch -> input shapes)."""
        ...

    def infer(self, variant: PreparedVariant, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference; outputs by name (host arrays)."""
        ...

    def measure(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                hooks: MeasureHooks, workdir: Path) -> EngineMeasurement:
        """Warm up, time (``engine_runner.timing``), profile layers (separately from the timed loop when
        the profiler would distort it) and return everything measured."""
        ...

    def release(self, variant: PreparedVariant) -> None:
        """Free what :meth:`prepare` holds."""
        ...


@dataclass
class ModelInputs:
    """What :meth:`NativeModelEngine.model_inputs` says about a model's inputs.

    Attributes:
        specs: the inputs (``engine_runner.inputs.InputSpec``: name, numpy dtype, dims with symbolic names).
        default_dims: ``{symbolic dim: size}`` used where neither ``--shape``, ``--dim`` nor the ``--inputs``
            file sets the dim (e.g. ``{"sequence": 128}`` from ``--seq-len``).
        config: JSON facts for ``runs.config`` (model kind, loader, inputs rules...).
    """

    specs: list[Any]
    default_dims: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class NativeModelEngine(BenchEngine, Protocol):
    """An engine that runs models in formats of its own (``Model.format`` in :attr:`model_formats`, e.g. the
    PyTorch engine: ``hf`` folders and ``pt2`` programs) instead of ONNX variants: the job skips
    ``engine_runner.precision.ensure_variant`` and passes the model's own path to :meth:`prepare`, asks the
    engine for the inputs, their generated data and the fp32 reference outputs.

    An engine without :attr:`model_formats` runs ONNX only (``("onnx",)``).
    """

    model_formats: tuple[str, ...]

    def model_inputs(self, model_path: Path, model_format: str, spec: BenchSpec,
                     npz: dict[str, np.ndarray] | None) -> ModelInputs:
        """The model's inputs (from ``npz``'s keys when the user gave ``--inputs``).

        Raises:
            InputError / ModelError: unreadable model, pickles not allowed, bad ``--inputs`` keys.
        """
        ...

    def check_run(self, model_path: Path, model_format: str, spec: BenchSpec,
                  shapes_by_batch: dict[int, dict[str, list[int]]]) -> dict[str, Any]:
        """Validate the spec's precisions, device, options and resolved shapes for this model (before any
        job exists); returns JSON facts for ``runs.config``.

        Raises:
            InputError: naming the flag (``--precision``, ``--device``, ``--seq-len``...).
        """
        ...

    def generate_inputs(self, model_path: Path, model_format: str, specs: list[Any],
                        shapes: dict[str, list[int]], seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """One seeded batch of inputs and its description (``runs.config["inputs"]``)."""
        ...

    def reference_outputs(self, model_path: Path, model_format: str, spec: BenchSpec,
                          inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
        """fp32 outputs of the model on ``inputs`` and a sentence saying how they were made (the accuracy
        reference when the job has no fp32 run of that batch)."""
        ...


@runtime_checkable
class KernelCaptureEngine(BenchEngine, Protocol):
    """An engine that records GPU kernel timelines (``BenchSpec.kernel_iterations`` > 0, ``--profile-kernels N``).

    The job calls :meth:`capture_kernels` after a (precision, batch) configuration was measured, with the same
    prepared variant and inputs, and stores the result as its *own* profiled run (``db.kernels``): the
    profiler never runs during the timed loop and its iterations are never latency samples of the measured run.
    A capture that raises leaves the measured run as it is (the job records a warning and the reason in the
    measured run's ``runs.config["kernel_capture_error"]``).
    """

    def capture_kernels(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                        hooks: MeasureHooks, workdir: Path,
                        iterations: int) -> tuple[KernelTrace, list[tuple[str, Path, dict[str, Any]]]]:
        """Warm up, then profile ``iterations`` inferences of ``variant`` on ``inputs`` (each inside
        ``record_function("iteration N")`` with a device synchronize: ``engine_runner.kernel_capture``), replaying
        the CUDA graph when the configuration uses one.

        Returns:
            ``(trace, artifacts)``: the parsed :class:`profiles.kernels.KernelTrace` (times ns from its origin,
            kernels with ``iteration`` and ``op``) and the raw files as ``(kind, absolute path, meta)``
            (``kineto_trace``; ONNX Runtime also ``ort_profile``).

        Raises:
            InputError: the variant runs on a device without CUDA (names ``--profile-kernels``).
            EngineUnavailableError: torch (the profiler) or its CUDA is missing.
            EngineError / ParseError: the capture or its trace failed.
            JobCancelled: from ``hooks.check_cancelled``.
        """
        ...


def model_formats(engine: Any) -> tuple[str, ...]:
    """The ``Model.format`` values ``engine`` runs (``("onnx",)`` for an engine that does not say)."""
    return tuple(getattr(engine, "model_formats", ("onnx",)))


def guard_layer_profile(profile: Callable[[], Any], what: str) -> tuple[Any, str | None]:
    """Run an engine's per-layer profiling step so that its failure cannot discard the timed samples.

    Returns ``(profile(), None)``, or ``(None, reason)`` when it raised (``reason`` names ``what`` and the
    exception); the engine then returns no layers and puts ``reason`` in
    ``EngineMeasurement.config["layer_profile_error"]`` (the job loop turns it into a warning event).

    Raises:
        JobCancelled: passed through (cancellation is never swallowed).
    """
    try:
        return profile(), None
    except JobCancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - any profiler failure (ours or the engine's) keeps the timings
        return None, f"per-layer profiling of {what} failed: {type(exc).__name__}: {exc}"
