"""Job kind ``model_bench``: one model, one engine, every requested precision x batch size.

Flow of :func:`run`:

1. :func:`plan` validates the spec (:class:`profiles.specs.BenchSpec`), the model, every shape and the
   calibration data *before* anything runs (bad input -> ``InputError``; the CLI calls it first so it
   can exit 2 without creating a job).
2. Per precision (fp32 first, it is the accuracy reference): the engine says which ONNX variant it
   wants (:meth:`BenchEngine.onnx_variant_for`); :func:`engine_runner.precision.ensure_variant` makes
   or reuses it (artifact ``onnx_variant``); the engine prepares it (:meth:`BenchEngine.prepare`:
   session, engine build...). A precision that fails to convert or prepare becomes one failed Run per
   batch size; the others go on.
3. Per batch size: a Run row (status ``running``), the inputs (identical for every precision): the
   batches of the user's ``inputs_npz`` (``--inputs``; the first batch is timed, every batch is run
   once more through :meth:`BenchEngine.infer` for accuracy) or one seeded generated batch;
   :meth:`BenchEngine.measure` under a telemetry sampler (NVML at 20 Hz on ``cuda:N``, the engine marks its
   timed window through ``MeasureHooks.mark_window``; energy per inference, average power and clocks of that
   window become ``run_metrics`` (:func:`window_metrics`), throttling / another process on the GPU become
   warnings in ``runs.config["telemetry_warnings"]``), then in short transactions: raw samples
   (``latency_samples``), the ``latency_ms`` summary (``profiles.stats``, bootstrap CI of the median),
   ``throughput_per_s`` = iterations / sum(latency) and ``items_per_s`` = throughput x batch
   (``run_metrics``), per-layer rows, artifacts, telemetry, and accuracy against the fp32 outputs of the
   same inputs (``accuracy_results``, ``runs.numerically_valid``), computed once over the outputs of
   every batch concatenated along the first axis (so over all N samples). ``runs.config["inputs"]``
   says where the inputs came from; accuracy rows' ``details`` carry ``samples`` and ``batches``.

4. With ``--profile-kernels N`` (``spec.kernel_iterations``; CUDA devices, engines implementing
   ``KernelCaptureEngine``, both checked by :func:`plan`): after each measured (precision, batch), the engine
   records N iterations' kernels (``capture_kernels``) and :func:`_kernel_run` stores them as a separate
   profiled run (``db.kernels``: ``config["profiler"]["of_run_id"]`` = the measured run); never samples of the
   measured run, and a failed capture only leaves a warning on it.

Engines plug in through the contract in :mod:`engine_runner.engines.base` (:class:`BenchEngine` and its
record types) and :func:`engine_runner.engines.get_engine_impl`; this loop has no engine-specific code.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update

from db.config import home
from db.models import AccuracyResult, Artifact, LatencySample, LayerTiming, Model, Run, RunMetric, Summary, utcnow
from db.session import session_scope
from engine_runner.engines import get_engine_impl
from engine_runner.engines.base import (
    BenchEngine,
    EngineMeasurement,
    KernelCaptureEngine,
    MeasureHooks,
    NativeModelEngine,
    PreparedVariant,
    model_formats,
)
from engine_runner.inputs import (
    InputSpec,
    check_input_bytes,
    InputsNpz,
    describe_shapes,
    fixed_batch,
    generate_inputs,
    load_calibration_npz,
    load_inputs_npz,
    npz_dim_values,
    read_input_specs,
    read_npz,
    resolve_shapes,
    sample_axis_inputs,
)
from engine_runner.jobctx import JobContext
from engine_runner.precision import Calibration, Variant, ensure_variant
from profiles.accuracy import AGGREGATE, AccuracyRecord, compare_output, compare_outputs, output_health
from profiles.errors import EngineError, EngineScopeError, InputError, JobCancelled, ModelError
from profiles.specs import BenchSpec, validate_spec
from profiles.stats import summarize_ns
from profiles.sweep import MIN_GAIN, SweepPoint, decide, sweep_batches

#: Rows per INSERT of raw samples.
SAMPLE_INSERT_CHUNK = 50_000

# Progress within one (precision, batch) step.
_STEP_MEASURE_START, _STEP_MEASURE_END = 0.05, 0.9


# --------------------------------------------------------------------------------------------------
# Planning (all input validation happens here)


@dataclass
class BenchPlan:
    """A validated ``model_bench`` job, ready to run.

    Attributes:
        spec: the validated spec.
        model_id / model_hash / model_name / model_path: the registered model.
        input_specs: its inputs.
        shapes_by_batch: ``{batch_size: {input: [dims]}}``.
        precisions: requested precisions, fp32 first when present.
        calibration: calibration feeds when an ``int8-qdq`` variant is needed.
        inputs: the user's validated inputs (``spec.inputs_npz``), or None for generated inputs.
        model_format: ``Model.format`` (``onnx``; ``hf``/``pt2`` for the PyTorch engine).
        native: for a model run in its own format (:class:`NativeSource`), its input generator and fp32
            reference; None for ONNX models.
        native_config: JSON facts the engine reported while planning (into ``runs.config``).
    """

    spec: BenchSpec
    model_id: int
    model_hash: str
    model_name: str
    model_path: Path
    input_specs: list[InputSpec]
    shapes_by_batch: dict[int, dict[str, list[int]]]
    precisions: list[str]
    calibration: Calibration | None
    inputs: InputsNpz | None = None
    model_format: str = "onnx"
    native: NativeSource | None = None
    native_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class NativeSource:
    """A model that an engine runs in its own format (``NativeModelEngine``): generated inputs per batch
    size (made once, cached) and the fp32 reference outputs, both from the engine."""

    engine: NativeModelEngine
    path: Path
    model_format: str
    specs: list[InputSpec]
    shapes_by_batch: dict[int, dict[str, list[int]]]
    spec: BenchSpec
    _cache: dict[int, tuple[dict[str, np.ndarray], dict[str, Any]]] = field(default_factory=dict)

    def generated(self, batch: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(feeds, description)`` of the seeded batch of ``batch`` samples."""
        if batch not in self._cache:
            self._cache[batch] = self.engine.generate_inputs(self.path, self.model_format, self.specs,
                                                             self.shapes_by_batch[batch], self.spec.seed)
        return self._cache[batch]

    def reference(self, feeds: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], str]:
        """fp32 reference outputs of every feed, joined along the first axis, and how they were made."""
        outs, note = [], ""
        for f in feeds:
            o, note = self.engine.reference_outputs(self.path, self.model_format, self.spec, f)
            outs.append(o)
        return _concat_outputs(outs), note


def _generated_calibration(spec: BenchSpec, specs: list[InputSpec]) -> Calibration:
    batch = fixed_batch(specs) or 1
    shapes = resolve_shapes(specs, batch, spec.shapes, spec.dim_values)
    feeds = [generate_inputs(specs, shapes, seed=spec.seed + 1 + i) for i in range(spec.calibration_samples)]
    identity = f"generated:seed={spec.seed}:count={spec.calibration_samples}:{describe_shapes(shapes)}"
    return Calibration("generated", identity, feeds,
                       {"seed_base": spec.seed + 1, "shapes": shapes, "distribution": "engine_runner.inputs rules"})


def _npz_calibration(path: str, specs: list[InputSpec]) -> Calibration:
    import hashlib

    p = Path(path)
    feeds = load_calibration_npz(p, specs)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    return Calibration("npz", f"npz:{digest}", feeds, {"file": p.name, "sha256": digest})


