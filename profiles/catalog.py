"""The one catalogue of engines, precisions and devices of ``model_bench`` (issue 9).

Everything that writes this vocabulary reads it from here: the spec (:class:`profiles.specs.BenchSpec`),
the CLI help (``enginescope bench``), the dashboard's New benchmark widgets and the engines' own
supported-precision checks. ``profiles`` imports nothing of ours, so every package may import this one.

Engines (``--engine``, case-insensitive, aliases in brackets):

- ``onnxruntime`` (``ort``, ``onnx-runtime``): CPU and CUDA. fp32, fp16, int8-dynamic (CPU only: its
  ConvInteger / DynamicQuantizeLinear ops have no CUDA kernels in ONNX Runtime and would run on the host),
  int8-qdq.
- ``tensorrt`` (``trt``): CUDA only. fp32, fp16, bf16, int8-qdq, fp8, best (how each is built per TensorRT
  version: ``engine_runner.trt_build.precision_plan`` and docs/tensorrt.md).
- ``torch`` (``pytorch``): CPU and CUDA. fp32, tf32 (CUDA only: TF32 is a tensor-core math mode; PyTorch's
  TF32 switches do nothing on a CPU, so a "tf32" CPU run would be an fp32 run under another name), fp16 and
  bf16 (both also on CPU: PyTorch 2.x runs float16/bfloat16 CPU kernels, usually slower than fp32 unless
  the CPU has AVX512-FP16/BF16 or AMX; the numbers are real, just rarely the fast path).

Precision names are case-insensitive (``FP16``, ``Int8``). ``int8`` is an alias resolved per engine to the
engine's default int8: ``int8-qdq`` on both ONNX Runtime and TensorRT, with a note the job prints
(:func:`resolve_precision`); engines without an int8 refuse it.

Devices (``--device``): ``cpu``, ``cuda`` (= ``cuda:0``) or ``cuda:N`` (N >= 0), see :func:`parse_device`.

Errors are :class:`CatalogError` (an ``InputError``) whose message starts with the flag
(``--engine``, ``--precision``, ``--device``) and lists the valid choices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from profiles.errors import InputError

#: Device kinds a device string can be (``cuda:3`` is of kind ``cuda``).
DEVICE_KINDS: tuple[str, ...] = ("cpu", "cuda")
#: The precision alias resolved per engine (:attr:`EngineInfo.int8`).
INT8_ALIAS = "int8"


class CatalogError(InputError):
    """A name that is not in the catalogue, or a combination it does not support.

    Attributes:
        flag: the CLI flag the value came from (``--engine``, ``--precision``, ``--device``).
        detail: the message without the flag (what the spec puts after its field's flag or label).
    """

    def __init__(self, flag: str, detail: str) -> None:
        super().__init__(f"{flag}: {detail}")
        self.flag = flag
        self.detail = detail


@dataclass(frozen=True)
class PrecisionInfo:
    """One precision of one engine.

    Attributes:
        name: canonical name (lower case, stored as ``runs.precision``).
        description: one line for CLI and dashboard help.
        devices: device kinds (:data:`DEVICE_KINDS`) it runs on with this engine.
        device_note: why it does not run on the other kinds ("" when it runs on all of the engine's).
    """

    name: str
    description: str
    devices: tuple[str, ...]
    device_note: str = ""

    @property
    def needs_gpu(self) -> bool:
        """True when this precision runs on no CPU with this engine."""
        return "cpu" not in self.devices


@dataclass(frozen=True)
class EngineInfo:
    """One engine of ``model_bench``.

    Attributes:
        name: canonical name (``BenchSpec.engine``, ``runs.engine``, module ``engine_runner.engines.<name>``).
        label: display name.
        aliases: other accepted names (lower case).
        devices: device kinds it runs on, the first one its default.
        precisions: its precisions, in display order (fp32 first).
        int8: the canonical precision ``int8`` resolves to, or None when the engine has no int8.
        int8_note: the sentence the job prints when ``int8`` was resolved.
        formats: the ``Model.format`` values it runs (``onnx``; ``hf`` = a Hugging Face folder, ``pt2`` = a
            ``torch.export`` program: the PyTorch engine's, ``engine_runner.torch_models``).
    """

    name: str
    label: str
    aliases: tuple[str, ...]
    devices: tuple[str, ...]
    precisions: tuple[PrecisionInfo, ...]
    int8: str | None = None
    int8_note: str = ""
    formats: tuple[str, ...] = ("onnx",)

    def precision(self, name: str) -> PrecisionInfo | None:
        """The :class:`PrecisionInfo` of canonical ``name``, or None."""
        return next((p for p in self.precisions if p.name == name), None)


_INT8_DYNAMIC_CUDA = ("dynamic quantization's ConvInteger/DynamicQuantizeLinear ops have no CUDA kernels in "
                      "ONNX Runtime (they would run on the CPU); use int8-qdq on CUDA")
_TF32_CPU = "TF32 is a CUDA tensor-core math mode; on a CPU it would be plain fp32"

_CATALOG: tuple[EngineInfo, ...] = (
    EngineInfo(
        name="onnxruntime", label="ONNX Runtime", aliases=("ort", "onnx-runtime"), devices=("cpu", "cuda"),
        precisions=(
            PrecisionInfo("fp32", "the model as exported (float32)", ("cpu", "cuda")),
            PrecisionInfo("fp16", "graph converted to float16, inputs/outputs kept float32", ("cpu", "cuda")),
            PrecisionInfo("int8-dynamic", "dynamic quantization: int8 weights, activations quantized at run time",
                          ("cpu",), _INT8_DYNAMIC_CUDA),
            PrecisionInfo("int8-qdq", "static Q/DQ quantization calibrated on --calibration .npz or generated inputs",
                          ("cpu", "cuda")),
        ),
        int8="int8-qdq", int8_note="int8 resolved to int8-qdq (static Q/DQ, calibrated)"),
    EngineInfo(
        name="tensorrt", label="TensorRT", aliases=("trt",), devices=("cuda",),
        precisions=(
            PrecisionInfo("fp32", "float32 build (no reduced-precision builder flags)", ("cuda",)),
            PrecisionInfo("fp16", "--fp16 on the fp32 ONNX (TensorRT < 11), or the fp16 ONNX variant (TensorRT 11)",
                          ("cuda",)),
            PrecisionInfo("bf16", "--bf16 builder flag (TensorRT 9.0 to 10)", ("cuda",)),
            PrecisionInfo("int8-qdq", "explicit int8: the calibrated Q/DQ ONNX variant (+ --int8 before TensorRT 11)",
                          ("cuda",)),
            PrecisionInfo("fp8", "--fp8 builder flag (where trtexec has it)", ("cuda",)),
            PrecisionInfo("best", "--best: TensorRT picks any precision per layer (TensorRT < 11)", ("cuda",)),
        ),
        int8="int8-qdq",
        int8_note="int8 resolved to int8-qdq (explicit Q/DQ, calibrated; built with --int8 before TensorRT 11)"),
    EngineInfo(
        name="torch", label="PyTorch", aliases=("pytorch",), devices=("cpu", "cuda"),
        precisions=(
            PrecisionInfo("fp32", "float32 weights and math (TF32 off)", ("cpu", "cuda")),
            PrecisionInfo("tf32", "float32 tensors, TF32 tensor-core matmuls and convolutions", ("cuda",), _TF32_CPU),
            PrecisionInfo("fp16", "float16 (autocast or cast weights: the run records which)", ("cpu", "cuda")),
            PrecisionInfo("bf16", "bfloat16 (autocast or cast weights: the run records which)", ("cpu", "cuda")),
        ),
        int8=None, formats=("hf", "pt2")),
)
_BY_NAME: dict[str, EngineInfo] = {e.name: e for e in _CATALOG}
_ALIASES: dict[str, str] = {**{e.name: e.name for e in _CATALOG}, **{a: e.name for e in _CATALOG for a in e.aliases}}
_DEVICE_RE = re.compile(r"^cuda(?::([0-9]+))?$")


def engines() -> list[str]:
    """Canonical engine names, in display order: ``["onnxruntime", "tensorrt", "torch"]``."""
    return [e.name for e in _CATALOG]


def engines_for_format(model_format: str | None) -> list[str]:
    """Canonical engines that run a model stored as ``model_format`` (``Model.format``; None = ``onnx``), in
    display order: ``onnx`` -> ONNX Runtime, TensorRT; ``hf``/``pt2`` -> PyTorch; an unknown format -> ``[]``."""
    fmt = model_format or "onnx"
    return [e.name for e in _CATALOG if fmt in e.formats]


def engine_choices() -> list[str]:
    """Every accepted ``--engine`` value: canonical names, then aliases."""
    return engines() + [a for e in _CATALOG for a in e.aliases]


def resolve_engine(name: str) -> str:
    """Canonical engine name of ``name`` (case-insensitive; aliases ``ort``, ``onnx-runtime``, ``trt``,
    ``pytorch``).

    Raises:
        CatalogError: ``--engine``: not an engine (lists the choices).
    """
    key = str(name).strip().lower()
    if key not in _ALIASES:
        aliases = ", ".join(f"{a}={e.name}" for e in _CATALOG for a in e.aliases)
        raise CatalogError("--engine", f"{name!r} is not an engine (choose {', '.join(engines())}; aliases {aliases})")
    return _ALIASES[key]


def engine_info(name: str) -> EngineInfo:
    """The :class:`EngineInfo` of ``name`` (any accepted spelling).

    Raises:
        CatalogError: ``--engine``: not an engine.
    """
    return _BY_NAME[resolve_engine(name)]


def precisions(engine: str, device: str | None = None) -> list[str]:
    """Canonical precisions of ``engine`` (fp32 first), or only those that run on ``device``
    (``cpu``/``cuda``/``cuda:N``) when given.

    Raises:
        CatalogError: unknown engine (``--engine``) or bad device (``--device``).
    """
    info = engine_info(engine)
    if device is None:
        return [p.name for p in info.precisions]
    kind = device_kind(device)
    return [p.name for p in info.precisions if kind in p.devices]


def precision_choices(engine: str) -> list[str]:
    """Every accepted ``--precision`` value of ``engine``: its precisions, then ``int8`` when it has one."""
    info = engine_info(engine)
    return precisions(engine) + ([INT8_ALIAS] if info.int8 else [])


def resolve_precision(engine: str, name: str) -> tuple[str, str | None]:
    """Canonical precision of ``name`` on ``engine`` (case-insensitive; ``int8`` -> the engine's int8).

    Returns:
        ``(canonical, note)``: ``note`` is the sentence to show when an alias was resolved
        (``"int8 resolved to int8-qdq (static Q/DQ, calibrated)"`` on ONNX Runtime), else None.

    Raises:
        CatalogError: unknown engine (``--engine``); not a precision of this engine (``--precision``,
            lists the engine's choices).
    """
    info = engine_info(engine)
    key = str(name).strip().lower()
    if key == INT8_ALIAS and info.int8:
        return info.int8, info.int8_note
    if info.precision(key) is None:
        raise CatalogError("--precision", f"{name!r} is not a precision of {info.name} "
                                          f"(choose {', '.join(precision_choices(info.name))})")
    return key, None


def precision_info(engine: str, precision: str) -> PrecisionInfo:
    """The :class:`PrecisionInfo` of ``precision`` (any accepted spelling, ``int8`` resolved) on ``engine``.

    Raises:
        CatalogError: unknown engine (``--engine``) or precision (``--precision``).
    """
    info = engine_info(engine)
    canonical, _ = resolve_precision(info.name, precision)
    return next(p for p in info.precisions if p.name == canonical)


def describe_precision(engine: str, precision: str) -> str:
    """One-line description of ``precision`` (any accepted spelling) on ``engine``.

    Raises:
        CatalogError: unknown engine or precision.
    """
    return precision_info(engine, precision).description


def needs_gpu(engine: str, precision: str) -> bool:
    """True when ``precision`` on ``engine`` runs only on a CUDA device (torch tf32; every TensorRT one).

    Raises:
        CatalogError: unknown engine or precision.
    """
    return precision_info(engine, precision).needs_gpu


def devices(engine: str) -> list[str]:
    """Device kinds ``engine`` runs on (:data:`DEVICE_KINDS`), the default first.

    Raises:
        CatalogError: unknown engine.
    """
    return list(engine_info(engine).devices)


def default_device(engine: str) -> str:
    """The device a spec of ``engine`` gets when none is given: ``cpu``, or ``cuda:0`` for a CUDA-only engine.

    Raises:
        CatalogError: unknown engine.
    """
    return "cpu" if engine_info(engine).devices[0] == "cpu" else "cuda:0"


def parse_device(text: str) -> str:
    """Normalize a ``--device`` value: ``cpu`` -> ``cpu``; ``cuda`` -> ``cuda:0``; ``cuda:N`` -> ``cuda:N``
    (N an integer >= 0, leading zeros dropped). Case and surrounding spaces are ignored.

    Raises:
        CatalogError: ``--device``: anything else (e.g. ``cuda:x``, ``gpu``, ``cuda:-1``).
    """
    key = str(text).strip().lower()
    if key == "cpu":
        return "cpu"
    m = _DEVICE_RE.match(key)
    if m is None:
        raise CatalogError("--device", f"{text!r} is not a device (choose cpu, cuda or cuda:N with N >= 0)")
    return f"cuda:{int(m.group(1) or 0)}"


def device_kind(device: str) -> str:
    """``cpu`` or ``cuda`` for a device string (parsed by :func:`parse_device`).

    Raises:
        CatalogError: ``--device``: not a device.
    """
    return parse_device(device).split(":", 1)[0]


def check_engine_device(engine: str, device: str) -> None:
    """Refuse ``device`` when ``engine`` does not run on its kind (TensorRT on ``cpu``).

    Raises:
        CatalogError: ``--device``: names the engine's device kinds; or ``--engine``/``--device`` for
            unknown names.
    """
    info = engine_info(engine)
    kind = device_kind(device)
    if kind not in info.devices:
        raise CatalogError("--device", f"{info.name} does not run on {kind} (it runs on "
                                       f"{' and '.join(info.devices)}: choose {_device_examples(info.devices)})")


def check_precision_device(engine: str, precision: str, device: str) -> None:
    """Refuse ``precision`` on ``device`` when the catalogue says it does not run there (torch tf32 on CPU,
    ONNX Runtime int8-dynamic on CUDA).

    Raises:
        CatalogError: ``--precision``: says why and lists the precisions of ``engine`` on that device.
    """
    info = engine_info(engine)
    p = precision_info(engine, precision)
    kind = device_kind(device)
    if kind not in p.devices:
        why = f": {p.device_note}" if p.device_note else ""
        raise CatalogError("--precision", f"{p.name!r} of {info.name} does not run on {kind}{why} "
                                          f"({info.name} on {kind} offers {', '.join(precisions(engine, kind))})")


def precision_help(engine: str | None = None) -> str:
    """``"name: description; ..."`` of one engine's precisions (with the ``int8`` alias and device limits), or
    of every engine, one ``engine: ...`` block each, when ``engine`` is None (CLI ``--help``, dashboard help).
    """
    if engine is None:
        return " | ".join(precision_help(e) for e in engines())
    info = engine_info(engine)
    parts = []
    for p in info.precisions:
        limit = "" if set(p.devices) == set(info.devices) else f" ({'/'.join(p.devices)} only)"
        parts.append(f"{p.name}: {p.description}{limit}")
    if info.int8:
        parts.append(f"int8: alias of {info.int8}")
    return f"{info.name}: " + "; ".join(parts)


def _device_examples(kinds: tuple[str, ...]) -> str:
    return ", ".join("cpu" if k == "cpu" else "cuda or cuda:N" for k in kinds)
