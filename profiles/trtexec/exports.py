"""Parsers of trtexec's JSON exports: ``--exportTimes``, ``--exportProfile``, ``--exportLayerInfo``.

- ``--exportProfile``: ``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}, ...]``;
  ``count`` is the number of profiled iterations; ``medianMs`` exists from TensorRT 8.2. Layer names are
  written by trtexec without JSON escaping, so a name with a quote or backslash makes the file invalid
  JSON: the parser then falls back to a tolerant scan of the records.
- ``--exportTimes``: a list of per-query records with keys ``startEnqMs, endEnqMs, startH2dMs, endH2dMs,
  startComputeMs, endComputeMs, startD2hMs, endD2hMs, h2dMs, computeMs, d2hMs, latencyMs`` and, in
  some versions, ``endToEndMs``.
- ``--exportLayerInfo``: ``{"Layers": [...], "Bindings": [...]}``; layers are names only (list of
  strings) unless the engine was built with ``--profilingVerbosity=detailed``, then dicts with
  ``Name, LayerType, Inputs, Outputs, ParameterType, TacticName/TacticValue, Metadata...``. Tensor
  formats are spelled long in TensorRT 8.x (``"Row major linear FP16 format"``, ``"Channel major FP16
  format where channel % 8 == 0"``) and short in 10.x (``"Half"``, ``"Float"``); ``Metadata`` (10.x)
  lists the ONNX nodes a layer came from, separated by U+001E (or U+001F inside Myelin regions).

Fused layers and Myelin (``ForeignNode``, ``__myl_*``, ``kgen``/``gemm`` layers) are kept as TensorRT
named them; :class:`LayerInfo` says so (``fused``, ``note``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from profiles.errors import ParseError
from profiles.trtexec.log import NUM, ProfileRow

#: Normalised precision of TensorRT tensor datatypes, long (8.x) and short (10.x) spellings.
_DTYPE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bBF16\b|\bBFloat16\b", re.I), "bf16"),
    (re.compile(r"\bFP16\b|\bHalf\b", re.I), "fp16"),
    (re.compile(r"\bFP32\b|\bFloat\b", re.I), "fp32"),
    (re.compile(r"\bFP8\b|\bE4M3\b", re.I), "fp8"),
    (re.compile(r"\bFP4\b|\bE2M1\b", re.I), "fp4"),
    (re.compile(r"\bUInt8\b", re.I), "uint8"),
    (re.compile(r"\bInt8\b", re.I), "int8"),
    (re.compile(r"\bInt4\b", re.I), "int4"),
    (re.compile(r"\bInt32\b", re.I), "int32"),
    (re.compile(r"\bInt64\b", re.I), "int64"),
    (re.compile(r"\bBool\b", re.I), "bool"),
]

_MYELIN_TYPES = {"Myelin", "kgen", "gemm", "MyelinLayer"}


def dtype_of_format(fmt: str | None) -> str | None:
    """Normalised datatype (``fp32``, ``fp16``, ``bf16``, ``int8``, ``fp8``, ``int32``, ``int64``, ``bool``...)
    of a TensorRT ``Format/Datatype`` string in either spelling; None when unknown."""
    if not fmt:
        return None
    for pat, name in _DTYPE_PATTERNS:
        if pat.search(fmt):
            return name
    return None


@dataclass(frozen=True)
class TensorInfo:
    """An input or output of a layer: ``dims`` as built (-1 = dynamic), ``format`` as printed,
    ``dtype`` normalised by :func:`dtype_of_format`."""

    name: str
    dims: list[int] | None = None
    format: str | None = None
    dtype: str | None = None
    location: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the ``details.inputs``/``outputs`` entries of stored layer rows)."""
        return {"name": self.name, "shape": self.dims, "format": self.format, "dtype": self.dtype, "location": self.location}


@dataclass(frozen=True)
class LayerInfo:
    """One engine layer from ``--exportLayerInfo``.

    Attributes:
        name: layer name as TensorRT printed it (fused layers keep their ``A + B`` names).
        layer_type: ``LayerType`` (``CaskConvolution``, ``Reformat``, ``kgen``...); None for names-only exports.
        precision: ``fp16``, ``int8``... from the first input's datatype (first output's when it has no
            input); ``"fp32->int8"`` style for Reformat/Quantize-like layers whose input and output
            datatypes differ. None when the export has no formats.
        tactic: ``TacticName`` (or ``TacticValue`` when no name).
        onnx_nodes: ONNX node names from ``Metadata`` (10.x), in order.
        fused: the layer is several ONNX nodes fused by TensorRT (``+`` in its name, several ONNX
            nodes in Metadata, a ``ForeignNode``/Myelin region, or a ``PWN(...)`` pointwise fusion).
        note: why ``fused``/what the layer is (Myelin region, reformat inserted by TensorRT...).
        params: the other keys of the export (``ParameterType``, ``Kernel``, ``StreamId``...).
    """

    name: str
    layer_type: str | None = None
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    precision: str | None = None
    tactic: str | None = None
    onnx_nodes: list[str] = field(default_factory=list)
    fused: bool = False
    note: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerInfoExport:
    """A parsed ``--exportLayerInfo`` file: ``detailed`` is False for a names-only export."""

    layers: list[LayerInfo]
    bindings: list[str]
    detailed: bool