def plan(spec_data: dict[str, Any] | BenchSpec, db_url: str | None = None,
         engine: BenchEngine | None = None, *, devices_here: bool = True) -> BenchPlan:
    """Validate everything a ``model_bench`` job needs, without running an engine.

    ``devices_here=False`` (the dashboard queueing for a worker, which may be another machine) skips the
    engine's ``check_device`` hook (is this machine's provider / CUDA device there); everything about the
    spec and the model is still checked. The CLI and the job itself plan with the default ``True``.

    Raises:
        InputError: invalid spec field, unknown model id, model file missing or not ONNX, bad
            ``--shape``/``--dim``/batch for this model, bad calibration or inputs file, precision the
            engine does not support (each message names the field, flag, input or file).

    With ``spec.inputs_npz``, named symbolic dims that ``shapes``/``dim_values`` leave open take their
    size from the file (``engine_runner.inputs.npz_dim_values``); the returned plan's ``spec`` carries
    them in ``dim_values``.
    """
    spec = spec_data if isinstance(spec_data, BenchSpec) else validate_spec(BenchSpec, spec_data)
    from db.store import model_file

    with session_scope(db_url) as s:
        model = s.get(Model, spec.model_id)
        if model is None:
            raise ModelError(f"model id {spec.model_id}: no such model")
        path, mhash, mname = model_file(model), model.content_hash, model.original_name
        mformat = model.format or "onnx"
    eng = engine or get_engine_impl(spec.engine)
    _check_kernel_capture(eng, spec)
    formats = model_formats(eng)
    if mformat not in formats:
        raise InputError(f"--engine {spec.engine}: model id {spec.model_id} ({mname}) is a {_FORMAT_NAMES.get(mformat, mformat)} "
                         f"model; {spec.engine} runs {', '.join(_FORMAT_NAMES.get(f, f) for f in formats)} models"
                         + ("; use --engine torch" if mformat != "onnx" else "; use --engine onnxruntime or tensorrt"))
    if mformat != "onnx":
        if not isinstance(eng, NativeModelEngine):
            raise InputError(f"--engine {spec.engine}: it lists {mformat!r} in model_formats but does not implement "
                             "NativeModelEngine")
        return _plan_native(spec, eng, path, mformat, mhash, mname, devices_here)
    if not path.is_file():
        raise ModelError(f"model id {spec.model_id} ({mname}): its file {path} is missing")
    specs = read_input_specs(path)
    inputs_data = read_npz(spec.inputs_npz, "--inputs") if spec.inputs_npz else None
    if inputs_data is not None:
        extra = npz_dim_values(inputs_data, specs, spec.shapes, spec.dim_values)
        if extra:
            spec = spec.model_copy(update={"dim_values": {**spec.dim_values, **extra}})
    shapes_by_batch = {b: resolve_shapes(specs, b, spec.shapes, spec.dim_values) for b in _planned_batches(spec, specs)}
    for b, shapes in shapes_by_batch.items():
        check_input_bytes(specs, shapes, what=_shape_flags(spec, b))
    inputs = load_inputs_npz(spec.inputs_npz, specs, shapes_by_batch, data=inputs_data) \
        if spec.inputs_npz and inputs_data is not None else None
    wanted = {p: eng.onnx_variant_for(p) for p in spec.precisions}
    _check_device(eng, spec, path, devices_here)
    _check_ncu(spec, devices_here)
    calibration = None
    if "int8-qdq" in wanted.values():
        calibration = _npz_calibration(spec.calibration_npz, specs) if spec.calibration_npz \
            else _generated_calibration(spec, specs)
    elif spec.calibration_npz:
        raise InputError(f"--calibration {spec.calibration_npz}: only int8-qdq uses calibration data; "
                         f"add --precision int8-qdq or drop --calibration")
    precisions = sorted(spec.precisions, key=lambda p: p != "fp32")
    return BenchPlan(spec, spec.model_id, mhash, mname, path, specs, shapes_by_batch, precisions, calibration,
                     inputs)


def _shape_flags(spec: BenchSpec, batch: int) -> str:
    """The flags that set a batch's shapes, for a size refusal: ``--shape ...``, ``--dim ...``, ``--batch N``."""
    parts = [f"--shape {n}={'x'.join(map(str, d))}" for n, d in spec.shapes.items()]
    parts += [f"--dim {n}={v}" for n, v in spec.dim_values.items()]
    parts.append(f"--batch {batch}")
    return ", ".join(parts)


_FORMAT_NAMES = {"onnx": "ONNX", "hf": "Hugging Face folder", "pt2": "torch.export .pt2"}


def _planned_batches(spec: BenchSpec, specs: list[InputSpec]) -> list[int]:
    """The batch sizes a job may run: ``spec.batch_sizes``, or with ``--batch-sweep`` every batch the sweep
    may reach (``profiles.sweep.sweep_batches``: the first batch doubled up to ``--max-batch``).

    Raises:
        InputError: a sweep on a model whose batch dim is fixed (names --batch-sweep and the size).
    """
    if not spec.batch_sweep:
        return list(spec.batch_sizes)
    fb = fixed_batch(specs)
    if fb is not None:
        raise InputError(f"--batch-sweep: the model's batch dim is fixed at {fb}; a sweep needs a symbolic "
                         "first dim (export it with a dynamic batch, e.g. enginescope export --dynamic-batch)")
    return sweep_batches(spec.batch_sizes[0], spec.max_batch)


def _check_kernel_capture(eng: Any, spec: BenchSpec) -> None:
    """``--profile-kernels N`` (``spec.kernel_iterations``) needs a CUDA device and an engine that implements
    :class:`engine_runner.engines.base.KernelCaptureEngine` (checked on any machine: the device string alone
    decides, so the dashboard refuses it too).

    Raises:
        InputError: naming ``--profile-kernels``: a CPU device, or an engine without ``capture_kernels``.
    """
    if not spec.kernel_iterations:
        return
    from engine_runner.kernel_capture import CUDA_ONLY
    from profiles.catalog import device_kind

    if device_kind(spec.device) != "cuda":
        raise InputError(f"--profile-kernels {spec.kernel_iterations}: {CUDA_ONLY} (got --device {spec.device}; use "
                         f"--device cuda:N or drop --profile-kernels)")
    if not isinstance(eng, KernelCaptureEngine):
        raise InputError(f"--profile-kernels: --engine {spec.engine} has no kernel capture (onnxruntime and torch "
                         f"have one); drop --profile-kernels")


def _check_ncu(spec: BenchSpec, devices_here: bool) -> None:
    """``--ncu-top N`` and ``--nsys`` need a CUDA device (checked anywhere) and, where the job will run
    (``devices_here``), an ``ncu`` (``engine_runner.ncu_capture.find_ncu``) / ``nsys`` (``db.nsys_tool.find_nsys``).

    Raises:
        InputError: naming ``--ncu-top`` or ``--nsys``.
    """
    if not spec.ncu_top and not spec.nsys:
        return
    from profiles.catalog import device_kind

    if spec.nsys and device_kind(spec.device) != "cuda":
        raise InputError(f"--nsys: EngineScope's Nsight Systems capture traces CUDA kernels (got --device {spec.device}; "
                         f"use --device cuda:N or drop --nsys)")
    if spec.nsys and devices_here:
        from db.nsys_tool import find_nsys

        if find_nsys() is None:
            raise InputError("--nsys: Nsight Systems (nsys) is not installed on this machine (not on PATH); install "
                             "it or set ENGINESCOPE_NSYS to its path, or drop --nsys")
    if spec.ncu_top and device_kind(spec.device) != "cuda":
        raise InputError(f"--ncu-top {spec.ncu_top}: Nsight Compute profiles CUDA kernels (got --device {spec.device}; "
                         f"use --device cuda:N or drop --ncu-top)")
    if devices_here and spec.ncu_top:
        from engine_runner.ncu_capture import find_ncu

        if find_ncu() is None:
            raise InputError(f"--ncu-top {spec.ncu_top}: Nsight Compute (ncu) is not installed on this machine (not on "
                             f"PATH, no /usr/local/cuda/bin/ncu); install the CUDA toolkit's ncu or set ENGINESCOPE_NCU, "
                             f"or drop --ncu-top")


def _check_device(eng: Any, spec: BenchSpec, path: Path, devices_here: bool) -> None:
    """The engine's optional ``check_device(device, cuda_graph=, model_path=)`` hook: refuse a device this
    machine cannot use before any job runs (skipped with ``devices_here=False``, see :func:`plan`)."""
    hook = getattr(eng, "check_device", None)
    if devices_here and hook is not None:
        hook(spec.device, cuda_graph=spec.cuda_graph, model_path=path)


def _plan_native(spec: BenchSpec, eng: NativeModelEngine, path: Path, fmt: str, mhash: str, mname: str,
                 devices_here: bool = True) -> BenchPlan:
    """:func:`plan` for a model the engine runs in its own format (a Hugging Face folder, a ``.pt2``).

    Symbolic dims are set, in this order, by ``--dim``/``--shape``, by the ``--inputs`` file
    (``npz_dim_values``), then by the engine's defaults (``ModelInputs.default_dims``, e.g. ``sequence`` =
    ``--seq-len``); the plan's spec carries them in ``dim_values``.

    Raises:
        ModelError: the folder/file is missing.
        InputError: ``--calibration`` given (no calibrated precision here); everything
            ``NativeModelEngine.model_inputs`` / ``check_run`` and shape resolution raise.
    """
    if not path.exists():
        raise ModelError(f"model id {spec.model_id} ({mname}): {path} is missing")
    if spec.calibration_npz:
        raise InputError(f"--calibration {spec.calibration_npz}: only int8-qdq uses calibration data; "
                         f"--engine {spec.engine} has no calibrated precision")
    inputs_data = read_npz(spec.inputs_npz, "--inputs") if spec.inputs_npz else None
    mi = eng.model_inputs(path, fmt, spec, inputs_data)
    specs = list(mi.specs)
    dims = dict(spec.dim_values)
    if inputs_data is not None:
        dims.update(npz_dim_values(inputs_data, specs, spec.shapes, dims))
    named = {d for s in specs for d in s.shape if isinstance(d, str)}
    for k, v in mi.default_dims.items():
        if k in named:
            dims.setdefault(k, int(v))
    if dims != spec.dim_values:
        spec = spec.model_copy(update={"dim_values": dims})
    shapes_by_batch = {b: resolve_shapes(specs, b, spec.shapes, spec.dim_values) for b in _planned_batches(spec, specs)}
    for b, shapes in shapes_by_batch.items():
        check_input_bytes(specs, shapes, what=_shape_flags(spec, b))
    inputs = load_inputs_npz(spec.inputs_npz, specs, shapes_by_batch, data=inputs_data) \
        if spec.inputs_npz and inputs_data is not None else None
    native_config = {**mi.config, **eng.check_run(path, fmt, spec, shapes_by_batch)}
    _check_device(eng, spec, path, devices_here)
    _check_ncu(spec, devices_here)
    precisions: list[str] = sorted(spec.precisions, key=lambda p: p != "fp32")
    native = NativeSource(eng, path, fmt, specs, shapes_by_batch, spec)
    if inputs is None:
        for b in spec.batch_sizes:  # tokenizer/vocabulary problems are input errors: raise them before the job
            native.generated(b)
    return BenchPlan(spec, spec.model_id, mhash, mname, path, specs, shapes_by_batch, precisions, None, inputs,
                     model_format=fmt, native=native, native_config=native_config)


