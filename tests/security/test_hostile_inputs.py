"""Hostile input catalog (issue 12): every case is refused with one line naming the file/field/flag,
exit status 2 (CLI) or ``InputError`` (functions the dashboard calls), no traceback, and nothing already
stored is touched (a fingerprint of the models/jobs/runs/artifacts rows and the stored model files is
equal before and after). Streaming cases fail the request with a reason and the level goes on.

The catalog with what the user sees is docs/reliability.md ("Hostile input").
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from profiles.errors import InputError
from tests.security.hostile import (
    SSE_OK, db_fingerprint, fake_tokenizer, hostile_server, nested_if_bytes, relu4d, zip_with,
)
from tests.unit.onnx_builders import linear_model, save_external, save_plain, save_with_raw_location


@pytest.fixture
def stored(es_env: str, tmp_path: Path) -> dict[str, Any]:
    """A database holding two models (a linear model and a 4-D Relu), and its fingerprint."""
    from db.config import home
    from db.store import add_model

    lin = add_model(save_plain(linear_model(1), tmp_path / "pre" / "linear.onnx"), url=es_env)
    relu = add_model(save_plain(relu4d(), tmp_path / "pre" / "relu4d.onnx"), url=es_env)
    return {"url": es_env, "home": home(), "linear": lin.id, "relu": relu.id,
            "before": db_fingerprint(es_env, home())}


def _unchanged(stored: dict[str, Any]) -> None:
    assert db_fingerprint(stored["url"], stored["home"]) == stored["before"], "stored rows or files changed"


def _cli(args: list[str]) -> Any:
    from engine_runner.cli import app

    return CliRunner().invoke(app, args)


def _refused(res: Any, *names: str) -> str:
    """The CLI refused: exit 2, no traceback, exactly one non-empty stderr line ``error: ...`` naming ``names``."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# --------------------------------------------------------------------------------------------------
# Model files: archives, external data, protobuf bombs (enginescope models add / the upload page)


def _onnx_bytes(tmp: Path) -> bytes:
    return save_plain(linear_model(7), tmp / "zsrc" / "m.onnx").read_bytes()


def _zip_case(kind: str, tmp: Path) -> tuple[Path, list[str]]:
    m = _onnx_bytes(tmp)
    z = tmp / f"{kind}.zip"
    if kind == "zip_slip_dotdot":
        return zip_with(z, [("model.onnx", m), ("../../evil.bin", b"x")]), ["evil.bin", "zip-slip"]
    if kind == "zip_slip_absolute":
        return zip_with(z, [("/tmp/evil.onnx", m)]), ["/tmp/evil.onnx", "outside"]
    if kind == "zip_slip_backslash":
        return zip_with(z, [("model.onnx", m), ("..\\..\\evil.bin", b"x")]), ["evil.bin", "outside"]
    if kind == "zip_slip_drive":
        return zip_with(z, [("C:/Windows/evil.onnx", m)]), ["evil.onnx", "outside"]
    if kind == "zip_symlink":
        return zip_with(z, [("model.onnx", m)], symlink=("weights.bin", "/etc/passwd")), ["weights.bin", "symbolic link"]
    if kind == "zip_two_models":
        return zip_with(z, [("a.onnx", m), ("b.onnx", m)]), [z.name, "2 .onnx files"]
    if kind == "zip_not_zip":
        z.write_bytes(b"PK\x03\x04 this is not really a zip")
        return z, [z.name, "not a valid ZIP"]
    if kind == "zip_external_dotdot":  # the archive is fine; the model inside points out of it
        inner = save_with_raw_location(linear_model(2), tmp / "zin" / "model.onnx", "../../etc/passwd")
        return zip_with(z, [("model.onnx", inner.read_bytes())]), ["../../etc/passwd", "escapes"]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["zip_slip_dotdot", "zip_slip_absolute", "zip_slip_backslash", "zip_slip_drive",
                                  "zip_symlink", "zip_two_models", "zip_not_zip", "zip_external_dotdot"])
def test_zip_archive_refused(stored: dict[str, Any], tmp_path: Path, kind: str) -> None:
    path, names = _zip_case(kind, tmp_path)
    _refused(_cli(["models", "add", str(path)]), *names)
    _unchanged(stored)
    assert not (tmp_path.parent / "evil.bin").exists() and not Path("/tmp/evil.onnx").exists()


