"""Validate and inspect an ONNX model file without loading its external data.

:func:`inspect_onnx` is the one entry point: it refuses files that are not ONNX (empty, truncated, a text
file or another format renamed ``.onnx``) and models whose external data is missing, out of range or
outside the model's folder, then runs ``onnx.checker.check_model`` *by path* (so models over 2 GB, whose
weights live in external data files, are checked without reading the weights into memory) and returns
a :class:`ModelInspection` whose fields map 1:1 onto columns of ``db.models.Model``.

Conventions of the records:
- ``inputs``/``outputs``: ``{"name", "dtype", "shape"}``; ``dtype`` is the NumPy name where NumPy has one
  (``float32``, ``float64``, ``float16``, ``int64``, ``uint8``, ``bool``...) and ONNX's lower-case name
  otherwise (``bfloat16``, ``float8e4m3fn``, ``int4``, ``string``); non-tensor values are written
  ``seq(T)``, ``map(K,T)``, ``optional(T)``, ``sparse_tensor(T)``. ``shape`` lists dims as ``int``
  (fixed), ``str`` (symbolic, ONNX ``dim_param``) or ``None`` (unknown); ``shape`` itself is ``None``
  when the rank is unknown or the value is not a tensor. Initializers that IR < 4 files also list as
  graph inputs are not model inputs and are left out.
- ``op_histogram``: node count per operator over the main graph, control-flow subgraphs and model-local
  function bodies, keyed ``"OpType"`` for the default domain (``""``/``"ai.onnx"``) and
  ``"domain::OpType"`` otherwise.
- ``external_data``: one ``{"tensor", "location", "offset", "length"}`` per tensor stored outside the
  file (``offset`` 0 and ``length`` ``None`` when the file does not give them; ``None`` length means
  "to the end of the file").
- ``nondefault_domains``: operator domains other than the default ONNX domain used by nodes (e.g.
  ``com.microsoft`` contrib ops, ``ai.onnx.ml``); TensorRT's ONNX parser imports the default domain
  only (plus plugins), so they are flagged as likely unsupported by TensorRT.

No subprocesses, no database: this module is pure (``profiles`` imports nothing of ours but errors).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from pydantic import BaseModel, Field

from profiles.errors import ModelError

#: ONNX's default operator-set domain, under both of its spellings.
DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})

#: A protobuf file cannot exceed 2 GiB (protobuf's message limit); larger models use external data.
PROTOBUF_LIMIT_BYTES = 2**31 - 1

#: Largest rank of a model input/output accepted (NumPy's limit).
MAX_RANK = 64

# dtype sizes (bytes per element) for the external-data length check; sub-byte and string types skipped.
_ITEMSIZE = {
    "float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1, "int16": 2,
    "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1, "complex64": 8,
    "complex128": 16, "float8e4m3fn": 1, "float8e4m3fnuz": 1, "float8e5m2": 1, "float8e5m2fnuz": 1,
    "float8e8m0": 1,
}


class ModelInspection(BaseModel):
    """What :func:`inspect_onnx` found. Fields map 1:1 onto ``db.models.Model`` columns, except
    ``nondefault_domains`` and ``warnings``, which go into ``Model.preflight``.

    Attributes:
        opset: version of the default ONNX domain (``ai.onnx``) imported, or None if not imported.
        ir_version: the file's ONNX IR version.
        producer: ``"<producer_name> <producer_version>"``, or None when both are empty.
        inputs / outputs: ``[{"name": str, "dtype": str | None, "shape": [int | str | None] | None}]``.
        op_histogram: ``{"OpType" | "domain::OpType": node count}``.
        opset_imports: ``{domain: version}`` with the default domain written ``"ai.onnx"``.
        param_count: number of elements of all initializers (dense: product of dims; sparse: stored
            values), computed from dims, never from loaded data.
        external_data: ``[{"tensor": str, "location": str, "offset": int, "length": int | None}]``.
        size_bytes: bytes of the ``.onnx`` file plus every distinct external data file it references.
        nondefault_domains: sorted operator domains used by nodes other than ``ai.onnx``.
        warnings: human-readable notes (non-default domains, non-tensor I/O, unused imports...).
    """

    opset: int | None = None
    ir_version: int | None = None
    producer: str | None = None
    inputs: list[dict] = Field(default_factory=list)
    outputs: list[dict] = Field(default_factory=list)
    op_histogram: dict[str, int] = Field(default_factory=dict)
    opset_imports: dict[str, int] = Field(default_factory=dict)
    param_count: int = 0
    external_data: list[dict] = Field(default_factory=list)
    size_bytes: int = 0
    nondefault_domains: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def preflight(self) -> dict:
        """The ``Model.preflight`` dict: ``{"nondefault_domains": [...], "warnings": [...]}``."""
        return {"nondefault_domains": list(self.nondefault_domains), "warnings": list(self.warnings)}


# --------------------------------------------------------------------------------------------------
# Types and shapes


def dtype_name(elem_type: int) -> str | None:
    """NumPy-style name of an ONNX ``TensorProto.DataType`` value (``1`` -> ``"float32"``); ONNX's
    lower-case name where NumPy has none (``"bfloat16"``); None for UNDEFINED (0) or unknown values."""
    from onnx import TensorProto

    if elem_type == TensorProto.FLOAT:
        return "float32"
    if elem_type == TensorProto.DOUBLE:
        return "float64"
    try:
        name = TensorProto.DataType.Name(elem_type)
    except ValueError:
        return None
    return None if name == "UNDEFINED" else name.lower()


def _dims(shape_proto) -> list[int | str | None]:  # type: ignore[no-untyped-def]
    out: list[int | str | None] = []
    for d in shape_proto.dim:
        kind = d.WhichOneof("value")
        out.append(int(d.dim_value) if kind == "dim_value" else d.dim_param if kind == "dim_param" else None)
    return out


def _type_str(tp) -> str | None:  # type: ignore[no-untyped-def]
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return dtype_name(tp.tensor_type.elem_type)
    if kind == "sparse_tensor_type":
        return f"sparse_tensor({dtype_name(tp.sparse_tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({_type_str(tp.sequence_type.elem_type)})"
    if kind == "map_type":
        return f"map({dtype_name(tp.map_type.key_type)},{_type_str(tp.map_type.value_type)})"
    if kind == "optional_type":
        return f"optional({_type_str(tp.optional_type.elem_type)})"
    return None


def _value_info(vi) -> dict:  # type: ignore[no-untyped-def]
    tp = vi.type
    kind = tp.WhichOneof("value")
    shape: list[int | str | None] | None = None
    if kind == "tensor_type" and tp.tensor_type.HasField("shape"):
        shape = _dims(tp.tensor_type.shape)
    elif kind == "sparse_tensor_type" and tp.sparse_tensor_type.HasField("shape"):
        shape = _dims(tp.sparse_tensor_type.shape)
    return {"name": vi.name, "dtype": _type_str(tp), "shape": shape}


# --------------------------------------------------------------------------------------------------
# Walking graphs


def _graphs(model) -> Iterator:  # type: ignore[no-untyped-def]
    """The main graph and every control-flow subgraph (If/Loop/Scan bodies), depth first."""
    stack = [model.graph]
    for fn in model.functions:
        stack.extend(_subgraphs_of_nodes(fn.node))
    while stack:
        g = stack.pop()
        yield g
        stack.extend(_subgraphs_of_nodes(g.node))


def _subgraphs_of_nodes(nodes) -> list:  # type: ignore[no-untyped-def]
    from onnx import AttributeProto

    found = []
    for n in nodes:
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                found.append(a.g)
            elif a.type == AttributeProto.GRAPHS:
                found.extend(a.graphs)
    return found


def _all_nodes(model) -> Iterator:  # type: ignore[no-untyped-def]
    for g in _graphs(model):
        yield from g.node
    for fn in model.functions:
        yield from fn.node


def _all_tensors(model) -> Iterator:  # type: ignore[no-untyped-def]
    """Every TensorProto that may hold data: initializers, sparse initializers' values/indices and
    tensor-valued attributes, in all graphs and function bodies."""
    from onnx import AttributeProto

    for g in _graphs(model):
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield sp.values
            yield sp.indices
    for n in _all_nodes(model):
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR:
                yield a.t
            elif a.type == AttributeProto.TENSORS:
                yield from a.tensors
            elif a.type == AttributeProto.SPARSE_TENSOR:
                yield a.sparse_tensor.values
                yield a.sparse_tensor.indices


# --------------------------------------------------------------------------------------------------
# Sniffing what a non-ONNX file is


def _sniff_other_format(head: bytes) -> str | None:
    """Name the format of a file that is not an ONNX protobuf, from its first bytes; None if unknown."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return ("a ZIP archive (a PyTorch .pt/.pth checkpoint is one: export it with torch.onnx.export; "
                "an archive holding an ONNX model must be uploaded under a .zip name)")
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a Keras .h5 model? convert it with tf2onnx)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file (decompress it first)"
    if head[4:8] == b"TFL3":
        return "a TensorFlow Lite flatbuffer (convert it with tf2onnx)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (a PyTorch/scikit-learn object? export it to ONNX first)"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors weight file (weights only, no graph: export the model to ONNX)"
    if b"\x00" not in head[:512]:
        try:
            text = head[:512].decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        # ONNX protobufs start with field tags (0x08 ir_version, 0x12/0x1a/0x22/0x3a...), never with
        # printable text over many bytes; a text prefix means a text file renamed .onnx.
        if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text[:64]):
            first = text.strip().splitlines()[0][:60] if text.strip() else ""
            return f"a text file (it starts with {first!r}), not a binary ONNX protobuf"
    return None