# --------------------------------------------------------------------------------------------------
# Storage helpers (short transactions)


def _rel(path: Path) -> str:
    base = home()
    try:
        return str(Path(path).resolve().relative_to(base))
    except ValueError:
        return str(path)


def _environment() -> dict[str, Any]:
    """``engine_runner.environment.fingerprint()`` (CPU, GPU, driver, library versions)."""
    from engine_runner.environment import fingerprint

    return fingerprint()


@contextlib.contextmanager
def _telemetry(device: str = "cpu") -> Iterator[Any]:
    """Telemetry around a measurement: NVML on ``cuda:N`` at ``GPU_INTERVAL_S`` (20 Hz) sampled by a child
    process (``engine_runner.telemetry.OutOfProcessSampler``: an NVML thread inside the measured process slowed
    launch-bound GPU runs, benchmarks/RESULTS.md), else the CPU of this process tree every 0.5 s in a thread."""
    from engine_runner.telemetry import GPU_INTERVAL_S, OutOfProcessSampler, TelemetrySampler, nvml_index_for

    index = nvml_index_for(device)
    sampler: TelemetrySampler = (OutOfProcessSampler(GPU_INTERVAL_S, device_index=index) if index is not None
                                 else TelemetrySampler(0.5))
    with sampler:
        yield sampler


#: ``run_metrics`` taken from the measured window's GPU telemetry: name -> (WindowReport attribute or
#: ``stats`` key and statistic, unit).
_WINDOW_METRICS: dict[str, tuple[str, str]] = {
    "energy_per_inference_j": ("energy_per_inference_j", "J"),
    "avg_power_w": ("avg_power_w", "W"),
    "energy_window_j": ("energy_j", "J"),
    "sm_clock_median_mhz": ("sm_clock_mhz.median", "MHz"),
    "sm_clock_min_mhz": ("sm_clock_mhz.min", "MHz"),
    "mem_clock_median_mhz": ("mem_clock_mhz.median", "MHz"),
    "gpu_temp_max_c": ("temp_c.max", "C"),
    "gpu_util_mean_pct": ("util_pct.mean", "%"),
}


def window_metrics(report: Any, batch: int) -> dict[str, tuple[float, str]]:
    """``run_metrics`` of a ``profiles.telemetry_window.WindowReport``: energy per inference (J, one call
    of ``batch`` items), ``energy_per_item_j`` (= per inference / batch), average power (W), the window's
    energy (J), SM/memory clocks (MHz), peak temperature (C), mean utilization (%). Absent values are left
    out."""
    out: dict[str, tuple[float, str]] = {}
    for name, (path, unit) in _WINDOW_METRICS.items():
        if "." in path:
            key, stat = path.split(".")
            value = report.stats.get(key, {}).get(stat)
        else:
            value = getattr(report, path)
        if value is not None:
            out[name] = (float(value), unit)
    if report.energy_per_inference_j is not None:
        out["energy_per_item_j"] = (report.energy_per_inference_j / batch, "J")
    return out


def _store_telemetry(ctx: JobContext, run_id: int, sampler: Any) -> dict[str, Any]:
    """Store the sampler's samples; returns ``{"samples", "device", "notes"}`` for ``runs.config``."""
    from engine_runner.telemetry import store_telemetry

    with ctx.session() as s:
        n = store_telemetry(s, run_id, sampler.samples)
    return {"samples": n, "device": sampler.device, "notes": list(sampler.notes)}


def _create_run(ctx: JobContext, p: BenchPlan, precision: str, batch: int, engine_name: str, engine_version: str,
                environment: dict[str, Any], config: dict[str, Any]) -> int:
    with ctx.session() as s:
        run = Run(job_id=ctx.job_id, model_id=p.model_id, engine=engine_name, engine_version=engine_version,
                  precision=precision, batch_size=batch, shapes=p.shapes_by_batch[batch], config=config,
                  environment=environment, status="running", source="measured",
                  label=f"{p.model_name} {engine_name} {config.get('precision_detail') or precision} b{batch}")
        s.add(run)
        s.flush()
        return int(run.id)


def _fail_run(ctx: JobContext, run_id: int, error: str) -> None:
    with ctx.session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(status="failed", error=error, finished_at=utcnow()))
    ctx.event("warning", f"run {run_id} failed: {error.splitlines()[0]}", run_id=run_id)


def _store_artifacts(ctx: JobContext, run_id: int | None, model_id: int,
                     artifacts: list[tuple[str, Path, dict[str, Any]]]) -> None:
    if not artifacts:
        return
    with ctx.session() as s:
        for kind, path, meta in artifacts:
            size = Path(path).stat().st_size if Path(path).is_file() else None
            s.add(Artifact(run_id=run_id, job_id=ctx.job_id, model_id=model_id, kind=kind, path=_rel(path),
                           size_bytes=size, meta=meta))


def _checked_samples(m: EngineMeasurement) -> np.ndarray:
    """The measurement's latency samples, int64 ns [n].

    Raises:
        EngineError: no samples, or a sample <= 0 ns.
    """
    samples = np.asarray(m.samples_ns, dtype=np.int64)
    if samples.size == 0:
        raise EngineError("the engine returned no latency samples")
    if np.any(samples <= 0):
        raise EngineError(f"{int((samples <= 0).sum())} latency samples are <= 0 ns; the clock or the timing window is wrong")
    return samples


def _insert_samples(ctx: JobContext, run_id: int, samples: np.ndarray, offset: int, rep: int) -> None:
    """Insert ``samples`` (int64 ns) as ``latency_samples`` rows ``seq = offset + i`` of repeat ``rep``, in
    short transactions of :data:`SAMPLE_INSERT_CHUNK` rows."""
    for start in range(0, samples.size, SAMPLE_INSERT_CHUNK):
        chunk = samples[start:start + SAMPLE_INSERT_CHUNK]
        with ctx.session() as s:
            s.execute(insert(LatencySample), [{"run_id": run_id, "seq": offset + start + i, "latency_ns": int(v),
                                               "repeat": rep} for i, v in enumerate(chunk.tolist())])


def _store_measurement(ctx: JobContext, run_id: int, batch: int, m: EngineMeasurement) -> None:
    samples = _checked_samples(m)
    _insert_samples(ctx, run_id, samples, 0, 0)
    series = {"latency_ms": samples, **{f"{k}_ms": np.asarray(v, np.int64) for k, v in m.extra_samples_ns.items()}}
    throughput = samples.size / (float(samples.sum()) / 1e9)
    with ctx.session() as s:
        for metric, arr in series.items():
            summ = summarize_ns(arr, "ms").as_dict()
            s.add(Summary(run_id=run_id, metric=metric, **summ, source="computed"))
        s.add(RunMetric(run_id=run_id, name="throughput_per_s", value=throughput, unit="inferences/s"))
        s.add(RunMetric(run_id=run_id, name="items_per_s", value=throughput * batch, unit="items/s"))
        for name, (value, unit) in m.metrics.items():
            s.add(RunMetric(run_id=run_id, name=name, value=float(value), unit=unit))
        for idx, layer in enumerate(m.layers):
            s.add(LayerTiming(run_id=run_id, idx=idx, name=layer.name, op_type=layer.op_type,
                              precision=layer.precision, tactic=layer.tactic, avg_ms=layer.avg_ms,
                              median_ms=layer.median_ms, total_ms=layer.total_ms, count=layer.count,
                              percentage=layer.percentage, fused=layer.fused, details=layer.details))


