"""``enginescope import PATH... [--json]``: ingest trtexec outputs produced elsewhere as Runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``import``."""

    @app.command("import")
    def import_cmd(
        paths: list[Path] = typer.Argument(..., help="trtexec outputs: stdout logs, --exportTimes/--exportProfile/--exportLayerInfo JSON "
                                                     "(grouped into runs by common name prefix)"),
        as_json: bool = typer.Option(False, "--json", help="print {\"runs\": [...]} as JSON"),
        db_url: str = typer.Option(None, "--db-url", help="SQLAlchemy URL (default: $ENGINESCOPE_DB_URL or SQLite in $ENGINESCOPE_HOME)"),
    ) -> None:
        """Import trtexec outputs (log, times, profile, layer info) as TensorRT runs."""
        from db.imports import import_trtexec
        from db.session import migrate
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError

        try:
            migrate(db_url)
            runs = import_trtexec(paths, url=db_url)
        except EngineScopeError as exc:
            fail(exc)
            return
        for r in runs:
            r.setdefault("timing_window", None)  # what one latency sample includes; null when unknown
        if as_json:
            typer.echo(json.dumps({"runs": runs}, indent=2))
            return
        for r in runs:
            lat = r["latency_ms"]
            head = f"p50 {lat['p50']:.4g} ms" if lat["p50"] is not None else "no latency summary"
            typer.echo(f"run {r['run_id']}: {r['label']} [{r['status']}] TensorRT {r['engine_version'] or '?'} "
                       f"{r['precision'] or '?'}: {head}, {r['layers']} layers" + (f"; error: {r['error']}" if r["error"] else ""))
            typer.echo(f"  timing window: {r['timing_window'] or 'unknown'}")
