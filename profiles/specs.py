"""Validated job specs (pydantic). The dashboard and the CLI build these; the worker executes them.

Units are in field names. Bounds are enforced here so a bad form field or flag is refused with the
field's name before any job is queued.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from profiles import catalog
from profiles.errors import InputError

#: ``BenchSpec`` field -> the ``enginescope bench`` flag that sets it (validation errors name the flag).
BENCH_SPEC_FLAGS: dict[str, str] = {
    "model_id": "MODEL", "engine": "--engine", "device": "--device", "precisions": "--precision",
    "batch_sizes": "--batch", "shapes": "--shape", "dim_values": "--dim", "warmup_iterations": "--warmup",
    "warmup_s": "--warmup-s", "iterations": "--iterations", "min_duration_s": "--min-duration",
    "max_duration_s": "--max-duration", "calibration_npz": "--calibration",
    "calibration_samples": "--calibration-samples", "inputs_npz": "--inputs", "profile_layers": "--no-layers",
    "intra_op_threads": "--threads", "seed": "--seed", "cuda_graph": "--cuda-graph", "p99_budget_ms": "--p99-budget-ms",
    "batch_sweep": "--batch-sweep", "max_batch": "--max-batch", "kernel_iterations": "--profile-kernels",
    "ncu_top": "--ncu-top", "nsys": "--nsys", "repeats": "--repeats",
}


def _catalog_value(fn: Any, *args: str) -> Any:
    """Call a :mod:`profiles.catalog` function; its error becomes a ``ValueError`` carrying only the detail
    (``validate_spec`` puts the field's flag or label in front)."""
    try:
        return fn(*args)
    except catalog.CatalogError as exc:
        raise ValueError(exc.detail) from None


#: Largest batch size a benchmark accepts (``--batch``, a batch taken from ``--shape``).
MAX_BATCH_SIZE = 65_536


class BenchSpec(BaseModel):
    """Spec of a ``model_bench`` job: one model, one engine, several precisions x batch sizes.

    Shapes: ``shapes`` maps an input name to its full shape (every dim an int >= 1); for other inputs
    symbolic dims come from ``dim_values`` (symbolic name -> int), then the batch size for the first
    dim, then 1 for any other symbolic dim (documented default; the shapes used are stored with
    each run).

    Engine, device, precisions: names from :mod:`profiles.catalog`, normalized (case, aliases, ``int8`` ->
    the engine's int8 with a note in ``precision_notes``); a device the engine or a precision does not run
    on is refused. ``device`` defaults to the engine's default (``catalog.default_device``).

    Inputs: seeded generated data (``seed``), or the user's ``inputs_npz`` (format in
    ``engine_runner.inputs``; never used for calibration: ``calibration_npz`` is separate so a quantized
    variant is not judged on its own calibration data).
    """

    model_config = ConfigDict(extra="forbid")
    #: Field -> CLI flag, used by :func:`validate_spec` in error messages.
    FIELD_FLAGS: ClassVar[dict[str, str]] = BENCH_SPEC_FLAGS

    model_id: int = Field(ge=1, description="id of a row in `models`")
    engine: str = Field("onnxruntime", description="profiles.catalog.engines(); aliases and any case accepted")
    device: str = Field("cpu", description="cpu | cuda:N (profiles.catalog.parse_device); default: the engine's "
                                           "first device (cuda:0 for tensorrt)")
    precisions: list[str] = Field(default_factory=lambda: ["fp32"], min_length=1,
                                  description="profiles.catalog.precisions(engine); any case; int8 = the engine's int8")
    precision_notes: list[str] = Field(default_factory=list, description="how aliases were resolved (set by "
                                       "validation, e.g. 'int8 resolved to int8-qdq ...'; the job prints them)")
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    shapes: dict[str, list[int]] = Field(default_factory=dict)
    dim_values: dict[str, int] = Field(default_factory=dict)
    warmup_iterations: int = Field(10, ge=0, le=100_000)
    warmup_s: float = Field(0.5, ge=0, le=600)
    iterations: int = Field(100, ge=1, le=10_000_000)
    min_duration_s: float = Field(1.0, ge=0, le=3600)
    max_duration_s: float = Field(300.0, gt=0, le=86_400, description="stop a run's timing loop after this long")
    calibration_npz: str | None = Field(None, description="server path of a .npz with calibration inputs")
    calibration_samples: int = Field(8, ge=1, le=10_000)
    inputs_npz: str | None = Field(
        None, description="server path of a .npz of benchmark inputs: keys = input names, first axis = N samples "
                          "(a multiple of every batch size), split in order into batches; the first batch is "
                          "timed, accuracy covers every batch (engine_runner.inputs.validate_npz)")
    profile_layers: bool = True
    cuda_graph: bool = Field(False, description="capture each batch size's inference in a CUDA graph and time its "
                                                "replays (CUDA devices, fixed shapes only; ONNX Runtime: "
                                                "enable_cuda_graph)")
    intra_op_threads: int | None = Field(None, ge=1, le=1024)
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the generated inputs (numpy needs >= 0)")
    tensorrt: dict[str, Any] = Field(default_factory=dict, description="TensorRT build/run options")
    torch: dict[str, Any] = Field(default_factory=dict, description="PyTorch engine options "
                                  "(profiles.torch_spec.TorchOptions: --compile, --cast, "
                                  "--allow-pickle, --seq-len)")
    timeout_s: float = Field(3600, gt=0, le=7 * 86_400)
    p99_budget_ms: float | None = Field(
        None, gt=0, le=3_600_000, description="latency budget, ms: Compare and the bench JSON mark the runs whose "
                                              "p99 meets it and the fastest one that does (profiles.budget)")
    max_batch: int = Field(4096, ge=1, le=MAX_BATCH_SIZE, description="largest batch a batch sweep may reach")
    batch_sweep: bool = Field(False, description="double the batch from batch_sizes[0] until items/s rises < 3%, "
                                                 "memory runs out or max_batch (profiles.sweep)")
    repeats: int = Field(1, ge=1, le=50, description="measure each (precision, batch) this many times, interleaved "
                         "with the job's other configurations (A B A B ...); one run per configuration whose samples "
                         "carry their repeat index; verdicts then include between-repeat variance (profiles.verdict). "
                         "Keeps every precision's engine loaded until the last repeat")
    kernel_iterations: int = Field(0, ge=0, le=100, description="after each measured (precision, batch), capture "
                                   "this many iterations' GPU kernels with torch.profiler (CUPTI) into a separate "
                                   "profiled run (CUDA devices; 0 = off; engine_runner.jobs.model_bench)")
    ncu_top: int = Field(0, ge=0, le=200, description="after each measured (precision, batch), profile one iteration "
                         "under Nsight Compute and keep this many kernels (largest summed duration) in a separate ncu "
                         "run (CUDA devices with ncu; 0 = off; engine_runner.ncu_capture)")
    nsys: bool = Field(False, description="after each measured (precision, batch), capture 5 iterations under Nsight "
                       "Systems (nsys profile, cudaProfilerApi range) and import the report as a separate profiled run "
                       "(CUDA devices with nsys; engine_runner.nsys_capture)")

    @field_validator("batch_sweep")
    @classmethod
    def _sweep(cls, v: bool, info: ValidationInfo) -> bool:
        if not v:
            return v
        batches = info.data.get("batch_sizes") or [1]
        if len(batches) != 1:
            raise ValueError(f"starts from one batch size; got {', '.join(map(str, batches))}")
        if info.data.get("max_batch") is not None and info.data["max_batch"] < batches[0]:
            raise ValueError(f"the max batch {info.data['max_batch']} is smaller than the first batch {batches[0]}")
        if info.data.get("inputs_npz"):
            raise ValueError("uses generated inputs (an inputs file would have to split into every swept batch "
                             "size); drop the inputs file: accuracy is still checked against fp32 per batch")
        return v

    @field_validator("repeats")
    @classmethod
    def _repeats(cls, v: int, info: ValidationInfo) -> int:
        if v > 1 and info.data.get("batch_sweep"):
            raise ValueError("cannot be combined with --batch-sweep: a sweep picks its next batch from the throughput "
                             "just measured; repeat the batches the sweep found with --batch instead")
        return v

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, v: list[int]) -> list[int]:
        for b in v:
            if not 1 <= b <= MAX_BATCH_SIZE:
                raise ValueError(f"batch size {b} is outside 1..{MAX_BATCH_SIZE}")
        return sorted(set(v))

    @model_validator(mode="before")
    @classmethod
    def _defaults_and_notes(cls, data: Any) -> Any:
        """The engine's default device when none is given; notes of resolved precision aliases (kept from
        an earlier validation, so a re-validated ``model_dump`` keeps them). Unknown names are left to the
        field validators, which report them."""
        if not isinstance(data, dict):
            return data
        try:
            engine = catalog.resolve_engine(data.get("engine", "onnxruntime"))
        except (catalog.CatalogError, TypeError, AttributeError):
            return data
        out = dict(data)
        if out.get("device") is None:
            out["device"] = catalog.default_device(engine)
        notes = list(out.get("precision_notes") or [])
        for name in out.get("precisions") or []:
            try:
                _, note = catalog.resolve_precision(engine, name)
            except (catalog.CatalogError, TypeError, AttributeError):
                continue
            if note and note not in notes:
                notes.append(note)
        if notes:
            out["precision_notes"] = notes
        # one CUDA-graph switch (``cuda_graph``, CLI --cuda-graph, the form's checkbox); the torch engine reads it
        # through its options, so it is copied there (an explicit torch option also turns the switch on)
        if engine == "torch":
            torch_opts = dict(out.get("torch") or {})
            on = bool(out.get("cuda_graph")) or bool(torch_opts.get("cuda_graph"))
            out["cuda_graph"] = on
            if on:
                torch_opts["cuda_graph"] = True
            else:
                torch_opts.pop("cuda_graph", None)
            out["torch"] = torch_opts
        return out

    @field_validator("engine")
    @classmethod
    def _engine(cls, v: str) -> str:
        return str(_catalog_value(catalog.resolve_engine, v))

    @field_validator("device")
    @classmethod
    def _device(cls, v: str, info: ValidationInfo) -> str:
        device = str(_catalog_value(catalog.parse_device, v))
        if "engine" in info.data:
            _catalog_value(catalog.check_engine_device, info.data["engine"], device)
        return device

    @field_validator("precisions")
    @classmethod
    def _precisions(cls, v: list[str], info: ValidationInfo) -> list[str]:
        engine = info.data.get("engine")
        if engine is None:  # the engine was invalid: that error is reported, precisions cannot be checked
            return v
        out = []
        for name in v:
            canonical, _ = _catalog_value(catalog.resolve_precision, engine, name)
            if "device" in info.data:
                _catalog_value(catalog.check_precision_device, engine, canonical, info.data["device"])
            out.append(canonical)
        return list(dict.fromkeys(out))

    @field_validator("cuda_graph")
    @classmethod
    def _cuda_graph(cls, v: bool, info: ValidationInfo) -> bool:
        device = info.data.get("device")
        if v and device is not None and catalog.device_kind(device) != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device (got --device {device}; use --device cuda:N)")
        return v

    @field_validator("shapes")
    @classmethod
    def _shapes(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for name, dims in v.items():
            if not dims or any(d < 1 for d in dims):
                raise ValueError(f"shape of input {name!r} must be dims >= 1, got {dims}")
            if len(dims) > MAX_RANK or any(d > MAX_DIM for d in dims):
                raise ValueError(f"shape of input {name!r}: at most {MAX_RANK} dims, each <= {MAX_DIM}")
        return v

    @field_validator("dim_values")
    @classmethod
    def _dim_values(cls, v: dict[str, int]) -> dict[str, int]:
        for name, d in v.items():
            if not 1 <= d <= MAX_DIM:
                raise ValueError(f"{name}={d} must be within 1..{MAX_DIM}")
        return v


#: Largest value of one dim in ``--shape``/``--dim`` (int32: what TensorRT and most kernels index with).
MAX_DIM = 2**31 - 1
#: Largest rank of a ``--shape`` (NumPy's limit).
MAX_RANK = 64


def parse_shape_flag(text: str) -> tuple[str, list[int]]:
    """Parse ``NAME=D1xD2x...`` (as in ``--shape input=1x3x224x224``).

    Raises:
        InputError: malformed text (names the flag value).
    """
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise InputError(f"--shape {text!r}: expected NAME=D1xD2..., e.g. input=1x3x224x224")
    try:
        parsed = [int(d) for d in dims.lower().split("x")]
    except ValueError:
        raise InputError(f"--shape {text!r}: dims must be integers separated by 'x'") from None
    if any(d < 1 for d in parsed):
        raise InputError(f"--shape {text!r}: every dim must be >= 1")
    if any(d > MAX_DIM for d in parsed):
        raise InputError(f"--shape {text!r}: every dim must be <= {MAX_DIM}")
    if len(parsed) > MAX_RANK:
        raise InputError(f"--shape {text!r}: at most {MAX_RANK} dims")
    return name, parsed


def field_label(loc: tuple[str | int, ...], labels: Mapping[str, str]) -> str:
    """How an error location is named to the user: the field's flag or form label (``labels[loc[0]]``) plus
    any named sub-key (``--shape x``, ``--dim sequence``); list positions (``precisions.2``) are dropped since
    the message quotes the value. Without a label the dotted location (``tensorrt.workspace_mib``)."""
    if not loc:
        return "(spec)"
    head = str(loc[0])
    if head not in labels:
        return ".".join(str(p) for p in loc)
    rest = [str(p) for p in loc[1:] if isinstance(p, str) and p != "[key]"]
    return " ".join([labels[head], *rest])


def validate_spec(model: type[BaseModel], data: dict[str, Any], labels: Mapping[str, str] | None = None) -> Any:
    """Validate ``data`` as ``model``; turn pydantic's error into an :class:`InputError` naming the CLI flag
    or form field.

    Args:
        labels: field -> the name the user knows it by (a dashboard form's labels); default: the model's
            ``FIELD_FLAGS`` (CLI flags, e.g. :data:`BENCH_SPEC_FLAGS`), else the field names.

    Raises:
        InputError: ``"invalid spec: " + "; ".join("<flag or field>: <message>")``, e.g.
            ``invalid spec: --precision: 'fp64' is not a precision of onnxruntime (choose ...)``.
    """
    names = labels if labels is not None else getattr(model, "FIELD_FLAGS", {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            # our validators' ValueErrors: their own text, without pydantic's "Value error, " prefix
            msg = str(e["ctx"]["error"]) if e["type"] == "value_error" and "error" in e.get("ctx", {}) else e["msg"]
            parts.append(f"{field_label(tuple(e['loc']), names)}: {msg}")
        raise InputError("invalid spec: " + "; ".join(parts)) from None


#: ``ExportSpec`` field -> the ``enginescope export`` flag that sets it (validation errors name the flag).
EXPORT_SPEC_FLAGS: dict[str, str] = {
    "source": "MODEL_ID_OR_DIR", "out_path": "--out", "opset": "--opset", "dynamic_batch": "--dynamic-batch",
    "seq_len": "--seq-len", "exporter": "--exporter", "simplify": "--no-simplify", "simplifier": "--simplifier",
    "allow_pickle": "--allow-pickle", "name": "--name", "timeout_s": "--timeout",
}


class ExportSpec(BaseModel):
    """Spec of an ``export`` job: a PyTorch / Hugging Face model -> ONNX, registered in Models.

    ``source``: a local Hugging Face model folder, a hub id found in the local Hugging Face cache (no
    download), or a ``torch.export`` program (``.pt2``), as ``engine_runner.torch_models.resolve_source``
    reads it. ``out_path``: the ``.onnx`` to write (server path; None = under ENGINESCOPE_HOME/exports). The
    example inputs have batch 1 (2 with ``dynamic_batch``, so the exporter cannot specialise the batch dim)
    and ``seq_len`` tokens for text models. ``simplifier``: ``auto`` = onnxsim when installed, else
    Polygraphy's constant folding (needs onnx-graphsurgeon).
    """

    model_config = ConfigDict(extra="forbid")
    FIELD_FLAGS: ClassVar[dict[str, str]] = EXPORT_SPEC_FLAGS

    source: str = Field(min_length=1, max_length=4096)
    out_path: str | None = Field(None, max_length=4096)
    opset: int = Field(18, ge=9, le=23, description="ONNX opset of the export")
    dynamic_batch: bool = False
    seq_len: int = Field(128, ge=1, le=1_048_576, description="tokens of the example text inputs")
    exporter: Literal["dynamo", "torchscript"] = "dynamo"
    simplify: bool = True
    simplifier: Literal["auto", "onnxsim", "polygraphy"] = "auto"
    allow_pickle: bool = Field(False, description="allow pickled weights / .pt2 entries (runs the file's code)")
    name: str | None = Field(None, max_length=1024, description="display name in Models (default: the file name)")
    timeout_s: float = Field(3600, gt=0, le=7 * 86_400)

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("give a model folder, a hub id or a .pt2 file")
        return v.strip()

    @field_validator("out_path")
    @classmethod
    def _out(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().endswith(".onnx"):
            raise ValueError(f"{v!r} must end in .onnx")
        return v
