"""The artifact store: where engines, ONNX variants, reports, profiles and logs live, shared by a fleet.

``ENGINESCOPE_ARTIFACTS`` (see :func:`db.config.artifacts_url`) picks it:

- unset: the ``artifacts/`` folder of ``ENGINESCOPE_HOME`` (today's layout);
- a folder path or a ``file://`` URL: a local or NFS folder every node mounts at the same path;
- any other fsspec URL: ``s3://bucket/prefix`` (needs ``s3fs``; an S3-compatible server such as MinIO
  through ``AWS_ENDPOINT_URL`` or fsspec's config), ``gs://``, ``memory://`` (tests) ...

Keys are ``/``-separated paths under the store's root. :meth:`ArtifactStore.put_file` stores a file with its
SHA-256 (the content hash the ``artifacts`` rows carry, as today); with ``key=None`` the key is
content-addressed (``by-hash/<sha256>/<name>``), so the same bytes are stored once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from profiles.errors import InputError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredFile:
    """A file put in the store: its key, full URL, SHA-256 and size."""

    key: str
    url: str
    content_hash: str
    size_bytes: int


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a local file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _clean_key(key: str) -> str:
    parts = [p for p in str(key).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InputError(f"artifact key {key!r} must be a relative path without '..'")
    return "/".join(parts)


class ArtifactStore:
    """An fsspec filesystem and a root (see the module doc).

    Raises:
        InputError: an unknown URL scheme, or one whose fsspec backend is not installed (e.g. s3fs).
    """

    def __init__(self, url: str | None = None) -> None:
        from db.config import artifacts_url

        raw = url or artifacts_url()
        parsed = urlparse(raw)
        if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
            local = Path(parsed.path if parsed.scheme == "file" else raw).expanduser().resolve()
            local.mkdir(parents=True, exist_ok=True)
            self.protocol, self.root, self.url = "file", str(local), local.as_uri()
        else:
            self.protocol = parsed.scheme
            self.root = (parsed.netloc + parsed.path).rstrip("/")
            self.url = f"{self.protocol}://{self.root}"
        try:
            import fsspec

            self.fs: Any = fsspec.filesystem(self.protocol)
        except (ImportError, ValueError) as exc:
            hint = " (pip install s3fs)" if self.protocol in ("s3", "s3a") else ""
            raise InputError(f"ENGINESCOPE_ARTIFACTS={raw!r}: no fsspec filesystem for {self.protocol}://{hint}: {exc}") from None

    @property
    def is_local(self) -> bool:
        """True for a folder on this machine (or an NFS mount): files can be opened by path."""
        return self.protocol == "file"

    def path_of(self, key: str) -> str:
        """The filesystem path of ``key`` (a local path for a folder store, ``bucket/prefix/key`` for S3)."""
        return f"{self.root}/{_clean_key(key)}"

    def url_of(self, key: str) -> str:
        """The full URL of ``key`` (``file:///...``, ``s3://bucket/prefix/key``)."""
        k = _clean_key(key)
        return (Path(self.root) / k).as_uri() if self.is_local else f"{self.url}/{k}"

    def put_file(self, local: str | os.PathLike[str], key: str | None = None) -> StoredFile:
        """Store the local file ``local`` under ``key`` (None: ``by-hash/<sha256>/<name>``, stored once)."""
        src = Path(local)
        if not src.is_file():
            raise InputError(f"artifact file {src} does not exist")
        digest = sha256_file(src)
        k = _clean_key(key) if key else f"by-hash/{digest}/{src.name}"
        dest = self.path_of(k)
        if not (key is None and self.fs.exists(dest)):
            parent = dest.rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            self.fs.put_file(str(src), dest)
        return StoredFile(k, self.url_of(k), digest, src.stat().st_size)

    def put_bytes(self, data: bytes, key: str) -> StoredFile:
        """Store ``data`` under ``key``."""
        k = _clean_key(key)
        dest = self.path_of(k)
        self.fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(dest, "wb") as f:
            f.write(data)
        return StoredFile(k, self.url_of(k), hashlib.sha256(data).hexdigest(), len(data))

    def get_file(self, key: str, local: str | os.PathLike[str], *, expect_hash: str | None = None) -> Path:
        """Copy ``key`` to the local path ``local``; with ``expect_hash`` the copy's SHA-256 must match.

        Raises:
            InputError: the key is absent, or its content does not match ``expect_hash``.
        """
        src = self.path_of(key)
        if not self.fs.exists(src):
            raise InputError(f"artifact {self.url_of(key)} does not exist")
        dest = Path(local)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.fs.open(src, "rb") as fi, open(dest, "wb") as fo:
            shutil.copyfileobj(fi, fo, _CHUNK)
        if expect_hash is not None and sha256_file(dest) != expect_hash:
            dest.unlink(missing_ok=True)
            raise InputError(f"artifact {self.url_of(key)} does not match its content hash {expect_hash[:12]}...")
        return dest

    def open(self, key: str, mode: str = "rb") -> IO[Any]:
        """An open file object of ``key``."""
        if "w" in mode or "a" in mode:
            self.fs.makedirs(self.path_of(key).rsplit("/", 1)[0], exist_ok=True)
        return self.fs.open(self.path_of(key), mode)

    def exists(self, key: str) -> bool:
        """True when ``key`` is in the store."""
        return bool(self.fs.exists(self.path_of(key)))

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (recursive), sorted."""
        base = self.path_of(prefix) if prefix else self.root
        if not self.fs.exists(base):
            return []
        root = self.root.rstrip("/") + "/"
        out = []
        for p in self.fs.find(base):
            p = str(p)
            if self.protocol == "memory":
                p = p.lstrip("/")
                r = root.lstrip("/")
            else:
                r = root
            out.append(p[len(r):] if p.startswith(r) else p)
        return sorted(out)


def store_job_log(job_id: int, log_path: str | os.PathLike[str], *, url: str | None = None,
                  store: ArtifactStore | None = None) -> StoredFile | None:
    """Put a job's log in the store (``logs/job-<id>.log``) and record it as an ``artifacts`` row (kind
    ``log``), when the store is not this machine's folder (a node's local log would be out of the
    dashboard's reach). Returns what was stored, or None for a local store or a missing log."""
    store = store or ArtifactStore()
    if store.is_local or not Path(log_path).is_file():
        return None
    from db.models import Artifact
    from db.session import session_scope

    put = store.put_file(log_path, f"logs/job-{job_id}.log")
    with session_scope(url) as s:
        s.add(Artifact(job_id=job_id, kind="log", path=put.url, content_hash=put.content_hash,
                       size_bytes=put.size_bytes, meta={"store": store.url}))
    return put
