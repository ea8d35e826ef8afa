"""db.store: model intake (file, files, zip, uploads), content-addressed storage, dedupe, delete."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import onnx
import pytest
from onnx_builders import linear_model, save_external, save_plain, save_with_raw_location
from sqlalchemy import select

from db.config import home
from db.models import Artifact, Model, Run
from db.session import session_scope
from db.store import add_model, add_uploaded, delete_model, get_model, list_models, model_file, model_to_dict
from profiles.errors import ModelError


def _stored_files(model: Model) -> set[str]:
    folder = model_file(model).parent
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _ort_runs(path: Path) -> None:
    """The stored model is usable by a real engine from its stored location."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"X": np.ones((2, 4), np.float32)})
    assert y.shape == (2, 3)


def test_add_single_file_layout_and_row(es_env: str, tmp_path: Path) -> None:
    src = save_plain(linear_model(), tmp_path / "lin.onnx")
    import hashlib

    m = add_model(src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert m.id and m.content_hash == sha and m.original_name == "lin.onnx" and m.format == "onnx"
    assert m.path == f"models/{sha}/model.onnx"
    assert model_file(m) == home() / "models" / sha / "model.onnx"
    assert model_file(m).read_bytes() == src.read_bytes()
    assert m.inputs == [{"name": "X", "dtype": "float32", "shape": ["N", 4]}]
    assert m.opset == 17 and m.param_count == 15 and m.size_bytes == src.stat().st_size
    assert m.preflight["nondefault_domains"] == [] and m.preflight["warnings"] == []
    assert m.preflight["tensorrt"]["ok"] is True
    assert [x.id for x in list_models()] == [m.id]
    assert get_model(m.id).content_hash == sha
    json.dumps(model_to_dict(m))  # JSON-ready
    assert not any((home() / "uploads").iterdir()), "staging folders must be cleaned up"


def test_same_content_twice_returns_existing_row(es_env: str, tmp_path: Path) -> None:
    a = save_plain(linear_model(seed=1), tmp_path / "a.onnx")
    b = tmp_path / "copy_with_other_name.onnx"
    shutil.copy(a, b)
    m1 = add_model(a)
    m2 = add_model(b, "another name")
    assert m2.id == m1.id and m2.original_name == "a.onnx"
    assert len(list_models()) == 1
    m3 = add_model(save_plain(linear_model(seed=2), tmp_path / "c.onnx"))
    assert m3.id != m1.id and len(list_models()) == 2


def test_non_ascii_name_is_metadata_only(es_env: str, tmp_path: Path) -> None:
    src = save_plain(linear_model(), tmp_path / "модель_ß.onnx")
    m = add_model(src)
    assert m.original_name == "модель_ß.onnx"
    assert "модель" not in m.path and model_file(m).name == "model.onnx"
    assert list_models()[0].original_name == "модель_ß.onnx"


def test_external_data_beside_the_file(es_env: str, tmp_path: Path) -> None:
    src = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    m = add_model(src)
    assert _stored_files(m) == {"model.onnx", "weights.bin"}
    assert {e["tensor"] for e in m.external_data} == {"W", "B"}
    _ort_runs(model_file(m))


def test_onnx_plus_data_files(es_env: str, tmp_path: Path) -> None:
    src = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    # the uploads land in unrelated folders; only their names matter
    up = tmp_path / "uploads"
    up.mkdir()
    shutil.copy(src, up / "ext.onnx")
    (up / "sub").mkdir()
    shutil.copy(tmp_path / "m" / "weights.bin", up / "sub" / "weights.bin")
    (up / "notes.txt").write_text("unrelated")
    m = add_model([up / "ext.onnx", up / "sub" / "weights.bin", up / "notes.txt"])
    assert _stored_files(m) == {"model.onnx", "weights.bin"}
    assert any("notes.txt" in w for w in m.preflight["warnings"])
    _ort_runs(model_file(m))


def test_same_graph_different_weights_are_two_models(es_env: str, tmp_path: Path) -> None:
    a = save_external(linear_model(seed=1), tmp_path / "a" / "m.onnx", "w.bin")
    b = save_external(linear_model(seed=2), tmp_path / "b" / "m.onnx", "w.bin")
    assert a.read_bytes() == b.read_bytes()  # the .onnx holds only offsets
    ma, mb = add_model(a), add_model(b)
    assert ma.id != mb.id and ma.content_hash != mb.content_hash
    assert add_model(a).id == ma.id


def test_missing_data_file_in_upload_names_tensor_and_file(es_env: str, tmp_path: Path) -> None:
    src = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    other = tmp_path / "other.bin"
    other.write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError, match=r"ext\.onnx: external data missing from the upload: tensor '(W|B)' \(and 1 more\) needs file 'weights.bin' \(uploaded data files: other.bin\)"):
        add_model([src, other])
    assert list_models() == []


