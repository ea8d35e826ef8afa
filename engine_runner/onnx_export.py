"""Export a PyTorch / Hugging Face model to ONNX, clean it up and check it (``enginescope export``).

:func:`export_model` does, in order:

1. **Load** the source (``engine_runner.torch_models``, the PyTorch engine's reader, so both see a model
   the same way): a local Hugging Face folder (``config.json`` + safetensors weights; pickled weights only
   with ``allow_pickle``), a hub id from the local Hugging Face cache only (nothing is downloaded), or a
   ``torch.export`` program (``.pt2``). The ``transformers`` class is the config's architecture
   (``BertModel``, ``GPT2LMHeadModel``, ``ViTForImageClassification``...); ``use_cache`` is turned off so
   a decoder returns logits only, no KV cache.
2. **Example inputs** from the config and tokenizer (``torch_models.generate_hf_inputs``, seed 0): text
   models ``input_ids`` + ``attention_mask`` int64 ``[batch, seq_len]`` (real sentences through the
   model's tokenizer when it has one, else ids uniform in ``[0, vocab_size)``); vision models
   ``pixel_values`` float32 ``[batch, C, H, W]`` N(0, 1), H = W = the config's ``image_size`` (224 when it
   has none). ``batch`` is 1, or 2 with ``dynamic_batch`` (an example of size 1 lets the exporter
   specialise the dim to 1). A ``.pt2`` uses its own example inputs.
3. **Export** with ``torch.onnx.export``: ``exporter="dynamo"`` (``dynamo=True``: ``torch.export`` then
   ONNX Script; dynamic dims as ``torch.export.Dim`` named ``batch`` and ``sequence``) or
   ``"torchscript"`` (the tracing exporter; ``dynamic_axes``; outputs whose example dims equal the
   batch / sequence length get the same names). Dynamic axes: ``batch`` (axis 0 of every input) with
   ``dynamic_batch``; ``sequence`` (axis 1 of text inputs) always for text models. A ``.pt2`` keeps the
   dims its program was exported with.
4. **Shape inference** (``onnx.shape_inference.infer_shapes``, ``data_prop=True``), then **simplification**
   (constant folding and graph clean-up): ``onnxsim.simplify`` (``simplifier="onnxsim"``, the default when
   installed) or Polygraphy's ``fold_constants`` (``"polygraphy"``, needs onnx-graphsurgeon); node counts
   and the op-type histogram (``profiles.onnx_inspect.op_histogram``) before and after.
5. **Check**: ``onnx.checker.check_model(full_check=True)``.
6. **Verify**: the written model on ONNX Runtime CPU (``engines.onnxruntime.reference_outputs``) against
   the PyTorch model on the same example inputs (``profiles.accuracy.compare_outputs``: max abs error,
   cosine), and, when a dim is dynamic, once more at other sizes (batch + 1, half the sequence) to prove
   the axes are not baked in. ``within_tolerance``: every output's max abs error
   <= ``1e-4 + 1e-3 * max|reference|`` (numpy ``allclose`` style) and cosine >= 0.9999; outside it the
   report carries a warning (the model is still written and registered, so it can be inspected).

Failures raise :class:`profiles.errors.ExportError` naming the operator or data-dependent expression
(``profiles.onnx_export.diagnose_export_error``) and quoting the exporter's message. The exporters' own
console output goes to stderr, so ``--json`` keeps stdout to one document.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine_runner import torch_models as tm
from engine_runner.inputs import InputSpec, generate_inputs
from profiles.accuracy import AGGREGATE, compare_outputs
from profiles.errors import EngineUnavailableError, ExportError, InputError, ModelError
from profiles.onnx_export import diagnose_export_error
from profiles.onnx_inspect import op_histogram

#: Example batch when the batch dim is exported as dynamic (a size-1 example would be specialised).
DYNAMIC_EXAMPLE_BATCH = 2
#: Verification tolerance: |torch - onnxruntime| <= ATOL + RTOL * max|torch| per output, and cosine >= MIN_COSINE.
ATOL, RTOL, MIN_COSINE = 1e-4, 1e-3, 0.9999
#: Above this size (bytes) the model is written with its weights in an external data file ``<out>.data``
#: (protobuf's 2 GiB limit, with margin) and the simplifier is skipped.
EXTERNAL_DATA_BYTES = 1_800_000_000

OnStage = Callable[[str], None]


@dataclass
class ExportOptions:
    """Options of :func:`export_model` (the ``ExportSpec`` fields, see ``profiles.specs``)."""

    opset: int = 18
    dynamic_batch: bool = False
    seq_len: int = 128
    exporter: str = "dynamo"
    simplify: bool = True
    simplifier: str = "auto"
    allow_pickle: bool = False


@dataclass
class _Loaded:
    module: Any                       # nn.Module taking the inputs positionally, returning a tuple of tensors
    program: Any | None               # the ExportedProgram of a .pt2 (exported as is by the dynamo exporter)
    input_specs: list[InputSpec]
    feeds: dict[str, np.ndarray]
    output_names: list[str]
    make_feeds: Callable[[int, int | None, int], dict[str, np.ndarray]] | None  # (batch, seq, seed) -> feeds
    source: dict[str, Any] = field(default_factory=dict)
    inputs_desc: dict[str, Any] = field(default_factory=dict)
    text: bool = False


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The exporters and simplifiers print progress on stdout, some from C++ (the TorchScript exporter's graph
    dump); send file descriptor 1 and ``sys.stdout`` to stderr meanwhile, so the CLI's JSON stays alone."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (embedded interpreter): Python-level redirection only
        saved = None
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailableError(f"exporting needs PyTorch ({exc}); pip install torch") from None
    return torch


def _tensor_outputs(out: Any) -> list[tuple[str, Any]]:
    """``(name, tensor)`` of a model's outputs: a ``ModelOutput``/dict's tensor entries by key, a tuple's
    tensors as ``output_<i>``, a single tensor as ``output``."""
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return [("output", out)]
    if isinstance(out, Mapping):
        return [(str(k), v) for k, v in out.items() if isinstance(v, torch.Tensor)]
    if isinstance(out, (tuple, list)):
        return [(f"output_{i}", v) for i, v in enumerate(out) if isinstance(v, torch.Tensor)]
    raise ExportError(f"the model returned {type(out).__name__}, not tensors; nothing to export")


def _numpy(t: Any) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().float().numpy() if t.dtype.is_floating_point else t.detach().cpu().numpy())


# --------------------------------------------------------------------------------------------------
# Loading


def _hf_shapes(specs: Sequence[InputSpec], batch: int, seq: int | None) -> dict[str, list[int]]:
    out = {}
    for s in specs:
        dims = []
        for d in s.shape:
            if d == "batch":
                dims.append(batch)
            elif d == "sequence":
                dims.append(int(seq or 1))
            elif isinstance(d, int):
                dims.append(d)
            else:  # symbolic image height/width of a config without image_size
                dims.append(tm.DEFAULT_IMAGE_SIZE)
        out[s.name] = dims
    return out


def _load_hf(path: Path, name: str, info: tm.SourceInfo, opts: ExportOptions) -> _Loaded:
    torch = _torch()
    cfg = tm.read_hf_config(path)
    cls = tm.hf_model_class(cfg)
    kind = tm.hf_model_kind(cfg, cls)
    specs = tm.hf_input_specs(cfg, kind)
    text = kind in ("encoder", "decoder")
    limit = tm.max_positions(cfg)
    if text and limit is not None and opts.seq_len > limit:
        raise InputError(f"--seq-len {opts.seq_len}: longer than the model's {limit} positions (config.json)")
    batch = DYNAMIC_EXAMPLE_BATCH if opts.dynamic_batch else 1

    def make_feeds(b: int, seq: int | None, seed: int) -> dict[str, np.ndarray]:
        feeds, _ = tm.generate_hf_inputs(path, cfg, kind, specs, _hf_shapes(specs, b, seq), seed)
        return feeds

    feeds, desc = tm.generate_hf_inputs(path, cfg, kind, specs, _hf_shapes(specs, batch, opts.seq_len if text else None), 0)
    try:
        inner = cls.from_pretrained(str(path), local_files_only=True, use_safetensors=not info.pickle_files)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for unusable folders
        raise ModelError(f"{name}: {cls.__name__}.from_pretrained failed: {type(exc).__name__}: {str(exc)[:1500]}") from None
    if hasattr(inner, "config") and hasattr(inner.config, "use_cache"):
        inner.config.use_cache = False
    inner.eval()
    input_names = [s.name for s in specs]
    with torch.no_grad():
        out = inner(**{k: torch.from_numpy(v) for k, v in feeds.items()}, return_dict=True)
    output_names = [n for n, _ in _tensor_outputs(out)]

    class HFForExport(torch.nn.Module):  # type: ignore[misc, name-defined]
        """The HF model with positional inputs (in ``input_names`` order) and a tuple of tensor outputs."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> tuple[Any, ...]:
            o = self.inner(**dict(zip(input_names, args)), return_dict=True)
            return tuple(o[n] for n in output_names)

    import transformers

    source = {"input": name, "path": str(path), "format": tm.FORMAT_HF, "content_hash": info.content_hash,
              "architecture": cls.__name__, "model_type": cfg.get("model_type"), "kind": kind,
              "loader": f"transformers.{cls.__name__}.from_pretrained (transformers {transformers.__version__})",
              "weights": info.weights, "allow_pickle": opts.allow_pickle, "pickle_files_loaded": info.pickle_files,
              "attn_implementation": getattr(inner.config, "_attn_implementation", None), "max_positions": limit}
    return _Loaded(HFForExport().eval(), None, specs, feeds, output_names, make_feeds, source, desc, text)


