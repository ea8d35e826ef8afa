"""The artifact store of ENGINESCOPE_ARTIFACTS (db/artifact_store.py): a folder path and a file:// URL fully;
a bucket URL through fsspec's in-memory filesystem (``memory://bucket/prefix``), the same code path as
``s3://`` minus the network: no S3-compatible server is reachable from this machine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from db.artifact_store import ArtifactStore, sha256_file, store_job_log
from profiles.errors import InputError


def _file(tmp: Path, name: str = "engine.plan", data: bytes = b"\x00engine bytes" * 100) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("form", ["path", "file_url"])
def test_folder_store_round_trip_with_content_hash(tmp_path: Path, form: str) -> None:
    root = tmp_path / "nfs" / "artifacts"
    store = ArtifactStore(str(root) if form == "path" else root.as_uri())
    assert store.is_local and root.is_dir()
    src = _file(tmp_path)
    put = store.put_file(src, "jobs/7/engine.plan")
    assert put.content_hash == hashlib.sha256(src.read_bytes()).hexdigest() == sha256_file(src)
    assert put.url == (root / "jobs/7/engine.plan").as_uri() and (root / "jobs/7/engine.plan").read_bytes() == src.read_bytes()
    back = store.get_file("jobs/7/engine.plan", tmp_path / "back.plan", expect_hash=put.content_hash)
    assert back.read_bytes() == src.read_bytes()
    with pytest.raises(InputError, match="content hash"):
        store.get_file("jobs/7/engine.plan", tmp_path / "bad.plan", expect_hash="0" * 64)
    assert store.list() == ["jobs/7/engine.plan"] and store.exists("jobs/7/engine.plan")


def test_default_is_the_home_artifacts_folder(es_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from db.config import home

    monkeypatch.delenv("ENGINESCOPE_ARTIFACTS", raising=False)
    assert ArtifactStore().root == str(home() / "artifacts")


def test_bucket_url_through_fsspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINESCOPE_ARTIFACTS", "memory://team-bucket/enginescope")
    store = ArtifactStore()
    assert not store.is_local and store.url == "memory://team-bucket/enginescope"
    src = _file(tmp_path, "model.onnx", b"onnx" * 1000)
    a = store.put_file(src)  # content-addressed: stored once
    b = store.put_file(src)
    assert a == b and a.key == f"by-hash/{a.content_hash}/model.onnx"
    assert a.url == f"memory://team-bucket/enginescope/{a.key}"
    with store.open("reports/r1.html", "wb") as f:
        f.write(b"<html/>")
    assert store.list() == sorted([a.key, "reports/r1.html"])
    assert store.get_file(a.key, tmp_path / "m.onnx", expect_hash=a.content_hash).read_bytes() == src.read_bytes()
    with pytest.raises(InputError, match="does not exist"):
        store.get_file("nope", tmp_path / "x")


def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    for bad in ("../etc/passwd", "", "a/../../b"):
        with pytest.raises(InputError, match="relative path"):
            store.put_bytes(b"x", bad)


def test_unknown_scheme_or_missing_backend_says_what_to_install() -> None:
    with pytest.raises(InputError, match="no fsspec filesystem"):
        ArtifactStore("nosuchscheme://x/y")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="pip install s3fs"):
            ArtifactStore("s3://bucket/prefix")


def test_job_log_goes_to_a_remote_store_with_an_artifact_row(es_env: str, tmp_path: Path) -> None:
    from sqlalchemy import select

    from db import jobs as q
    from db.models import Artifact
    from db.session import session_scope

    job_id = q.submit_job("clock_check", {})
    log = _file(tmp_path, "job.log", b"=== job 1 ===\nok\n")
    assert store_job_log(job_id, log, store=ArtifactStore(str(tmp_path / "local"))) is None  # a folder: nothing to do
    remote = ArtifactStore("memory://logs-bucket/es")
    put = store_job_log(job_id, log, store=remote)
    assert put is not None and remote.exists(f"logs/job-{job_id}.log")
    with session_scope() as s:
        row = s.execute(select(Artifact).where(Artifact.job_id == job_id)).scalar_one()
    assert row.kind == "log" and row.path == put.url and row.content_hash == sha256_file(log)