def test_missing_data_file_beside(es_env: str, tmp_path: Path) -> None:
    src = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    (tmp_path / "m" / "weights.bin").unlink()
    with pytest.raises(ModelError, match=r"needs missing file 'weights.bin'"):
        add_model(src)


def test_dotdot_location_refused(es_env: str, tmp_path: Path) -> None:
    (tmp_path / "evil.bin").write_bytes(b"\x00" * 48)
    src = save_with_raw_location(linear_model(), tmp_path / "m" / "dots.onnx", "../evil.bin")
    with pytest.raises(ModelError, match=r"tensor 'W' refers to external data '\.\./evil\.bin'.*escapes"):
        add_model(src)
    with pytest.raises(ModelError, match=r"escapes"):
        add_model([src, tmp_path / "evil.bin"])
    assert list_models() == []


def test_empty_and_corrupt_files(es_env: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        add_model(empty)
    with pytest.raises(ModelError, match="no files given"):
        add_model([])
    txt = tmp_path / "notes.onnx"
    txt.write_text("just text")
    with pytest.raises(ModelError, match="text file"):
        add_model(txt)
    good = save_plain(linear_model(in_features=32, out_features=32), tmp_path / "g.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good[: len(good) // 3])
    with pytest.raises(ModelError, match="truncated"):
        add_model(cut)
    with pytest.raises(ModelError, match="file not found"):
        add_model(tmp_path / "nope.onnx")
    assert list_models() == []
    assert not any((home() / "models").iterdir())


def test_zip_with_external_data(es_env: str, tmp_path: Path) -> None:
    src = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    z = tmp_path / "bundle.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(src, "model_dir/ext.onnx")
        zf.write(tmp_path / "m" / "weights.bin", "model_dir/weights.bin")
        zf.writestr("__MACOSX/model_dir/._ext.onnx", b"junk")
    m = add_model(z)
    assert m.original_name == "ext.onnx"
    assert _stored_files(m) == {"model.onnx", "weights.bin"}
    _ort_runs(model_file(m))
    # same content from a zip and from files: one row
    assert add_model(src).id == m.id


def test_zip_slip_refused(es_env: str, tmp_path: Path) -> None:
    z = tmp_path / "slip.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok/model.onnx", save_plain(linear_model(), tmp_path / "x.onnx").read_bytes())
        zf.writestr("../../escaped.txt", b"gotcha")
    with pytest.raises(ModelError, match=r"slip\.zip: entry '\.\./\.\./escaped\.txt' points outside .*zip-slip"):
        add_model(z)
    assert not list(tmp_path.parent.rglob("escaped.txt"))
    assert list_models() == []


def test_zip_absolute_and_symlink_entries_refused(es_env: str, tmp_path: Path) -> None:
    z = tmp_path / "abs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("/etc/evil", b"x")
    with pytest.raises(ModelError, match="zip-slip"):
        add_model(z)
    z2 = tmp_path / "link.zip"
    info = zipfile.ZipInfo("model_dir/w.bin")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(z2, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ModelError, match="symbolic link"):
        add_model(z2)


def test_zip_size_limit_and_bad_archives(es_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m.onnx", b"\x00" * 200_000)
    monkeypatch.setenv("ENGINESCOPE_MAX_UNZIP_BYTES", "100000")
    with pytest.raises(ModelError, match=r"bomb\.zip: 200000 bytes uncompressed, more than the limit of 100000"):
        add_model(z)
    monkeypatch.delenv("ENGINESCOPE_MAX_UNZIP_BYTES")
    none = tmp_path / "none.zip"
    with zipfile.ZipFile(none, "w") as zf:
        zf.writestr("readme.txt", b"hi")
    with pytest.raises(ModelError, match=r"no \.onnx file in the archive \(it holds: readme.txt\)"):
        add_model(none)
    two = tmp_path / "two.zip"
    onnx_bytes = save_plain(linear_model(), tmp_path / "x.onnx").read_bytes()
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.onnx", onnx_bytes)
        zf.writestr("b.onnx", onnx_bytes)
    with pytest.raises(ModelError, match="2 .onnx files in one archive"):
        add_model(two)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ModelError, match=r"broken\.zip: not a valid ZIP archive"):
        add_model(broken)


def test_add_uploaded_streams(es_env: str, tmp_path: Path) -> None:
    src = save_external(linear_model(), tmp_path / "m" / "ext.onnx", "weights.bin")
    files = [
        ("../../модель.onnx", io.BytesIO(src.read_bytes())),
        ("weights.bin", io.BytesIO((tmp_path / "m" / "weights.bin").read_bytes())),
    ]
    m = add_uploaded(files)
    assert m.original_name == "модель.onnx"
    _ort_runs(model_file(m))
    with pytest.raises(ModelError, match=r"x\.onnx: the upload is empty"):
        add_uploaded([("x.onnx", io.BytesIO(b""))])
    with pytest.raises(ModelError, match="no files uploaded"):
        add_uploaded([])


def test_delete_keeps_runs_and_other_models(es_env: str, tmp_path: Path) -> None:
    keep = add_model(save_plain(linear_model(seed=5), tmp_path / "keep.onnx"))
    m = add_model(save_external(linear_model(seed=6), tmp_path / "m" / "gone.onnx", "weights.bin"))
    folder = model_file(m).parent
    with session_scope() as s:
        run = Run(model_id=m.id, engine="onnxruntime", status="succeeded")
        s.add(run)
        s.flush()
        s.add(Artifact(run_id=run.id, model_id=m.id, kind="log", path="artifacts/run.log"))
        s.add(Artifact(model_id=m.id, kind="onnx_variant", path="artifacts/variant.onnx"))
        run_id = run.id
    (home() / "artifacts" / "variant.onnx").write_bytes(b"v")
    (home() / "artifacts" / "run.log").write_bytes(b"log")
    delete_model(m.id)
    assert not folder.exists()
    assert model_file(keep).exists()
    with session_scope() as s:
        r = s.get(Run, run_id)
        assert r is not None and r.model_id is None
        arts = list(s.scalars(select(Artifact)))
        assert [(a.kind, a.model_id, a.run_id) for a in arts] == [("log", None, run_id)]
    assert (home() / "artifacts" / "run.log").exists()
    assert not (home() / "artifacts" / "variant.onnx").exists()
    assert [x.id for x in list_models()] == [keep.id]
    with pytest.raises(ModelError, match=r"model id 999: no such model"):
        delete_model(999)
    # re-adding after delete works and stores the files again
    again = add_model(save_external(linear_model(seed=6), tmp_path / "m2" / "gone.onnx", "weights.bin"))
    assert model_file(again).exists()


def test_every_shared_model_is_stored(es_env: str, shared: Path, tmp_path: Path) -> None:
    onnx_dir = shared / "models" / "onnx"
    ids = set()
    for p in sorted(onnx_dir.rglob("*.onnx")):
        m = add_model(p)
        ids.add(m.id)
        assert model_file(m).exists()
        for e in m.external_data:
            assert (model_file(m).parent / e["location"]).is_file()
    assert len(ids) == len(list(onnx_dir.rglob("*.onnx")))
    by_name = {m.original_name: m for m in list_models()}
    assert by_name["tiny-random-gpt2_fp32_past_com.microsoft.onnx"].preflight["nondefault_domains"] == ["com.microsoft"]
    gpt2_trt = by_name["tiny-random-gpt2_fp32_past_com.microsoft.onnx"].preflight["tensorrt"]
    assert gpt2_trt["ok"] is False and any(i["op_type"] == "Attention" for i in gpt2_trt["issues"])
    assert by_name["logreg_iris_ai.onnx.ml.onnx"].preflight["nondefault_domains"] == ["ai.onnx.ml"]
    ext = by_name["model.onnx"]
    assert _stored_files(ext) == {"model.onnx", "model.onnx.data"}
    # the stored external-data model loads with its weights from the stored folder
    full = onnx.load(str(model_file(ext)))
    assert len(full.graph.initializer) == 11
    # the external-data model as .onnx + data file (the drag-and-drop case) dedupes to the same row
    folder = onnx_dir / "mnist_external_data"
    assert add_model([folder / "model.onnx", folder / "model.onnx.data"]).id == ext.id


def test_cli_models_commands(es_env: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from engine_runner.cli import app

    runner = CliRunner()
    src = save_plain(linear_model(), tmp_path / "modèle.onnx")
    r = runner.invoke(app, ["models", "add", str(src), "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    assert row["original_name"] == "modèle.onnx" and row["inputs"][0]["shape"] == ["N", 4]
    r = runner.invoke(app, ["models", "list", "--json"])
    assert r.exit_code == 0 and [m["id"] for m in json.loads(r.stdout)] == [row["id"]]
    r = runner.invoke(app, ["models", "show", str(row["id"])])
    assert r.exit_code == 0 and "X: float32 [N, 4]" in r.stdout and "MatMul x1" in r.stdout
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    r = runner.invoke(app, ["models", "add", str(bad)])
    assert r.exit_code == 2 and "bad.onnx: not an ONNX model" in r.stderr
    r = runner.invoke(app, ["models", "show", "424242"])
    assert r.exit_code == 2 and "model id 424242" in r.stderr
    r = runner.invoke(app, ["models", "rm", str(row["id"])])
    assert r.exit_code == 0
    assert list_models() == []


def test_rm_refused_while_a_queued_or_running_job_uses_the_model(es_env: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from db.models import Job
    from engine_runner.cli import app
    from profiles.errors import InputError

    m = add_model(save_plain(linear_model(seed=11), tmp_path / "used.onnx"))
    with session_scope() as s:
        by_column = Job(kind="model_bench", status="queued", model_id=m.id, spec={})
        by_spec = Job(kind="model_bench", status="running", spec={"model_id": m.id})
        done = Job(kind="model_bench", status="succeeded", model_id=m.id, spec={"model_id": m.id})
        s.add_all([by_column, by_spec, done])
        s.flush()
        ids = (by_column.id, by_spec.id, done.id)
    with pytest.raises(InputError, match=rf"model id {m.id} is used by queued/running job\(s\) {ids[0]}, {ids[1]};"):
        delete_model(m.id)
    runner = CliRunner()
    r = runner.invoke(app, ["models", "rm", str(m.id)])
    assert r.exit_code == 2 and f"job(s) {ids[0]}, {ids[1]}" in r.stderr and "--force" in r.stderr
    assert model_file(m).exists() and [x.id for x in list_models()] == [m.id]
    r = runner.invoke(app, ["models", "rm", str(m.id), "--force"])
    assert r.exit_code == 0, r.output
    assert list_models() == []
    with session_scope() as s:
        assert s.get(Job, ids[0]).model_id is None
