"""Precision variants of an ONNX model, made once and cached as artifacts.

Each precision is its own ONNX file (TensorRT 11 takes precision from the ONNX itself, and ONNX
Runtime runs whatever types the graph has):

- ``fp32``: the model as registered (no copy, no artifact).
- ``fp16``: ``onnxconverter_common.float16.convert_float_to_float16(model, keep_io_types=True)``:
  weights and activations float16, graph inputs/outputs stay float32 (Cast nodes at the edges).
- ``int8-dynamic``: ``onnxruntime.quantization.quantize_dynamic`` (weights int8, per-tensor;
  activations quantized to uint8 at run time from their observed range; MatMulInteger/ConvInteger
  or DynamicQuantizeLinear nodes).
- ``int8-qdq``: ``onnxruntime.quantization.quantize_static`` in QDQ format (QuantizeLinear /
  DequantizeLinear pairs; activations uint8 asymmetric, weights int8 symmetric: ONNX Runtime's
  recommended "U8S8" on x86-64), MinMax calibration over user-supplied inputs (``--calibration
  FILE.npz``) or seeded generated ones (``spec.calibration_samples`` feeds at batch 1).

A variant is stored under ``$ENGINESCOPE_HOME/artifacts/variants/<cache key>/model.onnx`` with an
``artifacts`` row (kind ``onnx_variant``; ``meta``: precision, method, options, calibration source and
count, conversion time, tool versions) and reused when the same (model content hash, precision,
method options, calibration, tool versions) was made before.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from db.config import home
from db.models import Artifact
from db.session import session_scope
from profiles.errors import EngineError, InputError

#: Precisions that are produced as ONNX variants by this module.
ONNX_VARIANT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8-dynamic", "int8-qdq")

ARTIFACT_KIND = "onnx_variant"
#: Above this many bytes of initializers a variant is saved with external data (protobuf's 2 GiB limit).
EXTERNAL_DATA_THRESHOLD_BYTES = 1_500_000_000


@dataclass(frozen=True)
class Calibration:
    """Calibration inputs for ``int8-qdq``.

    Attributes:
        source: ``"npz"`` or ``"generated"``.
        identity: stable text that identifies the data (file SHA-256, or seed/count/shapes) - part of
            the cache key.
        feeds: the feeds, ``[{input_name: array}]``.
        description: JSON-safe description stored in the artifact's meta.
    """

    source: str
    identity: str
    feeds: Sequence[dict[str, np.ndarray]]
    description: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """An ONNX file of one precision.

    Attributes:
        precision: fp32 | fp16 | int8-dynamic | int8-qdq.
        path: absolute path of the ``.onnx``.
        artifact_id: ``artifacts.id`` (None for fp32, which is the registered model itself).
        reused: True when an earlier identical variant was found in the cache.
        meta: what the artifact's ``meta`` says (method, options, calibration...).
    """

    precision: str
    path: Path
    artifact_id: int | None
    reused: bool
    meta: dict[str, Any]


def _versions() -> dict[str, str]:
    import onnx
    import onnxconverter_common
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnxconverter_common": onnxconverter_common.__version__}


def method_of(precision: str) -> dict[str, Any]:
    """Method name and options used for ``precision`` (stored in meta and hashed into the cache key).

    Raises:
        InputError: ``precision`` is not made as an ONNX variant here.
    """
    if precision == "fp32":
        return {"method": "original"}
    if precision == "fp16":
        return {"method": "onnxconverter_common.float16", "keep_io_types": True}
    if precision == "int8-dynamic":
        return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": False}
    if precision == "int8-qdq":
        return {"method": "onnxruntime.quantization.quantize_static", "quant_format": "QDQ",
                "activation_type": "QUInt8", "weight_type": "QInt8", "calibrate_method": "MinMax",
                "per_channel": False}
    raise InputError(f"precision {precision!r} is not an ONNX variant; ONNX variants: {list(ONNX_VARIANT_PRECISIONS)}")


def cache_key(model_hash: str, precision: str, calibration: Calibration | None) -> str:
    """SHA-256 (hex) of the model content hash, precision, method options, calibration identity and
    tool versions."""
    payload = {"model": model_hash, "precision": precision, **method_of(precision), "versions": _versions(),
               "calibration": calibration.identity if (precision == "int8-qdq" and calibration) else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _initializers_as_inputs(model: Any) -> bool:
    """Drop graph inputs that are initializers (IR < 4 files list every weight as an input; with
    ``keep_io_types`` the float16 converter would then leave those inputs float32 while converting the
    weights, and ONNX Runtime refuses the mismatch). Returns True when something was removed."""
    inits = {t.name for t in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name not in inits]
    if len(keep) == len(model.graph.input):
        return False
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 4)
    return True


def _split_consumed_outputs(model: Any) -> list[str]:
    """Make every graph output that other nodes also read a separate tensor (``X`` -> ``X__internal`` +
    ``Identity`` -> ``X``). With ``keep_io_types`` the float16 converter casts such an output back to
    float32 for the graph *and* for its internal consumers, which then mix float and float16 inputs
    (ONNX Runtime: "Type parameter (T) ... bound to different types"). Returns the names split."""
    from onnx import helper

    consumed = {i for n in model.graph.node for i in n.input}
    split = [o.name for o in model.graph.output if o.name in consumed]
    for name in split:
        internal = f"{name}__internal"
        for node in model.graph.node:
            for k, out in enumerate(node.output):
                if out == name:
                    node.output[k] = internal
            for k, inp in enumerate(node.input):
                if inp == name:
                    node.input[k] = internal
        model.graph.node.append(helper.make_node("Identity", [internal], [name], name=f"{name}__output"))
    return split


def _retarget_float_casts(model: Any) -> list[str]:
    """After float16 conversion: a ``Cast(to=FLOAT)`` from the original graph whose output the converter
    typed float16 in ``value_info`` (e.g. a mask cast to the hidden states' dtype) must cast to FLOAT16,
    or ONNX Runtime refuses the model ("Type (tensor(float16)) of output arg ... does not match expected
    type (tensor(float))"). Returns the node names changed."""
    from onnx import TensorProto

    typed = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    changed = []
    for node in model.graph.node:
        if node.op_type != "Cast":
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.FLOAT and typed.get(node.output[0]) == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT16
                changed.append(node.name)
    return changed


def _initializer_bytes(model: Any) -> int:
    return int(sum(len(t.raw_data) for t in model.graph.initializer))


def _save(model: Any, dst: Path) -> None:
    import onnx

    if _initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES:
        onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=dst.name + ".data")
    else:
        onnx.save(model, str(dst))


class _FeedsReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def convert(src: Path, dst: Path, precision: str, calibration: Calibration | None = None) -> dict[str, Any]:
    """Write the ``precision`` variant of the ONNX model ``src`` to ``dst`` (no DB, no cache).

    Returns:
        meta: ``{"precision", "method", ...options, "convert_s", "versions", "calibration"?}``.

    Raises:
        InputError: ``int8-qdq`` without calibration; unknown precision.
        EngineError: the converter or quantizer failed (message names the precision and the model).
    """
    import onnx

    meta: dict[str, Any] = {"precision": precision, **method_of(precision), "versions": _versions()}
    if precision == "fp32":
        raise InputError("fp32 is the registered model itself; there is nothing to convert")
    t0 = time.perf_counter_ns()
    try:
        if precision == "fp16":
            from onnxconverter_common import float16

            model = onnx.load(str(src))  # loads external data from beside src
            fixes = []
            if _initializers_as_inputs(model):
                fixes.append("initializers removed from graph inputs (IR < 4 layout), IR set to >= 4")
            split = _split_consumed_outputs(model)
            if split:
                fixes.append(f"graph outputs also consumed inside the graph re-emitted through Identity: {split}")
            converted = float16.convert_float_to_float16(model, keep_io_types=True)
            casts = _retarget_float_casts(converted)
            if casts:
                fixes.append(f"Cast(to=float) nodes whose output the converter typed float16 retargeted to float16: {casts}")
            if fixes:
                meta["fixes"] = fixes
            _save(converted, dst)
        elif precision == "int8-dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False,
                             use_external_data_format=src.stat().st_size > EXTERNAL_DATA_THRESHOLD_BYTES)
        elif precision == "int8-qdq":
            if calibration is None or not calibration.feeds:
                raise InputError("int8-qdq needs calibration inputs (--calibration FILE.npz, or generated ones)")
            from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

            quantize_static(str(src), str(dst), _FeedsReader(calibration.feeds), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False,
                            calibrate_method=CalibrationMethod.MinMax,
                            use_external_data_format=src.stat().st_size > EXTERNAL_DATA_THRESHOLD_BYTES)
            meta["calibration"] = {"source": calibration.source, "count": len(calibration.feeds),
                                   **calibration.description}
        else:
            method_of(precision)  # raises InputError for anything else
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - converters raise anything (ValueError, onnx/ORT errors)
        raise EngineError(f"making the {precision} variant of {src.name} failed: {type(exc).__name__}: {exc}") from exc
    if not dst.exists():
        raise EngineError(f"making the {precision} variant of {src.name} produced no file")
    meta["convert_s"] = (time.perf_counter_ns() - t0) / 1e9
    return meta


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_variant(model_path: Path, model_hash: str, precision: str, *, model_id: int | None = None,
                   job_id: int | None = None, calibration: Calibration | None = None,
                   db_url: str | None = None, on_stage: Callable[[str], None] | None = None) -> Variant:
    """The ``precision`` variant of a registered model: from the artifact cache, or made now and
    registered (kind ``onnx_variant``).

    Args:
        model_path: absolute path of the registered ``.onnx``.
        model_hash: ``models.content_hash`` (cache identity of the source).
        precision: one of :data:`ONNX_VARIANT_PRECISIONS`.
        calibration: required for ``int8-qdq``.
        on_stage: called with a message before a conversion starts (progress reporting).

    Raises:
        InputError / EngineError: as :func:`convert`.
    """
    if precision == "fp32":
        return Variant("fp32", Path(model_path), None, False, {"precision": "fp32", "method": "original"})
    key = cache_key(model_hash, precision, calibration)
    base = home()
    with session_scope(db_url) as s:
        rows = s.execute(select(Artifact).where(Artifact.kind == ARTIFACT_KIND, Artifact.cache_key == key)
                         .order_by(Artifact.id)).scalars().all()
        for row in rows:
            p = Path(row.path) if Path(row.path).is_absolute() else base / row.path
            if p.is_file():
                return Variant(precision, p, row.id, True, dict(row.meta or {}))
    folder = base / "artifacts" / "variants" / key[:32]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{uuid.uuid4().hex}.onnx"
    if on_stage is not None:
        on_stage(f"making {precision} variant ({method_of(precision)['method']})")
    try:
        meta = convert(Path(model_path), tmp, precision, calibration)
        final = folder / "model.onnx"
        data_tmp = tmp.with_name(tmp.name + ".data")
        if data_tmp.exists():  # external data: re-save so the .onnx references the final data file name
            import onnx

            _save(onnx.load(str(tmp)), final)
            data_tmp.unlink()
            tmp.unlink()
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file() and not f.name.startswith(".tmp-"))
    with session_scope(db_url) as s:
        # owned by the model (deleted with it), not by the job that happened to make it first
        meta["made_by_job"] = job_id
        art = Artifact(kind=ARTIFACT_KIND, path=str(final.relative_to(base)), content_hash=_file_sha256(final),
                       size_bytes=size, cache_key=key, meta=meta, model_id=model_id, job_id=None)
        s.add(art)
        s.flush()
        art_id = int(art.id)
    return Variant(precision, final, art_id, False, meta)
