"""Validated job specs (pydantic). The dashboard and the CLI build these; the worker executes them.

Units are in field names. Bounds are enforced here so a bad form field or flag is refused with the
field's name before any job is queued.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from profiles.errors import InputError

#: Engines that run an uploaded ONNX model. (A PyTorch engine for ONNX uploads is not built yet: it
#: would need an ONNX->torch converter; it is refused here rather than offered and failing later.)
Engine = Literal["onnxruntime", "tensorrt", "torch"]
#: Precision variants. fp32: the model as exported. fp16: graph converted to float16 (keeping I/O
#: float32). int8-dynamic: onnxruntime dynamic quantization (weights int8, activations quantized at
#: run time). int8-qdq: static Q/DQ quantization calibrated on user inputs (.npz) or generated ones.
#: bf16/fp8/best: TensorRT only.
Precision = Literal["fp32", "tf32", "fp16", "bf16", "int8-dynamic", "int8-qdq", "fp8", "best"]


class BenchSpec(BaseModel):
    """Spec of a ``model_bench`` job: one model, one engine, several precisions x batch sizes.

    Shapes: ``shapes`` maps an input name to its full shape (every dim an int >= 1); for other inputs
    symbolic dims come from ``dim_values`` (symbolic name -> int), then the batch size for the first
    dim, then 1 for any other symbolic dim (documented default; the shapes used are stored with
    each run).

    Inputs: seeded generated data (``seed``), or the user's ``inputs_npz`` (format in
    ``engine_runner.inputs``; never used for calibration: ``calibration_npz`` is separate so a quantized
    variant is not judged on its own calibration data).
    """

    model_config = ConfigDict(extra="forbid")

    model_id: int = Field(ge=1, description="id of a row in `models`")
    engine: Engine = "onnxruntime"
    device: str = Field("cpu", pattern=r"^(cpu|cuda:[0-9]+)$")
    precisions: list[Precision] = Field(default_factory=lambda: list[Precision](["fp32"]), min_length=1)
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
    intra_op_threads: int | None = Field(None, ge=1, le=1024)
    seed: int = 0
    tensorrt: dict[str, Any] = Field(default_factory=dict, description="TensorRT build/run options")
    torch: dict[str, Any] = Field(default_factory=dict, description="PyTorch engine options "
                                  "(profiles.torch_spec.TorchOptions: --compile, --cuda-graph, --cast, "
                                  "--allow-pickle, --seq-len)")
    timeout_s: float = Field(3600, gt=0, le=7 * 86_400)

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, v: list[int]) -> list[int]:
        for b in v:
            if not 1 <= b <= 65_536:
                raise ValueError(f"batch size {b} is outside 1..65536")
        return sorted(set(v))

    @field_validator("precisions")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @field_validator("shapes")
    @classmethod
    def _shapes(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for name, dims in v.items():
            if not dims or any(d < 1 for d in dims):
                raise ValueError(f"shape of input {name!r} must be dims >= 1, got {dims}")
        return v


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
    return name, parsed


def validate_spec(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate ``data`` as ``model``; turn pydantic's error into an :class:`InputError` naming the field.

    Raises:
        InputError: with ``field: message`` for every invalid field.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '(spec)'}: {e['msg']}" for e in exc.errors()]
        raise InputError("invalid spec: " + "; ".join(parts)) from None
