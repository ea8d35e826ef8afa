"""profiles.llm_spec: ServeBenchSpec bounds and the CLI list/SLO parsers."""

from __future__ import annotations

import math

import pytest

from profiles.errors import InputError
from profiles.llm_spec import ServeBenchSpec, parse_int_list, parse_rate_list, parse_slo_flags
from profiles.specs import validate_spec


def spec(**kw):  # type: ignore[no-untyped-def]
    return validate_spec(ServeBenchSpec, {"model": "/m", "concurrency": [1], **kw})


def test_defaults_and_levels() -> None:
    s = spec(concurrency=[1, 4, 4, 16])
    assert s.levels == [("concurrency", 1.0), ("concurrency", 4.0), ("concurrency", 16.0)]
    r = validate_spec(ServeBenchSpec, {"model": "/m", "request_rate": [2, "inf"]})
    assert r.levels[0] == ("request_rate", 2.0) and math.isinf(r.levels[1][1])


@pytest.mark.parametrize(("kw", "field"), [
    ({"concurrency": None}, "exactly one of --concurrency or --request-rate"),
    ({"request_rate": [1.0]}, "exactly one of --concurrency or --request-rate"),
    ({"concurrency": [0]}, "--concurrency"),
    ({"concurrency": None, "request_rate": [-1.0]}, "--request-rate"),
    ({"input_len": 0}, "--input-len:"),
    ({"num_prompts": 0}, "--num-prompts:"),
    ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization:"),
    ({"engine": "endpoint"}, "needs endpoint"),
    ({"engine": "endpoint", "endpoint": "localhost:8000"}, "http://"),
    ({"endpoint": "http://x:1"}, "only used with engine 'endpoint'"),
    ({"vllm_args": ["--port=9"]}, "--port is set by EngineScope"),
    ({"slos": {"ttft_ms": -1}}, "--slo ttft_ms:"),
    ({"dtype": "float8"}, "--dtype:"),
    ({"bogus": 1}, "bogus"),
])
def test_invalid_fields_are_named(kw: dict, field: str) -> None:
    """Errors name the serve-bench flag (profiles.llm_spec.LLM_SPEC_FLAGS), not the spec's field."""
    with pytest.raises(InputError, match=field.replace("(", r"\(").replace(".", r"\.")):
        spec(**kw)


def test_endpoint_spec_and_slos() -> None:
    s = spec(engine="endpoint", endpoint="http://127.0.0.1:8000", slos={"ttft_ms": 500, "tpot_ms": 50})
    assert s.slos.as_dict() == {"ttft_ms": 500, "tpot_ms": 50}
    assert spec().slos.as_dict() == {}


def test_cli_parsers() -> None:
    assert parse_int_list("1, 4,16", "--concurrency") == [1, 4, 16]
    rates = parse_rate_list("2,8,inf")
    assert rates[:2] == [2.0, 8.0] and math.isinf(rates[2])
    assert parse_slo_flags(["ttft_ms=500", "e2e_ms=2000"]) == {"ttft_ms": 500.0, "e2e_ms": 2000.0}
    with pytest.raises(InputError, match="--concurrency"):
        parse_int_list("1,x", "--concurrency")
    with pytest.raises(InputError, match="--request-rate"):
        parse_rate_list("fast")
    with pytest.raises(InputError, match="--slo 'latency=5'"):
        parse_slo_flags(["latency=5"])
    with pytest.raises(InputError, match="not a number"):
        parse_slo_flags(["ttft_ms=abc"])


def test_prompts_per_concurrency_scales_concurrency_levels_only() -> None:
    from profiles.llm_spec import ServeBenchSpec

    s = ServeBenchSpec(model="m", concurrency=[1, 16, 256], num_prompts=32, prompts_per_concurrency=4)
    assert [s.requests_for(m, v) for m, v in s.levels] == [32, 64, 1024]
    r = ServeBenchSpec(model="m", request_rate=[2.0], num_prompts=10, prompts_per_concurrency=4)
    assert [r.requests_for(m, v) for m, v in r.levels] == [10]
    assert ServeBenchSpec(model="m", concurrency=[8], num_prompts=5).requests_for("concurrency", 8) == 5


def test_every_flag_named_in_errors_is_a_serve_bench_option() -> None:
    import typer.main

    from engine_runner.cli import app
    from profiles.llm_spec import LLM_SPEC_FLAGS

    cmd = typer.main.get_command(app).commands["serve-bench"]  # type: ignore[attr-defined]
    opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    assert set(LLM_SPEC_FLAGS.values()) <= opts
    assert set(LLM_SPEC_FLAGS) <= set(ServeBenchSpec.model_fields)
