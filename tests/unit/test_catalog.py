"""profiles.catalog: engine and precision names, aliases, case, the int8 alias, devices and unsupported combos."""

from __future__ import annotations

import pytest

from profiles import catalog
from profiles.catalog import CatalogError
from profiles.errors import InputError


def test_engines_and_their_precisions() -> None:
    assert catalog.engines() == ["onnxruntime", "tensorrt", "torch"]
    assert catalog.precisions("onnxruntime") == ["fp32", "fp16", "int8-dynamic", "int8-qdq"]
    assert catalog.precisions("tensorrt") == ["fp32", "fp16", "bf16", "int8-qdq", "fp8", "best"]
    assert catalog.precisions("torch") == ["fp32", "tf32", "fp16", "bf16"]
    assert catalog.devices("onnxruntime") == ["cpu", "cuda"]
    assert catalog.devices("tensorrt") == ["cuda"]
    assert catalog.devices("torch") == ["cpu", "cuda"]


@pytest.mark.parametrize("name, canonical", [
    ("onnxruntime", "onnxruntime"), ("ORT", "onnxruntime"), ("onnx-runtime", "onnxruntime"),
    ("ONNXRuntime", "onnxruntime"), ("trt", "tensorrt"), ("TensorRT", "tensorrt"), ("pytorch", "torch"),
    (" Torch ", "torch"),
])
def test_engine_aliases_and_case(name: str, canonical: str) -> None:
    assert catalog.resolve_engine(name) == canonical


def test_unknown_engine_names_the_flag_and_the_choices() -> None:
    with pytest.raises(InputError) as err:
        catalog.resolve_engine("jax")
    msg = str(err.value)
    assert msg.startswith("--engine: 'jax' is not an engine")
    for name in ("onnxruntime", "tensorrt", "torch", "ort", "trt", "pytorch"):
        assert name in msg
    assert isinstance(err.value, CatalogError) and err.value.flag == "--engine"


@pytest.mark.parametrize("engine, name, canonical", [
    ("onnxruntime", "FP16", "fp16"), ("ort", "Int8-Dynamic", "int8-dynamic"), ("onnxruntime", "INT8-QDQ", "int8-qdq"),
    ("tensorrt", "BF16", "bf16"), ("trt", "Best", "best"), ("torch", "TF32", "tf32"), ("pytorch", " bf16 ", "bf16"),
])
def test_precision_case_is_ignored(engine: str, name: str, canonical: str) -> None:
    assert catalog.resolve_precision(engine, name) == (canonical, None)


def test_int8_resolves_per_engine_with_a_note() -> None:
    assert catalog.resolve_precision("onnxruntime", "int8") == (
        "int8-qdq", "int8 resolved to int8-qdq (static Q/DQ, calibrated)")
    canonical, note = catalog.resolve_precision("tensorrt", "INT8")
    assert canonical == "int8-qdq" and note is not None and "--int8" in note and "Q/DQ" in note
    with pytest.raises(InputError, match=r"^--precision: 'int8' is not a precision of torch \(choose fp32, tf32, fp16, bf16\)$"):
        catalog.resolve_precision("torch", "int8")


def test_unknown_precision_lists_the_engines_choices() -> None:
    with pytest.raises(InputError) as err:
        catalog.resolve_precision("onnxruntime", "fp64")
    assert str(err.value) == ("--precision: 'fp64' is not a precision of onnxruntime "
                              "(choose fp32, fp16, int8-dynamic, int8-qdq, int8)")
    assert err.value.detail == ("'fp64' is not a precision of onnxruntime "  # type: ignore[attr-defined]
                                "(choose fp32, fp16, int8-dynamic, int8-qdq, int8)")


@pytest.mark.parametrize("engine, precision", [("onnxruntime", "bf16"), ("onnxruntime", "best"),
                                               ("tensorrt", "tf32"), ("tensorrt", "int8-dynamic"),
                                               ("torch", "int8-qdq"), ("torch", "fp8")])
def test_precisions_of_other_engines_are_refused(engine: str, precision: str) -> None:
    with pytest.raises(InputError, match=f"^--precision: '{precision}' is not a precision of {engine}"):
        catalog.resolve_precision(engine, precision)


@pytest.mark.parametrize("text, device", [("cpu", "cpu"), ("CPU", "cpu"), ("cuda", "cuda:0"), ("cuda:0", "cuda:0"),
                                          ("CUDA:3", "cuda:3"), (" cuda:12 ", "cuda:12"), ("cuda:007", "cuda:7")])
def test_parse_device(text: str, device: str) -> None:
    assert catalog.parse_device(text) == device