def test_zip_bomb_refused_before_inflating(stored: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINESCOPE_MAX_UNZIP_BYTES", str(1 << 20))
    z = zip_with(tmp_path / "bomb.zip", [("model.onnx", _onnx_bytes(tmp_path)), ("w.bin", bytes(8 << 20))])
    assert z.stat().st_size < 100_000
    _refused(_cli(["models", "add", str(z)]), "bomb.zip", "ENGINESCOPE_MAX_UNZIP_BYTES", str(1 << 20))
    _unchanged(stored)


def test_zip_entry_flood_refused(stored: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINESCOPE_MAX_ZIP_ENTRIES", "5")
    z = zip_with(tmp_path / "flood.zip", [("model.onnx", _onnx_bytes(tmp_path))] + [(f"f{i}", b"") for i in range(20)])
    _refused(_cli(["models", "add", str(z)]), "flood.zip", "21 entries", "ENGINESCOPE_MAX_ZIP_ENTRIES")
    _unchanged(stored)


def _external_case(kind: str, tmp: Path) -> tuple[Path, list[str]]:
    folder = tmp / kind
    folder.mkdir()
    if kind == "ext_dotdot":
        (tmp / "secret.bin").write_bytes(bytes(48))
        return save_with_raw_location(linear_model(3), folder / "m.onnx", "../secret.bin"), ["'../secret.bin'", "escapes"]
    if kind == "ext_etc_passwd":
        return save_with_raw_location(linear_model(3), folder / "m.onnx", "/etc/passwd"), ["/etc/passwd", "absolute"]
    if kind == "ext_device_absolute":
        return save_with_raw_location(linear_model(3), folder / "m.onnx", "/dev/zero"), ["/dev/zero", "absolute"]
    if kind == "ext_symlink_passwd":
        (folder / "w.bin").symlink_to("/etc/passwd")
        return save_with_raw_location(linear_model(3), folder / "m.onnx", "w.bin"), ["'w.bin'", "outside"]
    if kind == "ext_symlink_device":
        (folder / "w.bin").symlink_to("/dev/zero")
        return save_with_raw_location(linear_model(3), folder / "m.onnx", "w.bin"), ["'w.bin'", "outside"]
    if kind == "ext_fifo":
        os.mkfifo(folder / "w.bin")
        return save_with_raw_location(linear_model(3), folder / "m.onnx", "w.bin"), ["'w.bin'", "not a regular file"]
    if kind == "ext_nul":
        return save_with_raw_location(linear_model(3), folder / "m.onnx", "w\x00.bin"), ["m.onnx", "NUL"]
    if kind == "ext_truncated":
        p = save_external(linear_model(3), folder / "m.onnx")
        (folder / "weights.bin").write_bytes(b"\x00" * 4)
        return p, ["weights.bin", "truncated"]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["ext_dotdot", "ext_etc_passwd", "ext_device_absolute", "ext_symlink_passwd",
                                  "ext_symlink_device", "ext_fifo", "ext_nul", "ext_truncated"])
def test_external_data_refused(stored: dict[str, Any], tmp_path: Path, kind: str) -> None:
    path, names = _external_case(kind, tmp_path)
    _refused(_cli(["models", "add", str(path)]), *names)
    _unchanged(stored)


def _proto_case(kind: str, tmp: Path) -> tuple[Path, list[str]]:
    p = tmp / f"{kind}.onnx"
    if kind == "pb_nested_if":  # deeper than protobuf's recursion limit
        p.write_bytes(nested_if_bytes(200))
        return p, [p.name, "nested"]
    if kind == "pb_length_bomb":  # ir_version, then a graph field that claims 2 GiB of bytes
        p.write_bytes(b"\x08\x08\x3a\xff\xff\xff\xff\x07" + b"\x00" * 64)
        return p, [p.name, "truncated or corrupt"]
    if kind == "pb_huge_declared_initializer":  # 10^12 float32 declared, 0 bytes present
        m = linear_model(4)
        w = onnx.TensorProto(name="W", data_type=onnx.TensorProto.FLOAT, dims=[1_000_000, 1_000_000])
        m.graph.initializer[0].CopyFrom(w)
        p.write_bytes(m.SerializeToString())
        return p, [p.name, "W"]
    if kind == "pb_huge_rank":  # an input with 100000 dims (a huge repeated field)
        m = linear_model(4)
        del m.graph.input[0].type.tensor_type.shape.dim[:]
        for _ in range(100_000):
            m.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 1
        p.write_bytes(m.SerializeToString())
        return p, [p.name, "'X'", "rank 100000"]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["pb_nested_if", "pb_length_bomb", "pb_huge_declared_initializer", "pb_huge_rank"])
