"""Explain a failed (or noisy) TensorRT parse/build/run from its log.

:func:`diagnose` reads a trtexec or Polygraphy log and returns:

- ``headline``: the first *real* error: the most specific error line (an ONNX-parser error with the
  operator, node name and node index when the log names them, a TensorRT ``Error Code N``), never
  the generic follow-ups trtexec prints after it ("Failed to parse onnx file", "Engine creation
  failed"...). A runtime shape outside the optimization profile (Error Code 3, "exceed min ~ max
  range") is restated as binding/dim/supplied/allowed range.
- ``warnings``/``errors``: distinct messages with repeats collapsed and counted; two messages that
  differ only in numbers, hex values or quoted names count as the same (e.g. TensorRT's "Your ONNX
  model has been generated with INT64 weights ... cast down to INT32" printed once per tensor).
- ``suggestion``: what to do next; for a parser/build failure, running the model with ONNX Runtime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from profiles.trtexec.log import BANNER_RE, split_line
from profiles.trtexec.version import TrtVersion

#: trtexec's follow-up lines after the real error; never the headline.
GENERIC_ERRORS = (
    "Failed to parse onnx file",
    "Parsing model failed",
    "Engine creation failed",
    "Engine set up failed",
    "--- Begin node ---",
    "--- End node ---",
    "Network must have at least one output",
    "Error occurred during",
)

ORT_SUGGESTION = ("TensorRT could not build this model; run it with ONNX Runtime instead "
                  "(engine=onnxruntime, or `enginescope bench MODEL --engine onnxruntime`).")

_NODE_RE = re.compile(r'While parsing node number (\d+) \[([^\s\]]+)(?: -> "([^"]*)")?\]')
_NODE10_RE = re.compile(r"In node (-?\d+) with name: (\S+) and operator: (\S+)")
_NAME_RE = re.compile(r'^\s*name:\s*"([^"]*)"')
_OPTYPE_RE = re.compile(r'^\s*op_type:\s*"([^"]*)"')
_ERRCODE_RE = re.compile(r"Error Code (\d+): ([^(]+?)\s*\((.*)\)?\s*$")
_SHAPE_RE = re.compile(
    r"Supplied binding dimension \[([\d,\s]+)\] for bindings\[(\d+)\] exceed min ~ max range at index (\d+), "
    r"maximum dimension in profile is (\d+), minimum dimension in profile is (\d+), but supplied dimension is (\d+)"
)
_NORMALISE = [
    (re.compile(r"0x[0-9a-fA-F]+"), "<hex>"),
    (re.compile(r'"[^"]*"'), '"<name>"'),
    (re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<n>"),
]
#: a continuation of the previous message: indented, "[8] Assertion failed..." or a lone ")".
_CONTINUATION_RE = re.compile(r"^(?:\s+\S|\[\d+\]\s|\)\s*$)")
_TIMESTAMP_RE = re.compile(r"^\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\]\s*")


@dataclass(frozen=True)
class Collapsed:
    """A distinct message and how many times it (or a variant differing only in numbers/names) appeared."""

    text: str
    count: int


@dataclass
class Diagnosis:
    """What went wrong in a TensorRT log (see the module docstring).

    Attributes:
        failed: the log ends in ``&&&& FAILED``, or has errors and no ``&&&& PASSED``.
        headline: one line: the first real error, with operator/node/index/TensorRT version when known.
        operator / node_name / node_index: from the ONNX parser's "While parsing node number N [Op]"
            or "In node N with name: X and operator: Op" lines.
        trt_version: from the banner or ``TensorRT version:`` line.
        shape_error: for a shape outside the profile: ``{"binding", "dim", "supplied", "min", "max", "shape"}``.
    """

    failed: bool
    headline: str | None = None
    operator: str | None = None
    node_name: str | None = None
    node_index: int | None = None
    trt_version: str | None = None
    errors: list[Collapsed] = field(default_factory=list)
    warnings: list[Collapsed] = field(default_factory=list)
    shape_error: dict[str, object] | None = None
    suggestion: str | None = None


def _key(msg: str) -> str:
    k = msg
    for pat, rep in _NORMALISE:
        k = pat.sub(rep, k)
    return k


def _collapse(msgs: list[str]) -> list[Collapsed]:
    order: dict[str, list[object]] = {}
    for m in msgs:
        k = _key(m)
        if k in order:
            order[k][1] = int(order[k][1]) + 1  # type: ignore[call-overload]
        else:
            order[k] = [m, 1]
    return [Collapsed(str(v[0]), int(v[1])) for v in order.values()]  # type: ignore[call-overload]


def _clean(msg: str) -> str:
    return re.sub(r"^\[TRT\]\s*", "", msg).strip()


def diagnose(text: str) -> Diagnosis:
    """Diagnose a trtexec/Polygraphy log (pure; see the module docstring)."""
    errors: list[str] = []
    warnings: list[str] = []
    status: str | None = None
    version: str | None = None
    operator = node_name = None
    node_index: int | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        b = BANNER_RE.search(raw)
        if b:
            if b.group(1) in ("PASSED", "FAILED"):
                status = b.group(1)
            if b.group(2):
                version = str(TrtVersion.parse(b.group(2)))
            i += 1
            continue
        sev, msg = split_line(raw)
        if sev is None and "Error Code " in raw:
            sev, msg = "E", _TIMESTAMP_RE.sub("", raw.strip())
        if sev == "I" and msg.startswith("TensorRT version:"):
            try:
                version = str(TrtVersion.parse(msg.split(":", 1)[1]))
            except Exception:  # noqa: BLE001 - an unreadable version line is not an error of the model
                pass
        if sev in ("E", "W"):
            # continuation lines (no severity prefix) belong to this message
            j = i + 1
            extra: list[str] = []
            while j < len(lines) and split_line(lines[j])[0] is None and _CONTINUATION_RE.match(lines[j]):
                extra.append(lines[j].strip())
                j += 1
            full = _clean(msg)
            m = _NODE_RE.search(full) or _NODE10_RE.search(full)
            first_node = node_index is None
            if m and sev == "E" and first_node:
                if m.re is _NODE_RE:
                    node_index, operator = int(m.group(1)), m.group(2)
                else:
                    node_index, node_name, operator = int(m.group(1)), m.group(2), m.group(3)
            for x in extra if first_node or node_name is None else []:
                nm, om = _NAME_RE.match(x), _OPTYPE_RE.match(x)
                if nm and node_name is None:
                    node_name = nm.group(1)
                if om and operator is None:
                    operator = om.group(1)
            if extra and not any(_NAME_RE.match(x) or _OPTYPE_RE.match(x) for x in extra):
                full = full + " " + " ".join(extra)
            (errors if sev == "E" else warnings).append(full)
            i = j
            continue
        i += 1

    failed = status == "FAILED" or (bool(errors) and status != "PASSED")
    diag = Diagnosis(failed=failed, trt_version=version, operator=operator, node_name=node_name,
                     node_index=node_index, errors=_collapse(errors), warnings=_collapse(warnings))
    real = [e for e in errors if not any(g in e for g in GENERIC_ERRORS) and not _NODE_RE.search(e)
            and not _NODE10_RE.search(e)]
    first = real[0] if real else (errors[0] if errors else None)
    shape = next((s for s in (_SHAPE_RE.search(e) for e in errors) if s), None)
    if shape:
        dims = [int(d) for d in shape.group(1).split(",")]
        diag.shape_error = {"binding": int(shape.group(2)), "dim": int(shape.group(3)), "supplied": int(shape.group(6)),
                            "min": int(shape.group(5)), "max": int(shape.group(4)), "shape": dims}
        first = (f"input shape outside the optimization profile: binding {shape.group(2)} shape {dims}, dim "
                 f"{shape.group(3)} = {shape.group(6)} but the profile allows {shape.group(5)}..{shape.group(4)}")
    if first is not None:
        first = re.sub(r"^ModelImporter\.cpp:\d+:\s*", "", first)
        if "Plugin not found" in first:
            first = "unsupported operator: TensorRT's ONNX parser has no importer and no plugin for it: " + first
        parts = [first]
        where = []
        if operator:
            where.append(f"operator {operator}")
        if node_name:
            where.append(f"node {node_name!r}")
        if node_index is not None:
            where.append(f"node index {node_index}")
        if where:
            parts.append("(" + ", ".join(where) + ")")
        if version:
            parts.append(f"[TensorRT {version}]")
        diag.headline = " ".join(parts)
    if failed and not shape:
        diag.suggestion = ORT_SUGGESTION
    elif shape:
        diag.suggestion = "Run with shapes inside the engine's optimization profile, or rebuild the engine with a wider min/max."
    return diag
