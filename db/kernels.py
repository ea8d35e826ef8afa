"""Kernel timelines and Nsight Compute metrics in the database: the one writer and the one reader.

Writers (the nsys import, the engines' kernel captures, the ncu capture) call :func:`store_trace` /
:func:`store_ncu`; readers (the Kernels page, ``enginescope`` commands, tests) call :func:`load_trace`,
:func:`load_ncu` and :func:`profiled_runs`. Row meanings: ``profiles.kernels`` and ``db.models``.

A run holding a timeline is a *profiled* run: ``runs.config["profiler"]`` says which tool captured it
(:func:`profiler_config`), and ``runs.label`` ends with ``[profiled: <tool>]``; its latencies (if any) are
never mixed into an unprofiled run's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import CudaApiCallRow, GpuActivityRow, KernelMetricRow, Run, TraceRangeRow
from db.session import session_scope
from profiles.kernels import ApiCall, GpuActivity, KernelTrace, Range, summarize_activities

#: Rows per INSERT statement (short transactions; SQLite's variable limit is far above 20 columns x 500 rows).
_CHUNK = 500

#: ``runs.config["profiler"]["tool"]`` values.
PROFILER_TOOLS = ("nsys", "torch.profiler", "onnxruntime+kineto", "ncu")


def profiled_label(label: str | None, tool: str) -> str:
    """``label`` with the ``[profiled: tool]`` suffix every profiled run carries (added once)."""
    base = (label or "").strip()
    tag = f"[profiled: {tool}]"
    return base if base.endswith(tag) else f"{base} {tag}".strip()


def profiler_config(trace: KernelTrace, **extra: Any) -> dict[str, Any]:
    """``runs.config["profiler"]`` for a run captured by ``trace.source_tool``: tool, version, schema version,
    notes and ``extra`` (``of_run_id``: the unprofiled run it explains; ``iterations``...)."""
    return {"tool": trace.source_tool, "version": trace.tool_version, "schema_version": trace.schema_version,
            "profiled": True, "notes": list(trace.notes), **extra}


def is_profiled(config: dict[str, Any] | None) -> bool:
    """Whether a run's ``runs.config`` marks it as a profiled run (:func:`profiler_config`): its latencies,
    if any, are not a measurement, so latency listings and budgets leave it out."""
    return bool(((config or {}).get("profiler") or {}).get("profiled"))


def _chunks(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), _CHUNK):
        yield rows[i:i + _CHUNK]


def store_trace(run_id: int, trace: KernelTrace, url: str | None = None, session: Session | None = None) -> dict[str, Any]:
    """Write ``trace``'s activities, API calls and ranges for ``run_id`` and its summary into ``runs.config``.

    Args:
        run_id: an existing run (the profiled run).
        trace: the parsed capture.
        url / session: the database (a given session is used and not committed).

    Returns:
        ``trace.counts()`` plus ``notes``.

    Writes in chunks of :data:`_CHUNK` rows; ``runs.config["kernel_trace"]`` gets the origin, devices, meta and
    :func:`profiles.kernels.summarize_activities` (top 50) so listings need not read the rows.
    """
    acts = [{"run_id": run_id, "seq": i, "kind": a.kind, "name": a.name, "category": a.category,
             "start_ns": int(a.start_ns), "duration_ns": int(a.duration_ns), "device": a.device, "stream": a.stream,
             "correlation_id": a.correlation_id, "launch_ns": a.launch_ns, "grid": a.grid, "block": a.block,
             "registers_per_thread": a.registers_per_thread, "shared_mem_bytes": a.shared_mem_bytes,
             "bytes": a.bytes, "copy_kind": a.copy_kind, "op": a.op, "iteration": a.iteration}
            for i, a in enumerate(trace.activities)]
    apis = [{"run_id": run_id, "kind": c.kind, "name": c.name[:256], "start_ns": int(c.start_ns),
             "duration_ns": int(c.duration_ns), "thread_id": c.thread_id, "correlation_id": c.correlation_id}
            for c in trace.api_calls]
    rngs = [{"run_id": run_id, "text": r.text, "start_ns": int(r.start_ns), "end_ns": int(r.end_ns),
             "thread_id": r.thread_id, "domain": r.domain} for r in trace.ranges]
    summary = summarize_activities(trace.activities, top_n=50).as_dict()

    def write(s: Session) -> None:
        for table, rows in ((GpuActivityRow, acts), (CudaApiCallRow, apis), (TraceRangeRow, rngs)):
            for chunk in _chunks(rows):
                s.execute(insert(table), chunk)
        run = s.get(Run, run_id)
        if run is not None:
            cfg = dict(run.config or {})
            cfg["kernel_trace"] = {"source_tool": trace.source_tool, "tool_version": trace.tool_version,
                                   "schema_version": trace.schema_version, "origin_ns": trace.origin_ns,
                                   "devices": trace.devices, "meta": trace.meta, "notes": list(trace.notes),
                                   "counts": trace.counts()}
            cfg["kernel_summary"] = summary
            run.config = cfg

    if session is not None:
        write(session)
    else:
        with session_scope(url) as s:
            write(s)
    return {**trace.counts(), "notes": list(trace.notes)}


def load_trace(run_id: int, url: str | None = None, with_api: bool = True) -> KernelTrace | None:
    """The stored timeline of ``run_id`` as a :class:`profiles.kernels.KernelTrace` (None when it has none).

    ``with_api=False`` skips the API-call rows (the timeline chart does not need them)."""
    with session_scope(url) as s:
        run = s.get(Run, run_id)
        if run is None:
            return None
        meta = (run.config or {}).get("kernel_trace")
        acts = s.execute(select(GpuActivityRow).where(GpuActivityRow.run_id == run_id)
                         .order_by(GpuActivityRow.seq)).scalars().all()
        if meta is None and not acts:
            return None
        trace = KernelTrace(source_tool=(meta or {}).get("source_tool", "?"), tool_version=(meta or {}).get("tool_version"),
                            schema_version=(meta or {}).get("schema_version"), origin_ns=(meta or {}).get("origin_ns"),
                            devices=(meta or {}).get("devices", []), notes=(meta or {}).get("notes", []),
                            meta=(meta or {}).get("meta", {}))
        trace.activities = [GpuActivity(kind=a.kind, name=a.name, start_ns=a.start_ns, duration_ns=a.duration_ns,
                                        device=a.device, stream=a.stream, correlation_id=a.correlation_id,
                                        launch_ns=a.launch_ns, grid=a.grid, block=a.block,
                                        registers_per_thread=a.registers_per_thread, shared_mem_bytes=a.shared_mem_bytes,
                                        bytes=a.bytes, copy_kind=a.copy_kind, op=a.op, iteration=a.iteration,
                                        category=a.category) for a in acts]
        if with_api:
            trace.api_calls = [ApiCall(kind=c.kind, name=c.name, start_ns=c.start_ns, duration_ns=c.duration_ns,
                                       thread_id=c.thread_id, correlation_id=c.correlation_id)
                               for c in s.execute(select(CudaApiCallRow).where(CudaApiCallRow.run_id == run_id)
                                                  .order_by(CudaApiCallRow.start_ns)).scalars()]
        trace.ranges = [Range(text=r.text, start_ns=r.start_ns, end_ns=r.end_ns, thread_id=r.thread_id, domain=r.domain)
                        for r in s.execute(select(TraceRangeRow).where(TraceRangeRow.run_id == run_id)
                                           .order_by(TraceRangeRow.start_ns)).scalars()]
        return trace


def store_ncu(run_id: int, kernels: Sequence[Any], url: str | None = None, session: Session | None = None) -> int:
    """Write Nsight Compute kernels (``profiles.ncu.NcuKernel``) for ``run_id``; returns the row count."""
    rows = [{"run_id": run_id, "seq": i, "name": k.name, "short_name": k.short_name[:512], "category": k.category,
             "duration_ns": k.duration_ns, "achieved_occupancy_pct": k.achieved_occupancy_pct,
             "sm_throughput_pct": k.sm_throughput_pct, "dram_throughput_pct": k.dram_throughput_pct,
             "flop": k.flop, "dram_bytes": k.dram_bytes, "arithmetic_intensity": k.arithmetic_intensity,
             "flop_per_s": k.flop_per_s, "grid": k.grid, "block": k.block, "metrics": k.metrics}
            for i, k in enumerate(kernels)]

    def write(s: Session) -> None:
        for chunk in _chunks(rows):
            s.execute(insert(KernelMetricRow), chunk)

    if session is not None:
        write(session)
    else:
        with session_scope(url) as s:
            write(s)
    return len(rows)


def load_ncu(run_id: int, url: str | None = None) -> list[dict[str, Any]]:
    """Stored Nsight Compute rows of ``run_id`` as dicts (column names of ``kernel_metrics``), in capture order."""
    cols = [c.name for c in KernelMetricRow.__table__.columns if c.name not in ("id", "run_id")]
    with session_scope(url) as s:
        rows = s.execute(select(KernelMetricRow).where(KernelMetricRow.run_id == run_id)
                         .order_by(KernelMetricRow.seq)).scalars().all()
        return [{c: getattr(r, c) for c in cols} for r in rows]


def profiled_runs(url: str | None = None, of_run_id: int | None = None) -> list[dict[str, Any]]:
    """Runs that hold a kernel timeline or ncu metrics: ``[{"run_id", "label", "engine", "precision", "batch_size",
    "tool", "of_run_id", "job_id", "kernels", "ncu_kernels", "created_at"}]``, newest first; ``of_run_id`` keeps
    those that explain that unprofiled run."""
    from sqlalchemy import func

    with session_scope(url) as s:
        act = dict(s.execute(select(GpuActivityRow.run_id, func.count()).where(GpuActivityRow.kind == "kernel")
                             .group_by(GpuActivityRow.run_id)).all())
        ncu = dict(s.execute(select(KernelMetricRow.run_id, func.count()).group_by(KernelMetricRow.run_id)).all())
        ids = set(act) | set(ncu)
        traced = s.execute(select(Run).where(Run.id.in_(ids)) if ids else select(Run).where(Run.id == -1)).scalars().all()
        out = []
        for r in sorted(traced, key=lambda r: r.id, reverse=True):
            prof = (r.config or {}).get("profiler") or {}
            if of_run_id is not None and prof.get("of_run_id") != of_run_id:
                continue
            out.append({"run_id": r.id, "label": r.label, "engine": r.engine, "precision": r.precision,
                        "batch_size": r.batch_size, "tool": prof.get("tool") or (r.config or {}).get("kernel_trace", {}).get("source_tool"),
                        "of_run_id": prof.get("of_run_id"), "job_id": r.job_id, "kernels": act.get(r.id, 0),
                        "ncu_kernels": ncu.get(r.id, 0), "created_at": r.created_at})
        return out
