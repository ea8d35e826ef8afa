"""``enginescope export MODEL_ID_OR_DIR --out FILE.onnx``: PyTorch / Hugging Face model -> ONNX, in-process.

MODEL_ID_OR_DIR is a local Hugging Face model folder, a hub id present in the local Hugging Face cache
(nothing is downloaded: this machine has no network), or a ``torch.export`` program (``.pt2``). The
command validates the flags (:class:`profiles.specs.ExportSpec`; bad input: message on stderr, exit 2, no
job), inserts an ``export`` Job (origin ``cli``), runs ``engine_runner.jobs.export`` through
``engine_runner.jobs.execute`` (the code the worker runs for the dashboard) with progress on stderr, and
prints a summary, or with ``--json`` one JSON document::

    {"job_id": int, "status": str, "error": str | null, "model_id": int | null, "report": {...} | null}

``report`` is ``engine_runner.onnx_export.export_model``'s (also stored as the model's ``meta["export"]``).
Exit status: 0 exported and registered, 1 the export failed (the error names the operator and quotes the
exporter), 2 bad input (flags, a missing folder, a hub id not in the cache, pickles without --allow-pickle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from profiles.errors import EngineScopeError, InputError


def collect(job_id: int, url: str | None = None) -> dict[str, Any]:
    """The JSON document of a finished ``export`` job (module doc)."""
    from db.models import Job, Model
    from db.session import session_scope

    with session_scope(url) as s:
        job = s.get(Job, job_id)
        model = s.get(Model, job.model_id) if job is not None and job.model_id else None
        return {"job_id": job_id, "status": job.status if job else None, "error": job.error if job else None,
                "model_id": int(model.id) if model else None,
                "report": (model.meta or {}).get("export") if model else None}


def format_summary(doc: dict[str, Any]) -> str:
    """A few readable lines of :func:`collect`'s document."""
    r = doc.get("report")
    if not r:
        return f"job {doc['job_id']}: {doc['status']}"
    v = r["verification"]
    ex = v["example"]
    lines = [f"job {doc['job_id']}: {doc['status']}; model #{doc['model_id']} registered from {r['out_path']}",
             f"  source     {r['source']['input']} ({r['source'].get('architecture') or r['source']['format']})",
             f"  exporter   {r['exporter']['name']}, opset {r['exporter']['opset']}, torch {r['exporter']['torch_version']}",
             "  inputs     " + "; ".join(f"{i['name']} {i['dtype']} {i['shape']}" for i in r["inputs"]),
             f"  nodes      {r['nodes']['before']} -> {r['nodes']['after']} "
             f"({r['simplifier'].get('name') or 'not simplified'}{' ' + r['simplifier']['version'] if r['simplifier'].get('version') else ''})",
             "  ops after  " + ", ".join(f"{k} x{n}" for k, n in list(r["op_histogram"]["after"].items())[:12]),
             f"  verified   vs PyTorch on onnxruntime CPU: max abs err {ex['max_abs_err']:.3g}, cosine {ex['cosine']:.6f}"
             + (f"; other shapes {v['other_shapes']['shapes']}: max abs err {v['other_shapes']['max_abs_err']:.3g}"
                if v.get("other_shapes") else "")
             + ("" if v["within_tolerance"] else "  OUTSIDE TOLERANCE")]
    lines += [f"  warning    {w}" for w in r.get("warnings") or []]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``export``."""

    @app.command("export")
    def export_cmd(
        model: str = typer.Argument(..., metavar="MODEL_ID_OR_DIR",
                                    help="Hugging Face model folder, hub id in the local HF cache, or a .pt2 program"),
        out: Path = typer.Option(..., "--out", help="the .onnx to write (weights beside it in FILE.onnx.data over 1.8 GB)"),
        opset: int = typer.Option(18, "--opset", help="ONNX opset"),
        dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="export the batch dim as dynamic ('batch')"),
        seq_len: int = typer.Option(128, "--seq-len", help="tokens of the example text inputs (the sequence axis stays dynamic)"),
        exporter: str = typer.Option("dynamo", "--exporter", help="dynamo (torch.export) | torchscript"),
        no_simplify: bool = typer.Option(False, "--no-simplify", help="skip constant folding / simplification"),
        simplifier: str = typer.Option("auto", "--simplifier", help="auto (onnxsim if installed) | onnxsim | polygraphy"),
        allow_pickle: bool = typer.Option(False, "--allow-pickle", help="allow pickled weights (unpickling runs the file's code)"),
        name: str = typer.Option(None, "--name", help="display name in Models (default: the source's name + .onnx)"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON document on stdout"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress on stderr"),
    ) -> None:
        """Export MODEL_ID_OR_DIR to ONNX (dynamic axes, shape inference, simplification, checker, verification
        against PyTorch on ONNX Runtime) and register it in Models. Exit 0 done, 1 export failed, 2 bad input."""
        from db.config import db_url
        from db.jobs import start_inline_job
        from db.session import migrate
        from engine_runner.cli import exit_for_job_error, fail
        from engine_runner.commands.bench import run_inline
        from engine_runner.torch_models import resolve_source
        from profiles.specs import ExportSpec, validate_spec

        try:
            url = db_url()
            migrate(url)
            spec = validate_spec(ExportSpec, {
                "source": model, "out_path": str(out.expanduser().resolve()), "opset": opset,
                "dynamic_batch": dynamic_batch, "seq_len": seq_len, "exporter": exporter, "simplify": not no_simplify,
                "simplifier": simplifier, "allow_pickle": allow_pickle, "name": name})
            if not out.expanduser().resolve().parent.is_dir():
                raise InputError(f"--out {out}: folder {out.expanduser().resolve().parent} does not exist")
            resolve_source(spec.source)  # a missing folder / uncached hub id is bad input: exit 2, no job
            spec_json = spec.model_dump(mode="json")
            job_id = start_inline_job("export", spec_json, origin="cli", url=url)
        except EngineScopeError as exc:
            fail(exc)
            return
        status, doc = run_inline(job_id, "export", spec_json, url, quiet=quiet, as_json=as_json, collect=collect,
                                 render=format_summary, error_prefix="export failed")
        raise typer.Exit(0 if status == "succeeded" else exit_for_job_error(doc["error"]))

