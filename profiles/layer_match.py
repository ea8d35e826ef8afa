"""Match the layers of two profiled runs (precisions, engines, imported TensorRT engines) and compute
per-layer speed-ups. Pure functions: no DB, no UI.

Layers are matched in three passes, each on the layers the previous passes left over:

1. ``name``: identical layer names (ONNX node names survive ONNX Runtime profiling and TensorRT's
   ONNX parser, so the same graph run at two precisions matches almost entirely here).
2. ``fused``: TensorRT fuses nodes and names the fused layer after them (``"Conv_0 + Relu_1"``,
   ``"PWN(PWN(Sigmoid_2), Mul_3)"``). Each name is split into its component node names; layers of the
   two runs that share a component are grouped (connected components of the "shares a node" graph), and
   each group is one match whose time is the sum of its layers' times. TensorRT's own inserted layers
   (``Reformatting CopyNode ...``, Myelin ``{ForeignNode[...]}``) are not split.
3. ``op_shape``: what is still unmatched is matched by (canonical op type, input shapes, output shapes):
   the k-th occurrence of a signature in the reference run matches the k-th occurrence in the other run
   (graph order). Op types are canonicalised so that ONNX op types, ONNX Runtime's fused/quantized
   kernels and TensorRT layer types meet (``Conv``/``ConvInteger``/``CaskConvolution`` -> ``conv``).
   When neither side has shapes the method is reported as ``op_order``.
4. ``op_order``: for a canonical op kind with the SAME number of still-unmatched layers on both sides
   (e.g. the 4 convolutions of an fp32 run, renamed ``Conv_0_quant`` by int8 quantization), the k-th
   matches the k-th in graph order whatever the shapes (weaker evidence, said so in the UI).

Whatever is left is reported as ``only_ref`` / ``only_other``.

Speed-up of a match = reference time / other time (> 1: the other run is faster on that layer).
Times are milliseconds per inference.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

MatchMethod = Literal["name", "fused", "op_shape", "op_order", "only_ref", "only_other"]

Shape = tuple[Any, ...]

#: Lower-cased ONNX op types / TensorRT layer types -> canonical kind used by the ``op_shape`` pass.
_CANONICAL_OP: dict[str, str] = {
    "conv": "conv", "convolution": "conv", "caskconvolution": "conv", "convactpool": "conv",
    "convtranspose": "deconv", "deconvolution": "deconv", "caskdeconvolution": "deconv",
    "maxpool": "pool", "averagepool": "pool", "globalaveragepool": "pool", "globalmaxpool": "pool",
    "pooling": "pool", "tiledpooling": "pool", "caskpooling": "pool",
    "matmul": "matmul", "gemm": "matmul", "matrixmultiply": "matmul", "caskgemmmatrixmultiply": "matmul",
    "fullyconnected": "matmul", "caskgemmconvolution": "matmul", "gemm_kernel": "matmul",
    "convinteger": "conv", "qlinearconv": "conv", "fusedconv": "conv", "nchwcconv": "conv",
    "matmulinteger": "matmul", "qlinearmatmul": "matmul", "fusedmatmul": "matmul", "fusedgemm": "matmul",
    "dynamicquantizematmul": "matmul", "matmulintegertofloat": "matmul",
    "relu": "activation", "sigmoid": "activation", "tanh": "activation", "leakyrelu": "activation",
    "clip": "activation", "activation": "activation", "hardsigmoid": "activation", "elu": "activation",
    "add": "elementwise", "sub": "elementwise", "mul": "elementwise", "div": "elementwise",
    "pow": "elementwise", "max": "elementwise", "min": "elementwise", "elementwise": "elementwise",
    "pointwise": "elementwise", "pointwisev2": "elementwise",
    "reshape": "shuffle", "transpose": "shuffle", "flatten": "shuffle", "squeeze": "shuffle",
    "unsqueeze": "shuffle", "shuffle": "shuffle",
    "softmax": "softmax", "reducemean": "reduce", "reducesum": "reduce", "reduce": "reduce",
    "concat": "concat", "concatenation": "concat", "batchnormalization": "scale", "scale": "scale",
    "quantizelinear": "quantize", "dequantizelinear": "dequantize",
    "reformat": "reformat", "noop": "noop", "layernormalization": "normalization", "normalization": "normalization",
    # PyTorch operators (the torch engine's rows: top-level aten ops)
    "aten::linear": "matmul", "aten::addmm": "matmul", "aten::mm": "matmul", "aten::bmm": "matmul",
    "aten::matmul": "matmul", "aten::conv2d": "conv", "aten::conv1d": "conv", "aten::convolution": "conv",
    "aten::_convolution": "conv", "aten::conv_transpose2d": "deconv", "aten::relu": "activation",
    "aten::relu_": "activation", "aten::gelu": "activation", "aten::silu": "activation",
    "aten::sigmoid": "activation", "aten::tanh": "activation", "aten::add": "elementwise",
    "aten::add_": "elementwise", "aten::mul": "elementwise", "aten::sub": "elementwise", "aten::div": "elementwise",
    "aten::pow": "elementwise", "aten::softmax": "softmax", "aten::_softmax": "softmax",
    "aten::layer_norm": "normalization", "aten::view": "shuffle", "aten::reshape": "shuffle",
    "aten::transpose": "shuffle", "aten::permute": "shuffle", "aten::flatten": "shuffle",
    "aten::max_pool2d": "pool", "aten::avg_pool2d": "pool", "aten::adaptive_avg_pool2d": "pool",
    "aten::batch_norm": "scale", "aten::cat": "concat", "aten::mean": "reduce", "aten::sum": "reduce",
}

_SPLIT = re.compile(r"\s*(?:\s\+\s|,)\s*")


@dataclass(frozen=True)
class LayerRecord:
    """One layer (or node) of one profiled run.

    Attributes:
        name: layer/node name as the tool printed it.
        op_type: ONNX op type or TensorRT layer type (None when unknown).
        time_ms: mean time per inference, milliseconds.
        input_shapes / output_shapes: shapes of the layer's tensors in order (dims int or str);
            empty when the tool did not report them.
        precision: the layer's precision when known (TensorRT reports it per layer).
    """

    name: str
    op_type: str | None
    time_ms: float
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    precision: str | None = None


@dataclass(frozen=True)
class LayerMatch:
    """A matched group of layers of the reference run and the other run.

    ``ref_ms`` / ``other_ms``: summed time per inference (ms) of the group on each side (None on the
    side that has no layer). ``method``: which pass matched it (see module doc).
    """

    ref_names: tuple[str, ...]
    other_names: tuple[str, ...]
    method: MatchMethod
    op_type: str | None
    ref_ms: float | None
    other_ms: float | None

    @property
    def speedup(self) -> float | None:
        """``ref_ms / other_ms`` (> 1: the other run is faster); None when either side is missing or 0."""
        if self.ref_ms is None or self.other_ms is None or self.other_ms <= 0:
            return None
        return self.ref_ms / self.other_ms

    @property
    def label(self) -> str:
        """Display name: the reference layer name(s), else the other run's."""
        names = self.ref_names or self.other_names
        return " | ".join(names)


