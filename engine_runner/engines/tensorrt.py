"""TensorRT implementation of ``BenchEngine`` (``engine="tensorrt"``), two routes chosen automatically:

- ``trtexec`` (``$ENGINESCOPE_TRTEXEC`` or ``PATH``): build, time and profile run as subprocesses with
  argv lists (never a shell), commands from :mod:`engine_runner.trt_build` for the detected TensorRT
  version; results read with :mod:`profiles.trtexec`. Latency samples are trtexec's own per-query
  times (``--exportTimes``: CUDA events around H2D + compute + D2H, or compute only with
  ``--noDataTransfers``). Outputs for the accuracy check come from ``--loadInputs``/``--exportOutput``.
- ``python`` (the ``tensorrt`` module): ``tensorrt.Builder`` + ``OnnxParser``, buffers as torch CUDA
  tensors, ``execute_async_v3`` timed with CUDA events on the stream (never the wall clock around
  asynchronous work); per-layer times from an ``IProfiler`` in a separate profiling context and the
  layer description from the engine inspector.

Both routes: the TensorRT version is detected and recorded with every result; precision follows
:func:`engine_runner.trt_build.precision_plan` (TensorRT 11: ONNX variants only); an optimization
profile covers every run shape (a shape outside it is refused with an ``InputError`` before anything
runs); engines are cached under ``ENGINESCOPE_HOME/artifacts/trt_engines/<key>.plan`` keyed by
(model hash, precision, build options, GPU name, TensorRT version) and the timing cache lives per
(GPU, TensorRT version) in ``artifacts/trt_timing_cache/``. A failed parse/build raises an
``EngineError`` whose message is :func:`profiles.trtexec.diagnose`'s headline, the collapsed warnings
and the suggestion to run ONNX Runtime instead.

The class follows Polygraphy's style: a context manager whose public methods validate their input
and call ``_impl`` methods that do the work.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from db.config import home
from engine_runner.engines.base import EngineMeasurement, LayerRow, MeasureHooks, PreparedVariant
from engine_runner.precision import ONNX_VARIANT_PRECISIONS
from engine_runner.trt_build import (
    check_shapes_in_profile,
    engine_cache_key,
    precision_plan,
    timing_cache_path,
    trtexec_commands,
)
from profiles.catalog import resolve_precision
from profiles.files import sha256_file
from profiles.errors import EngineError, EngineUnavailableError, InputError
from profiles.trt_spec import ShapeRange, TensorRTAvailability, TensorRTOptions, detect_tensorrt, parse_tensorrt_options
from profiles.trtexec import TrtVersion, diagnose, merge_layers, parse_layer_info, parse_profile, parse_times, parse_trtexec_log
from profiles.trtexec.log import BANNER_RE, ProfileRow

if TYPE_CHECKING:
    import tensorrt as trt

    from profiles.specs import BenchSpec

#: Seconds a trtexec build may take before it is killed.
BUILD_TIMEOUT_S = 3600
#: Profiling iterations of the separate layer-profile run (Python route).
PROFILE_RUNS = 50

#: The ONNX variants engine_runner.precision makes (one definition: ``ONNX_VARIANT_PRECISIONS``).
ONNX_VARIANTS = ONNX_VARIANT_PRECISIONS


def _timing_window(no_copies: bool, cuda_graph: bool, route: str) -> str:
    what = "GPU compute only (no host-device copies)" if no_copies else "H2D copy + GPU compute + D2H copy"
    how = "trtexec per-query times (--exportTimes, CUDA events)" if route == "trtexec" else \
        "CUDA events around execute_async_v3 on one stream"
    return f"{how}: {what}" + (", CUDA graph" if cuda_graph else "")




def _dynamic_inputs(model_path: Path) -> dict[str, list[int | str | None]]:
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    out: dict[str, list[int | str | None]] = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        dims: list[int | str | None] = []
        for d in vi.type.tensor_type.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
        out[vi.name] = dims
    return out


def profile_from_shapes(shapes_by_batch: dict[int, dict[str, list[int]]], dims: dict[str, list[int | str | None]],
                        overrides: dict[str, ShapeRange]) -> dict[str, ShapeRange]:
    """Optimization profile covering every run shape: per dynamic input, ``min``/``max`` are the
    element-wise min/max over the batches' shapes and ``opt`` the shape of the largest batch
    (documented default); ``overrides`` (from ``TensorRTOptions.profiles``) win. Static inputs get none.

    Raises:
        InputError: a run shape falls outside an override (names the input, dim and range).
    """
    prof: dict[str, ShapeRange] = {}
    batches = sorted(shapes_by_batch)
    for name, model_dims in dims.items():
        if all(isinstance(d, int) and d > 0 for d in model_dims):
            continue
        if name in overrides:
            prof[name] = overrides[name]
            continue
        shapes = [shapes_by_batch[b][name] for b in batches if name in shapes_by_batch[b]]
        if not shapes:
            continue
        arr = np.array(shapes)
        prof[name] = ShapeRange(min=[int(x) for x in arr.min(axis=0)], opt=list(shapes[-1]),
                                max=[int(x) for x in arr.max(axis=0)])
    for b in batches:
        check_shapes_in_profile(shapes_by_batch[b], prof)
    return prof


class Engine:
    """TensorRT ``BenchEngine`` (see the module docstring). Construction is cheap: nothing is imported
    or run until :meth:`version`/:meth:`prepare`."""

    name = "tensorrt"

    def __init__(self, availability: TensorRTAvailability | None = None) -> None:
        self._avail = availability
        self._version: TrtVersion | None = None
        self._gpu: str | None = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    # ------------------------------------------------------------------ route and version
    def availability(self) -> TensorRTAvailability:
        """The route (cached).

        Raises:
            EngineUnavailableError: no trtexec and no ``tensorrt`` module (message: the install command).
        """
        if self._avail is None:
            try:
                self._avail = detect_tensorrt()
            except InputError as exc:
                raise EngineUnavailableError(str(exc)) from None
        if not self._avail.available:
            raise EngineUnavailableError(f"TensorRT is not available here: {self._avail.reason}. {self._avail.install_hint}")
        return self._avail

    def trt_version(self) -> TrtVersion:
        """TensorRT version of the route: trtexec's banner (``[TensorRT v101601]``) or ``tensorrt.__version__``.

        Raises:
            EngineUnavailableError: no route; EngineError: trtexec did not print its version.
        """
        if self._version is None:
            self._version = self._version_impl(self.availability())
        return self._version

    def _version_impl(self, avail: TensorRTAvailability) -> TrtVersion:
        if avail.route == "trtexec" and avail.trtexec_path:
            proc = subprocess.run([avail.trtexec_path, "--help"], capture_output=True, text=True, timeout=60, check=False)
            for line in (proc.stdout + proc.stderr).splitlines():
                m = BANNER_RE.search(line)
                if m and m.group(2):
                    return TrtVersion.parse(m.group(2))
            raise EngineError(f"{avail.trtexec_path} --help printed no '[TensorRT vNNNN]' banner; is it trtexec?")
        import tensorrt as trt

        return TrtVersion.parse(str(trt.__version__))

    def version(self) -> str:
        """The TensorRT version string stored as ``runs.engine_version``."""
        return str(self.trt_version())

    def gpu_name(self) -> str:
        """Name of CUDA device 0 (NVML), part of the engine cache key; ``"unknown-gpu"`` when NVML fails."""
        if self._gpu is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
                self._gpu = name.decode() if isinstance(name, bytes) else str(name)
            except Exception:  # noqa: BLE001 - NVML raises its own error types; the key then says so
                self._gpu = "unknown-gpu"
        return self._gpu

    # ------------------------------------------------------------------ BenchEngine
    def onnx_variant_for(self, precision: str) -> str:
        """The ONNX variant to build for ``precision`` (TensorRT 11: the precision's own variant; older:
        fp32 + builder flags, int8 from the Q/DQ variant). Without TensorRT here, the TensorRT 10 rules apply.

        Raises:
            InputError: not a TensorRT precision (``profiles.catalog``), not available on this TensorRT version,
                or no ONNX variant maker for it.
        """
        resolve_precision(self.name, precision)  # not a TensorRT precision (profiles.catalog): --precision error
        try:
            version = self.trt_version()
        except EngineUnavailableError:
            version = TrtVersion(10, 0)
        plan = precision_plan(precision, version)
        variant = plan["onnx_variant"] or "fp32"
        if variant not in ONNX_VARIANTS:
            raise InputError(f"--precision {precision}: TensorRT {version} needs a {variant} ONNX variant, which "
                             f"engine_runner.precision does not make (it makes {list(ONNX_VARIANTS)})")
        return variant

    def prepare(self, model_path: Path, precision: str, shapes_by_batch: dict[int, dict[str, list[int]]],
                spec: BenchSpec, workdir: Path) -> PreparedVariant:
        """Validate the options and shapes, then build (or reuse) the engine.

        Raises:
            InputError: invalid ``spec.tensorrt`` field; a run shape outside the optimization profile.
            EngineUnavailableError: no TensorRT here. EngineError: the parse/build failed (diagnosed).
        """
        if not Path(model_path).is_file():
            raise InputError(f"{model_path}: ONNX file not found")
        options = parse_tensorrt_options(spec.tensorrt)
        profile = profile_from_shapes(shapes_by_batch, _dynamic_inputs(Path(model_path)), options.profiles)
        return self._prepare_impl(Path(model_path), precision, profile, options, Path(workdir))

    def _prepare_impl(self, model_path: Path, precision: str, profile: dict[str, ShapeRange],
                      options: TensorRTOptions, workdir: Path) -> PreparedVariant:

        avail, version = self.availability(), self.trt_version()
        plan = precision_plan(precision, version)
        key = engine_cache_key(sha256_file(model_path), precision, options, self.gpu_name(), version)
        engines = home() / "artifacts" / "trt_engines"
        engines.mkdir(parents=True, exist_ok=True)
        engine_path = engines / f"{key}.plan"
        tcache = timing_cache_path(home(), self.gpu_name(), version) if options.timing_cache else None
        workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"route": avail.route, "tensorrt_version": str(version), "gpu": self.gpu_name(),
                                  "precision_plan": plan, "options": options.model_dump(),
                                  "optimization_profile": {k: v.model_dump() for k, v in profile.items()},
                                  "engine_cache_key": key, "timing_cache": str(tcache) if tcache else None}
        reused = engine_path.is_file()
        config["engine_reused"] = reused
        build_s = 0.0
        if not reused:
            t0 = time.perf_counter_ns()
            if avail.route == "trtexec" and avail.trtexec_path:
                cmds = trtexec_commands(avail.trtexec_path, version, model_path, engine_path, precision, options,
                                        profile=profile, run_shapes={}, timing_cache=tcache, export_prefix=workdir / "run")
                config["build_command"] = cmds.build
                config["version_notes"] = cmds.notes
                self._run_trtexec(cmds.build, workdir / "build.log", f"building the {precision} engine of {model_path.name}",
                                  BUILD_TIMEOUT_S)
            else:
                self._build_python(model_path, engine_path, plan, options, profile, tcache, precision)
            build_s = (time.perf_counter_ns() - t0) / 1e9
        config["build_s"] = build_s
        artifacts = [("engine", engine_path, {"cache_key": key, "tensorrt": str(version), "gpu": self.gpu_name(),
                                              "precision": precision, "reused": reused})]
        if (workdir / "build.log").is_file():
            artifacts.append(("log", workdir / "build.log", {"what": "trtexec build log"}))
        handle = {"engine_path": engine_path, "profile": profile, "options": options, "version": version,
                  "route": avail.route, "trtexec": avail.trtexec_path, "runtime": None}
        return PreparedVariant(precision=precision, model_path=model_path, handle=handle, config=config, artifacts=artifacts)

    def infer(self, variant: PreparedVariant, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference on ``inputs`` (shapes must be inside the optimization profile); outputs by name.

        Raises:
            InputError: an input shape outside the profile. EngineError: the run failed.
        """
        check_shapes_in_profile({k: list(v.shape) for k, v in inputs.items()}, variant.handle["profile"])
        if variant.handle["route"] == "trtexec":
            return self._infer_trtexec(variant, inputs)
        return self._infer_python(variant, inputs)

    def measure(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                hooks: MeasureHooks, workdir: Path) -> EngineMeasurement:
        """Outputs of one inference, the timed run, then the per-layer profile in a separate run.

        Raises:
            InputError: an input shape outside the profile. EngineError: a run failed. JobCancelled: from hooks.
        """
        check_shapes_in_profile({k: list(v.shape) for k, v in inputs.items()}, variant.handle["profile"])
        Path(workdir).mkdir(parents=True, exist_ok=True)
        if variant.handle["route"] == "trtexec":
            return self._measure_trtexec(variant, inputs, spec, hooks, Path(workdir))
        return self._measure_python(variant, inputs, spec, hooks, Path(workdir))

    def release(self, variant: PreparedVariant) -> None:
        """Drop the runtime objects (the engine file stays in the cache)."""
        variant.handle["runtime"] = None

    # ------------------------------------------------------------------ trtexec route
    def _run_trtexec(self, argv: list[str], log_path: Path, what: str, timeout_s: float) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"trtexec timed out after {timeout_s:.0f} s while {what}") from exc
        text = proc.stdout + proc.stderr
        log_path.write_text(text)
        if proc.returncode != 0 or "&&&& FAILED" in text:
            d = diagnose(text)
            warn = "; ".join(f"{w.text[:120]} (x{w.count})" for w in d.warnings[:3])
            raise EngineError(f"TensorRT failed while {what}: {d.headline or f'trtexec exit code {proc.returncode}'}"
                              + (f". Warnings: {warn}" if warn else "") + f". {d.suggestion or ''} Log: {log_path}")
        return text

    @staticmethod
    def _save_inputs(inputs: dict[str, np.ndarray], workdir: Path) -> tuple[str, str]:
        """``--loadInputs`` (raw little-endian binaries, one per input) and ``--shapes`` values."""
        from engine_runner.trt_build import shape_arg

        parts = []
        for name, arr in inputs.items():
            p = workdir / f"input_{hashlib.sha1(name.encode()).hexdigest()[:8]}.bin"
            np.ascontiguousarray(arr).tofile(p)
            parts.append(f"{name}:{p}")
        return ",".join(parts), shape_arg({k: list(v.shape) for k, v in inputs.items()})

    def _infer_trtexec(self, variant: PreparedVariant, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = variant.handle
        work = Path(h["engine_path"]).parent / f"io_{time.perf_counter_ns()}"
        work.mkdir(parents=True, exist_ok=True)
        load, shapes = self._save_inputs(inputs, work)
        out_json = work / "outputs.json"
        argv = [h["trtexec"], f"--loadEngine={h['engine_path']}", f"--shapes={shapes}", f"--loadInputs={load}",
                "--iterations=1", "--duration=0", "--warmUp=0", f"--exportOutput={out_json}"]
        self._run_trtexec(argv, work / "infer.log", f"running the {variant.precision} engine once", 600)
        data = json.loads(out_json.read_text())
        return {d["name"]: np.asarray(d["values"]).reshape([int(x) for x in str(d["dimensions"]).split("x") if x])
                for d in data}

    def _measure_trtexec(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                         hooks: MeasureHooks, workdir: Path) -> EngineMeasurement:

        h = variant.handle
        opts: TensorRTOptions = h["options"]
        hooks.stage("first inference (outputs for the accuracy check)")
        outputs = self._infer_trtexec(variant, inputs)
        hooks.check_cancelled()
        cmds = trtexec_commands(h["trtexec"], h["version"], variant.model_path, h["engine_path"], variant.precision, opts,
                                profile=h["profile"], run_shapes={k: list(v.shape) for k, v in inputs.items()},
                                timing_cache=None, export_prefix=workdir / "run")
        hooks.stage("timed run (trtexec)")
        hooks.progress("timing", 0.1)
        text = self._run_trtexec(cmds.run, workdir / "run.log", f"timing the {variant.precision} engine",
                                 opts.warmup_ms / 1000 + opts.duration_s + 600)
        log = parse_trtexec_log(text, str(workdir / "run.log"))
        times = parse_times((workdir / "run.times.json").read_text(), str(workdir / "run.times.json"))
        key = "computeMs" if opts.no_data_transfers else "latencyMs"
        samples = np.asarray(times.latency_ns(key), dtype=np.int64)
        extra = {k: np.asarray(times.latency_ns(c), dtype=np.int64)
                 for k, c in (("h2d", "h2dMs"), ("gpu_compute", "computeMs"), ("d2h", "d2hMs")) if times.column(c)}
        layers: list[LayerRow] = []
        artifacts: list[tuple[str, Path, dict[str, Any]]] = [
            ("log", workdir / "run.log", {"what": "trtexec timed run"}),
            ("trtexec_times", workdir / "run.times.json", {"samples": int(samples.size)})]
        if spec.profile_layers and cmds.profile:
            hooks.check_cancelled()
            hooks.stage("per-layer profile (separate trtexec run)")
            hooks.progress("profiling", 0.85)
            self._run_trtexec(cmds.profile, workdir / "profile.log", f"profiling the {variant.precision} engine", 1200)
            prof = parse_profile((workdir / "run.profile.json").read_text(), str(workdir / "run.profile.json"))
            info_path = workdir / "run.layers.json"
            info = parse_layer_info(info_path.read_text(), str(info_path)) if info_path.is_file() else None
            layers = _layer_rows(prof.rows, prof.count, info)
            artifacts += [("trtexec_profile", workdir / "run.profile.json", {}), ("log", workdir / "profile.log", {})]
            if info is not None:
                artifacts.append(("trtexec_layers", info_path, {}))
        perf = log.performance
        metrics = {"trtexec_throughput_per_s": (perf.throughput_qps, "queries/s")} if perf and perf.throughput_qps else {}
        hooks.progress("measured", 1.0)
        return EngineMeasurement(
            samples_ns=samples, outputs=outputs, timing_window=_timing_window(opts.no_data_transfers, opts.use_cuda_graph, "trtexec"),
            layers=layers, artifacts=artifacts, metrics=metrics, extra_samples_ns=extra,
            config={"run_command": cmds.run, "profile_command": cmds.profile, "version_notes": cmds.notes,
                    "trtexec_sections": log.sections, "sample_key": key})

    # ------------------------------------------------------------------ Python route
    def _build_python(self, model_path: Path, engine_path: Path, plan: dict[str, Any], options: TensorRTOptions,
                      profile: dict[str, ShapeRange], tcache: Path | None, precision: str) -> None:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan["strongly_typed"] else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(model_path)):
            errs = [parser.get_error(i) for i in range(parser.num_errors)]
            first = errs[0] if errs else None
            detail = (f"{first.desc()} (operator {first.node_name() or '?'}, node index {first.node()})" if first is not None
                      else "no parser error recorded")
            raise EngineError(f"TensorRT {trt.__version__} could not parse {model_path.name} ({precision}): {detail}; "
                              f"{len(errs)} error(s). Run it with ONNX Runtime instead (engine=onnxruntime).")
        config = builder.create_builder_config()
        config.builder_optimization_level = options.builder_optimization_level
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if options.workspace_bytes:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
        for flag in plan["flags"]:
            name = {"--fp16": "FP16", "--bf16": "BF16", "--int8": "INT8", "--fp8": "FP8"}.get(flag)
            if name:
                config.set_flag(getattr(trt.BuilderFlag, name))
            elif flag == "--best":
                for n in ("FP16", "INT8"):
                    config.set_flag(getattr(trt.BuilderFlag, n))
        cache_bytes = tcache.read_bytes() if tcache is not None and tcache.is_file() else b""
        timing_cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(timing_cache, False)
        if profile:
            p = builder.create_optimization_profile()
            for name, rng in profile.items():
                p.set_shape(name, trt.Dims(rng.min), trt.Dims(rng.opt), trt.Dims(rng.max))
            config.add_optimization_profile(p)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f"TensorRT {trt.__version__} failed to build the {precision} engine of {model_path.name} "
                              "(see the TensorRT log above). Run it with ONNX Runtime instead (engine=onnxruntime).")
        engine_path.write_bytes(bytes(memoryview(serialized)))
        if tcache is not None:
            tcache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))

    def _runtime(self, variant: PreparedVariant) -> tuple[trt.ICudaEngine, trt.IExecutionContext]:
        import tensorrt as trt

        h = variant.handle
        if h["runtime"] is None:
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            engine = runtime.deserialize_cuda_engine(Path(h["engine_path"]).read_bytes())
            if engine is None:
                raise EngineError(f"TensorRT could not deserialize {h['engine_path']}")
            h["runtime"] = (runtime, engine, engine.create_execution_context())
        _, engine, context = h["runtime"]
        return engine, context

    def _bind(self, engine: trt.ICudaEngine, context: trt.IExecutionContext, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        import tensorrt as trt
        import torch

        tensors: dict[str, Any] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                if name not in inputs:
                    raise InputError(f"input {name!r} of the engine is missing from the inputs")
                t = torch.from_numpy(np.ascontiguousarray(inputs[name])).cuda()
                context.set_input_shape(name, tuple(t.shape))
                tensors[name] = t
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                dims = context.get_tensor_shape(name)
                shape = tuple(int(dims[j]) for j in range(len(dims)))
                np_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                tensors[name] = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, np_dtype)).dtype, device="cuda")
        for name, t in tensors.items():
            context.set_tensor_address(name, int(t.data_ptr()))
        return tensors

    def _infer_python(self, variant: PreparedVariant, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        engine, context = self._runtime(variant)
        tensors = self._bind(engine, context, inputs)
        stream = torch.cuda.Stream()
        if not context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"execute_async_v3 failed for the {variant.precision} engine")
        stream.synchronize()
        return {k: v.cpu().numpy() for k, v in tensors.items() if k not in inputs}

    def _measure_python(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                        hooks: MeasureHooks, workdir: Path) -> EngineMeasurement:
        import tensorrt as trt
        import torch


        opts: TensorRTOptions = variant.handle["options"]
        outputs = self._infer_python(variant, inputs)
        engine, context = self._runtime(variant)
        tensors = self._bind(engine, context, inputs)
        host_in = {k: torch.from_numpy(np.ascontiguousarray(v)).pin_memory() for k, v in inputs.items()}
        stream = torch.cuda.Stream()

        def one() -> None:
            if not opts.no_data_transfers:
                for k, v in host_in.items():
                    tensors[k].copy_(v, non_blocking=True)
            context.execute_async_v3(stream.cuda_stream)
            if not opts.no_data_transfers:
                for k, v in tensors.items():
                    if k not in inputs:
                        v.to("cpu", non_blocking=True)

        hooks.stage("warm-up")
        with torch.cuda.stream(stream):
            t_end = time.perf_counter_ns() + opts.warmup_ms * 1_000_000
            while time.perf_counter_ns() < t_end:
                one()
            stream.synchronize()
            hooks.stage("timing (CUDA events)")
            samples: list[int] = []
            deadline = time.perf_counter_ns() + int(opts.duration_s * 1e9)
            while len(samples) < opts.iterations or time.perf_counter_ns() < deadline:
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record(stream)
                one()
                stop.record(stream)
                stop.synchronize()
                samples.append(int(round(start.elapsed_time(stop) * 1e6)))
                if len(samples) % 100 == 0:
                    hooks.check_cancelled()
                    hooks.progress(f"timing {len(samples)}", min(0.8, 0.8 * len(samples) / max(opts.iterations, 1)))
        layers: list[LayerRow] = []
        if spec.profile_layers:
            hooks.stage("per-layer profile (separate context, IProfiler)")
            layers = self._profile_python(engine, inputs)
        return EngineMeasurement(samples_ns=np.asarray(samples, dtype=np.int64), outputs=outputs,
                                 timing_window=_timing_window(opts.no_data_transfers, False, "python"), layers=layers,
                                 config={"tensorrt_python": str(trt.__version__), "iterations_done": len(samples)})

    def _profile_python(self, engine: trt.ICudaEngine, inputs: dict[str, np.ndarray]) -> list[LayerRow]:
        import tensorrt as trt
        import torch

        times: dict[str, list[float]] = {}

        class _Profiler(trt.IProfiler):
            def report_layer_time(self, layer_name: str, ms: float) -> None:
                times.setdefault(layer_name, []).append(ms)

        context = engine.create_execution_context()
        context.profiler = _Profiler()
        self._bind(engine, context, inputs)
        stream = torch.cuda.Stream()
        for _ in range(PROFILE_RUNS):
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
        total = sum(sum(v) for v in times.values()) or 1.0
        rows = [ProfileRow(name=n, total_ms=sum(v), avg_ms=sum(v) / len(v), median_ms=float(np.median(v)),
                           percentage=100.0 * sum(v) / total) for n, v in times.items()]
        info = parse_layer_info(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
        return _layer_rows(rows, PROFILE_RUNS, info)


def _layer_rows(profile: list[ProfileRow], count: int | None, info: Any) -> list[LayerRow]:
    """``LayerRow`` s from profile rows joined with layer info (fused/Myelin layers kept as they are)."""

    rows = []
    for m in merge_layers(profile, info):
        li, t = m.info, m.timing
        details: dict[str, Any] = {"note": m.note}
        if li is not None:
            details.update({"inputs": [x.as_dict() for x in li.inputs], "outputs": [x.as_dict() for x in li.outputs],
                            "onnx_nodes": li.onnx_nodes})
        rows.append(LayerRow(name=m.name, op_type=li.layer_type if li else None, avg_ms=t.avg_ms if t else None,
                             median_ms=t.median_ms if t else None, total_ms=t.total_ms if t else None,
                             count=count if t else None, percentage=t.percentage if t else None,
                             precision=li.precision if li else None, tactic=li.tactic if li else None,
                             fused=m.fused, details=details))
    return rows
