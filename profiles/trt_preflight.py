"""TensorRT pre-flight check of an ONNX model, before any engine build is tried (pure; no TensorRT needed).

It lists the nodes TensorRT's ONNX parser (onnx-tensorrt) will not import:

- nodes from a non-default domain (``com.microsoft``, ``ai.onnx.ml``, custom domains): the parser
  has no importer for them and falls back to looking up a TensorRT *plugin* of the same name, which
  exists only if the user loads one (``importFallbackPluginImporter`` / "Plugin not found" errors);
- default-domain operators the parser marks unsupported ("N") in onnx-tensorrt's support matrix.

The matrix below is onnx-tensorrt's ``docs/operators.md`` at commit
6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc ("TensorRT 8.5 supports operators up to Opset 17"). Newer
TensorRT releases import more operators (e.g. LayerNormalization), so an operator unsupported in
8.5 or absent from that matrix is reported as a *warning* naming the version checked, while a
non-default-domain node is an *error* unless a plugin is provided. Subgraphs (If/Loop/Scan
bodies) are checked too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from profiles.errors import ModelError

CHECKED_AGAINST = ("onnx-tensorrt docs/operators.md @ 6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc "
                   "(TensorRT 8.5 operator support matrix, opset <= 17)")
MATRIX_TRT_VERSION = "8.5"

#: Default-domain ONNX operators marked "N" (not supported) in the matrix named by CHECKED_AGAINST.
UNSUPPORTED_OPS: frozenset[str] = frozenset({
    "Bernoulli", "BitShift", "BlackmanWindow", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det",
    "DynamicQuantizeLinear", "HammingWindow", "HannWindow", "Hardmax", "IsInf", "LayerNormalization",
    "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss",
    "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "STFT",
    "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringNormalizer", "TfIdfVectorizer", "Unique",
})

#: Default-domain ONNX operators marked "Y" in the same matrix.
SUPPORTED_OPS: frozenset[str] = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "AveragePool",
    "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum",
    "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements",
    "GatherND", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual",
    "GridSample", "GRU", "HardSwish", "HardSigmoid", "Identity", "If", "ImageScaler", "InstanceNormalization",
    "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization",
    "LpPool", "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mod", "Mul", "Neg",
    "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu",
    "QuantizeLinear", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range",
    "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence",
    "RNN", "RoiAlign", "Round", "ScaledTanh", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu",
    "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign",
    "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK",
    "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})

DEFAULT_DOMAINS = ("", "ai.onnx")


def _nodes(graph: Any, path: str = "") -> Iterator[tuple[Any, str]]:
    for idx, node in enumerate(graph.node):
        yield node, f"{path}{node.name or f'#{idx}'}"
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                yield from _nodes(attr.g, f"{path}{node.name or f'#{idx}'}/{attr.name}/")
            for sub in attr.graphs:
                yield from _nodes(sub, f"{path}{node.name or f'#{idx}'}/{attr.name}/")


def _load(model: Any) -> Any:
    if isinstance(model, (str, Path)):
        import onnx

        try:
            return onnx.load(str(model), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError/OSError/...; all mean "unreadable"
            raise ModelError(f"{model}: cannot read ONNX model for the TensorRT pre-flight ({type(exc).__name__}: {exc})") from None
    if not hasattr(model, "graph"):
        raise ModelError(f"TensorRT pre-flight needs an onnx.ModelProto or a path, got {type(model).__name__}")
    return model


def tensorrt_preflight(model: Any, max_nodes_listed: int = 10) -> dict[str, Any]:
    """Check which nodes TensorRT's ONNX parser will not import (see the module docstring).

    Args:
        model: an ``onnx.ModelProto`` or a path to a ``.onnx`` file (external data is not loaded).
        max_nodes_listed: node names listed per issue (the count is always complete).

    Returns:
        ``{"ok": bool, "checked_against": str, "matrix_trt_version": "8.5", "issues": [{"severity":
        "error"|"warning", "domain", "op_type", "count", "nodes": [names], "reason"}], "summary": str}``;
        ``ok`` is False when any issue has severity ``error``.

    Raises:
        ModelError: the path cannot be read as ONNX (names the file).
    """
    proto = _load(model)
    local_functions = {(f.domain, f.name) for f in getattr(proto, "functions", [])}
    found: dict[tuple[str, str], list[str]] = {}
    for node, name in _nodes(proto.graph):
        found.setdefault((node.domain or "", node.op_type), []).append(name)
    issues: list[dict[str, Any]] = []
    for (domain, op), names in sorted(found.items()):
        if domain not in DEFAULT_DOMAINS:
            if (domain, op) in local_functions:
                sev, reason = "warning", (f"model-local ONNX function {domain}::{op}; the TensorRT parser must inline it "
                                          "(supported by recent TensorRT, not by 8.x)")
            else:
                sev, reason = "error", (f"operator {op} of domain {domain!r} is not an ONNX standard operator: TensorRT's "
                                        f"ONNX parser imports it only through a TensorRT plugin named {op!r} "
                                        "(otherwise 'Plugin not found'); use ONNX Runtime for this model")
        elif op in UNSUPPORTED_OPS:
            sev, reason = "warning", (f"{op} is marked unsupported in the TensorRT {MATRIX_TRT_VERSION} ONNX operator "
                                      "matrix; newer TensorRT may import it; if the build fails, use ONNX Runtime")
        elif op not in SUPPORTED_OPS:
            sev, reason = "warning", (f"{op} is not in the TensorRT {MATRIX_TRT_VERSION} ONNX operator matrix "
                                      "(newer operator); newer TensorRT may import it")
        else:
            continue
        issues.append({"severity": sev, "domain": domain, "op_type": op, "count": len(names),
                       "nodes": names[:max_nodes_listed], "reason": reason})
    errors = [i for i in issues if i["severity"] == "error"]
    if errors:
        summary = ("TensorRT cannot import " + ", ".join(f"{i['domain']}::{i['op_type']} x{i['count']}" for i in errors)
                   + " without plugins; use ONNX Runtime for this model")
    elif issues:
        summary = "TensorRT may not import: " + ", ".join(f"{i['op_type']} x{i['count']}" for i in issues)
    else:
        summary = f"all operators are in the TensorRT {MATRIX_TRT_VERSION} ONNX operator matrix"
    return {"ok": not errors, "checked_against": CHECKED_AGAINST, "matrix_trt_version": MATRIX_TRT_VERSION,
            "issues": issues, "summary": summary}
