"""PyTorch engine for ``model_bench`` (``--engine torch``): Hugging Face folders and ``torch.export`` programs.

Models: ``engine_runner.torch_models`` (resolution, pickle policy, inputs). The engine implements
``engine_runner.engines.base.NativeModelEngine``: the job gives it the model's own folder/file, no ONNX
variant. Polygraphy-style: the engine is a context manager; public methods validate their arguments, the
``_..._impl`` methods do the work.

Precisions (names from ``profiles.catalog``; how each is realised is recorded as
``runs.config["precision_detail"]`` and printed by ``enginescope bench``):

- ``fp32``: float32 weights; ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``
  set False for the run ("fp32 (TF32 off)").
- ``tf32`` (CUDA only): float32 weights with both switches True (TF32 tensor-core matmuls/convolutions).
- ``fp16`` / ``bf16``: ``--cast weights`` (default): ``model.to(dtype)`` (``from_pretrained(dtype=...)``
  for a folder) and floating inputs cast to ``dtype`` before timing ("fp16 (weights cast)"); or ``--cast
  autocast``: float32 weights, the forward pass under ``torch.autocast(device_type, dtype)``
  ("fp16 (autocast)"). Both also run on CPU: PyTorch has float16/bfloat16 CPU kernels, usually slower
  than float32 unless the CPU has native support (AVX512-FP16/BF16, AMX): the numbers are measured, not
  adjusted.

Modes: eager, or ``torch.compile(model, backend, mode)`` (``--compile``): per batch size the dynamo caches
are reset and the model recompiled, so each batch runs a graph specialised for its shapes; the first
call (compilation) is timed apart (``config["first_call_s"]``), never as a sample. ``--cuda-graph``
(CUDA): after warm-up, one forward pass is captured with ``torch.cuda.graph`` (three warm-up calls on a
side stream first, as PyTorch's CUDA-graph notes require) and ``graph.replay()`` is timed.

Timing (``engine_runner.timing.time_calls``; warm-up by count and time as the spec says): inputs are put on
the device once before timing (outputs stay there), every call runs under ``torch.inference_mode()``.

- CPU: ``time.perf_counter_ns`` around the call (synchronous on CPU).
- CUDA: a ``torch.cuda.Event(enable_timing=True)`` pair recorded on the current stream before and after
  the call; after ``stop.synchronize()``, ``start.elapsed_time(stop)`` (ms, float) x 1e6, rounded, is the
  integer-ns sample. The queue is empty when ``start`` is recorded (every iteration waits for its stop
  event), so the window holds the host-side launch of the call (Python, dispatcher, kernel launches) and
  every kernel it queued; no host-device copies. Warm-up calls end with ``torch.cuda.synchronize``.

Layers: a separate profiled pass after timing (``torch.profiler.profile``, CPU activity, plus CUDA on a
GPU; :data:`PROFILE_WARMUP_RUNS` unprofiled then :data:`PROFILE_RUNS` profiled inferences, each inside a
``record_function`` marker). Rows are *top-level operators* of one inference (an operator event ``aten::...``
with no operator above it), named ``<module path>/<op>`` (eager Hugging Face models: forward hooks on every
submodule open a ``record_function`` range during the profiled pass only) or ``<op>`` otherwise, with
``#k`` for the k-th occurrence within its scope; compiled code shows as its wrapper ranges
(``## Call CompiledFxGraph ... ##``: the generated kernels' time beyond the operators they call). Row time
per inference: CUDA kernel time (``device_time_total``, every kernel launched beneath the operator) on a
GPU, CPU time (``cpu_time_total``, inclusive) on a CPU; both are in ``details``. With ``--cuda-graph`` the
profiled pass runs the same model without graph replay (a replay is one opaque launch). The trace is kept
as a ``torch_profile`` artifact (Chrome trace JSON).

Kernel timelines (``--profile-kernels N``, :meth:`Engine.capture_kernels`): after the measured run, N forward
passes (graph replays with ``--cuda-graph``) under torch.profiler with CUDA activity, parsed by
``profiles.kineto_trace``; the job stores them as a separate profiled run.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from engine_runner.engines.base import (
    EngineMeasurement,
    LayerRow,
    MeasureHooks,
    ModelInputs,
    PreparedVariant,
    guard_layer_profile,
)
from engine_runner.timing import TimingPolicy, time_calls
from engine_runner.torch_models import (
    FORMAT_HF,
    FORMAT_PT2,
    TORCH_FORMATS,
    SourceInfo,
    check_pickle,
    forward_args,
    generate_hf_inputs,
    hf_input_specs,
    hf_model_class,
    inspect_source,
    load_pt2,
    max_positions,
    npz_input_specs,
    pt2_input_specs,
    read_hf_config,
)
from engine_runner.inputs import generate_inputs
from profiles.errors import EngineError, EngineScopeError, EngineUnavailableError, InputError, JobCancelled
from profiles.kernels import KernelTrace
from profiles.specs import BenchSpec
from profiles.torch_spec import DEFAULT_SEQ_LEN, TorchOptions, parse_torch_options, precision_detail

PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16")
PROFILE_WARMUP_RUNS = 2
PROFILE_RUNS = 10
PROFILE_MAX_S = 5.0
#: Side-stream warm-up calls before a CUDA-graph capture.
GRAPH_WARMUP_CALLS = 3
_MARK = "enginescope."
_INFER_MARK = _MARK + "inference"
_MODULE_MARK = _MARK + "module::"


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailableError(f"the torch engine needs PyTorch ({exc}); pip install torch") from None
    return torch


def timing_window(device: str, opts: TorchOptions) -> str:
    """The sentence stored as ``runs.timing_window`` for a run on ``device`` with ``opts``."""
    mode = opts.mode_label()
    if device.startswith("cuda"):
        what = "torch.cuda.CUDAGraph.replay()" if opts.cuda_graph else "the model call"
        return (f"PyTorch {mode} on {device}: torch.cuda.Event pair on the current stream around {what}, read after "
                "the stop event completed (integer ns); inputs already on the device, outputs left there (no "
                "host-device copies); includes host-side launch overhead and all queued kernels; one "
                "synchronisation per iteration")
    return (f"PyTorch {mode} on cpu: perf_counter_ns around the model call under torch.inference_mode() "
            "(synchronous); inputs are torch tensors made once before timing (no numpy conversion inside); "
            "outputs stay torch tensors")


@dataclass
class _Handle:
    """What :meth:`Engine.prepare` holds (``PreparedVariant.handle``)."""

    module: Any
    fmt: str
    device: str
    precision: str
    weights_dtype: Any
    autocast_dtype: Any | None
    tf32: bool
    opts: TorchOptions
    input_names: list[str]
    in_spec: Any = None  # pt2: the program's input pytree spec
    compiled: Any = None  # torch.compile wrapper of the current batch size
    compile_stats: dict[str, Any] = field(default_factory=dict)


def _flatten_outputs(out: Any, prefix: str = "") -> dict[str, Any]:
    """Tensors of a model output by name: ``ModelOutput``/dict keys, ``output_<i>`` for tuple items, nested
    names joined with ``.``; non-tensor leaves (caches, None) are dropped."""
    import torch

    if isinstance(out, torch.Tensor):
        return {prefix or "output": out}
    items: list[tuple[str, Any]]
    if isinstance(out, Mapping):
        items = [(str(k), v) for k, v in out.items()]
    elif isinstance(out, (tuple, list)):
        items = [(f"output_{i}", v) for i, v in enumerate(out)]
    else:
        return {}
    flat: dict[str, Any] = {}
    for k, v in items:
        flat.update(_flatten_outputs(v, f"{prefix}.{k}" if prefix else k))
    return flat


def _to_numpy(out: Any) -> dict[str, np.ndarray]:
    """Host numpy copies of the output tensors; floating outputs as float32 (the accuracy check's dtype)."""
    res = {}
    for k, t in _flatten_outputs(out).items():
        t = t.detach()
        res[k] = (t.float() if t.is_floating_point() else t).cpu().numpy()
    return res


class Engine:
    """PyTorch implementation of ``NativeModelEngine`` (module doc)."""

    name = "torch"
    model_formats: tuple[str, ...] = TORCH_FORMATS

    def __init__(self) -> None:
        self._infos: dict[tuple[str, str], SourceInfo] = {}
        self._programs: dict[str, Any] = {}

    # -------------------------------------------------------------------------------- context manager

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._programs.clear()
        gc.collect()
        try:
            import torch
        except ImportError:
            return None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None

    def version(self) -> str:
        """``torch.__version__`` (e.g. ``2.13.0+cpu``)."""
        return str(_torch().__version__)

    def onnx_variant_for(self, precision: str) -> str:
        """Not applicable: the torch engine runs the model's own format (``model_formats``).

        Raises:
            InputError: always (names ``--engine``).
        """
        raise InputError("--engine torch runs Hugging Face model folders and torch.export programs (.pt2), not "
                         "ONNX models; benchmark an ONNX model with --engine onnxruntime or tensorrt")

    # -------------------------------------------------------------------------------- planning

    def _info(self, model_path: Path, fmt: str, allow_pickle: bool) -> SourceInfo:
        key = (str(model_path), fmt)
        if key not in self._infos or (fmt == FORMAT_PT2 and self._infos[key].inputs is None and allow_pickle):
            self._infos[key] = inspect_source(Path(model_path), fmt, allow_pickle=allow_pickle)
        return self._infos[key]

    def _program(self, model_path: Path, allow_pickle: bool) -> Any:
        key = str(model_path)
        if key not in self._programs:
            self._programs[key] = load_pt2(Path(model_path), allow_pickle)
        return self._programs[key]

    def model_inputs(self, model_path: Path, model_format: str, spec: BenchSpec,
                     npz: dict[str, np.ndarray] | None) -> ModelInputs:
        """Inputs of the model (rules in ``engine_runner.torch_models``); ``default_dims`` carries
        ``sequence`` = ``--seq-len`` (default 128, capped at the model's positions when it has fewer; the cap is
        noted in the config as ``seq_len_note``) for text models and the example sizes of a ``.pt2``.

        Raises:
            InputError: bad torch options (``--seq-len``...); pickles without ``--allow-pickle``; ``--inputs``
                keys that are not forward arguments; a model whose inputs cannot be generated and no ``--inputs``.
            ModelError: unreadable model.
        """
        opts = parse_torch_options(spec.torch)
        if model_format not in TORCH_FORMATS:
            raise InputError(f"--engine torch: model format {model_format!r} is not run by the torch engine "
                             f"(it runs {', '.join(TORCH_FORMATS)}: a Hugging Face folder or a .pt2)")
        info = self._info(model_path, model_format, opts.allow_pickle)
        check_pickle(info, opts.allow_pickle)
        cfg: dict[str, Any] = {"format": model_format, "allow_pickle": opts.allow_pickle, "weights": info.weights}
        if model_format == FORMAT_PT2:
            ep = self._program(model_path, opts.allow_pickle)
            specs, defaults, ranges = pt2_input_specs(ep)  # defaults: dict[str, int]
            cfg["dim_ranges"] = {k: list(v) for k, v in ranges.items()}
            if opts.seq_len is not None:
                if not any("sequence" in s.shape for s in specs):
                    raise InputError(f"--seq-len {opts.seq_len}: the program has no dynamic sequence dim (its "
                                     f"inputs: {[(s.name, list(s.shape)) for s in specs]})")
                defaults["sequence"] = opts.seq_len
            return ModelInputs(specs, defaults, cfg)
        hf = read_hf_config(Path(model_path))
        cls = hf_model_class(hf)
        kind = str(info.meta.get("kind"))
        cfg.update({"architecture": cls.__name__, "model_type": hf.get("model_type"), "kind": kind})
        if npz is not None:
            specs = npz_input_specs(npz, forward_args(cls), Path(spec.inputs_npz or "inputs.npz").name)
            return ModelInputs(specs, {}, cfg)
        specs = hf_input_specs(hf, kind)
        defaults = {}
        if kind in ("encoder", "decoder"):
            limit = max_positions(hf)
            if opts.seq_len is None and limit is not None and limit < DEFAULT_SEQ_LEN:
                # the default never asks for more positions than the model has (an explicit --seq-len is checked)
                defaults["sequence"] = limit
                cfg["seq_len_note"] = (f"sequence length {limit}: the default {DEFAULT_SEQ_LEN} capped at the "
                                       f"model's {limit} positions (max_position_embeddings / n_positions)")
            else:
                defaults["sequence"] = opts.seq_len or DEFAULT_SEQ_LEN
        elif kind == "vision" and any("height" in s.shape for s in specs):
            defaults.update({"height": 224, "width": 224})
        return ModelInputs(specs, defaults, cfg)

    def check_run(self, model_path: Path, model_format: str, spec: BenchSpec,
                  shapes_by_batch: dict[int, dict[str, list[int]]]) -> dict[str, Any]:
        """Validate precisions, device, options and shapes before the job is created.

        Raises:
            InputError: ``--precision`` not a torch precision or tf32 on CPU (the device itself is
                :meth:`check_device`'s); ``--cuda-graph`` on CPU; unknown ``--compile-backend``;
                ``--seq-len`` beyond the model's positions or disagreeing with ``--dim sequence``/``--inputs``;
                a ``.pt2`` dim outside its exported range.
        """
        torch = _torch()
        opts = parse_torch_options(spec.torch)
        device = spec.device
        for p in spec.precisions:
            if p not in PRECISIONS:
                raise InputError(f"--precision {p}: not a torch precision (choose {', '.join(PRECISIONS)})")
        if not device.startswith("cuda"):
            if "tf32" in spec.precisions:
                raise InputError("--precision tf32: TF32 is a CUDA tensor-core math mode; on a CPU it would be plain "
                                 "fp32 (use --device cuda:N, or fp32)")
            if opts.cuda_graph:
                raise InputError("--cuda-graph needs a CUDA device (--device cuda:N); CUDA graphs do not exist on CPU")
        if opts.compile:
            backends = torch._dynamo.list_backends(exclude_tags=())
            if opts.compile_backend not in backends:
                raise InputError(f"--compile-backend {opts.compile_backend}: not a torch.compile backend here "
                                 f"(available: {', '.join(sorted(backends))})")
        if model_format == FORMAT_HF:
            self._check_hf_shapes(Path(model_path), opts, shapes_by_batch)
        else:
            self._check_pt2_shapes(Path(model_path), opts, shapes_by_batch)
        return {"torch_options": opts.model_dump(), "mode": opts.mode_label()}

    def check_device(self, device: str, cuda_graph: bool = False, model_path: Path | None = None) -> None:
        """Refuse, before any job runs, a CUDA device this machine's PyTorch does not see (the
        ``model_bench.plan`` hook; skipped when the job is queued for another machine's worker).

        Raises:
            InputError: ``--device cuda:N`` without CUDA, or N beyond ``torch.cuda.device_count()``.
        """
        if not device.startswith("cuda"):
            return
        torch = _torch()
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: PyTorch sees no CUDA device (torch {torch.__version__}, "
                             f"torch.cuda.is_available() is False); use --device cpu")
        index = int(device.split(":")[1])
        if index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: PyTorch sees {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")

    def _check_hf_shapes(self, folder: Path, opts: TorchOptions, shapes_by_batch: dict[int, dict[str, list[int]]]) -> None:
        cfg = read_hf_config(folder)
        limit = max_positions(cfg)
        for shapes in shapes_by_batch.values():
            ids = shapes.get("input_ids")
            if ids is None or len(ids) < 2:
                continue
            seq = int(ids[1])
            if opts.seq_len is not None and seq != opts.seq_len:
                raise InputError(f"--seq-len {opts.seq_len}: the run's input_ids are {ids} (sequence {seq} from "
                                 f"--dim/--shape/--inputs); give one sequence length")
            if limit is not None and seq > limit:
                raise InputError(f"--seq-len {seq}: the model's {folder.name}/config.json allows at most {limit} "
                                 "positions (max_position_embeddings / n_positions)")

    def _check_pt2_shapes(self, path: Path, opts: TorchOptions, shapes_by_batch: dict[int, dict[str, list[int]]]) -> None:
        ep = self._program(path, opts.allow_pickle)
        specs, _, ranges = pt2_input_specs(ep)
        for batch, shapes in shapes_by_batch.items():
            for s in specs:
                for axis, d in enumerate(s.shape):
                    if not isinstance(d, str) or d not in ranges:
                        continue
                    lo, hi = ranges[d]
                    got = int(shapes[s.name][axis])
                    if got < lo or (hi is not None and got > hi):
                        flag = "--batch" if d == "batch" else ("--seq-len" if d == "sequence" else f"--dim {d}")
                        raise InputError(f"{flag} {got}: dim {axis} ({d}) of input {s.name!r} must be in "
                                         f"{lo}..{hi if hi is not None else 'inf'}, the range {path.name} was "
                                         "exported for (torch.export dynamic shapes)")

    def generate_inputs(self, model_path: Path, model_format: str, specs: list[Any],
                        shapes: dict[str, list[int]], seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """One batch: tokenizer text / random ids / pixel values for a folder, ``generate_inputs`` rules for a
        ``.pt2`` (module doc of ``engine_runner.torch_models``).

        Raises:
            ModelError: tokenizer and model disagree on the vocabulary.
            InputError: a dtype that cannot be generated.
        """
        if model_format == FORMAT_HF:
            folder = Path(model_path)
            cfg = read_hf_config(folder)
            kind = str(self._info(folder, FORMAT_HF, False).meta.get("kind"))
            return generate_hf_inputs(folder, cfg, kind, specs, shapes, seed)
        return generate_inputs(specs, shapes, seed=seed), {"source": "generated", "seed": seed,
                                                            "rules": "engine_runner.inputs.generate_inputs"}

    # -------------------------------------------------------------------------------- preparing

    def prepare(self, model_path: Path, precision: str, shapes_by_batch: dict[int, dict[str, list[int]]],
                spec: BenchSpec, workdir: Path) -> PreparedVariant:
        """Load the model on ``spec.device`` at ``precision`` (weights cast or fp32 + autocast).

        Raises:
            InputError: not a torch precision; pickles not allowed.
            EngineError: loading or moving the model failed (names the precision and the model).
        """
        if precision not in PRECISIONS:
            raise InputError(f"--precision {precision}: not a torch precision (choose {', '.join(PRECISIONS)})")
        opts = parse_torch_options(spec.torch)
        fmt = FORMAT_HF if Path(model_path).is_dir() else FORMAT_PT2
        info = self._info(Path(model_path), fmt, opts.allow_pickle)
        check_pickle(info, opts.allow_pickle)
        if spec.intra_op_threads:
            _torch().set_num_threads(int(spec.intra_op_threads))
        try:
            return self._prepare_impl(Path(model_path), fmt, precision, spec, opts, info)
        except EngineScopeError:
            raise
        except Exception as exc:  # noqa: BLE001 - transformers/torch raise many types while loading
            raise EngineError(f"torch could not load {Path(model_path).name} at {precision} on {spec.device}: "
                              f"{type(exc).__name__}: {str(exc)[:1500]}") from exc

    def _prepare_impl(self, model_path: Path, fmt: str, precision: str, spec: BenchSpec, opts: TorchOptions,
                      info: SourceInfo) -> PreparedVariant:
        torch = _torch()
        low = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        weights_dtype = low if (low is not None and opts.cast == "weights") else torch.float32
        autocast_dtype = low if (low is not None and opts.cast == "autocast") else None
        device = spec.device
        t0 = time.perf_counter_ns()
        config: dict[str, Any] = {"device": device, "precision_detail": precision_detail(precision, opts.cast),
                                  "weights_dtype": str(weights_dtype).replace("torch.", ""),
                                  "autocast_dtype": str(autocast_dtype).replace("torch.", "") if autocast_dtype else None,
                                  "mode": opts.mode_label(), "allow_pickle": opts.allow_pickle,
                                  "weights": info.weights, "format": fmt,
                                  "tf32": {"matmul": precision == "tf32", "cudnn": precision == "tf32"},
                                  "torch": str(torch.__version__), "threads": int(torch.get_num_threads())}
        if opts.compile:
            config["compile"] = {"backend": opts.compile_backend, "mode": opts.compile_mode,
                                 "per_batch": "dynamo reset and recompiled for every batch size"}
        in_spec = None
        if fmt == FORMAT_PT2:
            ep = self._program(model_path, opts.allow_pickle)
            if device != "cpu":
                from torch.export.passes import move_to_device_pass

                ep = move_to_device_pass(ep, device)
            module = ep.module()
            if weights_dtype != torch.float32:
                module = module.to(weights_dtype)
            names = [n for n in ep.graph_signature.user_inputs]
            in_spec = ep.call_spec.in_spec
            config["loader"] = "torch.export.load(...).module()"
        else:
            import transformers

            cfg = read_hf_config(model_path)
            cls = hf_model_class(cfg)
            major = int(str(transformers.__version__).split(".")[0])
            kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False,
                                      "use_safetensors": not info.pickle_files,
                                      ("dtype" if major >= 5 else "torch_dtype"): weights_dtype}
            module = cls.from_pretrained(str(model_path), **kwargs)
            if hasattr(module, "config") and hasattr(module.config, "use_cache"):
                module.config.use_cache = False
            module = module.to(device)
            names = []
            config["loader"] = f"transformers.{cls.__name__}.from_pretrained (transformers {transformers.__version__})"
            config["attn_implementation"] = getattr(getattr(module, "config", None), "_attn_implementation", None)
        if fmt == FORMAT_HF:
            module.eval()  # an exported program's module refuses eval(): it was traced in the mode it was exported in
        config["load_s"] = (time.perf_counter_ns() - t0) / 1e9
        handle = _Handle(module=module, fmt=fmt, device=device, precision=precision, weights_dtype=weights_dtype,
                         autocast_dtype=autocast_dtype, tf32=precision == "tf32", opts=opts, input_names=names,
                         in_spec=in_spec)
        return PreparedVariant(precision=precision, model_path=model_path, handle=handle, config=config)

    # -------------------------------------------------------------------------------- running

    @contextlib.contextmanager
    def _math(self, h: _Handle) -> Iterator[None]:
        """inference_mode + the run's TF32 switches (restored after) + autocast when asked."""
        torch = _torch()
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = h.tf32
        torch.backends.cudnn.allow_tf32 = h.tf32
        try:
            with torch.inference_mode():
                if h.autocast_dtype is not None:
                    kind = h.device.split(":")[0]
                    with torch.autocast(kind, dtype=h.autocast_dtype, cache_enabled=not h.opts.cuda_graph):
                        yield
                else:
                    yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def _tensors(self, h: _Handle, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        torch = _torch()
        out = {}
        for k, v in inputs.items():
            t = torch.from_numpy(np.ascontiguousarray(v)).to(h.device)
            if t.is_floating_point() and h.weights_dtype != torch.float32:
                t = t.to(h.weights_dtype)
            out[k] = t
        return out

    def _forward(self, h: _Handle) -> Callable[[dict[str, Any]], Any]:
        """The callable timed: the module (or its compiled wrapper) applied to a feed dict."""
        target = h.compiled if h.compiled is not None else h.module
        if h.fmt == FORMAT_PT2:
            import torch

            names, spec = h.input_names, h.in_spec

            def call_pt2(feeds: dict[str, Any]) -> Any:
                args, kwargs = torch.utils._pytree.tree_unflatten([feeds[n] for n in names], spec)
                return target(*args, **kwargs)

            return call_pt2
        return lambda feeds: target(**feeds)

    def _sync(self, h: _Handle) -> None:
        if h.device.startswith("cuda"):
            _torch().cuda.synchronize(h.device)

    def infer(self, variant: PreparedVariant, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One forward pass (eager or the compiled wrapper, never a CUDA graph); float outputs as float32.

        Raises:
            EngineError: the forward pass failed (names the precision).
        """
        h: _Handle = variant.handle
        try:
            with self._math(h):
                out = self._forward(h)(self._tensors(h, inputs))
                self._sync(h)
                return _to_numpy(out)
        except EngineScopeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model's own errors
            raise EngineError(f"torch failed to run the {variant.precision} model on {h.device}: "
                              f"{type(exc).__name__}: {str(exc)[:1500]}") from exc

    def reference_outputs(self, model_path: Path, model_format: str, spec: BenchSpec,
                          inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
        """fp32 eager outputs (TF32 off) on ``spec.device`` for ``inputs``.

        Raises:
            EngineError: loading or running failed.
        """
        ref_spec = spec.model_copy(update={"torch": {**spec.torch, "compile": False, "cuda_graph": False,
                                                     "compile_mode": "default", "compile_backend": "inductor"}})
        variant = self.prepare(Path(model_path), "fp32", {}, ref_spec, Path("."))
        try:
            return self.infer(variant, inputs), f"torch eager fp32 (TF32 off) on {spec.device}"
        finally:
            self.release(variant)

    def measure(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                hooks: MeasureHooks, workdir: Path) -> EngineMeasurement:
        """First call (compiles with ``--compile``; outputs for accuracy), warm-up + timed loop, then the
        separate profiled pass (module doc).

        Raises:
            EngineError: the model fails to run or to be captured in a CUDA graph (names the precision).
            JobCancelled: from ``hooks.check_cancelled``.
        """
        h: _Handle = variant.handle
        try:
            return self._measure_impl(variant, inputs, spec, hooks, workdir)
        except (EngineScopeError, JobCancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - torch/compile/graph errors become this run's failure
            raise EngineError(f"torch failed while measuring the {variant.precision} model on {h.device} "
                              f"({h.opts.mode_label()}): {type(exc).__name__}: {str(exc)[:1500]}") from exc

    def _compile(self, h: _Handle) -> None:
        torch = _torch()
        torch._dynamo.reset()
        h.compiled = torch.compile(h.module, backend=h.opts.compile_backend,
                                   mode=None if h.opts.compile_mode == "default" else h.opts.compile_mode)

    def _measure_impl(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                      hooks: MeasureHooks, workdir: Path) -> EngineMeasurement:
        torch = _torch()
        h: _Handle = variant.handle
        on_cuda = h.device.startswith("cuda")
        config: dict[str, Any] = {}
        if h.opts.compile:
            self._compile(h)
            from torch._dynamo.utils import counters

            counters.clear()
        feeds = self._tensors(h, inputs)
        policy = TimingPolicy(warmup_iterations=spec.warmup_iterations, warmup_s=spec.warmup_s,
                              iterations=spec.iterations, min_duration_s=spec.min_duration_s,
                              max_duration_s=spec.max_duration_s)
        weight = 0.85 if spec.profile_layers else 1.0

        on_progress = hooks.timing_progress(policy.min_duration_s, weight)

        with self._math(h):
            forward = self._forward(h)
            hooks.stage("first call (compiles with --compile)" if h.opts.compile else "first call")
            t0 = time.perf_counter_ns()
            out = forward(feeds)
            self._sync(h)
            config["first_call_s"] = (time.perf_counter_ns() - t0) / 1e9
            outputs = _to_numpy(out)
            if h.opts.compile:
                config["compile"] = self._compile_stats()
            call: Callable[[], Any] = lambda: forward(feeds)  # noqa: E731
            graph_out: list[Any] = []
            if h.opts.cuda_graph:
                hooks.stage("capturing a CUDA graph")
                graph = self._capture(h, forward, feeds, graph_out)
                call = graph.replay
                config["cuda_graph"] = {"captured": True, "side_stream_warmup_calls": GRAPH_WARMUP_CALLS}
            hooks.stage("warm-up and timing" + (" (CUDA events)" if on_cuda else ""))
            if on_cuda:
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                stream = torch.cuda.current_stream(h.device)

                def warm() -> None:
                    call()
                    torch.cuda.synchronize(h.device)

                def timed() -> int:
                    start.record(stream)
                    call()
                    stop.record(stream)
                    stop.synchronize()
                    return int(round(start.elapsed_time(stop) * 1e6))

                result = time_calls(warm, policy, check_cancelled=hooks.check_cancelled, progress=on_progress,
                                    timed=timed)
            else:
                result = time_calls(call, policy, check_cancelled=hooks.check_cancelled, progress=on_progress)
            # the timed loop's window (perf_counter_ns), so the job's GPU telemetry (energy per inference, power,
            # clocks) covers exactly it
            if result.timed_start_ns is not None and result.timed_end_ns is not None:
                hooks.mark_window(result.timed_start_ns, result.timed_end_ns)
            if h.opts.cuda_graph:
                call()
                self._sync(h)
                outputs = _to_numpy(graph_out[0])  # what the timed graph computes
        config.update(result.as_config())
        config["timer"] = "torch.cuda.Event pair" if on_cuda else "time.perf_counter_ns"
        layers: list[LayerRow] = []
        artifacts: list[tuple[str, Path, dict[str, Any]]] = []
        if spec.profile_layers:
            hooks.stage("profiling operators (separate pass, torch.profiler)")
            hooks.progress("profiling", 0.9)
            profiled, prof_error = guard_layer_profile(lambda: self._profile(h, feeds, workdir, hooks),
                                                       f"the {variant.precision} model")
            if prof_error is not None:
                config["layer_profile_error"] = prof_error
            else:
                layers, trace, prof_cfg = profiled
                artifacts.append(("torch_profile", trace, {"format": "torch.profiler chrome trace JSON", **prof_cfg}))
                config["layer_profile"] = prof_cfg
        hooks.progress("measured", 1.0)
        return EngineMeasurement(samples_ns=result.samples_ns, outputs=outputs,
                                 timing_window=timing_window(h.device, h.opts), layers=layers, artifacts=artifacts,
                                 config=config)

    def capture_kernels(self, variant: PreparedVariant, inputs: dict[str, np.ndarray], spec: BenchSpec,
                        hooks: MeasureHooks, workdir: Path,
                        iterations: int) -> tuple[KernelTrace, list[tuple[str, Path, dict[str, Any]]]]:
        """A kernel timeline of ``iterations`` forward passes (``engine_runner.kernel_capture.kineto_capture``):
        the same module (the compiled wrapper with ``--compile``, as just measured), math mode and inputs on the
        device; with ``--cuda-graph`` a graph is captured again (as in :meth:`measure`) and its replays are
        profiled, so the kernels' ``op`` is the graph launch. Kernels' ``op`` is otherwise the innermost aten op.

        Raises:
            InputError: the variant is not on a CUDA device (names ``--profile-kernels``).
            EngineUnavailableError: torch has no CUDA here.
            EngineError: the forward pass, the graph capture or the profiler failed (names the precision).
            JobCancelled: from ``hooks.check_cancelled``.
        """
        from engine_runner.kernel_capture import CUDA_ONLY, KINETO_ARTIFACT, kineto_capture

        h: _Handle = variant.handle
        if not h.device.startswith("cuda"):
            raise InputError(f"--profile-kernels: {CUDA_ONLY} (this run is on {h.device})")
        try:
            with self._math(h):
                feeds = self._tensors(h, inputs)
                forward = self._forward(h)
                call: Callable[[], Any] = lambda: forward(feeds)  # noqa: E731
                graph = None
                if h.opts.cuda_graph:
                    graph = self._capture(h, forward, feeds, [])
                    call = graph.replay
                trace, path = kineto_capture(call, device=h.device, iterations=iterations, workdir=workdir,
                                             hooks=hooks)
                del graph
        except (EngineScopeError, JobCancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - torch/profiler errors become the capture's failure
            raise EngineError(f"torch kernel capture of the {variant.precision} model on {h.device} "
                              f"({h.opts.mode_label()}) failed: {type(exc).__name__}: {str(exc)[:1500]}") from exc
        trace.meta["mode"] = h.opts.mode_label()
        if h.opts.cuda_graph:
            trace.notes.append("CUDA graph replays: every kernel of a replay is attributed to its cudaGraphLaunch")
        return trace, [(KINETO_ARTIFACT, path, {"format": "torch.profiler Chrome trace JSON (gzip)",
                                                "iterations": iterations, "mode": h.opts.mode_label()})]

    def _compile_stats(self) -> dict[str, Any]:
        from torch._dynamo.utils import counters

        stats = dict(counters.get("stats", {}))
        breaks = dict(counters.get("graph_break", {}))
        return {"unique_graphs": int(stats.get("unique_graphs", 0)), "graph_breaks": int(sum(breaks.values())),
                "graph_break_reasons": [str(k)[:200] for k in list(breaks)[:5]]}

    def _capture(self, h: _Handle, forward: Callable[[dict[str, Any]], Any], feeds: dict[str, Any],
                 out_box: list[Any]) -> Any:
        torch = _torch()
        side = torch.cuda.Stream(device=h.device)
        side.wait_stream(torch.cuda.current_stream(h.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_CALLS):
                forward(feeds)
        torch.cuda.current_stream(h.device).wait_stream(side)
        torch.cuda.synchronize(h.device)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                out_box.append(forward(feeds))
        except Exception as exc:  # noqa: BLE001 - capture errors come from deep inside the model
            raise EngineError(f"CUDA graph capture of the {h.precision} model failed (the forward pass must not "
                              f"synchronise with the host or change shapes): {type(exc).__name__}: "
                              f"{str(exc)[:1200]}") from exc
        return graph

    # -------------------------------------------------------------------------------- profiling

    def _profile(self, h: _Handle, feeds: dict[str, Any], workdir: Path,
                 hooks: MeasureHooks) -> tuple[list[LayerRow], Path, dict[str, Any]]:
        torch = _torch()
        from torch.profiler import ProfilerActivity, profile, record_function

        on_cuda = h.device.startswith("cuda")
        workdir.mkdir(parents=True, exist_ok=True)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
        handles = self._module_hooks(h) if (h.fmt == FORMAT_HF and h.compiled is None) else []
        runs = 0
        try:
            with self._math(h):
                forward = self._forward(h)
                for _ in range(PROFILE_WARMUP_RUNS):
                    forward(feeds)
                self._sync(h)
                t0 = time.perf_counter_ns()
                with profile(activities=activities, record_shapes=True) as prof:
                    while runs < PROFILE_RUNS and (runs < 2 or time.perf_counter_ns() - t0 < PROFILE_MAX_S * 1e9):
                        hooks.check_cancelled()
                        with record_function(f"{_INFER_MARK}#{runs}"):
                            forward(feeds)
                        self._sync(h)  # outside the marker: our wait is not the model's time
                        runs += 1
        finally:
            for hd in handles:
                hd.remove()
        trace = workdir / "torch_profile.json"
        prof.export_chrome_trace(str(trace))
        rows, totals = operator_rows(prof.events(), runs, on_cuda)
        cfg = {"warmup_runs": PROFILE_WARMUP_RUNS, "profiled_runs": runs, "rows": len(rows),
               "time": "CUDA kernel time (device_time_total)" if on_cuda else "CPU time (cpu_time_total, inclusive)",
               "module_scopes": bool(handles),
               "note": "separate torch.profiler pass after the timed loop; top-level operators; times per inference"
                       + ("; CUDA graph not replayed while profiling" if h.opts.cuda_graph else ""),
               **totals}
        return rows, trace, cfg

    def _module_hooks(self, h: _Handle) -> list[Any]:
        """Forward pre/post hooks opening a ``record_function`` range per submodule call (profiled pass only)."""
        torch = _torch()
        stack: list[Any] = []
        handles = []
        for name, mod in h.module.named_modules():
            if not name:
                continue

            def pre(_m: Any, _a: Any, _n: str = name) -> None:
                rf = torch.profiler.record_function(f"{_MODULE_MARK}{_n}")
                rf.__enter__()
                stack.append(rf)

            def post(_m: Any, _a: Any, _o: Any) -> None:
                if stack:
                    stack.pop().__exit__(None, None, None)

            handles.append(mod.register_forward_pre_hook(pre))
            handles.append(mod.register_forward_hook(post))
        return handles

    def release(self, variant: PreparedVariant) -> None:
        """Drop the module (and its compiled wrapper); empty the CUDA cache on a GPU."""
        h = variant.handle
        variant.handle = None
        del h
        gc.collect()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _is_op(name: str) -> bool:
    return "::" in name and not name.startswith(_MARK)


def operator_rows(events: Any, runs: int, on_cuda: bool) -> tuple[list[LayerRow], dict[str, Any]]:
    """Per-operator ``LayerRow`` s from ``torch.profiler`` events of ``runs`` marked inferences.

    Rows (module doc): top-level operator events of each inference marker, keyed ``<scope>/<op>#k``;
    third-party wrapper ranges (names without ``::``) that are not ours become rows of their own
    time beyond the rows beneath them. Per row: ``total_ms`` over the profiled inferences, ``count``
    calls, ``avg_ms`` = total / runs, ``median_ms`` over inferences, ``percentage`` of the summed rows.

    Returns:
        ``(rows, totals)``: totals ``{"summed_ms_per_inference", "cpu_ms_per_inference"}``.
    """
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * max(runs, 1))
    cpu_per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * max(runs, 1))
    calls: dict[str, int] = defaultdict(int)
    meta: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    # CPU-side ranges only: on a GPU, record_function also leaves a device-side annotation of the same name
    markers = [e for e in events if e.name.startswith(_INFER_MARK + "#") and str(getattr(e, "device_type", "CPU")).endswith("CPU")]

    def t_dev(e: Any) -> float:
        return float(getattr(e, "device_time_total", 0.0) or 0.0)

    def add(key: str, run: int, dev_us: float, cpu_us: float, info: dict[str, Any]) -> None:
        if key not in meta:
            meta[key] = info
            order.append(key)
        per_run[key][run] += (dev_us if on_cuda else cpu_us) / 1000.0
        cpu_per_run[key][run] += cpu_us / 1000.0
        calls[key] += 1

    for m in markers:
        try:
            run = int(m.name.rsplit("#", 1)[1])
        except ValueError:
            continue
        if run >= runs:
            continue
        seen: dict[str, int] = defaultdict(int)

        def visit(e: Any, scope: str) -> tuple[float, float]:
            """Adds rows beneath ``e``; returns the (device, cpu) us they account for."""
            dev_acc = cpu_acc = 0.0
            for c in e.cpu_children:
                if _is_op(c.name):
                    base = f"{scope}/{c.name}" if scope else c.name
                    seen[base] += 1
                    key = f"{base}#{seen[base]}" if seen[base] > 1 else base
                    add(key, run, t_dev(c), float(c.cpu_time_total), {
                        "op": c.name, "module": scope or None,
                        "input_shapes": [list(s) for s in (c.input_shapes or []) if isinstance(s, (list, tuple))]})
                    dev_acc += t_dev(c)
                    cpu_acc += float(c.cpu_time_total)
                elif c.name.startswith(_MODULE_MARK):
                    d, cp = visit(c, c.name[len(_MODULE_MARK):])
                    dev_acc += d
                    cpu_acc += cp
                elif c.name.startswith(_MARK):
                    d, cp = visit(c, scope)
                    dev_acc += d
                    cpu_acc += cp
                else:  # a wrapper range (compiled region, CUDA runtime call...): rows beneath + its own rest
                    d, cp = visit(c, scope)
                    own_dev, own_cpu = max(t_dev(c) - d, 0.0), max(float(c.cpu_time_total) - cp, 0.0)
                    if own_dev > 0 or own_cpu > 0:
                        kernels = [k.name for k in (getattr(c, "kernels", None) or [])]
                        label = c.name if (c.cpu_children or not kernels) else f"kernel {kernels[0][:160]}"
                        base = f"{scope}/{label}" if scope else label
                        seen[base] += 1
                        key = f"{base}#{seen[base]}" if seen[base] > 1 else base
                        add(key, run, own_dev, own_cpu, {"op": c.name, "module": scope or None, "wrapper": True,
                                                        "input_shapes": []})
                    dev_acc += t_dev(c)
                    cpu_acc += float(c.cpu_time_total)
            return dev_acc, cpu_acc

        visit(m, "")
    n = max(runs, 1)
    summed = sum(sum(v) for v in per_run.values())
    rows = []
    for key in order:
        vals = per_run[key]
        total = float(sum(vals))
        info = meta[key]
        op = str(info["op"])
        rows.append(LayerRow(
            name=key, op_type=op, avg_ms=total / n, median_ms=float(statistics.median(vals)), total_ms=total,
            count=int(calls[key]), percentage=100.0 * total / summed if summed > 0 else 0.0,
            fused=bool(info.get("wrapper")) and "Compiled" in op,
            details={k: v for k, v in {"module": info.get("module"), "input_shapes": info.get("input_shapes"),
                                       "cpu_ms": float(sum(cpu_per_run[key])) / n,
                                       "time": "cuda kernels" if on_cuda else "cpu",
                                       "provider": "torch " + ("cuda" if on_cuda else "cpu"),
                                       "wrapper": info.get("wrapper")}.items() if v not in (None, [])}))
    totals = {"summed_ms_per_inference": summed / n,
              "cpu_ms_per_inference": sum(sum(v) for v in cpu_per_run.values()) / n}
    return rows, totals
