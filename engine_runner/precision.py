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
  recommended "U8S8" on x86-64), calibration (MinMax by default; Percentile or Entropy via
  :class:`QdqOptions`) over user-supplied inputs (``--calibration FILE.npz``) or seeded generated ones
  (``spec.calibration_samples`` feeds at batch 1). Before quantizing, every tensor's range is
  calibrated (MinMax) and nodes that read or write a tensor whose range is non-finite or reaches
  :data:`SENTINEL_ABS_THRESHOLD` (an attention-mask sentinel) stay float32; see
  :func:`sentinel_exclusions`.

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
from profiles.files import sha256_file
from profiles.errors import EngineError, InputError

#: Precisions that are produced as ONNX variants by this module.
ONNX_VARIANT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8-dynamic", "int8-qdq")

ARTIFACT_KIND = "onnx_variant"
#: Above this many bytes of initializers a variant is saved with external data (protobuf's 2 GiB limit).
EXTERNAL_DATA_THRESHOLD_BYTES = 1_500_000_000

#: Calibration methods offered for ``int8-qdq`` (``onnxruntime.quantization.CalibrationMethod`` names).
CALIBRATION_METHODS: tuple[str, ...] = ("MinMax", "Percentile", "Entropy")

#: ``create_calibrator`` extra options per histogram method (also in the meta). Percentile: ONNX
#: Runtime's defaults (2048 bins, 99.999th percentile, symmetric). Entropy: 2048 histogram bins
#: merged into 128 quantized bins, as TensorRT's entropy calibration; ONNX Runtime's default (128 and
#: 128) leaves a single candidate threshold, the full range, i.e. MinMax again.
HISTOGRAM_OPTIONS: dict[str, dict[str, Any]] = {
    "Percentile": {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
    "Entropy": {"num_bins": 2048, "num_quantized_bins": 128, "symmetric": False},
}

#: A calibrated range whose |min| or |max| is at least this (or is not finite) is taken for a mask
#: sentinel, and the nodes that read or write that tensor are left in float32. Why 1e4: BERT-style
#: exports add ``-1e4`` (older transformers), ``-1e9`` or ``finfo(float32).min`` at masked positions,
#: while ordinary activations of the models benchmarked here stay within a few hundred. A uint8
#: per-tensor scale is ``(max - min) / 255``, so a range reaching 1e4 gives a step of >= 39: every value
#: of ordinary size (|x| < ~20) rounds to the zero point and the tensor carries no information - the
#: tensor cannot be quantized usefully whatever produced the extreme, so excluding it is also right for
#: a genuine (non-mask) outlier of that size.
SENTINEL_ABS_THRESHOLD = 1e4

#: Version of the exclusion rule; part of the cache key so a changed rule makes new variants.
SENTINEL_RULE_VERSION = 1


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
class QdqOptions:
    """Options of the ``int8-qdq`` variant (all hashed into the cache key, all stored in the meta).

    Attributes:
        calibrate_method: one of :data:`CALIBRATION_METHODS` (ONNX Runtime's ``CalibrationMethod``):
            MinMax = observed min/max; Percentile = symmetric range at the 99.999th percentile of |x|
            (ONNX Runtime's default percentile); Entropy = the threshold minimising the KL divergence of
            the quantized histogram (TensorRT's entropy calibration). Percentile and Entropy keep a
            histogram of every calibrated tensor: slower and heavier than MinMax.
        exclude_sentinels: leave in float32 the nodes touching a tensor whose MinMax range is non-finite
            or reaches ``sentinel_abs_threshold`` (:func:`sentinel_exclusions`).
        sentinel_abs_threshold: see :data:`SENTINEL_ABS_THRESHOLD` (> 0).
    """

    calibrate_method: str = "MinMax"
    exclude_sentinels: bool = True
    sentinel_abs_threshold: float = SENTINEL_ABS_THRESHOLD

    def validate(self) -> QdqOptions:
        """Return self when valid.

        Raises:
            InputError: unknown ``calibrate_method`` or a threshold that is not a finite number > 0.
        """
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise InputError(f"int8-qdq calibrate_method {self.calibrate_method!r} is not one of {list(CALIBRATION_METHODS)}")
        t = self.sentinel_abs_threshold
        if not isinstance(t, (int, float)) or not np.isfinite(t) or t <= 0:
            raise InputError(f"int8-qdq sentinel_abs_threshold {t!r} must be a finite number > 0")
        return self

    def as_meta(self) -> dict[str, Any]:
        """JSON-safe form (meta and cache key)."""
        return {"calibrate_method": self.calibrate_method,
                **({"calibrate_options": HISTOGRAM_OPTIONS[self.calibrate_method]}
                   if self.calibrate_method in HISTOGRAM_OPTIONS else {}),
                "sentinel_exclusion": {"enabled": self.exclude_sentinels,
                                       "abs_threshold": float(self.sentinel_abs_threshold),
                                       "rule_version": SENTINEL_RULE_VERSION}}


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


def method_of(precision: str, qdq: QdqOptions | None = None) -> dict[str, Any]:
    """Method name and options used for ``precision`` (stored in meta and hashed into the cache key).

    Args:
        qdq: ``int8-qdq`` options (default :class:`QdqOptions()`); ignored for other precisions.

    Raises:
        InputError: ``precision`` is not made as an ONNX variant here; invalid ``qdq``.
    """
    if precision == "fp32":
        return {"method": "original"}
    if precision == "fp16":
        return {"method": "onnxconverter_common.float16", "keep_io_types": True}
    if precision == "int8-dynamic":
        return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": False}
    if precision == "int8-qdq":
        return {"method": "onnxruntime.quantization.quantize_static", "quant_format": "QDQ",
                "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": False,
                **(qdq or QdqOptions()).validate().as_meta()}
    raise InputError(f"precision {precision!r} is not an ONNX variant; ONNX variants: {list(ONNX_VARIANT_PRECISIONS)}")


def cache_key(model_hash: str, precision: str, calibration: Calibration | None,
              qdq: QdqOptions | None = None) -> str:
    """SHA-256 (hex) of the model content hash, precision, method options (with ``qdq`` for int8-qdq),
    calibration identity and tool versions."""
    payload = {"model": model_hash, "precision": precision, **method_of(precision, qdq), "versions": _versions(),
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
    """Write ``model`` to ``dst``; an OS error (disk full, read-only, quota) is re-raised naming ``dst``."""
    import onnx

    try:
        if _initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES:
            onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=dst.name + ".data")
        else:
            onnx.save(model, str(dst))
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, f"{exc.strerror or exc} while writing {dst}", str(dst)) from exc