def canonical_op(op_type: str | None) -> str | None:
    """Canonical kind of an ONNX op type or TensorRT layer type (``"CaskConvolution"`` -> ``"conv"``);
    unknown types are returned lower-cased, None stays None."""
    if op_type is None:
        return None
    key = op_type.strip().lower()
    return _CANONICAL_OP.get(key, key)


def fused_components(name: str) -> frozenset[str]:
    """Node names a (possibly fused) TensorRT layer name is made of.

    ``"Conv_0 + Relu_1"`` -> ``{"Conv_0", "Relu_1"}``; ``"PWN(PWN(Sigmoid_2), Mul_3)"`` ->
    ``{"Sigmoid_2", "Mul_3"}``; a plain node name -> ``{name}``. TensorRT-inserted layers
    (``Reformatting CopyNode ...``, ``{ForeignNode[...]}``) -> empty set (they are not made of nodes
    that another run would have).
    """
    if name.startswith("Reformatting CopyNode") or "ForeignNode" in name:
        return frozenset()
    text = re.sub(r"\bPWN\(", "", name).replace(")", " ").replace("(", " ")
    parts = [p.strip() for p in _SPLIT.split(text)]
    return frozenset(p for p in parts if p)


def _shape_of(entry: Any) -> Shape | None:
    if isinstance(entry, Mapping):
        for key in ("shape", "dims", "dimensions", "Dimensions"):
            if key in entry and isinstance(entry[key], (list, tuple)):
                return tuple(entry[key])
        return None
    if isinstance(entry, (list, tuple)):
        return tuple(entry)
    return None


