"""ONNX Runtime engine for ``model_bench``: CPUExecutionProvider (``--device cpu``) or CUDAExecutionProvider
(``--device cuda:N``).

Sessions: ``onnxruntime.InferenceSession`` with ``graph_optimization_level=ORT_ENABLE_ALL``, sequential
execution, ``intra_op_num_threads`` from ``spec.intra_op_threads`` (0 = ONNX Runtime's default: one thread
per physical core; on CUDA it serves the nodes left on the CPU).

Providers (:func:`check_provider`, :func:`check_session_provider`): the requested provider must be in
``onnxruntime.get_available_providers()`` *and* first in the created session's ``get_providers()``;
otherwise :class:`~profiles.errors.EngineUnavailableError` / :class:`~profiles.errors.EngineError` naming
the provider, never a silent CPU run (ONNX Runtime itself falls back to the CPU when the CUDA libraries
do not load). A CUDA session lists ``[("CUDAExecutionProvider", {"device_id": N, ...}),
"CPUExecutionProvider"]``: ONNX Runtime places nodes without a CUDA kernel on the CPU, and the profiler
shows which (see below). ``onnxruntime.preload_dlls()`` runs first when present (it loads the CUDA and
cuDNN libraries of the nvidia-* wheels, e.g. those PyTorch installed).

Timing (:func:`engine_runner.timing.time_calls`):

- CPU: each sample is one ``session.run(None, feeds)`` (:data:`TIMING_WINDOW`): synchronous, host numpy in
  and out, so it includes input binding, all kernels, output allocation and the copy into numpy.
- CUDA: inputs are copied once to ``cuda:N`` as ``OrtValue`` s and outputs pre-allocated there, both bound
  through ``io_binding`` (:class:`BoundIO`); each sample is one ``session.run_with_iobinding(binding)``,
  which returns after ONNX Runtime synchronises its CUDA stream: GPU work + launch, I/O resident on the
  device, no host copies (:func:`timing_window`). With ``spec.cuda_graph`` (``--cuda-graph``) each batch
  size gets its own session with the provider option ``enable_cuda_graph=1``: the first runs capture the
  graph (warm-up), every timed call replays it. A graph replays fixed shapes and addresses only, so a model
  whose shapes can change between iterations (data-dependent ops, control flow: :data:`DYNAMIC_SHAPE_OPS`)
  is refused with ``--cuda-graph`` (:func:`check_cuda_graph_model`).
- ``Engine(io_binding=True)`` times the CPU provider through the same :class:`BoundIO` path (host
  ``OrtValue`` s), so the binding code is exercised on machines without a GPU.

Layers: a *separate* short session with ``enable_profiling=True`` after the timed loop (the profiler adds
per-kernel bookkeeping, so it never runs during the headline measurement), on the same provider and
binding, without CUDA graphs (a replayed graph has no per-node events): :data:`PROFILE_WARMUP_RUNS` warm-up
runs then up to :data:`PROFILE_RUNS` runs (at most :data:`PROFILE_MAX_S` seconds); parsed by
:mod:`profiles.ort_profile` (warm-up skipped), kept as an ``ort_profile`` artifact. From the same trace:
nodes per execution provider and the nodes that fell back to the CPU (``runs.config["placement"]`` and a
warning). On CUDA a node's time is the host-side enqueue time of its work, not GPU execution time
(``profiles.ort_profile.TIME_BASIS``; stored with every row as ``details.time_basis``). On CUDA the
placement is checked even with ``--no-layers`` (one profiled run, no rows).

Kernel timelines (``--profile-kernels N``, :meth:`Engine.capture_kernels`): after the measured run, a capture
session with the same options runs under torch.profiler (CUPTI) and ONNX Runtime's profiler at once; kernels are
attributed to the node whose host span holds their launch (``profiles.kineto_trace``). Stored as a separate
profiled run by the job.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from engine_runner.engines.base import EngineMeasurement, LayerRow, MeasureHooks, PreparedVariant, guard_layer_profile
from engine_runner.precision import ONNX_VARIANT_PRECISIONS
from engine_runner.timing import TimingPolicy, time_calls
from profiles.catalog import parse_device, resolve_precision
from profiles.errors import EngineError, EngineScopeError, EngineUnavailableError, InputError, JobCancelled
from profiles.kernels import KernelTrace
from profiles.ort_profile import TIME_BASIS, OrtNodeTiming, load_ort_trace, provider_placement
from profiles.specs import BenchSpec

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
#: Providers of a CPU session (kept for callers of the CPU-only engine).
PROVIDERS = [CPU_PROVIDER]
PROFILE_WARMUP_RUNS = 2
PROFILE_RUNS = 20
PROFILE_MAX_S = 3.0

#: Ops whose output shapes depend on the data (or that run subgraphs): shapes can change from one
#: iteration to the next, which a CUDA graph (fixed shapes and addresses) cannot replay.
DYNAMIC_SHAPE_OPS = frozenset({"NonZero", "Unique", "NonMaxSuppression", "Compress", "If", "Loop", "Scan"})

TIMING_WINDOW = ("onnxruntime InferenceSession.run() on CPUExecutionProvider, synchronous: perf_counter_ns "
                 "around the call; includes input binding, all kernels, output allocation and copy to numpy; "
                 "no host-device copies (CPU)")

INSTALL_GPU_HINT = ("install ONNX Runtime's GPU build in place of the CPU one: pip uninstall -y onnxruntime && "
                    "pip install onnxruntime-gpu (its CUDA major version must match the driver's CUDA libraries; "
                    "onnxruntime-gpu 1.31.1 on PyPI is the CUDA 13 build)")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailableError(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from None
    return onnxruntime


_PRELOAD: dict[str, str] = {}


def preload_cuda_libraries(ort: Any) -> str:
    """``onnxruntime.preload_dlls()`` once per process when this onnxruntime has it (1.21+); returns what
    happened (``"ok"``, ``"absent"`` or the error), stored in ``runs.config["preload_dlls"]``."""
    if "result" not in _PRELOAD:
        fn = getattr(ort, "preload_dlls", None)
        if fn is None:
            _PRELOAD["result"] = "absent (onnxruntime < 1.21)"
        else:
            try:
                fn()
                _PRELOAD["result"] = "ok"
            except Exception as exc:  # noqa: BLE001 - a failed preload is reported; the provider check decides
                _PRELOAD["result"] = f"failed: {type(exc).__name__}: {exc}"
    return _PRELOAD["result"]


@dataclass(frozen=True)
class Target:
    """Where a session runs: ``device`` (``cpu``/``cuda:N``), the ``provider`` asked for, the ``OrtValue``
    device (``device_type`` ``"cpu"``/``"cuda"``, ``device_id``) and whether CUDA graphs are on."""

    device: str
    provider: str
    device_type: str
    device_id: int
    cuda_graph: bool = False

    def providers(self) -> list[Any]:
        """The ``providers`` argument of ``InferenceSession``."""
        if self.provider == CPU_PROVIDER:
            return [CPU_PROVIDER]
        opts = {"device_id": str(self.device_id)}
        if self.cuda_graph:
            opts["enable_cuda_graph"] = "1"
        return [(self.provider, opts), CPU_PROVIDER]

    def without_graph(self) -> Target:
        """The same target without CUDA graphs (profiling, accuracy)."""
        return Target(self.device, self.provider, self.device_type, self.device_id, False)


def target_for(device: str, cuda_graph: bool = False) -> Target:
    """The :class:`Target` of ``--device`` (``cpu`` or ``cuda:N``).

    Raises:
        InputError: not a device (``--device``), or ``cuda_graph`` on the CPU (``--cuda-graph``).
    """
    dev = parse_device(device)
    if dev == "cpu":
        if cuda_graph:
            raise InputError("--cuda-graph: CUDA graphs need --device cuda:N")
        return Target("cpu", CPU_PROVIDER, "cpu", 0)
    return Target(dev, CUDA_PROVIDER, "cuda", int(dev.split(":", 1)[1]), cuda_graph)


def check_provider(ort: Any, provider: str) -> None:
    """Refuse a provider this onnxruntime build does not have.

    Raises:
        EngineUnavailableError: ``provider`` not in ``get_available_providers()``; names it, the build's
            providers and, for CUDA, how to install onnxruntime-gpu.
    """
    available = list(ort.get_available_providers())
    if provider in available:
        return
    hint = INSTALL_GPU_HINT if provider == CUDA_PROVIDER else "use a build of onnxruntime that has it"
    raise EngineUnavailableError(
        f"{provider} is not available in onnxruntime {getattr(ort, '__version__', '?')} "
        f"({getattr(ort, '__file__', '?')}; available: {available}): {hint}. EngineScope does not fall back to "
        f"the CPU.")


def check_session_provider(session: Any, provider: str, what: str) -> None:
    """Refuse a session that ONNX Runtime created on another provider than ``provider`` (it falls back to
    the CPU when, e.g., the CUDA or cuDNN libraries fail to load).

    Raises:
        EngineError: ``session.get_providers()`` does not start with ``provider``; names both.
    """
    got = list(session.get_providers())
    if not got or got[0] != provider:
        extra = (" (the CUDA/cuDNN libraries probably failed to load: see ONNX Runtime's log above; "
                 "onnxruntime.preload_dlls() loads those of the nvidia-* wheels)") if provider == CUDA_PROVIDER else ""
        raise EngineError(f"onnxruntime created {what} on {got} instead of {provider}{extra}; "
                          f"EngineScope does not time a CPU fallback")


def check_cuda_graph_model(model_path: Path) -> None:
    """Refuse ``--cuda-graph`` for a model whose shapes can change between iterations.

    Raises:
        InputError: ``--cuda-graph``: names the first node (and op) of :data:`DYNAMIC_SHAPE_OPS` found in
            the graph or a subgraph.
        ModelError: the file is not a readable ONNX model.
    """
    import onnx

    from profiles.errors import ModelError

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, OSError...
        raise ModelError(f"{Path(model_path).name}: not a readable ONNX model ({exc})") from None

    def walk(graph: Any) -> tuple[str, str] | None:
        for node in graph.node:
            if node.op_type in DYNAMIC_SHAPE_OPS:
                return node.name or f"(unnamed {node.op_type})", node.op_type
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    hit = walk(sub)
                    if hit:
                        return hit
        return None

    hit = walk(model.graph)
    if hit:
        name, op = hit
        raise InputError(f"--cuda-graph: node {name!r} ({op}) of {Path(model_path).name} makes shapes data-dependent "
                         f"(they can change between iterations), but a CUDA graph replays fixed shapes and "
                         f"addresses only; run without --cuda-graph")


def _session_options(spec: BenchSpec | None, profile_prefix: Path | None = None,
                     target: Target | None = None) -> tuple[Any, dict[str, Any]]:
    ort = _ort()
    tgt = target or Target("cpu", CPU_PROVIDER, "cpu", 0)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    threads = spec.intra_op_threads if spec is not None and spec.intra_op_threads else 0
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    config = {"providers": [p if isinstance(p, str) else p[0] for p in tgt.providers()],
              "intra_op_threads": threads or f"default ({os.cpu_count()} logical CPUs)",
              "inter_op_threads": "default (sequential execution)", "execution_mode": "ORT_SEQUENTIAL",
              "graph_optimization_level": "ORT_ENABLE_ALL"}
    return so, config


def _new_session(model_path: Path, so: Any, what: str, target: Target | None = None) -> Any:
    ort = _ort()
    tgt = target or Target("cpu", CPU_PROVIDER, "cpu", 0)
    if tgt.provider != CPU_PROVIDER:
        preload_cuda_libraries(ort)
    check_provider(ort, tgt.provider)
    try:
        session = ort.InferenceSession(str(model_path), sess_options=so, providers=tgt.providers())
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
        on = f" on {tgt.provider} ({tgt.device}{', CUDA graph' if tgt.cuda_graph else ''})" \
            if tgt.provider != CPU_PROVIDER else ""
        raise EngineError(f"onnxruntime could not load {what} ({Path(model_path).name}){on}: {type(exc).__name__}: "
                          f"{str(exc).strip()[:2000]}") from exc
    check_session_provider(session, tgt.provider, what)
    return session


def _run(session: Any, inputs: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    try:
        values = session.run(None, inputs)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
        raise EngineError(f"onnxruntime failed to run {what}: {type(exc).__name__}: {str(exc).strip()[:2000]}") from exc
    names = [o.name for o in session.get_outputs()]
    return {n: np.asarray(v) for n, v in zip(names, values)}


class BoundIO:
    """A session's inputs and outputs bound on one device through ``io_binding``.

    Construction copies every input once to ``target``'s device (``OrtValue.ortvalue_from_numpy(array,
    device_type, device_id)``) and binds fixed output buffers there, so every :meth:`run` reads and writes the
    same device buffers (fixed addresses, as CUDA graphs require) and no call copies anything to or from the
    host. The output buffers are either pre-allocated from ``outputs_like`` (``ortvalue_from_shape_and_type``;
    no run: what a CUDA-graph session needs, whose first runs capture the graph), or allocated by ONNX Runtime
    in one *discovery* run with the outputs bound to the device and then bound back explicitly.

    Args:
        session: an ``InferenceSession`` on ``target``'s provider.
        inputs: ``{input name: array}`` (host numpy, the model's dtypes and shapes).
        target: where the values live (``cpu`` or ``cuda:N``).
        outputs_like: ``{output name: host array}`` of a run of the same inputs (their shapes and dtypes are
            used), or None for the discovery run.

    Raises:
        EngineError: an output is not a tensor (io_binding binds tensors only), or the discovery run fails
            (ONNX Runtime's message names the node).
    """

    def __init__(self, session: Any, inputs: dict[str, np.ndarray], target: Target, what: str,
                 outputs_like: dict[str, np.ndarray] | None = None) -> None:
        ort = _ort()
        self.session = session
        self.target = target
        self.what = what
        non_tensor = [o.name for o in session.get_outputs() if not str(o.type).startswith("tensor(")]
        if non_tensor:
            raise EngineError(f"{what}: output(s) {non_tensor} are not tensors "
                              f"({[str(o.type) for o in session.get_outputs() if o.name in non_tensor]}); "
                              f"io_binding on {target.device} binds tensors only")
        self.binding = session.io_binding()
        self.input_values = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), target.device_type,
                                                                    target.device_id)
                             for name, arr in inputs.items()}
        for name, value in self.input_values.items():
            self.binding.bind_ortvalue_input(name, value)
        self.output_names = [o.name for o in session.get_outputs()]
        if outputs_like is not None:
            missing = [n for n in self.output_names if n not in outputs_like]
            if missing:
                raise EngineError(f"{what}: no shape/dtype for output(s) {missing} to pre-allocate on {target.device}")
            self.output_values = [ort.OrtValue.ortvalue_from_shape_and_type(
                list(np.shape(outputs_like[n])), np.asarray(outputs_like[n]).dtype.type, target.device_type,
                target.device_id) for n in self.output_names]
        else:
            for name in self.output_names:
                self.binding.bind_output(name, target.device_type, target.device_id)
            self.run()
            self.output_values = list(self.binding.get_outputs())
            self.binding.clear_binding_outputs()
        for name, value in zip(self.output_names, self.output_values):
            self.binding.bind_ortvalue_output(name, value)

    def run(self) -> None:
        """One ``run_with_iobinding`` (synchronous: returns after the provider's work is done).

        Raises:
            EngineError: ONNX Runtime failed.
        """
        try:
            self.session.run_with_iobinding(self.binding)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise EngineError(f"onnxruntime failed to run {self.what} with io_binding on {self.target.device}: "
                              f"{type(exc).__name__}: {str(exc).strip()[:2000]}") from exc

    def call(self) -> Callable[[], None]:
        """The bare callable to time: ``session.run_with_iobinding`` bound to this binding (no wrapper)."""
        run, binding = self.session.run_with_iobinding, self.binding
        return lambda: run(binding)

    def outputs(self) -> dict[str, np.ndarray]:
        """The bound outputs copied to host numpy (``copy_outputs_to_cpu``), by name."""
        return dict(zip(self.output_names, (np.asarray(v) for v in self.binding.copy_outputs_to_cpu())))

    def shapes(self) -> dict[str, list[int]]:
        """Output shapes of the bound device buffers."""
        return {n: list(v.shape()) for n, v in zip(self.output_names, self.output_values)}


def timing_window(target: Target, io_binding: bool) -> str:
    """What one latency sample includes on ``target`` (stored as ``runs.timing_window``)."""
    if target.provider == CPU_PROVIDER and not io_binding:
        return TIMING_WINDOW
    if target.provider == CPU_PROVIDER:
        return ("onnxruntime InferenceSession.run_with_iobinding() on CPUExecutionProvider, synchronous: "
                "perf_counter_ns around the call; inputs and outputs pre-bound host OrtValues (no numpy conversion, "
                "no output allocation)")
    graph = ("each call replays this batch size's CUDA graph (enable_cuda_graph; captured during warm-up)"
             if target.cuda_graph else "no CUDA graph: kernels launched on every call")
    return (f"GPU work + launch, I/O resident on device, no host copies: perf_counter_ns around "
            f"InferenceSession.run_with_iobinding() on CUDAExecutionProvider ({target.device}), which returns "
            f"after ONNX Runtime synchronises its CUDA stream; inputs and outputs are OrtValues pre-bound on "
            f"{target.device}; {graph}")


def reference_outputs(model_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """fp32 outputs of ``model_path`` on ONNX Runtime CPU for ``inputs`` (the accuracy reference).

    Raises:
        EngineError: the session cannot be created or run.
    """
    so, _ = _session_options(None)
    return _run(_new_session(model_path, so, "the fp32 reference"), inputs, "the fp32 reference")


def layer_rows(nodes: list[OrtNodeTiming]) -> list[LayerRow]:
    """``layer_timings`` rows from parsed profiler nodes; ``precision`` is the node's first output dtype;
    ``details.time_basis`` says what the time measures on the node's provider
    (``profiles.ort_profile.TIME_BASIS``)."""
    rows = []
    for n in nodes:
        details: dict[str, Any] = {"provider": n.provider, "time_basis": TIME_BASIS.get(n.provider or ""),
                                   "input_shapes": n.input_shapes, "output_shapes": n.output_shapes,
                                   "inputs": [{"dtype": d, "shape": s} for d, s in zip(n.input_dtypes, n.input_shapes)],
                                   "outputs": [{"dtype": d, "shape": s} for d, s in zip(n.output_dtypes, n.output_shapes)]}
        rows.append(LayerRow(name=n.name, op_type=n.op_type, avg_ms=n.avg_ms, median_ms=n.median_ms,
                             total_ms=n.total_ms, count=n.count, percentage=n.percentage,
                             precision=n.output_dtypes[0] if n.output_dtypes else None, fused=n.fused,
                             details={k: v for k, v in details.items() if v not in (None, [])}))
    return rows


@dataclass
class _Handle:
    """What ``PreparedVariant.handle`` holds: the (graph-free) session and its target."""

    session: Any
    target: Target


INT8_QDQ_CUDA_NOTE = ("int8-qdq on CUDAExecutionProvider: ONNX Runtime's CUDA provider does not fuse Q/DQ pairs into "
                      "int8 convolutions/GEMMs (TensorRT does), so QuantizeLinear/DequantizeLinear run as their own "
                      "kernels around float operators; the per-node rows show the op types that ran")


class Engine:
    """ONNX Runtime implementation of ``BenchEngine`` (CPU or CUDA provider; precisions are ONNX variants).

    Args:
        io_binding: on the CPU provider, time ``run_with_iobinding`` with host ``OrtValue`` s instead of
            ``session.run`` (the CUDA provider always uses io_binding).
    """

    name = "onnxruntime"

    def __init__(self, io_binding: bool = False) -> None:
        self.io_binding = io_binding

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

    def check_device(self, device: str, cuda_graph: bool = False, model_path: Path | None = None) -> None:
        """Refuse, before any job runs, a device this onnxruntime cannot use (called by
        ``engine_runner.jobs.model_bench.plan``): its provider must be in ``get_available_providers()``;
        with ``cuda_graph`` the model must have fixed shapes (:func:`check_cuda_graph_model`).

        Raises:
            EngineUnavailableError: names the missing provider (for CUDA: how to install onnxruntime-gpu).
            InputError: ``--device`` malformed, ``--cuda-graph`` on the CPU or on a data-dependent model.
        """
        target = target_for(device, cuda_graph)
        ort = _ort()
        if target.provider != CPU_PROVIDER:
            preload_cuda_libraries(ort)
        try:
            check_provider(ort, target.provider)
        except EngineUnavailableError as exc:  # the flag the user set comes first
            raise EngineUnavailableError(f"--device {device}: {exc}") from exc
        if cuda_graph and model_path is not None:
            check_cuda_graph_model(model_path)

    def _uses_binding(self, target: Target) -> bool:
        return target.provider != CPU_PROVIDER or self.io_binding

    def prepare(self, model_path: Path, precision: str, shapes_by_batch: dict[int, dict[str, list[int]]],
                spec: BenchSpec, workdir: Path) -> PreparedVariant:
        """An ``InferenceSession`` on the variant on ``spec.device`` (without CUDA graphs: with
        ``--cuda-graph`` each batch size gets its own graph session in :meth:`measure`).

        Raises:
            EngineUnavailableError: the provider of ``spec.device`` is not in this onnxruntime build.
            EngineError: the session cannot be created, or ONNX Runtime created it on another provider.
            InputError: ``--cuda-graph`` on a model with data-dependent shapes.
        """
        target = target_for(spec.device, spec.cuda_graph)
        if target.cuda_graph:
            check_cuda_graph_model(model_path)
        so, config = _session_options(spec, target=target)
        t0 = time.perf_counter_ns()
        session = _new_session(model_path, so, f"the {precision} variant", target.without_graph())
        config["session_create_s"] = (time.perf_counter_ns() - t0) / 1e9
        config["io_binding"] = self._uses_binding(target)
        if target.provider != CPU_PROVIDER:
            ort = _ort()
            config.update({"device": target.device, "cuda_graph": target.cuda_graph,
                           "provider_options": _provider_options(session, target.provider),
                           "preload_dlls": preload_cuda_libraries(ort)})
            if precision == "int8-qdq":
                config["engine_notes"] = [INT8_QDQ_CUDA_NOTE]
        return PreparedVariant(precision=precision, model_path=Path(model_path), handle=_Handle(session, target),
                               config=config)

    def infer(self, variant: PreparedVariant, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ``session.run`` on the variant's (graph-free) session, host arrays in and out; outputs by name.

        Raises:
            EngineError: ONNX Runtime failed (its message names the node).
        """
        return _run(variant.handle.session, inputs, f"the {variant.precision} variant")

    def measure(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                hooks: MeasureHooks, workdir: Path) -> EngineMeasurement:
        """First inference (outputs for accuracy), warm-up + timed loop, then a separate profiling session.

        The timed loop's window is reported through ``hooks.mark_window`` (``time.perf_counter_ns`` values)
        so that GPU telemetry is restricted to it.

        Raises:
            EngineError: the variant fails to run; the CUDA graph session cannot be made.
            JobCancelled: from ``hooks.check_cancelled``.
        """
        handle: _Handle = variant.handle
        target = handle.target
        what = f"the {variant.precision} variant"
        policy = TimingPolicy(warmup_iterations=spec.warmup_iterations, warmup_s=spec.warmup_s,
                              iterations=spec.iterations, min_duration_s=spec.min_duration_s,
                              max_duration_s=spec.max_duration_s)
        weight = 0.85 if spec.profile_layers else 1.0
        config: dict[str, Any] = {}
        warnings: list[str] = []

        on_progress = hooks.timing_progress(policy.min_duration_s, weight)

        bound: BoundIO | None = None
        graph_session = None
        if self._uses_binding(target):
            session = handle.session
            like: dict[str, np.ndarray] | None = None
            if target.cuda_graph:
                like = self.infer(variant, inputs)  # output shapes/dtypes (and proof the variant runs), plain session
                hooks.stage("creating the CUDA graph session")
                so, _ = _session_options(spec, target=target)
                t0 = time.perf_counter_ns()
                try:
                    graph_session = session = _new_session(variant.model_path, so, f"{what} (CUDA graph session)",
                                                           target)
                except EngineError as exc:
                    if "graph capture" not in str(exc):
                        raise
                    raise EngineError(f"{exc}. --cuda-graph: ONNX Runtime captures a CUDA graph only when every node "
                                      f"runs on {target.provider}; it keeps shape computations of symbolic dims "
                                      "(and ops its CUDA provider lacks) on the CPU. Run without --cuda-graph to see "
                                      "which nodes fall back (the run's warnings list them), or fix the dims and "
                                      "fold the shape subgraph (e.g. `enginescope export` with the simplifier, "
                                      "onnxsim or polygraphy installed)") from exc
                config["cuda_graph_session_create_s"] = (time.perf_counter_ns() - t0) / 1e9
            # without a graph the discovery run also proves the variant runs before timing it
            bound = BoundIO(session, inputs, target, what, outputs_like=like)
            call = bound.call()
        else:
            outputs = self.infer(variant, inputs)  # also proves the variant runs before timing it
            cpu_session = handle.session

            def call() -> None:
                cpu_session.run(None, inputs)

        hooks.stage("warm-up and timing")
        try:
            result = time_calls(call, policy, check_cancelled=hooks.check_cancelled, progress=on_progress)
        except EngineScopeError:  # JobCancelled and our own errors pass through
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise EngineError(f"onnxruntime failed while timing {what}: {type(exc).__name__}: {exc}") from exc
        if result.timed_start_ns is not None and result.timed_end_ns is not None:
            hooks.mark_window(result.timed_start_ns, result.timed_end_ns)
        config.update(result.as_config())

        if bound is not None:
            outputs = bound.outputs()  # the last timed call's outputs (the graph replay's, with --cuda-graph)
            config["output_shapes"] = bound.shapes()
            if graph_session is not None and like is not None:
                check = _graph_matches_plain(outputs, like)
                config["cuda_graph_check"] = check
                if not check["match"]:
                    warnings.append(f"CUDA graph replay outputs differ from a plain run of the same inputs "
                                    f"({check}); the graph may be replaying stale shapes or buffers")
                del call, bound, graph_session  # free the graph session's device memory before profiling

        layers: list[LayerRow] = []
        artifacts: list[tuple[str, Path, dict[str, Any]]] = []
        placement_only = not spec.profile_layers and target.provider != CPU_PROVIDER
        if spec.profile_layers or placement_only:
            hooks.stage("profiling layers (separate session)" if spec.profile_layers
                        else "checking node placement (one profiled run)")
            hooks.progress("profiling", 0.9)
            profiled, prof_error = guard_layer_profile(
                lambda: self._profile(variant, inputs, spec, workdir, hooks, placement_only), what)
            if prof_error is not None:
                config["layer_profile_error"] = prof_error
            else:
                rows, trace, prof_cfg, placement = profiled
                artifacts.append(("ort_profile", trace, {"format": "onnxruntime chrome trace JSON", **prof_cfg}))
                config["layer_profile"] = prof_cfg
                config["placement"] = placement.as_dict()
                if not placement_only:
                    layers = rows
                if target.provider != CPU_PROVIDER and placement.warning():
                    warnings.append(f"CPU fallback: {placement.warning()}")
        if warnings:
            config["engine_warnings"] = warnings
        hooks.progress("measured", 1.0)
        return EngineMeasurement(samples_ns=result.samples_ns, outputs=outputs,
                                 timing_window=timing_window(target, self._uses_binding(target)),
                                 layers=layers, artifacts=artifacts, config=config)

    def _profile(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec, workdir: Path,
                 hooks: MeasureHooks, placement_only: bool = False) -> tuple[list[LayerRow], Path, dict[str, Any], Any]:
        workdir.mkdir(parents=True, exist_ok=True)
        target = variant.handle.target.without_graph()
        so, _ = _session_options(spec, profile_prefix=workdir / "ort_profile", target=target)
        what = f"the {variant.precision} variant (profiling session)"
        session = _new_session(variant.model_path, so, what, target)
        warm, runs_max = (1, 1) if placement_only else (PROFILE_WARMUP_RUNS, PROFILE_RUNS)
        t0 = time.perf_counter_ns()
        runs = 0
        try:
            if self._uses_binding(target):
                bound = BoundIO(session, inputs, target, what)  # its discovery run is the first warm-up run
                step: Callable[[], Any] = bound.call()
                warm -= 1
            else:
                def step() -> Any:
                    return session.run(None, inputs)
            for _ in range(warm):
                step()
            while runs < runs_max and (runs < 2 or time.perf_counter_ns() - t0 < PROFILE_MAX_S * 1e9):
                hooks.check_cancelled()
                step()
                runs += 1
        except JobCancelled:
            session.end_profiling()
            raise
        except EngineScopeError:
            session.end_profiling()
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise EngineError(f"onnxruntime failed to run {what}: {type(exc).__name__}: {exc}") from exc
        trace = Path(session.end_profiling())
        skip = 1 if placement_only else PROFILE_WARMUP_RUNS
        prof = load_ort_trace(trace, skip_runs=skip)
        placement = provider_placement(prof, target.provider)
        cfg = {"warmup_runs": skip, "profiled_runs": prof.inferences, "nodes": len(prof.nodes),
               "time_basis": TIME_BASIS.get(target.provider),
               "note": ("one profiled run to count nodes per provider (--no-layers: no rows stored)" if placement_only
                        else "separate profiling session after the timed loop; times per inference"
                        + ("; without CUDA graphs (a replayed graph has no per-node events)"
                           if variant.handle.target.cuda_graph else ""))}
        return layer_rows(prof.nodes), trace, cfg, placement

    def capture_kernels(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                        hooks: MeasureHooks, workdir: Path,
                        iterations: int) -> tuple[KernelTrace, list[tuple[str, Path, dict[str, Any]]]]:
        """A kernel timeline of ``iterations`` ``run_with_iobinding`` calls in a session made for the capture (the
        measured session's options, provider and io_binding), under torch.profiler
        (``engine_runner.kernel_capture.kineto_capture``: CUPTI records ONNX Runtime's kernels too).

        Without CUDA graphs the session also has ONNX Runtime's profiler on, and each kernel is attributed to the
        node whose host span holds its launch (``profiles.kineto_trace.attribute_ort_nodes``, clocks aligned by
        ``get_profiling_start_time_ns``; ``source_tool`` ``onnxruntime+kineto``). With ``--cuda-graph`` the
        session is a graph session and its replays are profiled: a replayed graph has no per-node events, so the
        kernels' ``op`` is the graph launch (said in the trace's notes).

        Raises:
            InputError: the variant runs on the CPU provider (names ``--profile-kernels``).
            EngineUnavailableError: torch (the profiler) or its CUDA is missing.
            EngineError: the session or a run failed. ParseError: a trace could not be read.
            JobCancelled: from ``hooks.check_cancelled``.
        """
        from engine_runner.kernel_capture import CUDA_ONLY, KINETO_ARTIFACT, ORT_PROFILE_ARTIFACT, kineto_capture
        from profiles.kineto_trace import SOURCE_ORT, attribute_ort_nodes, read_trace_json

        target: Target = variant.handle.target
        if target.provider == CPU_PROVIDER:
            raise InputError(f"--profile-kernels: {CUDA_ONLY} (this run is on {target.device})")
        workdir.mkdir(parents=True, exist_ok=True)
        what = f"the {variant.precision} variant (kernel capture session)"
        graph = target.cuda_graph
        so, _ = _session_options(spec, profile_prefix=None if graph else workdir / "ort_kernels", target=target)
        like = self.infer(variant, inputs) if graph else None
        session = _new_session(variant.model_path, so, what, target)
        ended = graph
        try:
            bound = BoundIO(session, inputs, target, what, outputs_like=like)
            start_ns = None if graph else int(session.get_profiling_start_time_ns())
            trace, path = kineto_capture(bound.call(), device=target.device, iterations=iterations, workdir=workdir,
                                         hooks=hooks)
            artifacts: list[tuple[str, Path, dict[str, Any]]] = [
                (KINETO_ARTIFACT, path, {"format": "torch.profiler Chrome trace JSON (gzip) around ONNX Runtime "
                                                   "run_with_iobinding", "iterations": iterations, "cuda_graph": graph})]
            if graph:
                trace.source_tool = SOURCE_ORT
                trace.notes.append("CUDA graph replays: ONNX Runtime's profiler has no per-node events for a replayed "
                                   "graph, so kernels are attributed to the graph launch, not to nodes")
            else:
                ended = True
                ort_path = Path(session.end_profiling())
                attribute_ort_nodes(trace, read_trace_json(ort_path, "ONNX Runtime profile"), start_ns or 0,
                                    source=str(ort_path))
                artifacts.append((ORT_PROFILE_ARTIFACT, ort_path, {
                    "format": "onnxruntime chrome trace JSON (kernel capture session: warm-up and profiled runs)",
                    "profiling_start_ns": start_ns}))
        except (EngineScopeError, JobCancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime and torch raise their own exception types
            raise EngineError(f"kernel capture of {what} on {target.device} failed: {type(exc).__name__}: "
                              f"{str(exc).strip()[:1500]}") from exc
        finally:
            if not ended:  # the profiler's file is not needed after a failure; the capture's own error is reported
                with contextlib.suppress(Exception):
                    session.end_profiling()
        trace.meta["onnxruntime"] = {"version": str(_ort().__version__), "provider": target.provider,
                                     "cuda_graph": graph}
        return trace, artifacts

    def release(self, variant: PreparedVariant) -> None:
        """Drop the session (ONNX Runtime frees it when the last reference goes)."""
        variant.handle = None


def _provider_options(session: Any, provider: str) -> dict[str, Any]:
    """The options ONNX Runtime actually uses for ``provider`` (``get_provider_options()``), JSON-safe."""
    try:
        opts = session.get_provider_options().get(provider, {})
    except Exception as exc:  # noqa: BLE001 - informational only
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {str(k): str(v) for k, v in opts.items()}


def _graph_matches_plain(graph_out: dict[str, np.ndarray], plain_out: dict[str, np.ndarray]) -> dict[str, Any]:
    """Compare a CUDA graph replay's outputs with a plain run's (profiles.accuracy: cosine >= 0.9999 and no
    NaN/Inf count as a match; two sessions may pick different convolution algorithms, so not bit-equal)."""
    from profiles.accuracy import AGGREGATE, compare_outputs

    numeric = {k: v for k, v in plain_out.items() if np.asarray(v).dtype.kind in "biuf" and k in graph_out}
    if not numeric:
        return {"match": True, "note": "no numeric outputs to compare"}
    agg = next(r for r in compare_outputs(numeric, {k: graph_out[k] for k in numeric}) if r.output_name == AGGREGATE)
    ok = (agg.cosine is None or agg.cosine >= 0.9999) and not agg.nan_count and not agg.inf_count
    return {"match": bool(ok), "max_abs_err": agg.max_abs_err, "cosine": agg.cosine}