@pytest.mark.parametrize("text", ["cuda:x", "gpu", "cuda:-1", "cuda:", "cuda:1.5", "", "cpu:0", "cuda:٣", "mps"])
def test_bad_devices_name_the_flag(text: str) -> None:
    with pytest.raises(InputError, match=r"^--device: .* is not a device \(choose cpu, cuda or cuda:N with N >= 0\)"):
        catalog.parse_device(text)


def test_engine_device_combinations() -> None:
    catalog.check_engine_device("onnxruntime", "cuda:1")
    catalog.check_engine_device("torch", "cpu")
    catalog.check_engine_device("tensorrt", "cuda")
    with pytest.raises(InputError, match=r"^--device: tensorrt does not run on cpu"):
        catalog.check_engine_device("tensorrt", "cpu")
    assert catalog.default_device("tensorrt") == "cuda:0"
    assert catalog.default_device("onnxruntime") == catalog.default_device("torch") == "cpu"


def test_precision_device_combinations() -> None:
    catalog.check_precision_device("torch", "tf32", "cuda:0")
    catalog.check_precision_device("torch", "fp16", "cpu")  # PyTorch runs float16 CPU kernels (decision in the doc)
    catalog.check_precision_device("onnxruntime", "int8", "cuda:0")  # int8 -> int8-qdq runs on CUDA
    with pytest.raises(InputError, match=r"^--precision: 'tf32' of torch does not run on cpu: .*"
                                         r"\(torch on cpu offers fp32, fp16, bf16\)$"):
        catalog.check_precision_device("torch", "TF32", "cpu")
    with pytest.raises(InputError, match=r"^--precision: 'int8-dynamic' of onnxruntime does not run on cuda: .*"
                                         r"\(onnxruntime on cuda offers fp32, fp16, int8-qdq\)$"):
        catalog.check_precision_device("onnxruntime", "int8-dynamic", "cuda:2")


def test_needs_gpu() -> None:
    assert catalog.needs_gpu("torch", "tf32")
    assert not catalog.needs_gpu("torch", "fp16") and not catalog.needs_gpu("torch", "bf16")
    assert all(catalog.needs_gpu("tensorrt", p) for p in catalog.precisions("tensorrt"))
    assert not any(catalog.needs_gpu("onnxruntime", p) for p in catalog.precisions("onnxruntime"))
    assert catalog.precisions("onnxruntime", "cuda:0") == ["fp32", "fp16", "int8-qdq"]
    assert catalog.precisions("torch", "cpu") == ["fp32", "fp16", "bf16"]
    assert catalog.precisions("tensorrt", "cpu") == []


def test_descriptions_are_one_line_and_complete() -> None:
    for engine in catalog.engines():
        for p in catalog.precisions(engine):
            d = catalog.describe_precision(engine, p)
            assert d and "\n" not in d and len(d) < 100
        text = catalog.precision_help(engine)
        assert text.startswith(f"{engine}: ") and all(f"{p}: " in text for p in catalog.precisions(engine))
    assert "int8: alias of int8-qdq" in catalog.precision_help("onnxruntime")
    assert "tf32: " in catalog.precision_help() and "(cuda only)" in catalog.precision_help("torch")


def test_precision_choices_include_the_int8_alias_only_where_it_resolves() -> None:
    assert catalog.precision_choices("onnxruntime")[-1] == "int8"
    assert catalog.precision_choices("tensorrt")[-1] == "int8"
    assert "int8" not in catalog.precision_choices("torch")


def test_profiles_catalog_imports_nothing_of_ours_but_profiles() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(catalog.__file__).read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in mods if m.split(".")[0] in ("db", "engine_runner", "dashboard")}


def test_formats_per_engine_are_the_engines_own() -> None:
    """One source: the dashboard's engine choice per model (``engines_for_format``) and the engines' own
    ``model_formats`` (the torch engine reads the catalogue; the ONNX engines default to ``onnx``)."""
    from engine_runner.engines.base import model_formats
    from engine_runner.engines.onnxruntime import Engine as OrtEngine
    from engine_runner.torch_models import FORMAT_HF, FORMAT_PT2, TORCH_FORMATS

    assert catalog.engines_for_format("onnx") == catalog.engines_for_format(None) == ["onnxruntime", "tensorrt"]
    assert catalog.engines_for_format(FORMAT_HF) == catalog.engines_for_format(FORMAT_PT2) == ["torch"]
    assert catalog.engines_for_format("safetensors") == []
    assert TORCH_FORMATS == (FORMAT_HF, FORMAT_PT2) == catalog.engine_info("torch").formats
    assert model_formats(OrtEngine()) == catalog.engine_info("onnxruntime").formats
