"""Reading PyTorch's ONNX exporter failures: which operator (or data-dependent expression) is at fault.

:func:`diagnose_export_error` takes the text of an exception raised by ``torch.onnx.export`` (both
exporters) and returns an :class:`ExportDiagnosis`. The patterns come from the messages PyTorch 2.13 prints:

- dynamo exporter, no ONNX function for an ATen operator (step 3/3, conversion)::

      DispatchError: No ONNX function found for <OpOverload(op='aten._linalg_eigh', overload='default')>

  -> kind ``unsupported_operator``, operator ``aten._linalg_eigh.default``;
- dynamo exporter, an ONNX function exists but failed on this node::

      Error when translating node %histc : [...] = call_function[target=torch.ops.aten.histc.default](...)

  -> kind ``conversion_error``, operator ``aten.histc.default``;
- ``torch.export`` (step 1/3) on a data-dependent value or shape::

      GuardOnDataDependentSymNode: Could not guard on data-dependent expression Eq(u0, 1) ...
      The following call raised this error:
        File "model.py", line 5, in forward
          if x.sum() > 0:

  -> kind ``data_dependent``, expression ``Eq(u0, 1)``, location ``model.py:5 in forward: if x.sum() > 0:``;
- TorchScript exporter::

      UnsupportedOperatorError: Exporting the operator 'aten::linalg_eigh' to ONNX opset version 18 is not supported

  -> kind ``unsupported_operator``, operator ``aten::linalg_eigh``.

Anything else is kind ``other``. ``summary`` quotes the exporter: its "## Exception summary" section when
there is one (the dynamo exporter writes it), else the first lines of the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Kinds of export failure :func:`diagnose_export_error` tells apart.
FAILURE_KINDS = ("unsupported_operator", "conversion_error", "data_dependent", "other")

#: Longest quote of the exporter's message kept in a diagnosis (characters).
MAX_SUMMARY_CHARS = 2500

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NO_FUNCTION = re.compile(r"No ONNX function found for <OpOverload\(op='([^']+)', overload='([^']+)'\)>")
_TRANSLATING = re.compile(r"Error when translating node %\S+ : .*?target=torch\.ops\.([\w.]+)\]?\(", re.DOTALL)
_TS_UNSUPPORTED = re.compile(r"Exporting the operator '([^']+)' to ONNX opset version (\d+) is not supported")
_DATA_DEP = re.compile(r"(?:Could not guard on data-dependent expression|Could not extract specialized integer from "
                       r"data-dependent expression|data-dependent expression)\s+(.+?)(?:\s+\(unhinted|\s*$|\.\s)",
                       re.MULTILINE)
_CALL_SITE = re.compile(r"The following call raised this error:\s*\n\s*File \"([^\"]+)\", line (\d+), in (\S+)\s*\n\s*(.+)")


@dataclass(frozen=True)
class ExportDiagnosis:
    """What an exporter message says.

    Attributes:
        kind: one of :data:`FAILURE_KINDS`.
        operator: the ATen operator at fault (``aten._linalg_eigh.default``, ``aten::linalg_eigh``) or None.
        expression: the data-dependent symbolic expression (``Eq(u0, 1)``) or None.
        location: ``file:line in function: code`` of the offending Python line when the message gives it.
        summary: the exporter's own words (see the module doc), ANSI colours removed.
    """

    kind: str
    operator: str | None
    expression: str | None
    location: str | None
    summary: str

    def headline(self) -> str:
        """One sentence naming the operator / expression, for an error message."""
        if self.kind == "unsupported_operator":
            return f"operator {self.operator} has no ONNX conversion in this exporter"
        if self.kind == "conversion_error":
            return f"converting operator {self.operator} to ONNX failed"
        if self.kind == "data_dependent":
            where = f" at {self.location}" if self.location else ""
            return (f"a data-dependent value or shape ({self.expression or 'unknown expression'}){where}: the exporter "
                    "cannot trace control flow or sizes that depend on tensor values")
        return "the exporter failed"


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (the dynamo exporter colours its step names)."""
    return _ANSI.sub("", text)


def _summary(text: str) -> str:
    start = text.find("## Exception summary")
    if start >= 0:
        end = text.find("(Refer to the full stack trace", start)
        body = text[start + len("## Exception summary"):end if end > 0 else None].strip()
    else:
        body = "\n".join(line for line in text.strip().splitlines()[:25])
    return body[:MAX_SUMMARY_CHARS] + (" [...]" if len(body) > MAX_SUMMARY_CHARS else "")


def diagnose_export_error(text: str) -> ExportDiagnosis:
    """Diagnose an exporter failure from its message (patterns in the module doc)."""
    t = strip_ansi(text or "")
    summary = _summary(t)
    m = _NO_FUNCTION.search(t)
    if m:
        return ExportDiagnosis("unsupported_operator", f"{m.group(1)}.{m.group(2)}", None, None, summary)
    m = _TS_UNSUPPORTED.search(t)
    if m:
        return ExportDiagnosis("unsupported_operator", m.group(1), None, None, summary)
    m = _DATA_DEP.search(t)
    if m:
        site = _CALL_SITE.search(t)
        location = f"{site.group(1).rsplit('/', 1)[-1]}:{site.group(2)} in {site.group(3)}: {site.group(4).strip()}" \
            if site else None
        return ExportDiagnosis("data_dependent", None, m.group(1).strip(), location, summary)
    m = _TRANSLATING.search(t)
    if m:
        return ExportDiagnosis("conversion_error", m.group(1), None, None, summary)
    return ExportDiagnosis("other", None, None, None, summary)