def shapes_from_details(details: Mapping[str, Any] | None) -> tuple[tuple[Shape, ...], tuple[Shape, ...]]:
    """Input and output shapes from a ``layer_timings.details`` JSON.

    Accepts ``details["inputs"]`` / ``details["outputs"]`` (also ``Inputs``/``Outputs`` as trtexec
    writes them) as lists of ``{"name", "shape"|"dims"|"dimensions"|"Dimensions": [...]}`` or of plain
    shape lists. Entries without a shape are skipped.
    """
    details = details or {}
    result = []
    for key in ("inputs", "outputs"):
        raw = details.get(key)
        if raw is None:
            raw = details.get(key.capitalize())
        shapes = [s for s in (_shape_of(e) for e in (raw or [])) if s is not None]
        result.append(tuple(shapes))
    return result[0], result[1]


def _sum(layers: Iterable[LayerRecord]) -> float:
    return float(sum(layer.time_ms for layer in layers))


def _op_of(layers: Sequence[LayerRecord]) -> str | None:
    ops = list(dict.fromkeys(layer.op_type for layer in layers if layer.op_type))
    return "+".join(ops) if ops else None


def match_layers(ref: Sequence[LayerRecord], other: Sequence[LayerRecord]) -> list[LayerMatch]:
    """Match the layers of ``other`` to those of ``ref`` (see the module doc for the three passes).

    Returns matches in the reference run's layer order, followed by the other run's unmatched layers.
    Every input layer appears in exactly one match. Duplicate names within a run are matched in order.
    """
    ref_left = list(range(len(ref)))
    other_left = list(range(len(other)))
    matches: list[tuple[int, LayerMatch]] = []  # (ref position for ordering, match)

    # Pass 1: identical names (k-th duplicate to k-th duplicate).
    by_name: dict[str, list[int]] = defaultdict(list)
    for j in other_left:
        by_name[other[j].name].append(j)
    used_other: set[int] = set()
    still_ref: list[int] = []
    for i in ref_left:
        cands = by_name.get(ref[i].name)
        if cands:
            j = cands.pop(0)
            used_other.add(j)
            matches.append((i, LayerMatch((ref[i].name,), (other[j].name,), "name",
                                          ref[i].op_type or other[j].op_type, ref[i].time_ms, other[j].time_ms)))
        else:
            still_ref.append(i)
    ref_left = still_ref
    other_left = [j for j in other_left if j not in used_other]

    # Pass 2: fused names sharing node components (connected components of a bipartite graph).
    comps_ref = {i: fused_components(ref[i].name) for i in ref_left}
    comps_other = {j: fused_components(other[j].name) for j in other_left}
    owner: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for i, cs in comps_ref.items():
        for c in cs:
            owner[c].append(("r", i))
    for j, cs in comps_other.items():
        for c in cs:
            owner[c].append(("o", j))
    seen: set[tuple[str, int]] = set()
    grouped_ref: set[int] = set()
    grouped_other: set[int] = set()
    for i in ref_left:
        if ("r", i) in seen or not comps_ref[i]:
            continue
        stack, group = [("r", i)], []
        seen.add(("r", i))
        while stack:
            node = stack.pop()
            group.append(node)
            comps = comps_ref[node[1]] if node[0] == "r" else comps_other[node[1]]
            for c in comps:
                for nb in owner[c]:
                    if nb not in seen:
                        seen.add(nb)
                        stack.append(nb)
        g_ref = sorted(n for s, n in group if s == "r")
        g_other = sorted(n for s, n in group if s == "o")
        if g_ref and g_other:
            grouped_ref.update(g_ref)
            grouped_other.update(g_other)
            rl = [ref[k] for k in g_ref]
            ol = [other[k] for k in g_other]
            matches.append((g_ref[0], LayerMatch(tuple(x.name for x in rl), tuple(x.name for x in ol), "fused",
                                                 _op_of(rl) or _op_of(ol), _sum(rl), _sum(ol))))
    ref_left = [i for i in ref_left if i not in grouped_ref]
    other_left = [j for j in other_left if j not in grouped_other]

    # Pass 3: canonical op type + shapes, k-th occurrence to k-th occurrence.
    def sig(layer: LayerRecord) -> tuple[Any, ...]:
        return (canonical_op(layer.op_type), layer.input_shapes, layer.output_shapes)

    by_sig: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for j in other_left:
        if other[j].op_type:
            by_sig[sig(other[j])].append(j)
    used_other = set()
    unmatched_ref: list[int] = []
    for i in ref_left:
        cands = by_sig.get(sig(ref[i])) if ref[i].op_type else None
        if cands:
            j = cands.pop(0)
            used_other.add(j)
            has_shapes = bool(ref[i].input_shapes or ref[i].output_shapes)
            matches.append((i, LayerMatch((ref[i].name,), (other[j].name,), "op_shape" if has_shapes else "op_order",
                                          ref[i].op_type, ref[i].time_ms, other[j].time_ms)))
        else:
            unmatched_ref.append(i)
    other_left = [j for j in other_left if j not in used_other]

    # Pass 4: same count of leftover layers of one op kind on both sides -> k-th to k-th.
    kinds_ref: dict[str | None, list[int]] = defaultdict(list)
    kinds_other: dict[str | None, list[int]] = defaultdict(list)
    for i in unmatched_ref:
        kinds_ref[canonical_op(ref[i].op_type)].append(i)
    for j in other_left:
        kinds_other[canonical_op(other[j].op_type)].append(j)
    paired_ref: set[int] = set()
    paired_other: set[int] = set()
    for kind, r_idx in kinds_ref.items():
        o_idx = kinds_other.get(kind, [])
        if kind is None or len(r_idx) != len(o_idx):
            continue
        for i, j in zip(r_idx, o_idx, strict=True):
            paired_ref.add(i)
            paired_other.add(j)
            matches.append((i, LayerMatch((ref[i].name,), (other[j].name,), "op_order", ref[i].op_type,
                                          ref[i].time_ms, other[j].time_ms)))
    for i in unmatched_ref:
        if i not in paired_ref:
            matches.append((i, LayerMatch((ref[i].name,), (), "only_ref", ref[i].op_type, ref[i].time_ms, None)))
    matches.sort(key=lambda t: t[0])
    result = [m for _, m in matches]
    for j in other_left:
        if j not in paired_other:
            result.append(LayerMatch((), (other[j].name,), "only_other", other[j].op_type, None, other[j].time_ms))
    return result