# --------------------------------------------------------------------------------------------------
# External data


def _unsafe_location_reason(location: str) -> str | None:
    """Why an external-data ``location`` may not be used, or None when it is a plain relative path."""
    if not location:
        return "the location is empty"
    if "\x00" in location:
        return "the location contains a NUL byte"
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or re.match(
        r"^[A-Za-z]:", location
    ) or location.startswith("\\"):
        return "the location is an absolute path"
    parts = re.split(r"[\\/]+", location)
    if ".." in parts:
        return "the location contains '..' and escapes the model's folder"
    return None


def external_data_refs(model) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every external-data reference of a loaded ``ModelProto`` (loaded with
    ``load_external_data=False``): ``[{"tensor", "location", "offset", "length"}]`` in file order.

    ``offset`` defaults to 0 and ``length`` to None ("to the end of the file"), as ONNX reads them.

    Raises:
        ModelError: a non-integer offset/length (names the tensor).
    """
    from onnx import TensorProto

    refs = []
    for t in _all_tensors(model):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") not in (None, "") else None
        except ValueError:
            raise ModelError(
                f"tensor {t.name!r}: external data offset/length are not integers "
                f"(offset={info.get('offset')!r}, length={info.get('length')!r})"
            ) from None
        refs.append({"tensor": t.name, "location": info.get("location", ""), "offset": offset,
                     "length": length, "_dims": list(t.dims), "_dtype": dtype_name(t.data_type)})
    return refs


def check_external_data(onnx_path: Path, refs: list[dict]) -> dict[str, Path]:
    """Check every external-data reference against the files beside ``onnx_path``.

    A location must be relative, without ``..``, and resolve (symlinks followed) to a regular file
    inside the model's folder; ``offset + length`` must lie within that file; ``length`` must equal
    the tensor's element count times its dtype size (for fixed-size dtypes).

    Returns:
        ``{location: resolved absolute path}`` for every distinct location.

    Raises:
        ModelError: naming the tensor and the location (and, for a missing file, the folder searched).
    """
    base = onnx_path.parent.resolve()
    files: dict[str, Path] = {}
    missing: dict[str, list[str]] = {}
    for ref in refs:
        loc, tensor = ref["location"], ref["tensor"]
        reason = _unsafe_location_reason(loc)
        if reason:
            raise ModelError(f"{onnx_path.name}: tensor {tensor!r} refers to external data {loc!r}: {reason}; refused")
        if loc not in files:
            target = base / loc
            if not target.exists() and not target.is_symlink():
                missing.setdefault(loc, []).append(tensor)
                continue
            resolved = target.resolve()
            if not resolved.is_relative_to(base):
                raise ModelError(
                    f"{onnx_path.name}: tensor {tensor!r} refers to external data {loc!r}, a link that "
                    f"points outside the model's folder ({resolved}); refused"
                )
            if not resolved.is_file():
                raise ModelError(f"{onnx_path.name}: tensor {tensor!r}: external data {loc!r} is not a regular file")
            files[loc] = resolved
    if missing:
        parts = [
            f"tensor {ts[0]!r}" + (f" (and {len(ts) - 1} more)" if len(ts) > 1 else "") + f" needs missing file {loc!r}"
            for loc, ts in missing.items()
        ]
        raise ModelError(f"{onnx_path.name}: external data not found in {base}: " + "; ".join(parts))
    sizes = {loc: p.stat().st_size for loc, p in files.items()}
    for ref in refs:
        loc, tensor, off, length = ref["location"], ref["tensor"], ref["offset"], ref["length"]
        size = sizes[loc]
        end = size if length is None else off + length
        if off < 0 or (length is not None and length < 0) or end > size:
            raise ModelError(
                f"{onnx_path.name}: tensor {tensor!r} reads bytes {off}..{end} of {loc!r}, but that file "
                f"has {size} bytes (truncated or wrong data file)"
            )
        itemsize = _ITEMSIZE.get(ref.get("_dtype") or "")
        if itemsize is not None:
            expected = math.prod(ref.get("_dims") or []) * itemsize
            if end - off != expected:
                raise ModelError(
                    f"{onnx_path.name}: tensor {tensor!r} ({ref['_dtype']}, dims {ref['_dims']}) needs "
                    f"{expected} bytes but its external data in {loc!r} spans {end - off} bytes"
                )
    return files


# --------------------------------------------------------------------------------------------------
# The entry point


def load_proto(path: Path):  # type: ignore[no-untyped-def]
    """Read ``path`` as a binary ONNX ``ModelProto`` without its external data.

    Raises:
        ModelError: missing/empty file, another format (named when recognised), a text file, a file
            over protobuf's 2 GiB limit, or bytes that do not parse (truncated/corrupt), or a parsed
            message that is not a model (no IR version or no graph).
    """
    import onnx
    from google.protobuf.message import DecodeError

    name = path.name
    if not path.exists():
        raise ModelError(f"{name}: file not found ({path})")
    if not path.is_file():
        raise ModelError(f"{name}: not a regular file ({path})")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{name}: the file is empty (0 bytes); the upload or copy did not complete")
    with path.open("rb") as fh:
        head = fh.read(4096)
    other = _sniff_other_format(head)
    if other:
        raise ModelError(f"{name}: not an ONNX model: it is {other}")
    if size > PROTOBUF_LIMIT_BYTES:
        raise ModelError(
            f"{name}: {size} bytes is over protobuf's 2 GiB limit for one file; save the model with "
            f"external data (onnx.save(..., save_as_external_data=True)) and upload the .onnx with its data files"
        )
    try:
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except DecodeError as exc:
        if "MaxDepth" in str(exc) or "recursion" in str(exc).lower():
            raise ModelError(f"{name}: messages nested deeper than protobuf's limit (a deeply nested graph or a "
                             f"protobuf bomb); refused") from None
        raise ModelError(
            f"{name}: not a valid ONNX protobuf ({size} bytes): the file is truncated or corrupt ({exc})"
        ) from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{name}: cannot be read as ONNX: {exc}") from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelError(
            f"{name}: parsed bytes are not an ONNX model (ir_version={model.ir_version}, "
            f"graph {'present' if model.HasField('graph') else 'missing'}): a truncated file or another format"
        )
    return model


def op_histogram(model) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Node count per operator of a loaded ``onnx.ModelProto``, over the main graph, control-flow subgraphs
    and model-local functions: ``{"OpType" | "domain::OpType": count}``, most frequent first. The sum is
    the model's node count."""
    hist: Counter[str] = Counter()
    for n in _all_nodes(model):
        hist[n.op_type if n.domain in DEFAULT_DOMAINS else f"{n.domain}::{n.op_type}"] += 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def inspect_onnx(path: Path) -> ModelInspection:
    """Validate the ONNX file at ``path`` and describe it (see the module docstring for the records).

    Steps: :func:`load_proto` (format sniffing, protobuf parse without external data),
    :func:`check_external_data` (safe, present, in-range), ``onnx.checker.check_model(str(path))`` by
    path (the way that works for models over 2 GB), then the description.

    Raises:
        ModelError: with a message naming the file and, where one is at fault, the tensor or location.
    """
    import onnx

    path = Path(path)
    model = load_proto(path)
    refs = external_data_refs(model)
    files = check_external_data(path, refs)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path.name}: the ONNX checker rejected the model: {first}") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path.name}: the ONNX checker could not read the model: {exc}") from None

    g = model.graph
    init_names = {t.name for t in g.initializer} | {sp.values.name for sp in g.sparse_initializer}
    inputs = [_value_info(vi) for vi in g.input if vi.name not in init_names]
    outputs = [_value_info(vi) for vi in g.output]
    for kind, values in (("input", inputs), ("output", outputs)):
        for v in values:
            if v["shape"] is not None and len(v["shape"]) > MAX_RANK:
                raise ModelError(f"{path.name}: {kind} {v['name']!r} has rank {len(v['shape'])}; at most {MAX_RANK} "
                                 f"dims are supported")

    opset_imports: dict[str, int] = {}
    for imp in model.opset_import:
        opset_imports["ai.onnx" if imp.domain in DEFAULT_DOMAINS else imp.domain] = int(imp.version)

    local_functions = {(f.domain, f.name) for f in model.functions}
    hist = Counter(op_histogram(model))
    domain_ops: dict[str, set[str]] = {}
    for n in _all_nodes(model):
        dom = n.domain
        if dom not in DEFAULT_DOMAINS and (dom, n.op_type) not in local_functions:
            domain_ops.setdefault(dom, set()).add(n.op_type)

    param_count = 0
    for gr in _graphs(model):
        param_count += sum(math.prod(t.dims) for t in gr.initializer)
        param_count += sum(math.prod(sp.values.dims) for sp in gr.sparse_initializer)

    size_bytes = path.stat().st_size + sum(p.stat().st_size for p in set(files.values()))

    warnings: list[str] = []
    nondefault = sorted(domain_ops)
    for dom in nondefault:
        ops = sorted(domain_ops[dom])
        count = sum(v for k, v in hist.items() if k.startswith(f"{dom}::"))
        warnings.append(
            f"{count} node(s) use operator domain {dom!r} ({', '.join(ops[:8])}{', ...' if len(ops) > 8 else ''}): "
            f"likely unsupported by TensorRT's ONNX parser (it imports the default ai.onnx domain, plus plugins)"
        )
    used_domains = {"ai.onnx" if n.domain in DEFAULT_DOMAINS else n.domain for n in _all_nodes(model)}
    unused = sorted(d for d in opset_imports if d not in used_domains and d != "ai.onnx")
    if unused:
        warnings.append(f"opset imports not used by any node: {', '.join(unused)}")
    if model.functions:
        warnings.append(
            f"{len(model.functions)} model-local function(s) ({', '.join(sorted(f.name for f in model.functions)[:8])}): "
            f"engines inline them; check that yours does"
        )
    for kind, values in (("input", inputs), ("output", outputs)):
        for v in values:
            if v["dtype"] is None or "(" in (v["dtype"] or ""):
                warnings.append(f"{kind} {v['name']!r} has type {v['dtype'] or 'unknown'}, not a plain tensor")
    if "ai.onnx" not in opset_imports:
        warnings.append("the model does not import the default ai.onnx operator set")

    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x).strip() or None
    return ModelInspection(
        opset=opset_imports.get("ai.onnx"),
        ir_version=int(model.ir_version),
        producer=producer,
        inputs=inputs,
        outputs=outputs,
        op_histogram=dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        opset_imports=opset_imports,
        param_count=int(param_count),
        external_data=[{k: v for k, v in r.items() if not k.startswith("_")} for r in refs],
        size_bytes=int(size_bytes),
        nondefault_domains=nondefault,
        warnings=warnings,
    )


def referenced_locations(path: Path) -> list[str]:
    """Distinct external-data locations the ONNX file at ``path`` references, in first-use order,
    each checked to be a safe relative path.

    Raises:
        ModelError: as :func:`load_proto`, or an unsafe location (names the tensor).
    """
    model = load_proto(Path(path))
    seen: dict[str, None] = {}
    for ref in external_data_refs(model):
        reason = _unsafe_location_reason(ref["location"])
        if reason:
            raise ModelError(
                f"{Path(path).name}: tensor {ref['tensor']!r} refers to external data {ref['location']!r}: {reason}; refused"
            )
        seen.setdefault(ref["location"], None)
    return list(seen)