class _FeedsReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _qdq_op_types() -> list[str]:
    """The op types ``quantize_static`` quantizes (and calibrates) when given none: the union of ONNX
    Runtime's QOperator and QDQ registries, as ``quantize_static`` computes it."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def calibrate_minmax(src: Path, feeds: Sequence[dict[str, np.ndarray]], workdir: Path) -> Any:
    """Observed range of every tensor that ``quantize_static`` would calibrate (inputs and outputs of
    the quantizable op types, float only), over ``feeds``.

    Uses ``onnxruntime.quantization.create_calibrator(calibrate_method=MinMax)`` - the calibrator
    ``quantize_static`` itself runs - so the result can be handed to ``quantize_static`` as its
    calibration cache and the model is run over the data only once.

    Args:
        src: the fp32 ``.onnx``.
        feeds: ``[{input_name: array}]``, one ``InferenceSession.run`` each.
        workdir: an existing folder for the augmented model (ReduceMin/ReduceMax outputs added).

    Returns:
        ``onnxruntime.quantization.TensorsData``: ``{tensor name: TensorData(lowest, highest)}``
        (float32 scalars, same units as the tensor).
    """
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    calibrator = create_calibrator(Path(src), _qdq_op_types(),
                                   augmented_model_path=str(Path(workdir) / "augmented_model.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax,
                                   use_external_data_format=Path(src).stat().st_size > EXTERNAL_DATA_THRESHOLD_BYTES)
    calibrator.collect_data(_FeedsReader(feeds))
    ranges = calibrator.compute_data()
    del calibrator
    return ranges


def _json_float(x: float) -> float | str:
    """A float for JSON meta: finite as is, else ``"inf"``, ``"-inf"`` or ``"nan"``."""
    return float(x) if np.isfinite(x) else str(float(x))


def sentinel_tensors(ranges: dict[str, tuple[float, float]], abs_threshold: float = SENTINEL_ABS_THRESHOLD
                     ) -> dict[str, dict[str, Any]]:
    """Tensors whose calibrated range cannot be quantized to 8 bits usefully.

    A tensor is flagged when its min or max is not finite, or when ``max(|min|, |max|) >=
    abs_threshold`` (:data:`SENTINEL_ABS_THRESHOLD` says why 1e4): the typical case is the attention
    scores of a BERT-style model after the additive attention mask, whose padded positions hold
    ``-1e4``, ``-1e9`` or ``finfo(float32).min``.

    Args:
        ranges: ``{tensor name: (min, max)}`` as calibrated (any float type).
        abs_threshold: the magnitude from which a range counts as sentinel-dominated (> 0).

    Returns:
        ``{tensor name: {"min", "max", "reason"}}`` (min/max JSON-safe: non-finite as strings).
    """
    flagged: dict[str, dict[str, Any]] = {}
    for name, (lo, hi) in ranges.items():
        lo_f, hi_f = float(np.asarray(lo).min()), float(np.asarray(hi).max())
        if not (np.isfinite(lo_f) and np.isfinite(hi_f)):
            reason = "non-finite calibrated range"
        elif max(abs(lo_f), abs(hi_f)) >= abs_threshold:
            reason = f"calibrated range reaches |x| >= {abs_threshold:g} (mask sentinel)"
        else:
            continue
        flagged[name] = {"min": _json_float(lo_f), "max": _json_float(hi_f), "reason": reason}
    return flagged


def sentinel_exclusions(model: Any, flagged: dict[str, dict[str, Any]], op_types: Sequence[str]) -> list[dict[str, Any]]:
    """Nodes to leave in float32 so no flagged tensor gets a QuantizeLinear/DequantizeLinear pair.

    In QDQ format a tensor is quantized when the node producing it *or* a node reading it is
    quantized (e.g. the masked scores are the ``Add``'s output, the ``Where``'s input and the
    ``Softmax``'s input), so every node of a quantizable op type that reads or writes a flagged tensor
    is excluded. The ``Softmax`` output (range [0, 1]) and everything else stays quantized.

    Args:
        model: the ``onnx.ModelProto`` (its nodes must be named: unnamed ones cannot be excluded).
        flagged: :func:`sentinel_tensors`' result.
        op_types: op types that would be quantized.

    Returns:
        ``[{"node", "op_type", "reads", "writes"}]`` in graph order (``reads``/``writes``: flagged
        tensor names).
    """
    quantizable = set(op_types)
    out = []
    for node in model.graph.node:
        if node.op_type not in quantizable:
            continue
        reads = [t for t in node.input if t in flagged]
        writes = [t for t in node.output if t in flagged]
        if reads or writes:
            out.append({"node": node.name, "op_type": node.op_type, "reads": reads, "writes": writes})
    return out


def _name_unnamed_nodes(model: Any) -> int:
    """Give every unnamed node a unique name (``<op_type>__es<k>``) so it can be excluded by name;
    returns how many were named."""
    used = {n.name for n in model.graph.node if n.name}
    count = 0
    for k, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}__es{k}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
            count += 1
    return count


def _quantize_qdq(src: Path, dst: Path, calibration: Calibration, qdq: QdqOptions, meta: dict[str, Any]) -> None:
    """int8-qdq: MinMax-calibrate every tensor, find the sentinel tensors and the nodes to exclude,
    calibrate again with ``qdq.calibrate_method`` if it is not MinMax (without the sentinel tensors,
    which a histogram cannot bin), then ``quantize_static`` (QDQ, U8S8) from those ranges (passed as its
    calibration cache) with the nodes excluded. Records ``meta["quantization_exclusions"]``."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, TensorsData, create_calibrator,
                                          quantize_static)
    from onnxruntime.quantization.calibrate import save_tensors_data

    external = src.stat().st_size > EXTERNAL_DATA_THRESHOLD_BYTES
    op_types = _qdq_op_types()
    with tempfile.TemporaryDirectory(prefix="es-qdq-", dir=str(dst.parent)) as tmp:
        work = Path(tmp)
        ranges = calibrate_minmax(src, calibration.feeds, work)
        flagged = sentinel_tensors({k: ranges[k].range_value for k in ranges}, qdq.sentinel_abs_threshold) \
            if qdq.exclude_sentinels else {}
        excluded: list[dict[str, Any]] = []
        quant_src = src
        if flagged:
            model = onnx.load(str(src), load_external_data=False)
            excluded = sentinel_exclusions(model, flagged, op_types)
            if any(not e["node"] for e in excluded):
                model = onnx.load(str(src))
                named = _name_unnamed_nodes(model)
                excluded = sentinel_exclusions(model, flagged, op_types)
                quant_src = work / "named.onnx"
                _save(model, quant_src)
                meta.setdefault("fixes", []).append(f"{named} unnamed nodes named <op_type>__es<index> so they can be excluded")
            del model
        by_op: dict[str, int] = {}
        for e in excluded:
            by_op[e["op_type"]] = by_op.get(e["op_type"], 0) + 1
        meta["quantization_exclusions"] = {
            "rule": (f"nodes of a quantizable op type that read or write a tensor whose MinMax-calibrated range is "
                     f"non-finite or reaches |x| >= {qdq.sentinel_abs_threshold:g} stay float32")
            if qdq.exclude_sentinels else "disabled",
            "calibrated_tensors": len(list(ranges)),
            "flagged_tensors": flagged,
            "excluded_nodes": excluded,
            "summary": (f"{len(excluded)} node(s) left float32 ("
                        + ", ".join(f"{op} x{n}" for op, n in sorted(by_op.items()))
                        + f") because {len(flagged)} tensor(s) have a mask-sentinel or non-finite range")
            if excluded else "no node excluded",
        }
        method = getattr(CalibrationMethod, qdq.calibrate_method)
        if method != CalibrationMethod.MinMax:
            # the histogram calibrators cannot bin a non-finite tensor: calibrate all but the flagged ones
            hist = create_calibrator(Path(src), op_types, augmented_model_path=str(work / "augmented_hist.onnx"),
                                     calibrate_method=method, use_external_data_format=external,
                                     extra_options=dict(HISTOGRAM_OPTIONS[qdq.calibrate_method]))
            hist.tensors_to_calibrate = set(hist.tensors_to_calibrate) - set(flagged)
            hist.collect_data(_FeedsReader(calibration.feeds))
            ranges = hist.compute_data()
            del hist
        # the ranges quantize_static uses (as its calibration cache: the model is not run over the data
        # again); flagged tensors are left out - no quantized node reads or writes them
        final = TensorsData(ranges.calibration_method, {k: ranges[k] for k in ranges if k not in flagged})
        cache = work / "calibration.json"
        save_tensors_data(final, cache)
        quantize_static(str(quant_src), str(dst), _FeedsReader(calibration.feeds), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False,
                        calibrate_method=method, nodes_to_exclude=[e["node"] for e in excluded],
                        calibration_cache_path=str(cache), use_external_data_format=external)


