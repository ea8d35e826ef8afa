"""``enginescope import PATH... [--json]``: ingest trtexec outputs and Nsight Systems captures produced elsewhere as Runs.

Routing per path: a folder, a ``.nsys-rep`` / ``.qdrep`` report or an SQLite file (magic bytes) goes to the nsys
import (:mod:`db.nsys_import`); every other file to the trtexec import (:mod:`db.imports`). One call may mix
them. Every file is parsed before anything is written (nsys files first, then the trtexec groups), so a bad
file of either kind leaves the database unchanged.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typer


def split_paths(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(nsys paths, trtexec paths)`` in the given order: folders, reports and SQLite files are nsys."""
    from profiles.nsys_export import is_nsys_file

    nsys = [p for p in paths if p.is_dir() or is_nsys_file(p)]
    return nsys, [p for p in paths if p not in nsys]


def _nsys_line(r: dict[str, Any]) -> str:
    head = (f"run {r['run_id']}: {r['label']} nsys {r['nsys_version'] or '?'} (schema {r['schema_version'] or '?'}): "
            f"{r['kernels']} kernels, {r['memcpy']} memcpy, {r['memset']} memset, {r['cuda_api_calls']} CUDA API calls, "
            f"{r['nvtx_ranges']} NVTX ranges")
    if r["existing"]:
        head += " (already imported)"
    return head + "".join(f"; note: {n}" for n in r["notes"])


def register(app: typer.Typer) -> None:
    """Add ``import``."""

    @app.command("import")
    def import_cmd(
        paths: list[Path] = typer.Argument(..., help="trtexec outputs (stdout logs, --exportTimes/--exportProfile/"
                                                     "--exportLayerInfo JSON, grouped into runs by common name prefix) "
                                                     "and/or Nsight Systems captures (.sqlite exports, .nsys-rep/.qdrep "
                                                     "reports, folders of them)"),
        as_json: bool = typer.Option(False, "--json", help="print {\"runs\": [...]} as JSON"),
        db_url: str = typer.Option(None, "--db-url", help="SQLAlchemy URL (default: $ENGINESCOPE_DB_URL or SQLite in $ENGINESCOPE_HOME)"),
    ) -> None:
        """Import trtexec outputs as TensorRT runs and Nsight Systems captures as profiled runs."""
        from db.imports import import_trtexec
        from db.nsys_import import prepare_nsys, write_nsys
        from db.session import migrate
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError

        nsys_paths, trt_paths = split_paths(list(paths))
        try:
            migrate(db_url)
            with tempfile.TemporaryDirectory(prefix="enginescope-nsys-") as tmp:
                captures = prepare_nsys(nsys_paths, Path(tmp), url=db_url) if nsys_paths else []
                runs = import_trtexec(trt_paths, url=db_url) if trt_paths else []
                nsys_runs = write_nsys(captures, url=db_url) if captures else []
        except EngineScopeError as exc:
            fail(exc)
            return
        for r in runs:
            r.setdefault("timing_window", None)  # what one latency sample includes; null when unknown
        if as_json:
            typer.echo(json.dumps({"runs": runs + nsys_runs}, indent=2))
            return
        for r in runs:
            lat = r["latency_ms"]
            head = f"p50 {lat['p50']:.4g} ms" if lat["p50"] is not None else "no latency summary"
            typer.echo(f"run {r['run_id']}: {r['label']} [{r['status']}] TensorRT {r['engine_version'] or '?'} "
                       f"{r['precision'] or '?'}: {head}, {r['layers']} layers" + (f"; error: {r['error']}" if r["error"] else ""))
            typer.echo(f"  timing window: {r['timing_window'] or 'unknown'}")
        for r in nsys_runs:
            typer.echo(_nsys_line(r))