def test_protobuf_bomb_refused(stored: dict[str, Any], tmp_path: Path, kind: str) -> None:
    path, names = _proto_case(kind, tmp_path)
    _refused(_cli(["models", "add", str(path)]), *names)
    _unchanged(stored)


# --------------------------------------------------------------------------------------------------
# Names: shell metacharacters, newlines, NUL, '..', very long, NFD/NFC twins


@pytest.mark.parametrize("kind,name,names", [
    ("name_newline", "evil\nname", ["--name", "U+000A"]),
    ("name_nul", "evil\x00name", ["--name", "U+0000"]),
    ("name_escape_seq", "evil\x1b[2Jname", ["--name", "U+001B"]),
    ("name_too_long", "x" * 5000, ["--name", "5000 characters"]),
])
def test_model_name_refused(stored: dict[str, Any], tmp_path: Path, kind: str, name: str, names: list[str]) -> None:
    p = save_plain(linear_model(11), tmp_path / "n.onnx")
    _refused(_cli(["models", "add", str(p), "--name", name]), *names)
    _unchanged(stored)


def test_file_name_with_newline_refused(stored: dict[str, Any], tmp_path: Path) -> None:
    p = save_plain(linear_model(12), tmp_path / "evil\nname.onnx")
    _refused(_cli(["models", "add", str(p)]), "U+000A", "--name")
    _unchanged(stored)