def convert(src: Path, dst: Path, precision: str, calibration: Calibration | None = None,
            qdq: QdqOptions | None = None) -> dict[str, Any]:
    """Write the ``precision`` variant of the ONNX model ``src`` to ``dst`` (no DB, no cache).

    Args:
        qdq: ``int8-qdq`` options (default :class:`QdqOptions()`: MinMax, sentinel exclusion on).

    Returns:
        meta: ``{"precision", "method", ...options, "convert_s", "versions", "calibration"?,
        "quantization_exclusions"? (int8-qdq: rule, flagged tensors with their range, excluded nodes,
        summary)}``.

    Raises:
        InputError: ``int8-qdq`` without calibration; unknown precision.
        EngineError: the converter or quantizer failed (message names the precision and the model).
    """
    import onnx

    qdq = (qdq or QdqOptions()).validate()
    meta: dict[str, Any] = {"precision": precision, **method_of(precision, qdq), "versions": _versions()}
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
            _quantize_qdq(Path(src), Path(dst), calibration, qdq, meta)
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




def ensure_variant(model_path: Path, model_hash: str, precision: str, *, model_id: int | None = None,
                   job_id: int | None = None, calibration: Calibration | None = None,
                   db_url: str | None = None, on_stage: Callable[[str], None] | None = None,
                   qdq: QdqOptions | None = None) -> Variant:
    """The ``precision`` variant of a registered model: from the artifact cache, or made now and
    registered (kind ``onnx_variant``).

    Args:
        model_path: absolute path of the registered ``.onnx``.
        model_hash: ``models.content_hash`` (cache identity of the source).
        precision: one of :data:`ONNX_VARIANT_PRECISIONS`.
        calibration: required for ``int8-qdq``.
        qdq: ``int8-qdq`` options (part of the cache key; default :class:`QdqOptions()`).
        on_stage: called with a message before a conversion starts (progress reporting).

    Raises:
        InputError / EngineError: as :func:`convert`.
    """
    if precision == "fp32":
        return Variant("fp32", Path(model_path), None, False, {"precision": "fp32", "method": "original"})
    key = cache_key(model_hash, precision, calibration, qdq)
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
        meta = convert(Path(model_path), tmp, precision, calibration, qdq)
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
        art = Artifact(kind=ARTIFACT_KIND, path=str(final.relative_to(base)), content_hash=sha256_file(final),
                       size_bytes=size, cache_key=key, meta=meta, model_id=model_id, job_id=None)
        s.add(art)
        s.flush()
        art_id = int(art.id)
    return Variant(precision, final, art_id, False, meta)