def _load_pt2(path: Path, name: str, info: tm.SourceInfo, opts: ExportOptions) -> _Loaded:
    torch = _torch()
    ep = tm.load_pt2(path, opts.allow_pickle)
    specs, defaults, ranges = tm.pt2_input_specs(ep)
    examples: list[Any] = []
    if getattr(ep, "example_inputs", None):
        args, kwargs = ep.example_inputs
        examples = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    if len(examples) == len(specs):
        feeds = {s.name: _numpy(t) if t.dtype.is_floating_point else np.ascontiguousarray(t.numpy())
                 for s, t in zip(specs, examples)}
        desc: dict[str, Any] = {"source": "the program's example inputs"}
    else:
        batch = max(1, int((ranges.get("batch") or (1, None))[0] or 1))
        shapes = {s.name: [batch if d == "batch" else defaults.get(d, 1) if isinstance(d, str) else int(d or 1)
                           for d in s.shape] for s in specs}
        feeds = generate_inputs(specs, shapes, seed=0)
        desc = {"source": "generated", "seed": 0, "rules": "engine_runner.inputs.generate_inputs"}
    module = ep.module()
    with torch.no_grad():
        out = module(*[torch.from_numpy(feeds[s.name]) for s in specs])
    outs = _tensor_outputs(out)
    user_outputs = list(getattr(ep.graph_signature, "user_outputs", []) or [])
    output_names = user_outputs if len(user_outputs) == len(outs) else [n for n, _ in outs]

    class Pt2ForExport(torch.nn.Module):  # type: ignore[misc, name-defined]
        """The program's module returning a tuple of tensors (for the TorchScript exporter)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> tuple[Any, ...]:
            return tuple(t for _, t in _tensor_outputs(self.inner(*args)))

    source = {"input": name, "path": str(path), "format": tm.FORMAT_PT2, "content_hash": info.content_hash,
              "allow_pickle": opts.allow_pickle, "pickle_files_loaded": info.pickle_files,
              "dim_ranges": {k: list(v) for k, v in ranges.items()}}
    # no .eval(): a torch.export module refuses train()/eval() (it is already the traced inference graph)
    return _Loaded(Pt2ForExport(), ep, specs, feeds, output_names, None, source, desc,
                   any(not s.dtype.startswith("float") and len(s.shape) >= 2 for s in specs))


def load_source(source: str, opts: ExportOptions) -> _Loaded:
    """Resolve and load ``source`` (module doc, step 1-2).

    Raises:
        ModelError / InputError: as ``engine_runner.torch_models`` (missing folder, not cached, pickles
            without ``--allow-pickle``, unknown architecture), ``--seq-len`` beyond the model's positions.
        EngineUnavailableError: torch / transformers missing.
    """
    path, fmt, name = tm.resolve_source(source)
    info = tm.inspect_source(path, fmt, allow_pickle=opts.allow_pickle)
    tm.check_pickle(info, opts.allow_pickle)
    return _load_hf(path, name, info, opts) if fmt == tm.FORMAT_HF else _load_pt2(path, name, info, opts)


# --------------------------------------------------------------------------------------------------
# Export, clean-up, check, verification


def _dynamic_axes(loaded: _Loaded, opts: ExportOptions) -> dict[str, dict[int, str]]:
    """``{input name: {axis: dim name}}`` to export as dynamic (module doc, step 3)."""
    axes: dict[str, dict[int, str]] = {}
    if loaded.program is not None:
        return axes
    for s in loaded.input_specs:
        a: dict[int, str] = {}
        if opts.dynamic_batch and s.shape and s.shape[0] == "batch":
            a[0] = "batch"
        if len(s.shape) > 1 and s.shape[1] == "sequence":
            a[1] = "sequence"
        if a:
            axes[s.name] = a
    return axes


def _run_exporter(loaded: _Loaded, opts: ExportOptions, axes: dict[str, dict[int, str]], raw: Path) -> None:
    torch = _torch()
    names = [s.name for s in loaded.input_specs]
    args = tuple(torch.from_numpy(loaded.feeds[n]) for n in names)
    try:
        with torch.no_grad(), _stdout_to_stderr():
            if opts.exporter == "dynamo":
                if loaded.program is not None:
                    torch.onnx.export(loaded.program, args, str(raw), input_names=names,
                                      output_names=loaded.output_names, opset_version=opts.opset, dynamo=True,
                                      verbose=False)
                    return
                from torch.export import Dim

                dims: dict[str, Any] = {}
                limit = loaded.source.get("max_positions")
                for a in axes.values():
                    for d in a.values():
                        dims.setdefault(d, Dim(d, max=limit) if d == "sequence" and limit else Dim(d))
                shapes = tuple({ax: dims[d] for ax, d in axes.get(n, {}).items()} or None for n in names)
                torch.onnx.export(loaded.module, args, str(raw), input_names=names, output_names=loaded.output_names,
                                  dynamic_shapes=(shapes,), opset_version=opts.opset, dynamo=True, verbose=False)
            else:
                out_axes = _output_axes(loaded, axes)
                torch.onnx.export(loaded.module, args, str(raw), input_names=names, output_names=loaded.output_names,
                                  dynamic_axes={**axes, **out_axes}, opset_version=opts.opset, dynamo=False,
                                  do_constant_folding=True, verbose=False)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporters raise many types; all become one named error
        text = f"{type(exc).__name__}: {exc}"
        diag = diagnose_export_error(text)
        raise ExportError(f"{opts.exporter} export of {loaded.source.get('input')} failed: {diag.headline()}. "
                          f"Exporter said: {diag.summary}", operator=diag.operator or diag.expression,
                          kind=diag.kind) from exc


def _output_axes(loaded: _Loaded, axes: dict[str, dict[int, str]]) -> dict[str, dict[int, str]]:
    """TorchScript ``dynamic_axes`` of the outputs: an output dim equal to the example's batch / sequence
    length is named like the input dim (the eager outputs tell their shapes)."""
    torch = _torch()
    sizes: dict[str, int] = {}
    for n, a in axes.items():
        for ax, d in a.items():
            sizes.setdefault(d, int(loaded.feeds[n].shape[ax]))
    if not sizes:
        return {}
    with torch.no_grad():
        outs = loaded.module(*[torch.from_numpy(loaded.feeds[s.name]) for s in loaded.input_specs])
    res: dict[str, dict[int, str]] = {}
    for name, t in zip(loaded.output_names, outs):
        a = {}
        if "batch" in sizes and t.dim() >= 1 and int(t.shape[0]) == sizes["batch"]:
            a[0] = "batch"
        if "sequence" in sizes and t.dim() >= 2 and int(t.shape[1]) == sizes["sequence"]:
            a[1] = "sequence"
        if a:
            res[name] = a
    return res


def _simplify(model: Any, opts: ExportOptions) -> tuple[Any, dict[str, Any]]:
    """(model, record) after the requested simplifier; a simplifier failure keeps the model and records why."""
    if not opts.simplify:
        return model, {"name": None, "applied": False, "why": "--no-simplify"}
    if model.ByteSize() > EXTERNAL_DATA_BYTES:
        return model, {"name": None, "applied": False, "why": "model over 1.8 GB: simplifiers load it into one protobuf"}
    choice = opts.simplifier
    if choice == "auto":
        try:
            import onnxsim  # noqa: F401
            choice = "onnxsim"
        except ImportError:
            choice = "polygraphy"
    try:
        with _stdout_to_stderr():
            if choice == "onnxsim":
                import onnxsim

                simplified, ok = onnxsim.simplify(model, check_n=0)
                return simplified, {"name": "onnxsim", "version": str(onnxsim.__version__), "applied": True,
                                    "onnxsim_check": bool(ok),
                                    "call": "onnxsim.simplify(model, check_n=0) (EngineScope verifies with ONNX Runtime)"}
            import polygraphy
            from polygraphy.backend.onnx import fold_constants

            simplified = fold_constants(model)
            return simplified, {"name": "polygraphy", "version": str(polygraphy.__version__), "applied": True,
                                "call": "polygraphy.backend.onnx.fold_constants(model)"}
    except ImportError as exc:
        return model, {"name": choice, "applied": False,
                       "why": f"{choice} is not installed ({exc}); pip install onnxsim, or polygraphy + onnx-graphsurgeon"}
    except Exception as exc:  # noqa: BLE001 - a simplifier failure must not lose a valid export
        return model, {"name": choice, "applied": False, "why": f"{type(exc).__name__}: {str(exc)[:1000]}"}


def _save(model: Any, out: Path) -> list[Path]:
    """Write ``model`` to ``out`` (weights in ``<out>.data`` when large); returns the files written."""
    import onnx

    data = out.with_name(out.name + ".data")
    if data.exists():
        data.unlink()
    if model.ByteSize() > EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        return [out, data]
    onnx.save_model(model, str(out))
    return [out]


def _tolerance(ref: Mapping[str, np.ndarray], records: Sequence[Any]) -> bool:
    for r in records:
        if r.output_name == AGGREGATE:
            continue
        scale = float(np.max(np.abs(ref[r.output_name]))) if np.asarray(ref[r.output_name]).size else 0.0
        if r.max_abs_err is None or r.max_abs_err > ATOL + RTOL * scale or (r.cosine is not None and r.cosine < MIN_COSINE):
            return False
    return True


def _verify_once(loaded: _Loaded, out: Path, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """ONNX Runtime CPU on ``out`` vs the PyTorch model on ``feeds``: per-output and aggregate records."""
    torch = _torch()
    from engine_runner.engines.onnxruntime import reference_outputs

    with torch.no_grad():
        outs = loaded.module(*[torch.from_numpy(feeds[s.name]) for s in loaded.input_specs])
    ref = {n: _numpy(t) for n, t in zip(loaded.output_names, outs)}
    import onnx

    graph_inputs = {i.name for i in onnx.load(str(out), load_external_data=False).graph.input}
    ort_out = reference_outputs(out, {k: v for k, v in feeds.items() if k in graph_inputs})
    records = compare_outputs(ref, ort_out)
    agg = next(r for r in records if r.output_name == AGGREGATE)
    return {"shapes": {k: list(v.shape) for k, v in feeds.items()}, "max_abs_err": agg.max_abs_err,
            "max_rel_err": agg.max_rel_err, "cosine": agg.cosine, "within_tolerance": _tolerance(ref, records),
            "outputs": {r.output_name: {"max_abs_err": r.max_abs_err, "cosine": r.cosine, "shape": r.details.get("shape")}
                        for r in records if r.output_name != AGGREGATE},
            "unused_inputs": sorted(set(feeds) - graph_inputs)}


def export_model(source: str, out_path: str | Path, opts: ExportOptions | None = None,
                 on_stage: OnStage | None = None) -> dict[str, Any]:
    """Export ``source`` to ``out_path`` (steps in the module doc) and return the report.

    Returns:
        ``{"source": {...}, "exporter": {"name", "torch_version", "onnx_version", "opset"}, "inputs":
        [{"name", "dtype", "shape"}], "outputs": [names], "dynamic_axes": {input: {axis: name}},
        "example_inputs": {...}, "shape_inference": str, "simplifier": {...}, "nodes": {"before", "after"},
        "op_histogram": {"before", "after"}, "checker": "passed", "verification": {"example": {...},
        "other_shapes": {...} | None, "within_tolerance": bool, "tolerance": str}, "out_path", "files",
        "size_bytes", "warnings": [str]}``.

    Raises:
        ExportError: the exporter failed (names the operator / data-dependent expression, quotes it), or
            the result fails ONNX's checker.
        ModelError / InputError / EngineUnavailableError: as :func:`load_source`; ``out_path`` not ``.onnx``.
    """
    opts = opts or ExportOptions()
    stage = on_stage or (lambda _m: None)
    stage(f"loading {source}")
    loaded = load_source(source, opts)
    return _export_loaded(loaded, out_path, opts, stage)


def export_module(module: Any, example_inputs: Mapping[str, np.ndarray], out_path: str | Path,
                  opts: ExportOptions | None = None, *, text: bool = False, name: str = "module") -> dict[str, Any]:
    """Export a plain ``torch.nn.Module`` called as ``module(*inputs)`` (inputs in ``example_inputs`` order)
    through the same steps as :func:`export_model` (report alike, ``source.format`` ``module``).

    Args:
        example_inputs: ``{input name: array}``; axis 0 is the batch, axis 1 of an integer input of rank >= 2
            the sequence when ``text``.

    Raises:
        ExportError: as :func:`export_model`.
    """
    torch = _torch()
    opts = opts or ExportOptions()
    feeds = {k: np.ascontiguousarray(v) for k, v in example_inputs.items()}
    specs = [InputSpec(k, str(v.dtype), tuple(("batch" if a == 0 else "sequence" if a == 1 and text else int(d))
                                              for a, d in enumerate(v.shape))) for k, v in feeds.items()]
    with torch.no_grad():
        outs = _tensor_outputs(module(*[torch.from_numpy(v) for v in feeds.values()]))

    class ModuleForExport(torch.nn.Module):  # type: ignore[misc, name-defined]
        """``module`` returning a tuple of tensors."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> tuple[Any, ...]:
            return tuple(t for _, t in _tensor_outputs(self.inner(*args)))

    loaded = _Loaded(ModuleForExport().eval(), None, specs, feeds, [n for n, _ in outs], None,
                     {"input": name, "format": "module", "class": type(module).__name__},
                     {"source": "given by the caller"}, text)
    return _export_loaded(loaded, out_path, opts, lambda _m: None)


