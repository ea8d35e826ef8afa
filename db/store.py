"""Model storage: intake (files, uploads, archives), content-addressed folders, listing and deletion.

Layout under ``ENGINESCOPE_HOME`` (:func:`db.config.home`)::

    models/<content_hash>/model.onnx            the graph
    models/<content_hash>/<location>            each external data file, under the exact relative name
                                                the model references (so ONNX Runtime / TensorRT find it)
    uploads/<random>/                           staging, removed when intake ends (success or error)

``content_hash`` is the SHA-256 of the ``.onnx`` file for a self-contained model. For a model with
external data it is the SHA-256 of a manifest listing the ``.onnx``'s SHA-256 and every data file's
(location, SHA-256): two exports of one architecture with different weights share a byte-identical
``.onnx`` (it holds only offsets), so hashing the ``.onnx`` alone would wrongly merge them.

Models run by the PyTorch engine (a Hugging Face folder, ``format="hf"``; a ``torch.export`` program,
``format="pt2"``) are registered by reference (:func:`add_reference_model`): ``Model.path`` is their
absolute path, nothing is copied (a folder may hold many GB and the Hugging Face cache already stores it).

``Model.path`` of an ONNX model is stored relative to ENGINESCOPE_HOME (``models/<hash>/model.onnx``); use
:func:`model_file` for the absolute path. The user's original file name (any UTF-8, e.g.
``"модель_ß.onnx"``) is kept as ``Model.original_name`` and never used as a path or passed to a shell.

Archive limits (environment): ``ENGINESCOPE_MAX_UNZIP_BYTES`` (default 64 GiB of uncompressed content),
``ENGINESCOPE_MAX_ZIP_ENTRIES`` (default 10000); an archive must also fit in the free disk space.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import unicodedata
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, select, update

from db.config import home
from db.models import Artifact, Job, Model
from db.session import session_scope
from profiles.errors import InputError, ModelError
from profiles.files import sha256_file
from profiles.onnx_inspect import ModelInspection, inspect_onnx, referenced_locations

STORED_ONNX_NAME = "model.onnx"
_CHUNK = 4 * 1024 * 1024
_DEFAULT_MAX_UNZIP_BYTES = 64 * 2**30
_DEFAULT_MAX_ZIP_ENTRIES = 10_000
#: Longest display name of a model, in characters.
MAX_NAME_CHARS = 1024


def _limit(env: str, default: int) -> int:
    raw = os.environ.get(env)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ModelError(f"environment variable {env}={raw!r} is not an integer") from None
    if value <= 0:
        raise ModelError(f"environment variable {env}={raw!r} must be > 0")
    return value


# --------------------------------------------------------------------------------------------------
# Public API


def add_model(sources: Path | Sequence[Path], original_name: str | None = None, *, url: str | None = None,
              meta: dict[str, Any] | None = None) -> Model:
    """Validate, store and register a model; return its ``models`` row (an existing row when the same
    content was added before).

    Args:
        sources: one ``.onnx`` file (its external data, if any, is read from beside it, as when a
            user registers a model by a path on the server); or one ``.zip`` holding exactly one
            ``.onnx`` and its data files; or a ``.onnx`` plus its external data files, matched to the
            model's locations by file name (``Path.name``; a location ``w/x.bin`` matches a file named
            ``x.bin``). Write uploads to disk under their uploaded names, or use :func:`add_uploaded`.
        original_name: the name to show (default: the ``.onnx`` file's name); metadata only.
        url: SQLAlchemy URL (default ``db.config.db_url()``).
        meta: JSON stored as ``Model.meta`` (where the model came from, e.g. ``{"export": report}`` from
            ``enginescope export``). When the same content is already registered, its row is returned and
            ``meta`` fills its ``meta`` only if that was empty (an upload's ``{}``); a non-empty one is kept.

    Returns:
        The ``Model`` row (detached; attributes loaded).

    Raises:
        ModelError: no files, a missing/empty/non-ONNX/corrupt file, missing or unsafe external data
            (names tensor and file), an unsafe or oversized archive, ambiguous uploads.
    """
    paths = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(p) for p in sources]
    if not paths:
        raise ModelError("no files given: upload a .onnx file (with its external data files), or a .zip")
    for p in paths:
        if not p.exists():
            raise ModelError(f"{p.name}: file not found ({p})")
        if not p.is_file():
            raise ModelError(f"{p.name}: not a regular file ({p})")

    staging = home() / "uploads" / f"intake-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        if len(paths) == 1 and _is_archive(paths[0]):
            onnx_src = _safe_unzip(paths[0], staging / "unzipped")
            name = original_name or onnx_src.name
            inspection = inspect_onnx(onnx_src)
            final_dir, content_hash = _stage_from_folder(onnx_src, inspection, staging / "store", move=True)
        elif len(paths) == 1:
            onnx_src = paths[0]
            name = original_name or onnx_src.name
            inspection = inspect_onnx(onnx_src)
            final_dir, content_hash = _stage_from_folder(onnx_src, inspection, staging / "store", move=False)
        else:
            onnx_src = _pick_onnx(paths)
            name = original_name or onnx_src.name
            extra = _stage_from_files(onnx_src, [p for p in paths if p != onnx_src], staging / "store")
            inspection = inspect_onnx(staging / "store" / STORED_ONNX_NAME)
            inspection.warnings.extend(extra)
            final_dir, content_hash = staging / "store", _content_hash(staging / "store", inspection)
        return _register(final_dir, content_hash, name, inspection, url, meta)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def add_reference_model(path: Path, *, format: str, content_hash: str, original_name: str, size_bytes: int,
                        inputs: list[dict[str, Any]] | None = None, outputs: list[dict[str, Any]] | None = None,
                        param_count: int | None = None, producer: str | None = None,
                        op_histogram: dict[str, Any] | None = None, preflight: dict[str, Any] | None = None,
                        url: str | None = None) -> Model:
    """Register a model that stays where it is (no copy): a Hugging Face folder (``format="hf"``) or a
    ``torch.export`` program (``format="pt2"``), run by the PyTorch engine. ``Model.path`` is the absolute
    ``path``; :func:`delete_model` removes the row but never the user's files (they are outside
    ``models/``).

    The caller inspects the model (``engine_runner.torch_models``) and passes what it found; a row with the
    same ``content_hash`` and ``format`` at the same path is returned instead of a new one.

    Args:
        path: the folder or file (made absolute).
        format: ``Model.format`` (``hf``, ``pt2``).
        content_hash: SHA-256 identifying the content (for a folder: of a manifest of its files' hashes).
        original_name: display name (folder or file name, or the hub id).
        size_bytes: summed size of the files.
        inputs / outputs: ``[{"name", "dtype", "shape"}]`` (str dims symbolic), as for ONNX models.
        param_count / producer / op_histogram / preflight: as the ``models`` columns.

    Returns:
        The ``Model`` row (detached).

    Raises:
        ModelError: ``path`` does not exist (names it).
    """
    p = Path(path).resolve()
    if not p.exists():
        raise ModelError(f"{p.name}: not found ({p})")
    with session_scope(url) as s:
        existing = s.scalar(select(Model).where(Model.content_hash == content_hash, Model.format == format,
                                                Model.path == str(p)).order_by(Model.id).limit(1))
        if existing is not None:
            return existing
        row = Model(content_hash=content_hash, original_name=original_name, format=format, path=str(p),
                    size_bytes=int(size_bytes), opset=None, ir_version=None, producer=producer,
                    inputs=list(inputs or []), outputs=list(outputs or []), op_histogram=dict(op_histogram or {}),
                    opset_imports={}, param_count=param_count, external_data=[], preflight=dict(preflight or {}))
        s.add(row)
    return row


def add_uploaded(files: Iterable[tuple[str, IO[bytes]]], *, url: str | None = None) -> Model:
    """Store uploaded files (``(uploaded_name, readable binary stream)`` pairs, e.g. Streamlit's
    ``UploadedFile.name`` and the object itself) and call :func:`add_model` on them.

    Each name is reduced to its last path component (so ``../../x.onnx`` becomes ``x.onnx``) and used
    only inside a fresh staging folder; the ``.onnx``'s uploaded name becomes ``original_name``.

    Raises:
        ModelError: no files, an empty upload, an unusable or duplicate name, or anything
            :func:`add_model` raises.
    """
    folder = home() / "uploads" / f"upload-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        paths: list[Path] = []
        for raw_name, stream in files:
            name = _safe_basename(raw_name)
            dest = folder / name
            if dest.exists():
                raise ModelError(f"{raw_name}: two uploaded files share this name")
            with dest.open("wb") as out:
                shutil.copyfileobj(stream, out, _CHUNK)
            if dest.stat().st_size == 0:
                raise ModelError(f"{raw_name}: the upload is empty (0 bytes)")
            paths.append(dest)
        if not paths:
            raise ModelError("no files uploaded: drop a .onnx file (with its external data files), or a .zip")
        onnx_name = None
        if len(paths) > 1:
            onnx_name = _pick_onnx(paths).name
        elif not _is_archive(paths[0]):
            onnx_name = paths[0].name
        return add_model(paths, onnx_name, url=url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def model_file(model: Model) -> Path:
    """Absolute path of the stored ``.onnx`` of ``model`` (``Model.path`` is relative to
    ENGINESCOPE_HOME; an absolute ``path`` is returned as is: a model registered by reference,
    :func:`add_reference_model`, e.g. a Hugging Face folder or a ``.pt2``)."""
    p = Path(model.path)
    return p if p.is_absolute() else home() / p


def get_model(model_id: int, *, url: str | None = None) -> Model:
    """The ``models`` row with ``model_id``.

    Raises:
        ModelError: no such model (names the id).
    """
    with session_scope(url) as s:
        m = s.get(Model, model_id)
        if m is None:
            raise ModelError(f"model id {model_id}: no such model")
        return m


def list_models(*, url: str | None = None) -> list[Model]:
    """All models, newest first."""
    with session_scope(url) as s:
        return list(s.scalars(select(Model).order_by(Model.created_at.desc(), Model.id.desc())))


def delete_model(model_id: int, *, url: str | None = None, force: bool = False) -> None:
    """Delete a model's row and its stored folder, keeping every other stored result.

    A model that a queued or running job uses (``jobs.model_id``, or ``model_id`` in the job's spec)
    is not deleted unless ``force`` is True: the job would fail when it opens the model's file.

    Runs and jobs of the model keep their data with ``model_id`` NULL (foreign keys ``ON DELETE SET
    NULL``). Artifacts that also belong to a run or a job are kept and detached from the model;
    artifacts of the model alone (e.g. cached precision variants) are deleted with their files under
    ENGINESCOPE_HOME. The folder ``models/<hash>`` is removed only when no other row uses the hash.

    Raises:
        ModelError: no such model (names the id).
        InputError: a queued or running job uses the model and ``force`` is False (names the job ids).
    """
    root = home()
    with session_scope(url) as s:
        m = s.get(Model, model_id)
        if m is None:
            raise ModelError(f"model id {model_id}: no such model")
        if not force:
            active = s.execute(
                select(Job.id, Job.model_id, Job.spec).where(Job.status.in_(("queued", "running"))).order_by(Job.id)
            ).all()
            users = [
                jid for jid, jmodel, spec in active
                if jmodel == model_id or (isinstance(spec, dict) and spec.get("model_id") == model_id)
            ]
            if users:
                raise InputError(
                    f"model id {model_id} is used by queued/running job(s) {', '.join(map(str, users))}; "
                    "cancel them first or delete with --force"
                )
        content_hash = m.content_hash
        s.execute(
            update(Artifact)
            .where(Artifact.model_id == model_id, (Artifact.run_id.is_not(None)) | (Artifact.job_id.is_not(None)))
            .values(model_id=None)
        )
        own = list(s.scalars(select(Artifact.path).where(Artifact.model_id == model_id)))
        s.execute(delete(Artifact).where(Artifact.model_id == model_id))
        s.execute(delete(Model).where(Model.id == model_id))
        still_used = s.scalar(select(Model.id).where(Model.content_hash == content_hash).limit(1)) is not None
    for p in own:
        _remove_under(root, root / p)
    if not still_used and content_hash:
        _remove_under(root / "models", root / "models" / content_hash)


def model_to_dict(model: Model) -> dict[str, Any]:
    """A JSON-ready dict of a ``models`` row (all columns, ``created_at`` ISO 8601, plus ``file``:
    the absolute path of the stored ``.onnx``)."""
    out: dict[str, Any] = {c.name: getattr(model, c.name) for c in Model.__table__.columns}
    out["created_at"] = model.created_at.isoformat() if model.created_at else None
    out["file"] = str(model_file(model))
    return out


# --------------------------------------------------------------------------------------------------
# Pre-flight


def build_preflight(onnx_path: Path, inspection: ModelInspection) -> dict[str, Any]:
    """The ``Model.preflight`` dict of a model being added: ``{"nondefault_domains": [...],
    "warnings": [...]}`` from the inspection.

    Extension point: engine-specific checks (e.g. a TensorRT parser pre-flight) add their own key to
    the returned dict here (``pf["tensorrt"] = ...``); ``onnx_path`` is the stored file.
    ``pf["tensorrt"]`` is :func:`profiles.trt_preflight.tensorrt_preflight` (operators TensorRT's ONNX
    parser will not import), or ``{"error": message}`` when that check could not read the model.
    """
    from profiles.trt_preflight import tensorrt_preflight

    pf = inspection.preflight()
    try:
        pf["tensorrt"] = tensorrt_preflight(onnx_path)
    except ModelError as exc:
        pf["tensorrt"] = {"error": str(exc)}
    return pf


# --------------------------------------------------------------------------------------------------
# Intake internals


def _is_archive(path: Path) -> bool:
    """A ``.zip`` name, or a file that is a ZIP archive without an ``.onnx`` name."""
    if path.suffix.lower() == ".zip":
        return True
    return path.suffix.lower() != ".onnx" and zipfile.is_zipfile(path)


def check_model_name(name: str) -> str:
    """A model's display name, NFC-normalised (so NFD and NFC spellings are one name); refused when it
    holds a control character (newline, NUL, terminal escapes) or is longer than :data:`MAX_NAME_CHARS`.

    Raises:
        ModelError: naming the name (as ``repr``, so the message stays one line) and the character.
    """
    name = unicodedata.normalize("NFC", name)
    bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise ModelError(f"model name {name[:200]!r} (--name, else the file name): contains control character "
                         f"U+{ord(bad):04X}; choose a name without it (--name)")
    if len(name) > MAX_NAME_CHARS:
        raise ModelError(f"model name {name[:40]!r}... (--name, else the file name): {len(name)} characters, more "
                         f"than {MAX_NAME_CHARS}")
    if not name.strip():
        raise ModelError(f"model name {name!r} (--name): empty")
    return name


def _safe_basename(raw: str) -> str:
    name = unicodedata.normalize("NFC", re.split(r"[\\/]+", raw or "")[-1].replace("\x00", ""))
    if name in ("", ".", ".."):
        raise ModelError(f"uploaded file name {raw!r} is not usable as a file name")
    if len(name.encode("utf-8")) > 255:
        stem, dot, ext = name.rpartition(".")
        name = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32] + (f".{ext[:16]}" if dot else "")
    return name


def _pick_onnx(paths: Sequence[Path]) -> Path:
    if any(_is_archive(p) for p in paths):
        names = ", ".join(p.name for p in paths if _is_archive(p))
        raise ModelError(f"{names}: upload a .zip archive on its own, not together with other files")
    onnx_files = [p for p in paths if p.suffix.lower() == ".onnx"]
    if len(onnx_files) != 1:
        listed = ", ".join(p.name for p in paths)
        what = "no .onnx file" if not onnx_files else f"{len(onnx_files)} .onnx files"
        raise ModelError(f"{what} among the uploaded files ({listed}): give exactly one .onnx with its data files")
    return onnx_files[0]


def _copy_hashing(src: Path, dest: Path, *, move: bool = False) -> str:
    """Copy (or move, within one filesystem) ``src`` to ``dest``; return the SHA-256 hex digest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    if move:
        os.replace(src, dest)
        with dest.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()
    with src.open("rb") as fin, dest.open("wb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def _manifest_hash(onnx_sha: str, data_shas: dict[str, str]) -> str:
    if not data_shas:
        return onnx_sha
    lines = [f"enginescope-model-v1\n{STORED_ONNX_NAME} {onnx_sha}\n"]
    lines += [f"{loc} {sha}\n" for loc, sha in sorted(data_shas.items())]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _check_location_slot(onnx_name: str, loc: str) -> None:
    if os.path.normpath(loc) == STORED_ONNX_NAME:
        raise ModelError(
            f"{onnx_name}: external data location {loc!r} collides with the stored graph's name "
            f"{STORED_ONNX_NAME!r}; re-save the model with another data file name"
        )


def _stage_from_folder(onnx_src: Path, inspection: ModelInspection, dest: Path, *, move: bool) -> tuple[Path, str]:
    """Copy a validated ``.onnx`` and the data files it references (beside it) into ``dest``."""
    onnx_sha = _copy_hashing(onnx_src, dest / STORED_ONNX_NAME, move=move)
    data: dict[str, str] = {}
    done: dict[Path, Path] = {}  # resolved source -> its staged copy (two locations, one file)
    for ref in inspection.external_data:
        loc = ref["location"]
        if loc in data:
            continue
        _check_location_slot(onnx_src.name, loc)
        src = (onnx_src.parent / loc).resolve()
        if src in done:
            data[loc] = _copy_hashing(done[src], dest / loc)
        else:
            data[loc] = _copy_hashing(src, dest / loc, move=move)
            done[src] = dest / loc
    return dest, _manifest_hash(onnx_sha, data)


def _stage_from_files(onnx_src: Path, others: list[Path], dest: Path) -> list[str]:
    """Lay out ``onnx_src`` and the uploaded data files in ``dest`` under the locations the model
    references; return warnings about uploaded files the model does not reference.

    Raises:
        ModelError: a referenced file missing from the uploads (names tensor(s) and file), two uploads
            with one name, or an unsafe location.
    """
    from profiles.onnx_inspect import external_data_refs, load_proto

    by_name: dict[str, Path] = {}
    for p in others:
        key = unicodedata.normalize("NFC", p.name)  # a macOS browser sends NFD names; locations are usually NFC
        if key in by_name:
            raise ModelError(f"{p.name}: two uploaded files share this name")
        by_name[key] = p
    locations = referenced_locations(onnx_src)
    needed: dict[str, Path] = {}
    missing: list[str] = []
    for loc in locations:
        base = unicodedata.normalize("NFC", re.split(r"[\\/]+", loc)[-1])
        if base in by_name:
            needed[loc] = by_name[base]
        else:
            missing.append(loc)
    if missing:
        tensors: dict[str, list[str]] = {}
        for ref in external_data_refs(load_proto(onnx_src)):
            tensors.setdefault(ref["location"], []).append(ref["tensor"])
        parts = [
            f"tensor {tensors[loc][0]!r}"
            + (f" (and {len(tensors[loc]) - 1} more)" if len(tensors[loc]) > 1 else "")
            + f" needs file {loc!r}"
            for loc in missing
        ]
        got = ", ".join(sorted(by_name)) or "none"
        raise ModelError(f"{onnx_src.name}: external data missing from the upload: {'; '.join(parts)} (uploaded data files: {got})")
    _copy_hashing(onnx_src, dest / STORED_ONNX_NAME)
    for loc, src in needed.items():
        _check_location_slot(onnx_src.name, loc)
        _copy_hashing(src, dest / loc)
    used = {unicodedata.normalize("NFC", p.name) for p in needed.values()}
    return [f"uploaded file {n!r} is not referenced by the model and was not stored" for n in sorted(by_name) if n not in used]


def _content_hash(folder: Path, inspection: ModelInspection) -> str:
    data = {ref["location"]: "" for ref in inspection.external_data}
    return _manifest_hash(sha256_file(folder / STORED_ONNX_NAME), {loc: sha256_file(folder / loc) for loc in data})


def _safe_unzip(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` safely and return the one ``.onnx`` inside.

    Refused: not a ZIP, encrypted entries, entry names that are absolute or contain ``..`` (zip-slip),
    symlink entries, more than ``ENGINESCOPE_MAX_ZIP_ENTRIES`` entries, more than
    ``ENGINESCOPE_MAX_UNZIP_BYTES`` uncompressed (declared or actually inflated), more than the free
    disk space, corrupt data (CRC), zero or several ``.onnx`` files. macOS metadata
    (``__MACOSX/``, ``._*``, ``.DS_Store``) is skipped.

    Raises:
        ModelError: naming the archive and the offending entry.
    """
    max_bytes = _limit("ENGINESCOPE_MAX_UNZIP_BYTES", _DEFAULT_MAX_UNZIP_BYTES)
    max_entries = _limit("ENGINESCOPE_MAX_ZIP_ENTRIES", _DEFAULT_MAX_ZIP_ENTRIES)
    an = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{an}: not a valid ZIP archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_entries:
            raise ModelError(f"{an}: {len(infos)} entries, more than the limit of {max_entries} (ENGINESCOPE_MAX_ZIP_ENTRIES)")
        files = []
        for info in infos:
            name = info.filename
            parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\x00" in name:
                raise ModelError(f"{an}: entry {name!r} points outside the archive's folder (zip-slip); refused")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ModelError(f"{an}: entry {name!r} is a symbolic link; refused")
            if info.flag_bits & 0x1:
                raise ModelError(f"{an}: entry {name!r} is encrypted; upload an unencrypted archive")
            if info.is_dir() or not parts:
                continue
            if parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store":
                continue
            files.append((info, parts))
        declared = sum(i.file_size for i, _ in files)
        if declared > max_bytes:
            raise ModelError(
                f"{an}: {declared} bytes uncompressed, more than the limit of {max_bytes} (ENGINESCOPE_MAX_UNZIP_BYTES)"
            )
        dest.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(dest).free
        if declared * 2 > free:  # extracted copy + stored copy
            raise ModelError(f"{an}: {declared} bytes uncompressed need twice that on disk, but only {free} bytes are free")
        root = dest.resolve()
        onnx_files: list[Path] = []
        total = 0
        for info, parts in files:
            target = root.joinpath(*parts)
            if not target.resolve().is_relative_to(root):
                raise ModelError(f"{an}: entry {info.filename!r} points outside the archive's folder; refused")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as fin, target.open("xb") as fout:
                    while chunk := fin.read(_CHUNK):
                        written += len(chunk)
                        total += len(chunk)
                        if written > info.file_size or total > max_bytes:
                            raise ModelError(
                                f"{an}: entry {info.filename!r} inflates beyond its declared size or the "
                                f"limit of {max_bytes} bytes; refused"
                            )
                        fout.write(chunk)
            except FileExistsError:
                raise ModelError(f"{an}: entry {info.filename!r} appears twice in the archive") from None
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
                raise ModelError(f"{an}: entry {info.filename!r} cannot be extracted: {exc}") from None
            if target.suffix.lower() == ".onnx":
                onnx_files.append(target)
        if not onnx_files:
            listed = ", ".join(i.filename for i, _ in files[:10]) or "nothing"
            raise ModelError(f"{an}: no .onnx file in the archive (it holds: {listed})")
        if len(onnx_files) > 1:
            listed = ", ".join(str(p.relative_to(root)) for p in onnx_files[:10])
            raise ModelError(f"{an}: {len(onnx_files)} .onnx files in one archive ({listed}); upload one model per archive")
        return onnx_files[0]


def _register(folder: Path, content_hash: str, name: str, inspection: ModelInspection, url: str | None,
              meta: dict[str, Any] | None = None) -> Model:
    """Move the staged ``folder`` to ``models/<content_hash>`` and insert the row, or return the row
    already holding this content (its empty ``meta`` filled with ``meta``)."""
    name = check_model_name(name)
    existing = _existing(content_hash, url, meta)
    if existing is not None:
        return existing
    models_root = home() / "models"
    final = models_root / content_hash
    if final.exists():  # left by an interrupted intake (no row refers to it)
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(folder, final)
    except OSError:
        # another process stored the same content between our check and the move: use its row
        existing = _existing(content_hash, url, meta)
        if existing is not None:
            return existing
        raise
    stored = final / STORED_ONNX_NAME
    row = Model(
        content_hash=content_hash,
        original_name=name,
        format="onnx",
        path=str(stored.relative_to(home())),
        size_bytes=inspection.size_bytes,
        opset=inspection.opset,
        ir_version=inspection.ir_version,
        producer=inspection.producer,
        inputs=inspection.inputs,
        outputs=inspection.outputs,
        op_histogram=inspection.op_histogram,
        opset_imports=inspection.opset_imports,
        param_count=inspection.param_count,
        external_data=inspection.external_data,
        preflight=build_preflight(stored, inspection),
        meta=dict(meta or {}),
    )
    try:
        with session_scope(url) as s:
            s.add(row)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    return row


def _existing(content_hash: str, url: str | None, meta: dict[str, Any] | None) -> Model | None:
    """The first row holding ``content_hash`` (None if none); an empty ``meta`` of it is set to ``meta``."""
    with session_scope(url) as s:
        existing = s.scalar(select(Model).where(Model.content_hash == content_hash).order_by(Model.id).limit(1))
        if existing is not None and meta and not existing.meta:
            existing.meta = dict(meta)
        return existing


def _remove_under(root: Path, target: Path) -> None:
    """Remove ``target`` (file or folder) if it lies strictly inside ``root``; never follow it out."""
    root_r = root.resolve()
    try:
        t = target.resolve()
    except OSError:
        return
    if t == root_r or not t.is_relative_to(root_r):
        return
    if t.is_dir():
        shutil.rmtree(t, ignore_errors=True)
    elif t.exists():
        t.unlink(missing_ok=True)
