"""``enginescope models add|list|show|rm``: register, inspect and delete stored models.

Bad input (missing, empty, corrupt or non-ONNX files, missing or unsafe external data, an unknown id)
prints ``error: <message naming the file/tensor/id>`` on stderr and exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from profiles.errors import EngineScopeError

models_app = typer.Typer(name="models", help="Register, inspect and delete ONNX models.", no_args_is_help=True)


def _db_url() -> str:
    """The database URL, migrated to the latest revision (idempotent)."""
    from db.config import db_url
    from db.session import migrate

    url = db_url()
    migrate(url)
    return url


def _fail(exc: EngineScopeError) -> None:
    from engine_runner.cli import fail

    fail(exc)


def _human(m, *, detail: bool) -> str:  # type: ignore[no-untyped-def]
    from db.store import model_file

    def shape(s):  # type: ignore[no-untyped-def]
        return "?" if s is None else "[" + ", ".join("?" if d is None else str(d) for d in s) + "]"

    lines = [
        f"model {m.id}: {m.original_name}",
        f"  file       {model_file(m)}",
        f"  sha256     {m.content_hash}",
        f"  size       {m.size_bytes} bytes, {m.param_count} parameters",
        f"  ONNX       IR {m.ir_version}, opset {m.opset}, producer {m.producer or '-'}",
    ]
    lines += [f"  input      {v['name']}: {v['dtype']} {shape(v['shape'])}" for v in m.inputs]
    lines += [f"  output     {v['name']}: {v['dtype']} {shape(v['shape'])}" for v in m.outputs]
    pf = m.preflight or {}
    if pf.get("nondefault_domains"):
        lines.append(f"  domains    {', '.join(pf['nondefault_domains'])} (likely unsupported by TensorRT)")
    if detail:
        lines.append("  opsets     " + ", ".join(f"{d}={v}" for d, v in m.opset_imports.items()))
        lines.append("  operators  " + ", ".join(f"{k} x{v}" for k, v in m.op_histogram.items()))
        for e in m.external_data:
            lines.append(f"  ext data   {e['tensor']} -> {e['location']} @ {e['offset']} +{e['length']}")
    for w in pf.get("warnings", []):
        lines.append(f"  warning    {w}")
    return "\n".join(lines)


@models_app.command("add")
def add_cmd(
    paths: list[Path] = typer.Argument(..., help="a .onnx (external data read from beside it), a .zip, or a .onnx plus its data files"),
    name: str = typer.Option(None, "--name", help="display name (default: the .onnx file's name)"),
    as_json: bool = typer.Option(False, "--json", help="print the stored row as JSON"),
) -> None:
    """Validate and store a model; print its id (an existing id when the same content was added before)."""
    from db.store import add_model, model_to_dict

    try:
        m = add_model(paths, name, url=_db_url())
    except EngineScopeError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps(model_to_dict(m), indent=2, ensure_ascii=False) if as_json else _human(m, detail=False))


@models_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print rows as a JSON list")) -> None:
    """List stored models, newest first."""
    from db.store import list_models, model_to_dict

    models = list_models(url=_db_url())
    if as_json:
        typer.echo(json.dumps([model_to_dict(m) for m in models], indent=2, ensure_ascii=False))
        return
    if not models:
        typer.echo("no models stored (add one with `enginescope models add PATH`)")
        return
    typer.echo(f"{'id':>4}  {'size_bytes':>12}  {'opset':>5}  name")
    for m in models:
        typer.echo(f"{m.id:>4}  {m.size_bytes:>12}  {m.opset if m.opset is not None else '-':>5}  {m.original_name}")


@models_app.command("show")
def show_cmd(
    model_id: int = typer.Argument(..., help="model id (see `enginescope models list`)"),
    as_json: bool = typer.Option(False, "--json", help="print the row as JSON"),
) -> None:
    """Show a model's inspection: inputs/outputs, opsets, operators, external data, pre-flight."""
    from db.store import get_model, model_to_dict

    try:
        m = get_model(model_id, url=_db_url())
    except EngineScopeError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps(model_to_dict(m), indent=2, ensure_ascii=False) if as_json else _human(m, detail=True))


@models_app.command("rm")
def rm_cmd(
    model_id: int = typer.Argument(..., help="model id"),
    force: bool = typer.Option(False, "--force", help="delete even when a queued or running job uses the model"),
) -> None:
    """Delete a model's row and stored files (runs keep their results, with no model).

    Refused (exit 2, naming the job ids) while a queued or running job uses the model, unless --force.
    """
    from db.store import delete_model

    try:
        delete_model(model_id, url=_db_url(), force=force)
    except EngineScopeError as exc:
        _fail(exc)
        return
    typer.echo(f"deleted model {model_id}")


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group."""
    app.add_typer(models_app, name="models")
