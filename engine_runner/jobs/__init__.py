"""Job kinds and the one function that executes a job, used by the worker child and by the CLI.

``REGISTRY`` maps a job kind to ``"module:function"``; the module is imported only when a job of
that kind runs (lazy imports keep the worker and the dashboard light).
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from db.models import Job, Run, utcnow
from engine_runner.jobctx import JobContext
from profiles.errors import EngineScopeError, InputError, JobCancelled

REGISTRY: dict[str, str] = {
    "model_bench": "engine_runner.jobs.model_bench:run",
    "llm_serve": "engine_runner.jobs.llm_serve:run",
    "clock_check": "engine_runner.jobs.clock_check:run",
    "export": "engine_runner.jobs.export:run",
}

#: Spec keys that say where a job runs, not what it does: read by the executor (``gpu_type``: the Ray
#: dispatcher's accelerator type, engine_runner.executors.resources) and removed before the job function
#: validates its spec (the specs forbid unknown keys).
PLACEMENT_KEYS = ("gpu_type",)


def resolve(kind: str) -> Callable[[JobContext], None]:
    """The job function of ``kind``.

    Raises:
        InputError: unknown job kind.
    """
    try:
        target = REGISTRY[kind]
    except KeyError:
        raise InputError(f"unknown job kind {kind!r}; known: {sorted(REGISTRY)}") from None
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)


def execute(ctx: JobContext) -> str:
    """Run the job of ``ctx`` to its end and record the outcome on the ``jobs`` row.

    Marks the job running, calls the job function, then sets status ``succeeded`` (or ``failed`` when
    any of its runs failed, except a batch sweep's out-of-memory limit run (:func:`sweep_limit`), or
    ``cancelled``) and ``error``. Runs left in ``running`` are failed.
    Returns the final status. Never raises for a job failure (the failure is data); re-raises
    ``KeyboardInterrupt``/``SystemExit`` after recording them.
    """
    with ctx.session() as s:
        s.execute(update(Job).where(Job.id == ctx.job_id).values(
            status="running", started_at=utcnow(), heartbeat_at=utcnow()))
    status, error = "succeeded", None
    for k in PLACEMENT_KEYS:
        ctx.spec.pop(k, None)
    try:
        resolve(ctx.kind)(ctx)
    except JobCancelled as exc:
        status, error = "cancelled", str(exc)
    except EngineScopeError as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    except (KeyboardInterrupt, SystemExit):
        _finish(ctx, "cancelled", "interrupted")
        raise
    except Exception as exc:  # noqa: BLE001 - an engine bug must still end the job with its traceback
        status, error = "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    if status == "succeeded":
        with ctx.session() as s:
            rows = s.execute(select(Run.error, Run.config).where(Run.job_id == ctx.job_id, Run.status == "failed")).all()
        # a batch sweep's out-of-memory run is its recorded limit, not a failure of the job
        failed = [err for err, cfg in rows if not sweep_limit(cfg)]
        if failed:
            status, error = "failed", f"{len(failed)} run(s) failed; first: {failed[0]}"
    if status == "failed":
        ctx.log.error("job failed: %s", error)
    _finish(ctx, status, error)
    return status


def sweep_limit(config: dict[str, Any] | None) -> bool:
    """True when a failed run's ``runs.config`` marks it as the out-of-memory limit of a batch sweep
    (``config["batch_sweep"]["limit"]``, set by ``engine_runner.jobs.model_bench``)."""
    return bool(((config or {}).get("batch_sweep") or {}).get("limit"))


def _finish(ctx: JobContext, status: str, error: str | None) -> None:
    with ctx.session() as s:
        s.execute(update(Run).where(Run.job_id == ctx.job_id, Run.status == "running").values(
            status="failed", error=error or f"job ended {status} before the run finished", finished_at=utcnow()))
        values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow(), "heartbeat_at": utcnow()}
        if status == "succeeded":
            values["progress"] = 1.0
        s.execute(update(Job).where(Job.id == ctx.job_id).values(**values))
    ctx.event("stage", f"job {status}" + (f": {error.splitlines()[0]}" if error else ""))
