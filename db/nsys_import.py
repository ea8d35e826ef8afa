"""Import Nsight Systems captures produced elsewhere as profiled Runs.

Inputs: ``nsys export --type sqlite`` files (recognised by the SQLite magic bytes), reports (``.nsys-rep``,
``.qdrep``: converted with the local nsys, :mod:`db.nsys_tool`), or folders (their ``*.nsys-rep``, ``*.qdrep``
and nsys ``*.sqlite`` files; a ``.sqlite`` beside a report of the same stem is taken as that report's export and
skipped). Each capture becomes one Run:

- ``engine="nsys"``, ``engine_version`` = the capturing nsys version, ``source="import:nsys"``,
  ``status="succeeded"``, ``label`` = the file stem + ``[profiled: nsys]`` (:func:`db.kernels.profiled_label`);
- ``config["profiler"]`` = :func:`db.kernels.profiler_config` (tool, version, schema version, notes, file,
  export version); the rows (kernels, memcpys, memsets, CUDA API calls, NVTX ranges) through
  :func:`db.kernels.store_trace`, which also fills ``config["kernel_trace"]`` and ``config["kernel_summary"]``;
- ``environment``: the GPU name, nsys version, CUDA/NVIDIA driver versions the export records;
- the file as an Artifact (``nsys_sqlite`` or ``nsys_report``; a report's exported SQLite too) under
  ``ENGINESCOPE_HOME/artifacts/imports/run_<id>/`` with its SHA-256.

Re-importing a file whose SHA-256 an nsys artifact already has returns that run (``"existing": true``) and
writes nothing. Every file is parsed before anything is written, so a bad file leaves the database unchanged.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.config import home as data_home
from db.imports import import_artifact_dir
from db.kernels import profiled_label, profiler_config, store_trace
from db.models import Artifact, Run, utcnow
from db.nsys_tool import export_sqlite
from db.session import session_scope
from profiles.errors import InputError
from profiles.files import sha256_file
from profiles.kernels import KernelTrace
from profiles.nsys_export import REPORT_SUFFIXES, is_nsys_file, is_sqlite_file, parse_nsys_sqlite

SOURCE = "import:nsys"
ENGINE = "nsys"
#: Artifact kinds of an nsys import: the export, and the report it came from.
ARTIFACT_KINDS = ("nsys_sqlite", "nsys_report")

#: ``(report, out_dir) -> exported .sqlite path``: :func:`db.nsys_tool.export_sqlite` unless a caller swaps it.
Exporter = Callable[[Path, Path], Path]


@dataclass
class NsysCapture:
    """One capture ready to write: ``path`` (as given), ``kind`` (:data:`ARTIFACT_KINDS`), ``content_hash``
    (SHA-256 of ``path``), ``sqlite`` (the export parsed: ``path`` itself, or a report's conversion),
    ``trace`` (None when ``existing_run_id`` is set, a run already holding this file, or when ``duplicate``:
    the same file came earlier in this call)."""

    path: Path
    kind: str
    content_hash: str
    sqlite: Path | None = None
    trace: KernelTrace | None = None
    existing_run_id: int | None = None
    duplicate: bool = False


def expand_paths(paths: Sequence[Path | str]) -> list[Path]:
    """Files of ``paths``, folders replaced by their reports (``*.nsys-rep``, ``*.qdrep``) and nsys ``*.sqlite``
    files (sorted; a ``.sqlite`` whose stem matches a report there is skipped: it is that report's export).

    Raises:
        InputError: a path does not exist, or a folder holds no nsys files (names it).
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            reports = sorted(f for suf in REPORT_SUFFIXES for f in p.glob(f"*{suf}") if f.is_file())
            stems = {f.name[: -len(f.suffix)] for f in reports}
            exports = sorted(f for f in p.glob("*.sqlite") if f.is_file() and f.stem not in stems and is_sqlite_file(f))
            found = sorted(reports + exports)
            if not found:
                raise InputError(f"{p}: folder with no Nsight Systems files (*.nsys-rep, *.qdrep, *.sqlite)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file")
    return out


def _existing_run(content_hash: str, url: str | None) -> int | None:
    with session_scope(url) as s:
        return s.execute(select(Artifact.run_id).join(Run, Run.id == Artifact.run_id)
                         .where(Artifact.content_hash == content_hash, Artifact.kind.in_(ARTIFACT_KINDS))
                         .order_by(Artifact.run_id)).scalars().first()


def prepare_nsys(paths: Sequence[Path | str], workdir: Path, *, url: str | None = None,
                 exporter: Exporter | None = None) -> list[NsysCapture]:
    """Hash, convert (reports, into ``workdir``) and parse every capture; writes nothing to the database.

    Args:
        paths: files or folders (:func:`expand_paths`).
        workdir: where reports' exports go (must outlive :func:`write_nsys`).
        url: the database (to find files imported before).
        exporter: report -> SQLite converter (default :func:`db.nsys_tool.export_sqlite`).

    Raises:
        InputError / ParseError: a missing file, a non-nsys file, a report that cannot be converted here, a
            missing required column (each names the file).
        EngineError: nsys failed on a report.
    """
    export = exporter or (lambda report, out: export_sqlite(report, out))
    caps: list[NsysCapture] = []
    seen: dict[str, NsysCapture] = {}
    for i, p in enumerate(expand_paths(paths)):
        is_report = p.suffix.lower() in REPORT_SUFFIXES
        if not is_report and not is_sqlite_file(p):
            parse_nsys_sqlite(p)  # raises ParseError naming the file: not SQLite, so not an nsys export
        digest = sha256_file(p)
        cap = NsysCapture(path=p, kind="nsys_report" if is_report else "nsys_sqlite", content_hash=digest)
        if digest in seen:  # the same file twice in one call: one run
            cap.duplicate = True
            caps.append(cap)
            continue
        seen[digest] = cap
        cap.existing_run_id = _existing_run(digest, url)
        if cap.existing_run_id is None:
            cap.sqlite = export(p, workdir / f"{i}") if is_report else p
            cap.trace = parse_nsys_sqlite(cap.sqlite)
            cap.trace.meta["file"] = p.name
            if is_report:
                cap.trace.meta["exported_from"] = p.name
        caps.append(cap)
    return caps


def _record(run: Run, cap: NsysCapture, existing: bool) -> dict[str, Any]:
    cfg = run.config or {}
    kt = cfg.get("kernel_trace") or {}
    counts = kt.get("counts") or {}
    prof = cfg.get("profiler") or {}
    return {"run_id": run.id, "source": SOURCE, "source_tool": "nsys", "label": run.label, "file": cap.path.name,
            "nsys_version": kt.get("tool_version"), "export_version": (kt.get("meta") or {}).get("export_version"),
            "schema_version": kt.get("schema_version"),
            **{k: counts.get(k, 0) for k in ("kernels", "cuda_api_calls", "memcpy", "memset", "nvtx_ranges")},
            "notes": list(prof.get("notes") or kt.get("notes") or []), "existing": existing}


def _write_one(cap: NsysCapture, trace: KernelTrace, url: str | None, home: Path) -> int:
    stem = cap.path.stem
    gpu = next((d.get("name") for d in trace.devices if d.get("name")), None)
    env: dict[str, Any] = {"gpu": gpu, "nsys": trace.tool_version, "where": "imported (captured elsewhere)",
           **{k: trace.meta[k] for k in ("cuda_driver_version", "nvidia_driver_version", "os") if k in trace.meta}}
    with session_scope(url) as s:
        run = Run(engine=ENGINE, engine_version=trace.tool_version, status="succeeded", source=SOURCE,
                  label=profiled_label(stem, "nsys"), environment=env, finished_at=utcnow(),
                  config={"import": {"file": cap.path.name, "kind": cap.kind},
                          "profiler": profiler_config(trace, file=cap.path.name,
                                                      export_version=trace.meta.get("export_version"))})
        s.add(run)
        s.flush()
        run_id = run.id
        store_trace(run_id, trace, session=s)
        dest = import_artifact_dir(home, run_id)
        files = [(cap.path, cap.kind, {"original_path": str(cap.path), "import_kind": cap.kind})]
        if cap.kind == "nsys_report" and cap.sqlite is not None:
            files.append((cap.sqlite, "nsys_sqlite", {"exported_from": cap.path.name, "import_kind": "nsys_sqlite"}))
        for src, kind, meta in files:
            target = dest / src.name
            shutil.copyfile(src, target)
            s.add(Artifact(run_id=run_id, kind=kind, path=str(target.relative_to(home)),
                           content_hash=cap.content_hash if src == cap.path else sha256_file(target),
                           size_bytes=target.stat().st_size, meta=meta))
    return run_id


def write_nsys(captures: Sequence[NsysCapture], *, url: str | None = None, home: Path | None = None) -> list[dict[str, Any]]:
    """Write prepared captures (one Run each, one transaction per run) and return their ``--json`` records:
    ``{"run_id", "source", "source_tool", "label", "file", "nsys_version", "export_version", "schema_version",
    "kernels", "cuda_api_calls", "memcpy", "memset", "nvtx_ranges", "notes", "existing"}``."""
    home = home or data_home()
    by_hash: dict[str, int] = {}
    out = []
    for cap in captures:
        existing = cap.existing_run_id is not None or cap.duplicate
        if cap.existing_run_id is not None:
            run_id = cap.existing_run_id
        elif cap.duplicate and cap.content_hash in by_hash:
            run_id = by_hash[cap.content_hash]
        elif cap.trace is not None:
            run_id = _write_one(cap, cap.trace, url, home)
        else:
            raise InputError(f"{cap.path}: not parsed; pass it through prepare_nsys first")
        by_hash.setdefault(cap.content_hash, run_id)
        with session_scope(url) as s:
            run = s.get(Run, run_id)
            if run is None:  # deleted between prepare and write
                raise InputError(f"{cap.path}: run {run_id} that held this file is gone; import it again")
            out.append(_record(run, cap, existing))
    return out


def import_nsys(paths: Sequence[Path | str], url: str | None = None, *, home: Path | None = None,
                exporter: Exporter | None = None) -> list[dict[str, Any]]:
    """Import nsys captures (see the module docstring); one record per capture (:func:`write_nsys`).

    Raises:
        InputError: no paths, a missing file, a report this machine cannot convert (names it and says how).
        ParseError: not an nsys export, or a required column is missing (names file, table and column).
        EngineError: nsys failed on a report.
    """
    if not paths:
        raise InputError("import: give at least one nsys file (.sqlite export, .nsys-rep or .qdrep report)")
    with tempfile.TemporaryDirectory(prefix="enginescope-nsys-") as tmp:
        caps = prepare_nsys(paths, Path(tmp), url=url, exporter=exporter)
        return write_nsys(caps, url=url, home=home)


__all__ = ["ARTIFACT_KINDS", "NsysCapture", "expand_paths", "import_nsys", "is_nsys_file", "prepare_nsys", "write_nsys"]