def _store_accuracy(ctx: JobContext, run_id: int, reference_run_id: int | None, records: list[AccuracyRecord],
                    reference_note: str, extra: dict[str, dict[str, Any]] | None = None) -> None:
    """Store the records; ``extra[output_name]`` (``"*"`` included) is merged into that row's details."""
    extra = extra or {}
    with ctx.session() as s:
        for r in records:
            s.add(AccuracyResult(run_id=run_id, reference_run_id=reference_run_id, output_name=r.output_name,
                                 max_abs_err=r.max_abs_err, max_rel_err=r.max_rel_err, cosine=r.cosine,
                                 nan_count=r.nan_count, inf_count=r.inf_count, all_zero=r.all_zero,
                                 valid=r.valid, details={**r.details, **extra.get(r.output_name, {}),
                                                         "reference": reference_note}))


def _ort_reference_outputs(model_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """fp32 outputs of the original model on ONNX Runtime CPU (the reference when the job has no fp32
    run of its own, as Polygraphy uses ONNX Runtime as the reference runner)."""
    from engine_runner.engines.onnxruntime import reference_outputs

    return reference_outputs(model_path, inputs)


# --------------------------------------------------------------------------------------------------
# The job


def run(ctx: JobContext) -> None:
    """Execute a ``model_bench`` job (see module doc). Failed variants/runs are recorded as failed Runs
    and the loop goes on; bad input raises ``InputError`` before any run starts; cancellation raises
    ``JobCancelled`` (the executor marks the job cancelled and fails the run in progress)."""
    ctx.event("stage", "validating spec")
    spec0 = validate_spec(BenchSpec, ctx.spec)
    eng = get_engine_impl(spec0.engine)
    p = plan(spec0, ctx.db_url, engine=eng)
    spec = p.spec
    rounds = spec.repeats
    steps = len(p.precisions) * len(p.shapes_by_batch) * rounds  # a sweep's upper bound
    ctx.event("stage", f"plan: {p.model_name}, {spec.engine} on {spec.device}, precisions {p.precisions}, "
                       f"batches {spec.batch_sizes}" + (f", {rounds} repeats interleaved" if rounds > 1 else ""),
              progress=0.0, shapes={str(b): s for b, s in p.shapes_by_batch.items()})
    for note in spec.precision_notes:
        ctx.event("info", note)
    environment = _environment()
    job_dir = home() / "artifacts" / "jobs" / str(ctx.job_id)
    # fp32 outputs per batch size: (run id, outputs)
    references: dict[int, tuple[int | None, dict[str, np.ndarray], str]] = {}
    prepared_by: dict[str, tuple[PreparedVariant | None, str | None, dict[str, Any]]] = {}
    run_of: dict[tuple[str, int], int] = {}  # (precision, batch) -> run id
    order: list[dict[str, Any]] = []  # every measurement in the order it ran (repeats interleaved)
    try:
        _run_rounds(ctx, eng, p, rounds, steps, environment, job_dir, references, prepared_by, run_of, order)
    except BaseException as exc:
        _fail_unfinished(ctx, run_of.values(), "cancelled by the user" if isinstance(exc, JobCancelled)
                         else f"the job stopped before this run's last repeat: {type(exc).__name__}: {exc}")
        raise
    if rounds > 1:
        ctx.event("info", f"{rounds} repeats, interleaved: " + " ".join(
            f"{o['precision']}/b{o['batch']}#{o['repeat']}" for o in order), order=order)
    if spec.p99_budget_ms is not None:
        _budget_event(ctx, spec.p99_budget_ms)
    ctx.progress(1.0, "all runs done")


def _run_rounds(ctx: JobContext, eng: Any, p: BenchPlan, rounds: int, steps: int, environment: dict[str, Any],
                job_dir: Path, references: dict[int, tuple[int | None, dict[str, np.ndarray], str]],
                prepared_by: dict[str, tuple[PreparedVariant | None, str | None, dict[str, Any]]],
                run_of: dict[tuple[str, int], int], order: list[dict[str, Any]]) -> None:
    """The measurement loop of :func:`run`: round 0 creates and measures every (precision, batch) run
    (batch sweeps grow their queue here); rounds 1.. measure each again in the same order (A B A B ...),
    appending samples with their repeat index; the last round finishes each run (pooled summaries,
    status) and runs the profilers. Engines are prepared once per precision and released after the last
    round."""
    spec = p.spec
    step = 0
    with eng:
        engine_version = eng.version()
        for rep in range(rounds):
            last = rep == rounds - 1
            for precision in p.precisions:
                ctx.check_cancelled()
                if precision not in prepared_by:
                    prepared_by[precision] = _prepare_precision(ctx, eng, p, precision, job_dir, step / steps)
                prepared, setup_error, variant_cfg = prepared_by[precision]
                if rep > 0:
                    for batch in spec.batch_sizes:
                        ctx.check_cancelled()
                        run_id = run_of[(precision, batch)]
                        frac0 = step / steps
                        step += 1
                        if prepared is None or not _still_running(ctx, run_id):
                            continue
                        order.append({"run_id": run_id, "precision": precision, "batch": batch, "repeat": rep})
                        ok = _repeat_one(ctx, eng, p, prepared, precision, batch, run_id, rep,
                                         job_dir / f"{precision}_b{batch}" / f"repeat{rep}", frac0, 1.0 / steps)
                        if ok and last:
                            _finish_repeats(ctx, run_id, batch, rounds, order)
                            _profiled_runs(ctx, eng, p, prepared, precision, batch, run_id, job_dir)
                    if last and prepared is not None:
                        eng.release(prepared)
                    continue
                queue = [spec.batch_sizes[0]] if spec.batch_sweep else list(spec.batch_sizes)
                sweep_points: list[SweepPoint] = []
                sweep_runs: list[int] = []
                while queue:
                    batch = queue.pop(0)
                    ctx.check_cancelled()
                    frac0 = step / steps
                    config = {"engine": spec.engine, "device": spec.device, **p.native_config,
                              **(prepared.config if prepared else {}), **variant_cfg,
                              "requested": {"warmup_iterations": spec.warmup_iterations, "warmup_s": spec.warmup_s,
                                            "iterations": spec.iterations, "min_duration_s": spec.min_duration_s,
                                            "max_duration_s": spec.max_duration_s, "seed": spec.seed,
                                            "profile_layers": spec.profile_layers, "repeats": rounds},
                              "inputs": _inputs_config(p, batch)}
                    run_id = _create_run(ctx, p, precision, batch, spec.engine, engine_version, environment, config)
                    run_of[(precision, batch)] = run_id
                    step += 1
                    if setup_error is not None or prepared is None:
                        _fail_run(ctx, run_id, setup_error or "variant was not prepared")
                    else:
                        order.append({"run_id": run_id, "precision": precision, "batch": batch, "repeat": 0})
                        measured = False
                        try:
                            _measure_one(ctx, eng, p, prepared, precision, batch, run_id, config, references,
                                         job_dir / f"{precision}_b{batch}", frac0, 1.0 / steps, finish=last)
                            measured = True
                        except JobCancelled:
                            _fail_run(ctx, run_id, "cancelled by the user")
                            raise
                        except EngineScopeError as exc:
                            _fail_run(ctx, run_id, f"{type(exc).__name__}: {exc}")
                        except Exception as exc:  # noqa: BLE001 - an engine bug (or MemoryError) fails this run, with its traceback
                            _fail_run(ctx, run_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
                        if measured and last:  # outside the try: nothing here can fail the measured run
                            _profiled_runs(ctx, eng, p, prepared, precision, batch, run_id, job_dir)
                    if spec.batch_sweep:
                        sweep_runs.append(run_id)
                        nxt = _sweep_step(ctx, spec, precision, run_id, batch, sweep_points, sweep_runs)
                        if nxt is not None:
                            queue.append(nxt)
                if last and prepared is not None:
                    eng.release(prepared)


def _prepare_precision(ctx: JobContext, eng: Any, p: BenchPlan, precision: str, job_dir: Path,
                       base: float) -> tuple[PreparedVariant | None, str | None, dict[str, Any]]:
    """Make the ONNX variant of ``precision`` (reused by content hash) and prepare the engine for it.

    Returns:
        ``(prepared or None, setup error or None, runs.config["variant"] entry)``; an ``EngineScopeError``
        becomes the setup error (every run of this precision then fails with it).

    Raises:
        JobCancelled: the user cancelled.
    """
    spec = p.spec
    prepared: PreparedVariant | None = None
    variant: Variant | None = None
    setup_error: str | None = None

    def on_stage(msg: str, b: float = base) -> None:
        ctx.event("stage", msg, progress=b)

    try:
        source = p.model_path
        if p.native is None:
            onnx_prec = eng.onnx_variant_for(precision)
            variant = ensure_variant(
                p.model_path, p.model_hash, onnx_prec, model_id=p.model_id, job_id=ctx.job_id,
                calibration=p.calibration, db_url=ctx.db_url, on_stage=on_stage)
            if variant.reused:
                ctx.event("info", f"{onnx_prec} variant reused (artifact {variant.artifact_id})")
            source = variant.path
        ctx.event("stage", f"{precision}: preparing {spec.engine}", progress=base)
        prepared = eng.prepare(source, precision, p.shapes_by_batch, spec, job_dir / precision)
        _store_artifacts(ctx, None, p.model_id, prepared.artifacts)
    except JobCancelled:
        raise
    except EngineScopeError as exc:
        setup_error = f"{type(exc).__name__}: {exc}"
    variant_cfg = {"variant": {"precision": variant.precision, "artifact_id": variant.artifact_id,
                               "path": _rel(variant.path), "reused": variant.reused,
                               **{k: v for k, v in variant.meta.items() if k not in ("versions",)}}} \
        if variant else {}
    return prepared, setup_error, variant_cfg


def _profiled_runs(ctx: JobContext, eng: Any, p: BenchPlan, prepared: PreparedVariant, precision: str, batch: int,
                   run_id: int, job_dir: Path) -> None:
    """The profiler captures asked for (kernel timeline, ncu, nsys), each its own run, after the measured
    run's last repeat (so they never sit between two repeats of the interleaved order)."""
    spec = p.spec
    where = job_dir / f"{precision}_b{batch}"
    if spec.kernel_iterations:
        _kernel_run(ctx, eng, p, prepared, precision, batch, run_id, where / "kernels")
    if spec.ncu_top:
        _ncu_run(ctx, p, prepared, precision, batch, run_id, where / "ncu")
    if spec.nsys:
        _nsys_run(ctx, p, prepared, precision, batch, run_id, where / "nsys")


def _still_running(ctx: JobContext, run_id: int) -> bool:
    """True while the run waits for further repeats (its first measurement neither failed nor finished)."""
    with ctx.session() as s:
        run = s.get(Run, run_id)
        return run is not None and run.status == "running"


def _fail_unfinished(ctx: JobContext, run_ids: Any, reason: str) -> None:
    """Fail every run of ``run_ids`` still ``running`` (a job stopped between repeats: its samples stay,
    the run is not shown as complete)."""
    with ctx.session() as s:
        s.execute(update(Run).where(Run.id.in_(list(run_ids)), Run.status == "running").values(
            status="failed", error=reason, finished_at=utcnow()))


def _repeat_one(ctx: JobContext, eng: Any, p: BenchPlan, prepared: PreparedVariant, precision: str, batch: int,
                run_id: int, rep: int, workdir: Path, frac0: float, width: float) -> bool:
    """Measure repeat ``rep`` (>= 1) of an existing run: the same timed loop on the same inputs, its samples
    appended with ``latency_samples.repeat = rep`` (``seq`` continues). No accuracy check, layers or telemetry (repeat 0 has them).

    Returns False (and fails the run, naming the repeat) when the measurement fails; raises
    ``JobCancelled`` when the user cancels.
    """
    spec = p.spec
    label = f"{precision} b{batch} repeat {rep + 1}/{spec.repeats}"
    workdir.mkdir(parents=True, exist_ok=True)

    def progress(message: str, fraction: float) -> None:
        ctx.progress(frac0 + width * min(max(fraction, 0.0), 1.0), f"{label}: {message}", run_id=run_id)

    hooks = MeasureHooks(check_cancelled=ctx.check_cancelled, progress=progress,
                         stage=lambda msg: ctx.event("stage", f"{label}: {msg}", run_id=run_id))
    try:
        m = eng.measure(prepared, _batches(p, batch)[0], spec.model_copy(update={"profile_layers": False}), hooks, workdir)
        samples = _checked_samples(m)
        with ctx.session() as s:
            offset = s.execute(select(func.count()).select_from(LatencySample)
                               .where(LatencySample.run_id == run_id)).scalar_one()
        _insert_samples(ctx, run_id, samples, offset, rep)
    except JobCancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a repeat fails its run, with the reason
        _fail_run(ctx, run_id, f"repeat {rep + 1} of {spec.repeats} failed: {type(exc).__name__}: {exc}")
        return False
    return True


def _finish_repeats(ctx: JobContext, run_id: int, batch: int, rounds: int, order: list[dict[str, Any]]) -> None:
    """After the last repeat: the run's ``latency_ms`` summary and throughputs recomputed on the samples of
    every repeat pooled; ``runs.config["repeats"] = {"count", "per_repeat": [{"repeat", "samples", "p50_ms",
    "items_per_s"}], "positions"`` (this run's places in the job's measurement order), ``"pooled"}``; and the
    run succeeds."""
    with ctx.session() as s:
        rows = s.execute(select(LatencySample.repeat, LatencySample.latency_ns).where(LatencySample.run_id == run_id)
                         .order_by(LatencySample.seq)).all()
        reps = np.asarray([r[0] for r in rows], dtype=np.int64)
        arr = np.asarray([r[1] for r in rows], dtype=np.int64)
        per_repeat = [{"repeat": int(k), "samples": int((reps == k).sum()),
                       "p50_ms": float(np.percentile(arr[reps == k], 50)) / 1e6,
                       "items_per_s": int((reps == k).sum()) * batch / (float(arr[reps == k].sum()) / 1e9)}
                      for k in np.unique(reps)]
        s.execute(delete(Summary).where(Summary.run_id == run_id, Summary.point_id.is_(None),
                                        Summary.metric == "latency_ms"))
        s.add(Summary(run_id=run_id, metric="latency_ms", **summarize_ns(arr, "ms").as_dict(), source="computed"))
        throughput = arr.size / (float(arr.sum()) / 1e9)
        s.execute(delete(RunMetric).where(RunMetric.run_id == run_id, RunMetric.point_id.is_(None),
                                          RunMetric.name.in_(("throughput_per_s", "items_per_s"))))
        s.add(RunMetric(run_id=run_id, name="throughput_per_s", value=throughput, unit="inferences/s"))
        s.add(RunMetric(run_id=run_id, name="items_per_s", value=throughput * batch, unit="items/s"))
        run = s.get(Run, run_id)
        if run is not None:
            cfg = dict(run.config or {})
            cfg["repeats"] = {"count": rounds, "per_repeat": per_repeat,
                              "positions": [i for i, o in enumerate(order) if o["run_id"] == run_id],
                              "pooled": "latency_ms summary and throughputs over every repeat's samples; other "
                                        "series, layers, accuracy and telemetry from repeat 1"}
            run.config = cfg
            run.status = "succeeded"
            run.finished_at = utcnow()


def _budget_event(ctx: JobContext, p99_budget_ms: float) -> None:
    """An ``info`` event naming the fastest run of this job within the p99 budget (``profiles.budget``,
    p99 from the stored raw samples; profiled runs left out); the bench JSON and the Compare page compute the
    same from the DB."""
    from db.kernels import is_profiled
    from db.results import budget_candidates
    from profiles.budget import evaluate_p99_budget

    with ctx.session() as s:
        ids = [rid for rid, cfg in s.execute(select(Run.id, Run.config).where(Run.job_id == ctx.job_id)).all()
               if not is_profiled(cfg)]
    report = evaluate_p99_budget(budget_candidates(ids, ctx.db_url), p99_budget_ms)
    ctx.event("info", f"latency budget: {report.note}",
              fastest_run_id=report.fastest.run_id if report.fastest else None)


#: ``runs.config`` keys of the measured run copied to its profiled run (what configuration the timeline is of).
_PROFILED_CONFIG_KEYS = ("engine", "device", "cuda_graph", "precision_detail", "mode", "providers", "io_binding",
                         "provider_options", "torch_options", "variant", "inputs")


def _kernel_run(ctx: JobContext, eng: Any, p: BenchPlan, prepared: PreparedVariant, precision: str, batch: int,
                measured_id: int, workdir: Path) -> int | None:
    """Capture a kernel timeline of the configuration just measured and store it as its own profiled run.

    The engine's ``capture_kernels`` (:class:`engine_runner.engines.base.KernelCaptureEngine`) profiles
    ``spec.kernel_iterations`` inferences of the same prepared variant on the same (first) input batch. The
    profiled run has the measured run's model, engine, version, precision, batch, shapes and environment, the
    label :func:`db.kernels.profiled_label` of the measured run's, ``config["profiler"]`` =
    :func:`db.kernels.profiler_config` (``of_run_id`` = the measured run, ``iterations``), the measured run's
    configuration keys :data:`_PROFILED_CONFIG_KEYS`, the timeline rows (:func:`db.kernels.store_trace`) and the
    raw trace files as artifacts; no latency samples, summaries or metrics (the profiler's iterations are not a
    measurement). The measured run gets ``config["kernel_capture"]`` = ``{"profiled_run_id", "kernels", ...}``.

    A failed capture (any error but cancellation) never touches the measured run's samples or status: a warning
    event, ``config["kernel_capture_error"]`` on the measured run, and the profiled run (if it was created)
    failed with the same reason. Returns the profiled run id, or None when the capture failed.

    Raises:
        JobCancelled: passed through (the profiled run is failed as cancelled first).
    """
    from db.kernels import profiled_label, profiler_config, store_trace

    spec = p.spec
    n = spec.kernel_iterations
    label = f"{precision} b{batch}"
    hooks = MeasureHooks(check_cancelled=ctx.check_cancelled, progress=lambda message, fraction: None,
                         stage=lambda msg: ctx.event("stage", f"{label}: {msg}", run_id=measured_id))
    ctx.event("stage", f"{label}: kernel timeline of {n} iterations (a separate profiled run)", run_id=measured_id)
    profiled_id: int | None = None
    try:
        trace, artifacts = eng.capture_kernels(prepared, _batches(p, batch)[0], spec, hooks, workdir, n)
        profiled_id = _profiled_run_row(ctx, measured_id, trace.source_tool,
                                        {"profiler": profiler_config(trace, of_run_id=measured_id, iterations=n)})
        counts = store_trace(profiled_id, trace, url=ctx.db_url)
        _store_artifacts(ctx, profiled_id, p.model_id, artifacts)
        with ctx.session() as s:
            s.execute(update(Run).where(Run.id == profiled_id).values(status="succeeded", finished_at=utcnow()))
        summary = {"profiled_run_id": profiled_id, "tool": trace.source_tool, "iterations": n,
                   **{k: v for k, v in counts.items() if k != "notes"}}
        _merge_run_config(ctx, measured_id, {"kernel_capture": summary})
        ctx.event("info", f"{label}: kernel timeline stored as run {profiled_id} ({trace.source_tool}, "
                          f"{counts['kernels']} kernels over {n} iterations)"
                  + (f"; {'; '.join(counts['notes'])}" if counts["notes"] else ""),
                  run_id=profiled_id, of_run_id=measured_id)
        return profiled_id
    except JobCancelled:
        if profiled_id is not None:
            _fail_run(ctx, profiled_id, "cancelled by the user")
        raise
    except Exception as exc:  # noqa: BLE001 - a failed capture (ours, the profiler's, the engine's) keeps the measured run
        reason = f"kernel capture failed: {type(exc).__name__}: {exc}"
        if profiled_id is not None:
            _fail_run(ctx, profiled_id, reason)
        _merge_run_config(ctx, measured_id, {"kernel_capture_error": reason})
        ctx.event("warning", f"{label}: {reason}; the measured run is kept", run_id=measured_id)
        return None


def _profiled_run_row(ctx: JobContext, measured_id: int, tool: str, config: dict[str, Any]) -> int:
    """Create the ``running`` Run of a profiled capture of ``measured_id`` (kernel timeline or ncu): the measured
    run's model, engine, version, precision, batch, shapes, environment and :data:`_PROFILED_CONFIG_KEYS`, plus
    ``config``; label :func:`db.kernels.profiled_label`. Returns its id.

    Raises:
        EngineError: the measured run no longer exists.
    """
    from db.kernels import profiled_label

    with ctx.session() as s:
        m = s.get(Run, measured_id)
        if m is None:
            raise EngineError(f"measured run {measured_id} disappeared before its {tool} capture was stored")
        cfg = {k: m.config[k] for k in _PROFILED_CONFIG_KEYS if k in (m.config or {})}
        run = Run(job_id=ctx.job_id, model_id=m.model_id, engine=m.engine, engine_version=m.engine_version,
                  precision=m.precision, batch_size=m.batch_size, shapes=m.shapes, config={**cfg, **config},
                  environment=m.environment, status="running", source="measured",
                  label=profiled_label(m.label, tool))
        s.add(run)
        s.flush()
        return int(run.id)


def _ncu_run(ctx: JobContext, p: BenchPlan, prepared: PreparedVariant, precision: str, batch: int,
             measured_id: int, workdir: Path) -> int | None:
    """Profile the configuration just measured under Nsight Compute and store its top kernels as an ncu run.

    ``engine_runner.profile_child`` re-prepares the same variant file in a child process under ncu
    (``engine_runner.ncu_capture.run_ncu``: ``--clock-control none``, the metrics of ``profiles.ncu``), runs 3
    warm-up and 1 measured inference of the measured run's first input batch, inside the NVTX range ncu filters on;
    the ``spec.ncu_top`` kernel names with the largest summed duration are stored (``kernel_metrics``,
    :func:`db.kernels.store_ncu`) on a new run labelled ``[profiled: ncu]`` (``config["profiler"]``: tool, version,
    metrics, command, ``of_run_id``), with the roofline ceilings measured in this process
    (``engine_runner.ncu_capture.measure_ceilings``) as ``run_metrics`` ``ceiling_matrix_flop_per_s`` /
    ``ceiling_copy_bytes_per_s`` and ``config["ceilings"]``, and the raw CSV as an ``ncu_csv`` artifact.

    A failure never touches the measured run's samples or status: a warning, ``config["ncu_error"]`` on the
    measured run, the ncu run (if created) failed. Returns the ncu run id or None.

    Raises:
        JobCancelled: passed through.
    """
    from db.kernels import store_ncu
    from engine_runner.ncu_capture import measure_ceilings, run_ncu
    from engine_runner.profile_child import write_request

    spec = p.spec
    label = f"{precision} b{batch}"
    ctx.event("stage", f"{label}: Nsight Compute on the top {spec.ncu_top} kernels (a separate ncu run)",
              run_id=measured_id)
    ncu_id: int | None = None
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        req = write_request(workdir / "request.json", engine=spec.engine, model_path=prepared.model_path,
                            model_format=p.model_format, precision=precision, batch=batch,
                            shapes=p.shapes_by_batch[batch], spec=spec.model_dump(mode="json"),
                            inputs=_batches(p, batch)[0], warmup=3, iterations=1)
        ctx.check_cancelled()
        cap = run_ncu(req, spec.ncu_top, workdir)
        ctx.check_cancelled()
        index = int(spec.device.split(":")[1]) if ":" in spec.device else 0
        ceil = measure_ceilings(index)
        ncu_id = _profiled_run_row(ctx, measured_id, "ncu", {
            "profiler": {"tool": "ncu", "version": cap.version, "profiled": True, "of_run_id": measured_id,
                         "metrics": list(cap.metrics), "command": cap.command[:-1] + ["REQUEST"],
                         "launches_profiled": cap.all_launches, "top": spec.ncu_top, "iterations": 1,
                         "notes": [f"ncu replays each kernel to read its counters: its durations are per launch "
                                   f"under ncu, clocks left alone (--clock-control none)"]},
            "ceilings": ceil})
        rows = store_ncu(ncu_id, cap.kernels, url=ctx.db_url)
        _merge_run_config(ctx, ncu_id, {"profiler": {"stored_kernels": rows}})
        _store_artifacts(ctx, ncu_id, p.model_id, [("ncu_csv", cap.csv_path, {"tool": "ncu", "version": cap.version})])
        with ctx.session() as s:
            s.add(RunMetric(run_id=ncu_id, name="ceiling_matrix_flop_per_s", value=ceil["matrix_flop_per_s"],
                            unit="flop/s"))
            s.add(RunMetric(run_id=ncu_id, name="ceiling_copy_bytes_per_s", value=ceil["copy_bytes_per_s"],
                            unit="bytes/s"))
            s.execute(update(Run).where(Run.id == ncu_id).values(status="succeeded", finished_at=utcnow()))
        _merge_run_config(ctx, measured_id, {"ncu_capture": {"ncu_run_id": ncu_id, "kernels": rows,
                                                            "launches_profiled": cap.all_launches}})
        ctx.event("info", f"{label}: ncu metrics of {len({k.name for k in cap.kernels})} kernels ({rows} launches) "
                          f"stored as run {ncu_id}", run_id=ncu_id, of_run_id=measured_id)
        return ncu_id
    except JobCancelled:
        if ncu_id is not None:
            _fail_run(ctx, ncu_id, "cancelled by the user")
        raise
    except Exception as exc:  # noqa: BLE001 - a failed ncu capture keeps the measured run
        reason = f"ncu capture failed: {type(exc).__name__}: {exc}"
        if ncu_id is not None:
            _fail_run(ctx, ncu_id, reason)
        _merge_run_config(ctx, measured_id, {"ncu_error": reason})
        ctx.event("warning", f"{label}: {reason}; the measured run is kept", run_id=measured_id)
        return None


#: iterations an nsys capture records (each in an NVTX range ``iteration N``)
NSYS_ITERATIONS = 5


def _nsys_run(ctx: JobContext, p: BenchPlan, prepared: PreparedVariant, precision: str, batch: int,
              measured_id: int, workdir: Path) -> int | None:
    """Capture the configuration just measured under Nsight Systems and store the imported report as its own run.

    ``engine_runner.profile_child`` re-prepares the same variant in a child under ``nsys profile``
    (``engine_runner.nsys_capture.run_nsys``), 3 warm-up and :data:`NSYS_ITERATIONS` measured inferences between
    cudaProfilerStart/Stop; the report is exported to SQLite, parsed (``profiles.nsys_export``) and stored on a new
    run labelled ``[profiled: nsys]`` (``config["profiler"]``: tool, version, schema, command, ``of_run_id``), with
    the report and its export as artifacts. A failure (no report, a failed export) keeps the measured run: a warning,
    ``config["nsys_error"]``, the nsys run (if created) failed. Returns the nsys run id or None.

    Raises:
        JobCancelled: passed through.
    """
    from db.kernels import profiler_config, store_trace
    from engine_runner.nsys_capture import run_nsys
    from engine_runner.profile_child import write_request

    spec = p.spec
    label = f"{precision} b{batch}"
    ctx.event("stage", f"{label}: Nsight Systems capture of {NSYS_ITERATIONS} iterations (a separate nsys run)",
              run_id=measured_id)
    nsys_id: int | None = None
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        req = write_request(workdir / "request.json", engine=spec.engine, model_path=prepared.model_path,
                            model_format=p.model_format, precision=precision, batch=batch,
                            shapes=p.shapes_by_batch[batch], spec=spec.model_dump(mode="json"),
                            inputs=_batches(p, batch)[0], warmup=3, iterations=NSYS_ITERATIONS)
        ctx.check_cancelled()
        cap = run_nsys(req, workdir)
        ctx.check_cancelled()
        nsys_id = _profiled_run_row(ctx, measured_id, "nsys", {"profiler": profiler_config(
            cap.trace, of_run_id=measured_id, iterations=NSYS_ITERATIONS, command=cap.command[:-1] + ["REQUEST"])})
        counts = store_trace(nsys_id, cap.trace, url=ctx.db_url)
        _store_artifacts(ctx, nsys_id, p.model_id, [("nsys_report", cap.report, {"nsys_version": cap.version}),
                                                    ("nsys_sqlite", cap.sqlite, {"nsys_version": cap.version})])
        with ctx.session() as s:
            s.execute(update(Run).where(Run.id == nsys_id).values(status="succeeded", finished_at=utcnow()))
        _merge_run_config(ctx, measured_id, {"nsys_capture": {"nsys_run_id": nsys_id, "kernels": counts["kernels"]}})
        ctx.event("info", f"{label}: nsys capture stored as run {nsys_id} ({counts['kernels']} kernels, "
                          f"{counts['cuda_api_calls']} CUDA API calls, {counts['nvtx_ranges']} NVTX ranges)",
                  run_id=nsys_id, of_run_id=measured_id)
        return nsys_id
    except JobCancelled:
        if nsys_id is not None:
            _fail_run(ctx, nsys_id, "cancelled by the user")
        raise
    except Exception as exc:  # noqa: BLE001 - a failed nsys capture keeps the measured run
        reason = f"nsys capture failed: {type(exc).__name__}: {exc}"
        if nsys_id is not None:
            _fail_run(ctx, nsys_id, reason)
        _merge_run_config(ctx, measured_id, {"nsys_error": reason})
        ctx.event("warning", f"{label}: {reason}; the measured run is kept", run_id=measured_id)
        return None


def _sweep_step(ctx: JobContext, spec: BenchSpec, precision: str, run_id: int, batch: int,
                points: list[SweepPoint], run_ids: list[int]) -> int | None:
    """Record the batch just run in the sweep of ``precision`` and decide on the next one
    (:func:`profiles.sweep.decide`); returns the next batch, or None when the sweep stops.

    Every run of a sweep gets ``runs.config["batch_sweep"]``: ``{"precision", "step", "start_batch",
    "max_batch", "min_gain", "gain_vs_previous"}``; when it stops, every run of that sweep also gets
    ``"stop": {"reason", "detail", "knee_batch", "limit_batch", "batches"}`` and the run that ran out of
    memory ``"limit": true`` (it is the sweep's memory limit: it stays failed with its error, but does not
    fail the job; :func:`engine_runner.jobs.execute`).
    """
    with ctx.session() as s:
        run = s.get(Run, run_id)
        status, error = (run.status, run.error) if run else ("failed", "run row missing")
        items = s.execute(select(RunMetric.value).where(RunMetric.run_id == run_id, RunMetric.point_id.is_(None),
                                                        RunMetric.name == "items_per_s")).scalars().first()
    ok = status == "succeeded" and items is not None
    points.append(SweepPoint(batch, float(items) if ok and items is not None else None,
                             None if ok else (error or f"run {status}")))
    d = decide(points, spec.max_batch)
    info = {"precision": precision, "step": len(points) - 1, "start_batch": spec.batch_sizes[0],
            "max_batch": spec.max_batch, "min_gain": MIN_GAIN, "gain_vs_previous": d.gain}
    _merge_run_config(ctx, run_id, {"batch_sweep": info})
    if d.next_batch is not None:
        ctx.event("info", f"{precision} batch sweep: {d.detail}", run_id=run_id, gain=d.gain)
        return d.next_batch
    stop = {"reason": d.reason, "detail": d.detail, "knee_batch": d.knee_batch, "limit_batch": d.limit_batch,
            "batches": [pt.batch for pt in points]}
    for rid in run_ids:
        extra: dict[str, Any] = {"stop": stop}
        if rid == run_id and d.reason == "out_of_memory":
            extra["limit"] = True
        _merge_run_config(ctx, rid, {"batch_sweep": extra})
    ctx.event("warning" if d.reason == "failed" else "info",
              f"{precision} batch sweep stopped ({d.reason}): {d.detail}; knee at batch {d.knee_batch}",
              run_id=run_id, sweep=stop)
    return None


def _merge_run_config(ctx: JobContext, run_id: int, extra: dict[str, Any]) -> None:
    """Merge ``extra`` into ``runs.config`` (one level deep for dict values), in one short transaction."""
    with ctx.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            return
        cfg = dict(run.config or {})
        for k, v in extra.items():
            cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
        run.config = cfg


def _inputs_config(p: BenchPlan, batch: int) -> dict[str, Any]:
    """``runs.config["inputs"]``: where the run's inputs came from and how many samples accuracy uses."""
    if p.inputs is not None:
        return {**p.inputs.describe(), "batches": p.inputs.samples // batch if sample_axis_inputs(p.input_specs)
                else 1, "timed_batch": 0, "accuracy": "every batch, aggregated"}
    if p.native is not None:
        return {**p.native.generated(batch)[1], "samples": batch if sample_axis_inputs(p.input_specs) else 1,
                "batches": 1, "timed_batch": 0}
    return {"source": "generated", "seed": p.spec.seed, "rules": "engine_runner.inputs.generate_inputs",
            "samples": batch if sample_axis_inputs(p.input_specs) else 1, "batches": 1, "timed_batch": 0}


def _batches(p: BenchPlan, batch: int) -> list[dict[str, np.ndarray]]:
    """The run's input feeds: the user's batches, or one seeded generated batch."""
    if p.inputs is not None:
        return p.inputs.batches(p.input_specs, batch)
    if p.native is not None:
        return [p.native.generated(batch)[0]]
    return [generate_inputs(p.input_specs, p.shapes_by_batch[batch], seed=p.spec.seed)]


def _concat_outputs(outputs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Outputs of several batches joined along the first axis (stacked when an output is a scalar)."""
    if len(outputs) == 1:
        return outputs[0]
    joined = {}
    for name in outputs[0]:
        parts = [np.asarray(o[name]) for o in outputs]
        joined[name] = np.concatenate(parts, axis=0) if parts[0].ndim else np.stack(parts)
    return joined


def _measure_one(ctx: JobContext, eng: BenchEngine, p: BenchPlan, prepared: PreparedVariant, precision: str,
                 batch: int, run_id: int, config: dict[str, Any],
                 references: dict[int, tuple[int | None, dict[str, np.ndarray], str]],
                 workdir: Path, frac0: float, width: float, *, finish: bool = True) -> None:
    """Measure repeat 0 of a run and store everything (samples, summaries, layers, telemetry, accuracy);
    with ``finish`` the run succeeds, else it stays ``running`` for its further repeats."""
    spec = p.spec
    label = f"{precision} b{batch}" + (f" repeat 1/{spec.repeats}" if spec.repeats > 1 else "")
    workdir.mkdir(parents=True, exist_ok=True)
    feeds = _batches(p, batch)
    inputs = feeds[0]

    def progress(message: str, fraction: float) -> None:
        f = _STEP_MEASURE_START + (_STEP_MEASURE_END - _STEP_MEASURE_START) * min(max(fraction, 0.0), 1.0)
        ctx.progress(frac0 + width * f, f"{label}: {message}", run_id=run_id)

    hooks = MeasureHooks(check_cancelled=ctx.check_cancelled, progress=progress,
                         stage=lambda msg: ctx.event("stage", f"{label}: {msg}", run_id=run_id))
    with _telemetry(spec.device) as sampler:
        hooks.mark_window = sampler.mark_window
        m = eng.measure(prepared, inputs, spec, hooks, workdir)
    window_cfg: dict[str, Any] = {}
    if sampler.device != "cpu":
        report = sampler.window_report(inferences=max(int(np.asarray(m.samples_ns).size), 1))
        if report is None:
            window_cfg["telemetry_warnings"] = [f"{spec.engine} did not mark its measured window: no energy or "
                                                f"clock figures for this run"]
        else:
            m.metrics.update(window_metrics(report, batch))
            window_cfg["telemetry_window"] = report.as_dict()
            if report.warnings:
                window_cfg["telemetry_warnings"] = list(report.warnings)
    elif spec.device != "cpu":
        window_cfg["telemetry_warnings"] = [f"no GPU telemetry for {spec.device} ({'; '.join(sampler.notes)}): "
                                            f"no energy or clock figures"]
    for w in window_cfg.get("telemetry_warnings", []):
        ctx.event("warning", f"{label}: {w}", run_id=run_id)
    for w in m.config.get("engine_warnings", []):
        ctx.event("warning", f"{label}: {w}", run_id=run_id)
    for n in prepared.config.get("engine_notes", []) if batch == p.spec.batch_sizes[0] else []:
        ctx.event("info", f"{precision}: {n}", run_id=run_id)
    if m.config.get("layer_profile_error"):
        m.layers = []
        ctx.event("warning", f"{label}: {m.config['layer_profile_error']}; timings kept, no per-layer rows",
                  run_id=run_id)
    if m.config.get("timing_stop_reason") == "max_duration":
        ctx.event("warning", f"{label}: {m.config.get('timing_stop_note') or 'timed loop capped by max_duration_s'}",
                  run_id=run_id)
    _store_measurement(ctx, run_id, batch, m)
    _store_artifacts(ctx, run_id, p.model_id, m.artifacts)
    telemetry = _store_telemetry(ctx, run_id, sampler)

    ctx.event("stage", f"{label}: accuracy on {len(feeds)} batch(es)", progress=frac0 + width * 0.92, run_id=run_id)
    extra_cfg: dict[str, Any] = {}
    valid: bool | None
    try:
        outputs = [m.outputs]
        for feed in feeds[1:]:
            ctx.check_cancelled()
            outputs.append(eng.infer(prepared, feed))
        valid = _accuracy(ctx, p, precision, batch, run_id, feeds, outputs, references, extra_cfg)
    except JobCancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed accuracy check must not discard valid timings
        valid = None
        extra_cfg["accuracy_error"] = f"{type(exc).__name__}: {exc}"
        ctx.event("warning", f"{label}: accuracy check failed ({extra_cfg['accuracy_error']}); timings kept",
                  run_id=run_id)
    with ctx.session() as s:
        done = {"status": "succeeded", "finished_at": utcnow()} if finish else {}
        s.execute(update(Run).where(Run.id == run_id).values(
            **done, timing_window=m.timing_window, numerically_valid=valid,
            config={**config, **m.config, **extra_cfg, **window_cfg, "telemetry": telemetry}))
    ctx.progress(frac0 + width, f"{label}: done", run_id=run_id)


def _per_sample_cosine_min(ref: np.ndarray, cand: np.ndarray, samples: int) -> float | None:
    """Worst per-sample cosine (``profiles.accuracy.compare_output`` on each row of the first axis) when the
    output's first axis is the sample axis; None otherwise."""
    if samples < 2 or ref.ndim == 0 or ref.shape[0] != samples or cand.shape != ref.shape:
        return None
    cosines = [compare_output("sample", ref[i], cand[i]).cosine for i in range(samples)]
    present = [c for c in cosines if c is not None]
    return min(present) if present else None


def _non_numeric_outputs(outputs: dict[str, Any]) -> dict[str, str]:
    """``{output name: reason}`` for outputs that are not numeric tensors (e.g. an ONNX-ML ZipMap's
    ``seq(map(int64, float))``, strings): accuracy cannot compare them and skips them."""
    skipped = {}
    for name, value in outputs.items():
        try:
            kind = np.asarray(value).dtype.kind
        except (ValueError, TypeError) as exc:  # ragged sequences
            skipped[name] = f"not a numeric tensor ({type(exc).__name__}: {exc})"
            continue
        if kind not in "biuf":
            skipped[name] = (f"not a numeric tensor (Python {type(value).__name__}, numpy dtype "
                             f"{np.asarray(value).dtype}); accuracy compares numeric tensors only")
    return skipped


def _accuracy(ctx: JobContext, p: BenchPlan, precision: str, batch: int, run_id: int,
              feeds: list[dict[str, np.ndarray]], outputs_by_batch: list[dict[str, np.ndarray]],
              references: dict[int, tuple[int | None, dict[str, np.ndarray], str]],
              config_out: dict[str, Any] | None = None) -> bool | None:
    """Accuracy over every batch: the outputs of all batches are joined along the first axis and compared
    once with the fp32 outputs of the same batches (``profiles.accuracy.compare_outputs``). Row details
    get ``samples`` (N compared), ``batches``, ``inputs`` (``npz``/``generated``) and, for an output whose
    first axis is the sample axis, ``cosine_min_over_samples``.

    Outputs that are not numeric tensors (:func:`_non_numeric_outputs`) are skipped: their names and
    reasons go to ``config_out["accuracy_skipped"]`` (``runs.config``) and to the aggregate row's
    ``details["skipped_outputs"]``. Returns None when no output is numeric (nothing was checked)."""
    raw = _concat_outputs(outputs_by_batch)
    skipped = _non_numeric_outputs(raw)
    outputs = {k: v for k, v in raw.items() if k not in skipped}
    if skipped:
        if config_out is not None:
            config_out["accuracy_skipped"] = skipped
        ctx.event("info", f"{precision} b{batch}: accuracy skips non-numeric output(s) {sorted(skipped)}",
                  run_id=run_id)
    if not outputs:
        if precision == "fp32":
            references[batch] = (run_id, {}, f"fp32 run {run_id}")
        return None
    if precision == "fp32":
        health = output_health(outputs)
        references[batch] = (run_id, outputs, f"fp32 run {run_id}")
        if not health.valid:
            ctx.event("warning", f"fp32 b{batch}: outputs are not numerically valid "
                                 f"(NaN {health.nan_count}, Inf {health.inf_count}, all zero {health.all_zero})")
        return health.valid
    if batch not in references:
        try:
            if p.native is not None:
                ref, how = p.native.reference(feeds)
            else:
                ref = _concat_outputs([_ort_reference_outputs(p.model_path, f) for f in feeds])
                how = "onnxruntime CPU fp32 on the original model"
        except EngineScopeError as exc:
            ctx.event("warning", f"{precision} b{batch}: no fp32 reference for accuracy ({exc})")
            return output_health(outputs).valid
        references[batch] = (None, ref, f"{how} (no fp32 run of this batch in the job)")
    ref_run, ref_outputs, note = references[batch]
    ref_outputs = {k: v for k, v in ref_outputs.items() if k not in skipped and k not in _non_numeric_outputs({k: v})}
    records = compare_outputs(ref_outputs, outputs)
    samples = int(_inputs_config(p, batch)["samples"]) if p.inputs is None else p.inputs.samples
    common = {"samples": samples, "batches": len(feeds), "inputs": "npz" if p.inputs is not None else "generated"}
    extra: dict[str, dict[str, Any]] = {AGGREGATE: {**common, **({"skipped_outputs": skipped} if skipped else {})}}
    for name, ref_arr in ref_outputs.items():
        extra[name] = dict(common)
        worst = _per_sample_cosine_min(np.asarray(ref_arr), np.asarray(outputs[name]), samples)
        if worst is not None:
            extra[name]["cosine_min_over_samples"] = worst
    _store_accuracy(ctx, run_id, ref_run, records, note, extra)
    agg = next(r for r in records if r.output_name == AGGREGATE)
    if not agg.valid:
        ctx.event("warning", f"{precision} b{batch}: outputs are not numerically valid "
                             f"(NaN {agg.nan_count}, Inf {agg.inf_count}, all zero {agg.all_zero})")
    return agg.valid