@dataclass(frozen=True)
class ProfileExport:
    """A parsed ``--exportProfile`` file: ``count`` profiled iterations, one row per layer (ms)."""

    count: int | None
    rows: list[ProfileRow]
    tolerant: bool = False  # True when the file was not valid JSON and was scanned record by record


@dataclass(frozen=True)
class TimesExport:
    """A parsed ``--exportTimes`` file: one dict per timed query, keys as exported (ms, floats)."""

    records: list[dict[str, float]]

    def column(self, key: str) -> list[float]:
        """Values of ``key`` (e.g. ``latencyMs``, ``computeMs``) over the records that have it."""
        return [r[key] for r in self.records if key in r]

    def latency_ns(self, key: str = "latencyMs") -> list[int]:
        """Per-query ``key`` times as integer nanoseconds (rounded), for storing as raw samples."""
        return [int(round(v * 1e6)) for v in self.column(key)]


def fusion_note(name: str, layer_type: str | None = None, onnx_nodes: list[str] | None = None) -> tuple[bool, str | None]:
    """``(fused, note)`` for a TensorRT layer name (see :class:`LayerInfo`)."""
    nodes = onnx_nodes or []
    if "ForeignNode[" in name or (layer_type in _MYELIN_TYPES) or name.startswith("__myl") or "_myl" in name:
        return True, "Myelin region: TensorRT compiled these ONNX nodes together; its time is not split per node"
    if name.startswith("Reformatting CopyNode") or layer_type == "Reformat":
        return False, "reformat inserted by TensorRT (layout/precision conversion), no ONNX node"
    if name.startswith("PWN(") or name.startswith("PointWiseV2") or layer_type == "PointWiseV2":
        return True, "pointwise fusion: several elementwise ONNX nodes in one kernel"
    if " + " in name or len(nodes) > 1:
        return True, "fused layer: TensorRT merged these ONNX nodes into one kernel"
    return False, None


def _tensor(d: Any) -> TensorInfo:
    if not isinstance(d, dict):
        return TensorInfo(name=str(d))
    fmt = d.get("Format/Datatype")
    dims = d.get("Dimensions")
    return TensorInfo(
        name=str(d.get("Name", "")),
        dims=[int(x) for x in dims] if isinstance(dims, list) else None,
        format=fmt, dtype=dtype_of_format(fmt), location=d.get("Location"),
    )


def _layer_precision(layer_type: str | None, inputs: list[TensorInfo], outputs: list[TensorInfo]) -> str | None:
    in_dt = next((t.dtype for t in inputs if t.dtype), None)
    out_dt = next((t.dtype for t in outputs if t.dtype), None)
    if in_dt and out_dt and in_dt != out_dt and (layer_type in ("Reformat", "Quantize", "Dequantize") or not layer_type):
        return f"{in_dt}->{out_dt}"
    return in_dt or out_dt


def _layer(d: Any, source: str, idx: int) -> LayerInfo:
    if isinstance(d, str):
        fused, note = fusion_note(d)
        return LayerInfo(name=d, fused=fused, note=note)
    if not isinstance(d, dict) or "Name" not in d:
        raise ParseError(f"{source}: Layers[{idx}] is neither a layer name nor a dict with 'Name'")
    inputs = [_tensor(t) for t in d.get("Inputs", [])]
    outputs = [_tensor(t) for t in d.get("Outputs", [])]
    meta = d.get("Metadata") or ""
    nodes = [m.strip() for m in re.split("[\u001e\u001f]", meta) if m.strip()]
    nodes = [re.sub(r"^\[ONNX Layer: (.*)\]$", r"\1", n) for n in nodes]
    ltype = d.get("LayerType")
    fused, note = fusion_note(d["Name"], ltype, nodes)
    tactic = d.get("TacticName") or d.get("TacticValue")
    skip = {"Name", "LayerType", "Inputs", "Outputs", "Metadata", "TacticName"}
    return LayerInfo(
        name=str(d["Name"]), layer_type=ltype, inputs=inputs, outputs=outputs,
        precision=_layer_precision(ltype, inputs, outputs), tactic=str(tactic) if tactic is not None else None,
        onnx_nodes=nodes, fused=fused, note=note, params={k: v for k, v in d.items() if k not in skip},
    )


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{source}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def parse_layer_info(text: str | Any, source: str = "<layer info>") -> LayerInfoExport:
    """Parse an ``--exportLayerInfo`` file (text or already-loaded JSON).

    Raises:
        ParseError: not JSON, or no ``Layers`` list (names ``source``).
    """
    data = _load_json(text, source) if isinstance(text, str) else text
    if not isinstance(data, dict) or not isinstance(data.get("Layers"), list):
        raise ParseError(f"{source}: not a trtexec --exportLayerInfo file (no 'Layers' list)")
    layers = [_layer(d, source, i) for i, d in enumerate(data["Layers"])]
    detailed = any(isinstance(d, dict) for d in data["Layers"])
    bindings = [str(b) for b in data.get("Bindings", [])]
    return LayerInfoExport(layers=layers, bindings=bindings, detailed=detailed)


