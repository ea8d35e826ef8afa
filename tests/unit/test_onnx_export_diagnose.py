"""profiles.onnx_export.diagnose_export_error on messages PyTorch 2.13's exporters printed here (excerpts of
real failures of tests/integration/test_export.py's modules: torch.linalg.eigh, torch.histc, data-dependent
control flow)."""

from __future__ import annotations

from profiles.onnx_export import diagnose_export_error, strip_ansi

DYNAMO_EIGH = """TorchExportError... Failed to convert the exported program to an ONNX model. \x1b[96mThis is step 3/3\x1b[0m of exporting the model to ONNX. Next steps:
- If there is a missing ONNX function, implement it and register it to the registry.

## Exception summary

<class 'torch.onnx._internal.exporter._errors.DispatchError'>: No ONNX function found for <OpOverload(op='aten._linalg_eigh', overload='default')>. Failure message: No decompositions registered for the real-valued input
\u2b06\ufe0f
<class 'torch.onnx._internal.exporter._errors.ConversionError'>: Error when translating node %_linalg_eigh : [num_users=1] = call_function[target=torch.ops.aten._linalg_eigh.default](args = (%matmul,), kwargs = {}). See the stack trace for more information.

(Refer to the full stack trace above for more information.)"""

DYNAMO_HISTC = """## Exception summary

<class 'NotImplementedError'>: aten_histc with min == max (0.0) is not supported in this export path.
\u2b06\ufe0f
<class 'torch.onnx._internal.exporter._errors.GraphConstructionError'>: Error when calling function 'TracedOnnxFunction(<function aten_histc at 0x7ff4c2cd5c60>)' with args '[SymbolicTensor(name='x', type=Tensor(FLOAT), shape=Shape([4, 4])), 4]' and kwargs '{}'
\u2b06\ufe0f
<class 'torch.onnx._internal.exporter._errors.ConversionError'>: Error when translating node %histc : [num_users=1] = call_function[target=torch.ops.aten.histc.default](args = (%x, 4), kwargs = {}). See the stack trace for more information.

(Refer to the full stack trace above for more information.)"""

DYNAMO_DATA_DEP = """Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of exporting the model to ONNX.

## Exception summary

<class 'torch.fx.experimental.symbolic_shapes.GuardOnDataDependentSymNode'>: Could not guard on data-dependent expression Eq(u0, 1) (unhinted: Eq(u0, 1)).  (Size-like symbols: none)

consider using data-dependent friendly APIs such as guard_or_false, guard_or_true and statically_known_true.
Caused by: (_export/non_strict_utils.py:1205 in __torch_function__)

The following call raised this error:
  File "/tmp/exp/t2.py", line 5, in forward
    if x.sum() > 0:


The error above occurred when calling torch.export.export."""

TORCHSCRIPT_EIGH = "UnsupportedOperatorError: Exporting the operator 'aten::linalg_eigh' to ONNX opset version 18 is not supported"


def test_dynamo_missing_function() -> None:
    d = diagnose_export_error(DYNAMO_EIGH)
    assert d.kind == "unsupported_operator" and d.operator == "aten._linalg_eigh.default"
    assert d.summary.startswith("<class 'torch.onnx._internal.exporter._errors.DispatchError'>")
    assert "Refer to the full stack trace" not in d.summary and "\x1b" not in d.summary
    assert "aten._linalg_eigh.default" in d.headline()


def test_dynamo_conversion_error() -> None:
    d = diagnose_export_error(DYNAMO_HISTC)
    assert d.kind == "conversion_error" and d.operator == "aten.histc.default"
    assert "min == max" in d.summary


def test_data_dependent() -> None:
    d = diagnose_export_error(DYNAMO_DATA_DEP)
    assert d.kind == "data_dependent" and d.expression == "Eq(u0, 1)"
    assert d.location == "t2.py:5 in forward: if x.sum() > 0:"
    assert "Eq(u0, 1)" in d.headline() and "t2.py:5" in d.headline()


def test_torchscript_and_other() -> None:
    d = diagnose_export_error(TORCHSCRIPT_EIGH)
    assert d.kind == "unsupported_operator" and d.operator == "aten::linalg_eigh"
    o = diagnose_export_error("RuntimeError: something else entirely")
    assert o.kind == "other" and o.operator is None and o.summary == "RuntimeError: something else entirely"
    assert strip_ansi("\x1b[96mstep\x1b[0m") == "step"
