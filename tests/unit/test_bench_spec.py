"""profiles.specs.BenchSpec reads the catalogue: names normalized, combinations checked, errors name the flag
(or a form's label), never pydantic's ``precisions.2``."""

from __future__ import annotations

import pytest

from profiles import catalog
from profiles.errors import InputError
from profiles.specs import BENCH_SPEC_FLAGS, BenchSpec, field_label, validate_spec


def spec(**kw: object) -> BenchSpec:
    return validate_spec(BenchSpec, {"model_id": 1, **kw})  # type: ignore[no-any-return]


def test_names_are_normalized() -> None:
    s = spec(engine="ORT", device="CUDA", precisions=["FP16", "fp16", "Int8", "int8-qdq"])
    assert (s.engine, s.device, s.precisions) == ("onnxruntime", "cuda:0", ["fp16", "int8-qdq"])
    assert s.precision_notes == ["int8 resolved to int8-qdq (static Q/DQ, calibrated)"]
    assert spec(engine="pytorch", device="cuda:1", precisions=["TF32", "bf16"]).precisions == ["tf32", "bf16"]


def test_defaults_and_the_engines_default_device() -> None:
    s = spec()
    assert (s.engine, s.device, s.precisions, s.precision_notes) == ("onnxruntime", "cpu", ["fp32"], [])
    assert spec(engine="tensorrt").device == "cuda:0"
    assert spec(engine="torch").device == "cpu"
    assert spec(engine="trt", device=None).device == "cuda:0"


def test_torch_is_accepted_by_the_spec() -> None:
    assert spec(engine="torch", precisions=["fp32", "fp16", "bf16"]).engine == "torch"


def test_a_dumped_spec_revalidates_to_itself_with_its_notes() -> None:
    s = spec(precisions=["int8", "fp32"])
    again = validate_spec(BenchSpec, s.model_dump(mode="json"))
    assert again == s and again.precision_notes == s.precision_notes


@pytest.mark.parametrize("data, message", [
    ({"precisions": ["fp32", "fp32", "fp64"]},
     "--precision: 'fp64' is not a precision of onnxruntime (choose fp32, fp16, int8-dynamic, int8-qdq, int8)"),
    ({"engine": "tensorrt", "precisions": ["int8-dynamic"]}, "--precision: 'int8-dynamic' is not a precision of tensorrt"),
    ({"engine": "torch", "precisions": ["int8"]}, "--precision: 'int8' is not a precision of torch (choose fp32, tf32, fp16, bf16)"),
    ({"engine": "torch", "precisions": ["tf32"]}, "--precision: 'tf32' of torch does not run on cpu"),
    ({"device": "cuda:0", "precisions": ["int8-dynamic"]}, "--precision: 'int8-dynamic' of onnxruntime does not run on cuda"),
    ({"engine": "tensorrt", "device": "cpu"}, "--device: tensorrt does not run on cpu"),
    ({"device": "cuda:x"}, "--device: 'cuda:x' is not a device (choose cpu, cuda or cuda:N with N >= 0)"),
    ({"device": "gpu0"}, "--device: 'gpu0' is not a device"),
    ({"engine": "jax"}, "--engine: 'jax' is not an engine (choose onnxruntime, tensorrt, torch"),
    ({"batch_sizes": [1, 0]}, "--batch: batch size 0 is outside 1..65536"),
    ({"iterations": 0}, "--iterations: Input should be greater than or equal to 1"),
    ({"shapes": {"x": [1, 0]}}, "--shape: shape of input 'x' must be dims >= 1, got [1, 0]"),
    ({"dim_values": {"sequence": "many"}}, "--dim sequence: Input should be a valid integer"),
    ({"precisions": []}, "--precision: List should have at least 1 item"),
])
def test_errors_name_the_flag(data: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as err:
        spec(**data)
    text = str(err.value)
    assert text.startswith("invalid spec: ") and message in text
    assert "precisions." not in text and "Value error" not in text


def test_several_errors_are_all_reported() -> None:
    with pytest.raises(InputError) as err:
        spec(engine="ort", precisions=["fp16", "fp64"], batch_sizes=[0])
    parts = str(err.value).removeprefix("invalid spec: ").split("; ")
    assert [p.split(":")[0] for p in parts] == ["--precision", "--batch"]


def test_a_form_passes_its_labels() -> None:
    labels = {"precisions": "Precisions", "device": "Device"}
    with pytest.raises(InputError, match=r"invalid spec: Precisions: 'fp64' is not a precision of onnxruntime"):
        validate_spec(BenchSpec, {"model_id": 1, "precisions": ["fp32", "fp64"]}, labels)
    with pytest.raises(InputError, match=r"invalid spec: Device: 'cuda:-1' is not a device"):
        validate_spec(BenchSpec, {"model_id": 1, "device": "cuda:-1"}, labels)


def test_field_label() -> None:
    assert field_label(("precisions", 2), BENCH_SPEC_FLAGS) == "--precision"
    assert field_label(("dim_values", "seq"), BENCH_SPEC_FLAGS) == "--dim seq"
    assert field_label(("tensorrt", "workspace_mib"), BENCH_SPEC_FLAGS) == "tensorrt.workspace_mib"
    assert field_label((), BENCH_SPEC_FLAGS) == "(spec)"


def test_every_flag_exists_on_the_bench_command() -> None:
    """BENCH_SPEC_FLAGS names real ``enginescope bench`` options (so an error never names a flag that isn't there)."""
    import typer

    from engine_runner.commands.bench import register

    app = typer.Typer()
    register(app)
    params = typer.main.get_command(app).params  # one command: the app is the command
    opts = {o for p in params for o in getattr(p, "opts", [])} | {p.name.upper() for p in params if p.name}
    missing = [f for f in BENCH_SPEC_FLAGS.values() if f not in opts]
    assert missing == []


def test_spec_fields_have_catalogue_vocabulary_only() -> None:
    for engine in catalog.engines():
        for device in catalog.devices(engine):
            d = "cpu" if device == "cpu" else "cuda:0"
            assert spec(engine=engine, device=d, precisions=catalog.precisions(engine, d)).precisions == \
                catalog.precisions(engine, d)