def _export_loaded(loaded: _Loaded, out_path: str | Path, opts: ExportOptions, stage: OnStage) -> dict[str, Any]:
    import onnx
    import torch

    out = Path(out_path).expanduser().resolve()
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--out {out_path}: must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    axes = _dynamic_axes(loaded, opts)
    if loaded.program is not None and opts.dynamic_batch:
        warnings.append("--dynamic-batch does not apply to a .pt2: its dims are the ones it was exported with")
    stage(f"exporting with the {opts.exporter} exporter (opset {opts.opset})")
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        _run_exporter(loaded, opts, axes, raw)
        model = onnx.load(str(raw))
    before = op_histogram(model)
    stage("shape inference")
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, data_prop=True)
        shape_inference = "onnx.shape_inference.infer_shapes(data_prop=True)"
    except Exception as exc:  # noqa: BLE001 - inference failure keeps the model; the checker decides
        shape_inference = f"failed: {type(exc).__name__}: {str(exc)[:500]}"
        warnings.append(f"shape inference {shape_inference}")
    stage("simplifying")
    model, simp = _simplify(model, opts)
    if opts.simplify and not simp["applied"]:
        warnings.append(f"not simplified: {simp.get('why')}")
    after = op_histogram(model)
    stage("checking (onnx.checker, full check)")
    files = _save(model, out)
    try:
        if len(files) > 1:
            onnx.checker.check_model(str(out), full_check=True)
        else:
            onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported model {out.name} fails onnx.checker: {str(exc).strip()[:1500]}") from None
    stage("verifying against PyTorch on ONNX Runtime")
    example = _verify_once(loaded, out, loaded.feeds)
    other = None
    if loaded.make_feeds is not None and axes:
        b0 = next(iter(loaded.feeds.values())).shape[0]
        b = b0 + 1 if opts.dynamic_batch else b0
        seq = max(2, opts.seq_len // 2) if loaded.text else None
        other = _verify_once(loaded, out, loaded.make_feeds(int(b), seq, 1))
    ok = example["within_tolerance"] and (other is None or other["within_tolerance"])
    if not ok:
        warnings.append(f"ONNX Runtime and PyTorch disagree beyond the tolerance (max abs err {example['max_abs_err']}, "
                        f"cosine {example['cosine']}" + (f"; at other shapes {other['max_abs_err']}, {other['cosine']}"
                                                         if other else "") + ")")
    for unused in example["unused_inputs"]:
        warnings.append(f"input {unused!r} is not used by the exported graph (the exporter dropped it)")
    graph = onnx.load(str(out), load_external_data=False).graph
    init = {t.name for t in graph.initializer}

    def dims(vi: Any) -> list[Any]:
        return [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in vi.type.tensor_type.shape.dim]

    return {
        "source": loaded.source,
        "exporter": {"name": opts.exporter, "torch_version": str(torch.__version__), "onnx_version": onnx.__version__,
                     "opset": opts.opset, "call": "torch.onnx.export(dynamo=True)" if opts.exporter == "dynamo"
                     else "torch.onnx.export(dynamo=False) (TorchScript)"},
        "inputs": [{"name": i.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name,
                    "shape": dims(i)} for i in graph.input if i.name not in init],
        "outputs": [o.name for o in graph.output],
        "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in axes.items()},
        "example_inputs": {**loaded.inputs_desc, "shapes": {k: list(v.shape) for k, v in loaded.feeds.items()}},
        "shape_inference": shape_inference,
        "simplifier": simp,
        "nodes": {"before": int(sum(before.values())), "after": int(sum(after.values()))},
        "op_histogram": {"before": before, "after": after},
        "checker": "passed (onnx.checker.check_model, full_check=True)",
        "verification": {"runtime": "onnxruntime CPUExecutionProvider", "example": example, "other_shapes": other,
                         "within_tolerance": ok,
                         "tolerance": f"max abs err <= {ATOL:g} + {RTOL:g} x max|torch| per output, cosine >= {MIN_COSINE}"},
        "out_path": str(out),
        "files": [str(f) for f in files],
        "size_bytes": int(sum(f.stat().st_size for f in files)),
        "warnings": warnings,
    }


def remove_outputs(report: Mapping[str, Any]) -> None:
    """Delete the files an export wrote (``report["files"]``), e.g. a job's temporary output once registered."""
    for f in report.get("files") or []:
        p = Path(f)
        if p.is_file():
            p.unlink()
    parent = Path(report["out_path"]).parent if report.get("out_path") else None
    if parent is not None and parent.is_dir() and not any(parent.iterdir()):
        shutil.rmtree(parent, ignore_errors=True)
