"""Job kind ``export``: a PyTorch / Hugging Face model -> ONNX (``engine_runner.onnx_export``), registered in
Models through the same intake as an upload (``db.store.add_model``).

The spec is :class:`profiles.specs.ExportSpec`. The ONNX file is written to ``spec.out_path`` (the CLI's
``--out``) or, without one, to ``ENGINESCOPE_HOME/exports/job-<id>/<name>.onnx`` (the dashboard's case;
removed once the intake has copied it into ``models/<hash>/``). The registered row's ``meta`` is
``{"export": report}`` (source folder / id, exporter, opset, torch version, simplifier, node counts and
op-type histograms before / after, verification against PyTorch, warnings), and the job's ``model_id``
is set to it, so the CLI, the Jobs page and the Models page find the result. A failed export fails the
job with the :class:`profiles.errors.ExportError` message (operator named, exporter quoted).
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import update

from db.config import home
from db.models import Job
from engine_runner.jobctx import JobContext
from profiles.specs import ExportSpec, validate_spec


def default_out_path(job_id: int, source: str) -> Path:
    """Where a job without ``out_path`` writes: ``exports/job-<id>/<last part of source>.onnx`` under
    ENGINESCOPE_HOME (the name reduced to ``[A-Za-z0-9._-]``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.rstrip("/")).name or "model").strip("._") or "model"
    stem = stem[:-4] if stem.lower().endswith(".pt2") else stem
    return home() / "exports" / f"job-{job_id}" / f"{stem}.onnx"


def run(ctx: JobContext) -> None:
    """Execute an ``export`` job (module doc). Raises ``ExportError`` / ``InputError`` / ``ModelError`` on
    failure (the executor records it on the job)."""
    from db.store import add_model
    from engine_runner.onnx_export import ExportOptions, export_model, remove_outputs

    spec = validate_spec(ExportSpec, ctx.spec)
    out = Path(spec.out_path) if spec.out_path else default_out_path(ctx.job_id, spec.source)
    opts = ExportOptions(opset=spec.opset, dynamic_batch=spec.dynamic_batch, seq_len=spec.seq_len,
                         exporter=spec.exporter, simplify=spec.simplify, simplifier=spec.simplifier,
                         allow_pickle=spec.allow_pickle)
    steps = iter((0.05, 0.15, 0.6, 0.65, 0.8, 0.85, 0.9))

    def on_stage(message: str) -> None:
        ctx.event("stage", message, progress=next(steps, 0.95))

    report = export_model(spec.source, out, opts, on_stage=on_stage)
    for w in report["warnings"]:
        ctx.event("warning", w)
    ctx.event("info", f"nodes {report['nodes']['before']} -> {report['nodes']['after']} after "
                      f"{report['simplifier'].get('name') or 'no simplifier'}; verification max abs err "
                      f"{report['verification']['example']['max_abs_err']}, cosine "
                      f"{report['verification']['example']['cosine']}")
    name = spec.name or f"{Path(report['source']['input'].rstrip('/')).name or 'model'}.onnx"
    model = add_model(Path(report["out_path"]), name, url=ctx.db_url, meta={"export": {**report, "job_id": ctx.job_id}})
    with ctx.session() as s:
        s.execute(update(Job).where(Job.id == ctx.job_id).values(model_id=int(model.id)))
    if not spec.out_path:
        remove_outputs(report)
    ctx.event("info", f"registered as model #{model.id} ({model.original_name})", model_id=int(model.id))