def compare_runs(runs: Mapping[str, Sequence[LayerRecord]], reference: str) -> list[dict[str, Any]]:
    """Side-by-side table of the same layers across several runs, each matched against ``reference``.

    Args:
        runs: run label -> its layers (graph order). Must contain ``reference``.
        reference: label of the reference run (e.g. the fp32 run).

    Returns:
        One dict per reference layer group (plus rows for layers only other runs have) with keys
        ``layer``, ``op_type``, ``<ref label> ms``, and for every other label ``<label> ms``,
        ``<label> speed-up`` (ref/other) and ``<label> match`` (method). Times in ms per inference.

    Raises:
        KeyError: ``reference`` is not in ``runs``.
    """
    ref_layers = runs[reference]
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    order: list[tuple[str, ...]] = []

    def row_for(key: tuple[str, ...], op: str | None) -> dict[str, Any]:
        if key not in rows:
            rows[key] = {"layer": " | ".join(key[1:]), "op_type": op, f"{reference} ms": None}
            order.append(key)
        return rows[key]

    for layer in ref_layers:
        row_for(("r", layer.name), layer.op_type)[f"{reference} ms"] = layer.time_ms
    for label, layers in runs.items():
        if label == reference:
            continue
        for m in match_layers(ref_layers, layers):
            if m.ref_names:
                if len(m.ref_names) == 1:
                    row = row_for(("r", m.ref_names[0]), m.op_type)
                else:  # a fused group spanning several reference layers gets its own row
                    row = row_for(("r", *m.ref_names), m.op_type)
                    row[f"{reference} ms"] = m.ref_ms
            else:
                row = row_for(("o", f"{label}: {m.other_names[0]}"), m.op_type)
            row[f"{label} ms"] = m.other_ms
            row[f"{label} speed-up"] = m.speedup
            row[f"{label} match"] = m.method
    return [rows[k] for k in order]