def test_shell_metacharacters_are_data(stored: dict[str, Any], tmp_path: Path) -> None:
    """A name full of shell syntax is stored verbatim as a display name and never runs."""
    canary = tmp_path / "pwned"
    name = f"$(touch {canary}); `touch {canary}` | rm -rf ~ & echo > {canary} 'x\" * ?"
    p = save_plain(linear_model(13), tmp_path / "meta.onnx")
    res = _cli(["models", "add", str(p), "--name", name, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["original_name"] == name
    assert not canary.exists()


def test_bench_model_argument_with_metacharacters(stored: dict[str, Any], tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    _refused(_cli(["bench", f"x; touch {canary} #", "--quiet"]), "MODEL", "no such file")
    assert not canary.exists()
    _unchanged(stored)


@pytest.mark.parametrize("raw", ["..", "../", "/", "\x00", "a/..", ""])
def test_upload_unusable_file_name(stored: dict[str, Any], raw: str) -> None:
    from db.store import add_uploaded

    with pytest.raises(InputError, match="uploaded file name"):
        add_uploaded([(raw, io.BytesIO(b"x"))], url=stored["url"])
    _unchanged(stored)


def test_upload_dotdot_path_stays_inside(stored: dict[str, Any], tmp_path: Path) -> None:
    """``../../x.onnx`` is reduced to ``x.onnx`` inside the staging folder; nothing is written above it."""
    from db.store import add_uploaded

    data = save_plain(linear_model(14), tmp_path / "up.onnx").read_bytes()
    m = add_uploaded([("../../../escaped.onnx", io.BytesIO(data))], url=stored["url"])
    assert m.original_name == "escaped.onnx"
    assert not any(p.name == "escaped.onnx" for p in stored["home"].parent.rglob("escaped.onnx"))


def test_upload_long_name_is_shortened(stored: dict[str, Any], tmp_path: Path) -> None:
    from db.store import add_uploaded

    data = save_plain(linear_model(15), tmp_path / "up.onnx").read_bytes()
    m = add_uploaded([("é" * 400 + ".onnx", io.BytesIO(data))], url=stored["url"])
    assert m.original_name.endswith(".onnx") and len(m.original_name.encode()) <= 255


def test_upload_nfd_nfc_twins(stored: dict[str, Any], tmp_path: Path) -> None:
    """Two uploads whose names differ only in Unicode normalisation are one name: refused, naming it."""
    from db.store import add_uploaded

    nfc = unicodedata.normalize("NFC", "café.bin")
    nfd = unicodedata.normalize("NFD", "café.bin")
    assert nfc != nfd
    onnx_path = save_external(linear_model(16), tmp_path / "tw" / "m.onnx", location=nfc)
    weights = (tmp_path / "tw" / nfc).read_bytes()
    with pytest.raises(InputError, match="share this name"):
        add_uploaded([("m.onnx", io.BytesIO(onnx_path.read_bytes())), (nfc, io.BytesIO(weights)),
                      (nfd, io.BytesIO(weights))], url=stored["url"])
    _unchanged(stored)


def test_upload_nfd_data_file_matches_nfc_location(stored: dict[str, Any], tmp_path: Path) -> None:
    """A browser on macOS sends NFD names; the model's NFC location still finds its data file."""
    from db.store import add_uploaded

    nfc = unicodedata.normalize("NFC", "poids_é.bin")
    onnx_path = save_external(linear_model(17), tmp_path / "tw2" / "m.onnx", location=nfc)
    m = add_uploaded([("m.onnx", io.BytesIO(onnx_path.read_bytes())),
                      (unicodedata.normalize("NFD", nfc), io.BytesIO((tmp_path / "tw2" / nfc).read_bytes()))],
                     url=stored["url"])
    assert {e["location"] for e in m.external_data} == {nfc}


# --------------------------------------------------------------------------------------------------
# Shapes and numeric flags of `enginescope bench` (the New benchmark form validates the same BenchSpec)


def test_enormous_shape_refused_before_allocation(stored: dict[str, Any]) -> None:
    """--shape X=1x3x100000x100000 needs 120 GB of float32: refused with the byte count, no job queued."""
    line = _refused(_cli(["bench", str(stored["relu"]), "--shape", "X=1x3x100000x100000", "--quiet"]),
                    "--shape", "X", "120000000000 bytes")
    assert "float32" in line
    _unchanged(stored)


def test_enormous_dim_refused_before_allocation(stored: dict[str, Any]) -> None:
    _refused(_cli(["bench", str(stored["relu"]), "--dim", "H=100000", "--dim", "W=100000", "--dim", "C=64",
                   "--quiet"]), "--dim", "bytes")
    _unchanged(stored)


def test_huge_batch_times_input_refused(stored: dict[str, Any]) -> None:
    _refused(_cli(["bench", str(stored["relu"]), "--shape", "X=1x3x4096x4096", "--batch", "65536", "--quiet"]),
             "--batch 65536", "bytes")
    _unchanged(stored)


@pytest.mark.parametrize("flag,value,names", [
    ("--shape", "X=0x3x4x4", ["--shape", ">= 1"]),
    ("--shape", "X=-1x3x4x4", ["--shape", ">= 1"]),
    ("--shape", "X=1x3xfoox4", ["--shape", "integers"]),
    ("--shape", "X=1x3x99999999999999999999x4", ["--shape", "2147483647"]),
    ("--dim", "H=0", ["--dim", ">= 1"]),
    ("--dim", "H=-7", ["--dim", ">= 1"]),
    ("--dim", "H=99999999999999999999", ["--dim", "2147483647"]),
    ("--batch", "0", ["--batch", "1..65536"]),
    ("--batch", "-3", ["--batch", "1..65536"]),
    ("--batch", "1000000000", ["--batch", "1..65536"]),
    ("--iterations", "0", ["--iterations"]),
    ("--iterations", "-5", ["--iterations"]),
    ("--iterations", str(10**30), ["--iterations"]),
    ("--warmup", "-1", ["--warmup"]),
    ("--warmup-s", "nan", ["--warmup-s"]),
    ("--warmup-s", "inf", ["--warmup-s"]),
    ("--min-duration", "-1", ["--min-duration"]),
    ("--max-duration", "0", ["--max-duration"]),
    ("--max-duration", "nan", ["--max-duration"]),
    ("--threads", "0", ["--threads"]),
    ("--threads", "100000", ["--threads"]),
    ("--seed", "-1", ["--seed"]),
    ("--seed", str(2**70), ["--seed"]),
    ("--calibration-samples", "0", ["--calibration-samples"]),
    ("--p99-budget-ms", "-1", ["--p99-budget-ms"]),
    ("--p99-budget-ms", "nan", ["--p99-budget-ms"]),
    ("--max-batch", "0", ["--max-batch"]),
    ("--repeats", "0", ["--repeats"]),
    ("--repeats", "1000", ["--repeats"]),
    ("--profile-kernels", "-1", ["--profile-kernels"]),
    ("--ncu-top", "100000", ["--ncu-top"]),
])
def test_bench_numeric_flag_refused(stored: dict[str, Any], flag: str, value: str, names: list[str]) -> None:
    _refused(_cli(["bench", str(stored["relu"]), f"{flag}={value}", "--quiet"]), *names)
    _unchanged(stored)


def test_bench_spec_form_field_named() -> None:
    """The dashboard form validates the same spec with its labels: the error names the field's label."""
    from profiles.specs import BenchSpec, validate_spec

    with pytest.raises(InputError, match=r"Iterations: .*greater than or equal to 1"):
        validate_spec(BenchSpec, {"model_id": 1, "iterations": 0}, labels={"iterations": "Iterations"})
    with pytest.raises(InputError, match=r"Seed"):
        validate_spec(BenchSpec, {"model_id": 1, "seed": -1}, labels={"seed": "Seed"})


def test_generate_inputs_refuses_before_allocating() -> None:
    """The allocation itself is guarded too (a caller that skipped plan, e.g. a sweep batch)."""
    from engine_runner.inputs import InputSpec, generate_inputs

    spec = InputSpec("X", "float32", ("N", 3, "H", "W"))
    with pytest.raises(InputError, match=r"input 'X'.*120000000000 bytes"):
        generate_inputs([spec], {"X": [1, 3, 100_000, 100_000]})


# --------------------------------------------------------------------------------------------------
# serve-bench flags (the LLM page validates the same ServeBenchSpec)

_ENDPOINT = ["serve-bench", "--engine", "endpoint", "--endpoint", "http://127.0.0.1:9", "--model", "m"]


@pytest.mark.parametrize("flag,value,names", [
    ("--num-prompts", "0", ["--num-prompts"]),
    ("--num-prompts", "-1", ["--num-prompts"]),
    ("--input-len", "-1", ["--input-len"]),
    ("--input-len", "100000000", ["--input-len"]),
    ("--output-len", "0", ["--output-len"]),
    ("--concurrency", "0", ["--concurrency"]),
    ("--concurrency", "-4", ["--concurrency"]),
    ("--concurrency", "1,x", ["--concurrency"]),
    ("--request-rate", "-1", ["--request-rate"]),
    ("--request-rate", "nan", ["--request-rate"]),
    ("--warmup", "-1", ["--warmup"]),
    ("--seed", "-1", ["--seed"]),
    ("--gpu-memory-utilization", "1.5", ["--gpu-memory-utilization"]),
    ("--max-num-seqs", "0", ["--max-num-seqs"]),
    ("--tensor-parallel-size", "0", ["--tensor-parallel-size"]),
    ("--max-level-duration-s", "0", ["--max-level-duration-s"]),
    ("--slo", "ttft_ms=-5", ["--slo"]),
])
def test_serve_bench_numeric_flag_refused(stored: dict[str, Any], flag: str, value: str, names: list[str]) -> None:
    _refused(_cli([*_ENDPOINT, f"{flag}={value}"]), *names)
    _unchanged(stored)


@pytest.mark.parametrize("arg", ["--host=0.0.0.0", "--ho=0.0.0.0", "--api-k=known", "--trust-remote",
                                 "--served-model=other"])
def test_vllm_arg_cannot_override_reserved_flags(arg: str) -> None:
    """--vllm-arg may not rebind the server, replace its key or turn on remote code, abbreviated or not."""
    from profiles.llm_spec import ServeBenchSpec
    from profiles.specs import validate_spec

    with pytest.raises(InputError, match="--vllm-arg"):
        validate_spec(ServeBenchSpec, {"model": "m", "concurrency": [1], "vllm_args": [arg]})


# --------------------------------------------------------------------------------------------------
# Dataset files: prompts of 0 tokens and of 1 M tokens


def _dataset(tmp: Path, prompts: list[str]) -> Path:
    p = tmp / "ds.jsonl"
    p.write_text("".join(json.dumps({"prompt": t, "output_tokens": 4}) + "\n" for t in prompts))
    return p


def test_dataset_of_empty_prompts_refused(tmp_path: Path) -> None:
    from engine_runner.loadgen.datasets import load_dataset_file

    p = _dataset(tmp_path, ["", "", ""])
    with pytest.raises(InputError, match=f"dataset file {p}.*no usable entry"):
        load_dataset_file(p, fake_tokenizer, 4, 0)


def test_dataset_empty_prompts_skipped_beside_good_ones(tmp_path: Path) -> None:
    from engine_runner.loadgen.datasets import load_dataset_file

    prompts = load_dataset_file(_dataset(tmp_path, ["", "hello there", ""]), fake_tokenizer, 3, 0)
    assert {p.text for p in prompts} == {"hello there"} and all(p.input_tokens == 2 for p in prompts)


def test_dataset_prompt_of_a_million_tokens_refused(tmp_path: Path) -> None:
    from engine_runner.loadgen.datasets import MAX_PROMPT_TOKENS, load_dataset_file

    p = _dataset(tmp_path, ["short prompt", "a " * (MAX_PROMPT_TOKENS + 1)])
    with pytest.raises(InputError, match=rf"dataset file {p} entry 2: .*{MAX_PROMPT_TOKENS + 1} tokens"):
        load_dataset_file(p, fake_tokenizer, 2, 0)


def test_dataset_prompt_too_long_for_the_model(tmp_path: Path) -> None:
    from engine_runner.loadgen.datasets import load_dataset_file

    p = _dataset(tmp_path, ["one two three four five six"])
    with pytest.raises(InputError, match=rf"dataset file {p} entry 1: .*6 tokens.*max 4"):
        load_dataset_file(p, fake_tokenizer, 1, 0, max_input_tokens=4)


# --------------------------------------------------------------------------------------------------
# Streaming responses that are not what an OpenAI server sends


def _level(url: str, transport: str, n: int = 4) -> Any:
    from engine_runner.loadgen import EndpointConfig, LoadLevel
    from engine_runner.loadgen.runner import run_level

    ep = EndpointConfig(base_url=url, model="m", timeout_s=1.0, transport=transport)  # type: ignore[arg-type]
    from engine_runner.loadgen import Prompt

    prompts = [Prompt(text="hi", input_tokens=1, output_tokens=1)]
    return asyncio.run(run_level(ep, prompts, LoadLevel(mode="concurrency", value=2, num_requests=n), monitor=False))


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
@pytest.mark.parametrize("mode,reason,text", [
    ("not_sse", "empty", "not an SSE stream"),
    ("html", "empty", "not an SSE stream"),
    ("malformed_json", "stream_error", "malformed SSE event JSON"),
    ("wrong_types", "stream_error", "SSE event"),
    ("length_lie_long", "connection", ""),
    ("length_lie_short", "stream_error", "malformed SSE event JSON"),
    ("forever", "timeout", "within 1.0 s"),
    ("bad_status_line", "connection", ""),
])
def test_hostile_stream_fails_request_with_reason(mode: str, reason: str, text: str, transport: str) -> None:
    if transport == "aiohttp" and mode == "length_lie_short":
        reason, text = "connection", "Data after"  # aiohttp itself refuses bytes past the promised length
    with hostile_server(mode) as url:
        res = _level(url, transport)
    measured = [r for r in res.records if not r.warmup]
    assert len(measured) == 4, "the level did not run to its end"
    for r in measured:
        assert r.error_reason == reason, (r.error_reason, r.error)
        assert text in (r.error or "")
        assert "\n" not in (r.error or "")


def test_sse_line_without_end_is_bounded() -> None:
    """A server that streams bytes with no newline cannot grow the client's buffer without limit."""
    from engine_runner.loadgen.client import MAX_SSE_LINE_BYTES, StreamParser
    from profiles.llm_metrics import RequestRecord

    p = StreamParser(RequestRecord(seq=0), 0, chat=False)
    for i in range(40):
        p.feed(b"data: " + b"x" * (1 << 20), i)
        assert len(p.buf) <= MAX_SSE_LINE_BYTES + (1 << 20)
    p.finish()
    assert p.rec.error_reason == "stream_error" and "longer than" in (p.rec.error or "")


def test_sse_ok_baseline() -> None:
    """The well-formed stream the hostile ones are variations of parses as one token and usage."""
    from engine_runner.loadgen.client import StreamParser
    from profiles.llm_metrics import RequestRecord

    p = StreamParser(RequestRecord(seq=0), 0, chat=False)
    p.feed(SSE_OK, 5)
    p.finish()
    assert p.rec.error_reason is None and p.rec.chunk_tokens == [1] and p.rec.output_tokens == 1


def test_tokenizer_mismatch_is_flagged() -> None:
    """Client and server token counts are compared per request; a mismatch is counted in the point."""
    from profiles.llm_metrics import RequestRecord, point_report

    recs = []
    for i in range(3):
        r = RequestRecord(seq=i)
        r.send_ns, r.first_token_ns, r.first_content_ns, r.end_ns = 0, 10_000_000, 10_000_000, 20_000_000
        r.chunk_ns, r.chunk_tokens = [10_000_000, 20_000_000], [1, 1]
        r.first_event_ns = 10_000_000
        r.output_tokens, r.client_output_tokens, r.input_tokens = 2, 2 if i == 0 else 5, 3
        recs.append(r)
    rep = point_report(recs, 1.0)
    assert rep["usage_mismatches"] == 2