_PROFILE_REC_RE = re.compile(
    rf'\{{\s*"name"\s*:\s*"(?P<name>.*?)"\s*,\s*"timeMs"\s*:\s*(?P<t>{NUM})\s*,\s*"averageMs"\s*:\s*(?P<a>{NUM})'
    rf'(?:\s*,\s*"medianMs"\s*:\s*(?P<m>{NUM}))?\s*,\s*"percentage"\s*:\s*(?P<p>{NUM})\s*\}}',
    re.S,
)
_COUNT_RE = re.compile(r'\{\s*"count"\s*:\s*(\d+)\s*\}')


def parse_profile(text: str | Any, source: str = "<profile>") -> ProfileExport:
    """Parse an ``--exportProfile`` file (text or already-loaded JSON list).

    Falls back to a record-by-record scan when the text is not valid JSON (unescaped layer names).

    Raises:
        ParseError: neither JSON of the expected shape nor any profile record found (names ``source``).
    """
    data: Any
    if isinstance(text, str):
        try:
            data = json.loads(text, strict=False)
        except json.JSONDecodeError:
            rows = [ProfileRow(m["name"], float(m["t"]), float(m["a"]), float(m["m"]) if m["m"] else None, float(m["p"]))
                    for m in _PROFILE_REC_RE.finditer(text)]
            if not rows:
                raise ParseError(f"{source}: not a trtexec --exportProfile file (invalid JSON and no profile records)") from None
            c = _COUNT_RE.search(text)
            return ProfileExport(count=int(c.group(1)) if c else None, rows=rows, tolerant=True)
    else:
        data = text
    if not isinstance(data, list) or not data:
        raise ParseError(f"{source}: not a trtexec --exportProfile file (expected a JSON list)")
    count = None
    rows = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise ParseError(f"{source}: record {i} is not an object")
        if "count" in rec and "name" not in rec:
            count = int(rec["count"])
            continue
        if "name" not in rec or "averageMs" not in rec:
            raise ParseError(f"{source}: record {i} has no 'name'/'averageMs' (not an --exportProfile record)")
        rows.append(ProfileRow(str(rec["name"]), _f(rec.get("timeMs")), _f(rec.get("averageMs")),
                               _f(rec.get("medianMs")), _f(rec.get("percentage"))))
    return ProfileExport(count=count, rows=rows)


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


_TIMES_KEYS = {"startEnqMs", "endEnqMs", "latencyMs", "computeMs"}


def parse_times(text: str | Any, source: str = "<times>") -> TimesExport:
    """Parse an ``--exportTimes`` file (text or already-loaded JSON list).

    Raises:
        ParseError: not a list of records with ``latencyMs``/``computeMs`` (names ``source`` and the record).
    """
    data = _load_json(text, source) if isinstance(text, str) else text
    if not isinstance(data, list):
        raise ParseError(f"{source}: not a trtexec --exportTimes file (expected a JSON list)")
    recs: list[dict[str, float]] = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or not (_TIMES_KEYS & rec.keys()):
            raise ParseError(f"{source}: record {i} is not an --exportTimes record (no startEnqMs/latencyMs/computeMs)")
        recs.append({k: float(v) for k, v in rec.items() if isinstance(v, (int, float))})
    return TimesExport(records=recs)


@dataclass(frozen=True)
class MergedLayer:
    """A layer with its timing (from a profile) and its description (from layer info), joined by name.

    ``timing`` or ``info`` is None when only one of the two files had the layer.
    """

    idx: int
    name: str
    timing: ProfileRow | None
    info: LayerInfo | None

    @property
    def fused(self) -> bool:
        """True for fused/Myelin layers (from layer info, else from the name)."""
        return self.info.fused if self.info else fusion_note(self.name)[0]

    @property
    def note(self) -> str | None:
        """Why the layer is fused / what it is."""
        return self.info.note if self.info else fusion_note(self.name)[1]


def merge_layers(profile: list[ProfileRow] | None, info: LayerInfoExport | None) -> list[MergedLayer]:
    """Join profile rows and layer-info layers by name, in profile order (then info-only layers).

    Duplicate names are matched in order of appearance.
    """
    infos: dict[str, list[LayerInfo]] = {}
    for li in info.layers if info else []:
        infos.setdefault(li.name, []).append(li)
    out: list[MergedLayer] = []
    for row in profile or []:
        cand = infos.get(row.name)
        out.append(MergedLayer(len(out), row.name, row, cand.pop(0) if cand else None))
    for name, rest in infos.items():
        for li in rest:
            out.append(MergedLayer(len(out), name, None, li))
    return out
