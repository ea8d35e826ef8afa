"""Database reads of the LLM serving page, returning plain dicts for :mod:`dashboard.llm_charts`.

- :func:`llm_runs`: runs of ``llm_serve`` jobs (engine ``vllm`` or ``openai-endpoint``), newest first.
- :func:`point_rows`: one row per load level with the headline numbers of its stored report (a level
  measured ``--repeats N`` times: its N load points pooled, :mod:`db.llm_repeats`).
- :func:`kv_usage_series`: KV-cache usage and requests running over the sweep, from
  ``server_metric_samples`` (time = the point's ``t0_ns`` offset from the run's first point + ``ts_ns``;
  all ``t0_ns`` of a run come from the same monotonic clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from db.llm_repeats import level_reports
from db.models import Job, LoadPoint, Run, ServerMetricSample
from db.session import session_scope
from profiles.prometheus import KV_USAGE_NAMES

LLM_ENGINES = ("vllm", "openai-endpoint")


def run_label(r: dict[str, Any]) -> str:
    """``"#12 vllm tiny (c=1,4)"``: run id, engine, the model's last path part, the levels."""
    model = str(r.get("model") or "?").rstrip("/").split("/")[-1]
    return f"#{r['run_id']} {r['engine']} {model}" + (f" [{r['levels']}]" if r.get("levels") else "")


def llm_runs(url: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """LLM serving runs, newest first: ``run_id, job_id, engine, engine_version, model, status, error,
    created_at, kv_cache, startup_report, device_dirty, levels`` (e.g. ``"c=1,4"``), ``label``."""
    with session_scope(url) as s:
        rows = s.execute(select(Run).where(Run.engine.in_(LLM_ENGINES)).order_by(Run.id.desc()).limit(limit)).scalars().all()
        out = []
        for r in rows:
            cfg = r.config or {}
            spec = cfg.get("spec") or {}
            if spec.get("concurrency"):
                levels = "c=" + ",".join(str(c) for c in spec["concurrency"])
            elif spec.get("request_rate"):
                levels = "rate=" + ",".join(str(x) for x in spec["request_rate"])
            else:
                levels = ""
            d = {"run_id": r.id, "job_id": r.job_id, "engine": r.engine, "engine_version": r.engine_version,
                 "model": spec.get("model"), "status": r.status, "error": r.error, "created_at": r.created_at,
                 "kv_cache": cfg.get("kv_cache") or {}, "startup_report": cfg.get("startup_report") or {},
                 "device_dirty": cfg.get("device_dirty"), "levels": levels,
                 "input_len": spec.get("input_len"), "output_len": spec.get("output_len")}
            d["label"] = run_label(d)
            out.append(d)
        return out


def _pct(rep: dict[str, Any], metric: str, key: str) -> float | None:
    return (rep.get(metric) or {}).get(key)


def point_rows(url: str | None, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Load levels of ``run_ids`` in run, idx order (one row per level: the repeats of a level pooled, ``idx``
    its first point's, ``repeats`` how many points it pools): ``run_id, idx, mode, level`` (float; ``inf`` for an
    infinite rate), ``level_label``, ``completed, failed, duration_s``, throughputs, ``goodput_per_s``,
    ``ttft_p50_ms``/``ttft_p99_ms``, ``tpot_p50_ms``/``tpot_p99_ms``, ``itl_p50_ms``/``itl_p99_ms``,
    ``e2e_p50_ms``/``e2e_p99_ms``, ``max_running``, ``max_kv_usage``, ``client_starved`` (the load
    generator's own health check said its latencies include client delay, ``engine_runner.loadgen.health``)
    and ``client_starved_why``."""
    if not run_ids:
        return []
    with session_scope(url) as s:
        pts = s.execute(select(LoadPoint).where(LoadPoint.run_id.in_(list(run_ids)))
                        .order_by(LoadPoint.run_id, LoadPoint.idx)).scalars().all()
        configs: dict[int, Any] = dict(s.execute(select(Run.id, Run.config).where(Run.id.in_(list(run_ids)))).all())
        by_run: dict[int, list[LoadPoint]] = {}
        for p in pts:
            by_run.setdefault(int(p.run_id), []).append(p)
        out = []
        for rid, run_pts in by_run.items():
            out.extend(_level_rows(s, configs.get(rid), run_pts))
        return out


def _level_rows(s: Any, config: dict[str, Any] | None, pts: list[LoadPoint]) -> list[dict[str, Any]]:
    """:func:`point_rows` of one run: one row per level (repeats pooled, :func:`db.llm_repeats.level_reports`)."""
    out = []
    for p, rep, group in level_reports(s, config, pts):
        srv = rep.get("server") or {}
        level = float("inf") if p.level is None else float(p.level)
        label = "inf" if p.level is None else (f"{p.level:g}")
        pooled = len(group) > 1
        row = {"run_id": p.run_id, "idx": p.idx, "mode": p.mode, "level": level, "level_label": label,
               "status": ("succeeded" if any(g.status == "succeeded" for g in group) else "failed") if pooled
               else p.status,
               "completed": rep.get("completed", 0) if pooled else p.completed,
               "failed": rep.get("failed", 0) if pooled else p.failed,
               "duration_s": rep.get("duration_s") if pooled else p.duration_s, "repeats": len(group),
               "request_throughput_per_s": rep.get("request_throughput_per_s"),
               "output_token_throughput_per_s": rep.get("output_token_throughput_per_s"),
               "total_token_throughput_per_s": rep.get("total_token_throughput_per_s"),
               "goodput_per_s": rep.get("goodput_per_s"),
               "max_running": srv.get("max_num_requests_running"), "max_kv_usage": srv.get("max_kv_cache_usage"),
               "failures_by_reason": rep.get("failures_by_reason") or {},
               "client_starved": bool((rep.get("client_health") or {}).get("starved")),
               "client_starved_why": (rep.get("client_health") or {}).get("why")}
        for m in ("ttft", "tpot", "itl", "e2e"):
            for q in ("p50", "p99"):
                row[f"{m}_{q}_ms"] = _pct(rep, f"{m}_ms", q)
        out.append(row)
    return out


def kv_usage_series(url: str | None, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """``[{"run_id", "idx", "level_label", "t_s", "kv_usage_pct", "running"}]`` per scrape, time in seconds
    since the run's first load point began (see module docstring)."""
    if not run_ids:
        return []
    with session_scope(url) as s:
        pts = s.execute(select(LoadPoint).where(LoadPoint.run_id.in_(list(run_ids)))
                        .order_by(LoadPoint.run_id, LoadPoint.idx)).scalars().all()
        first_t0: dict[int, int] = {}
        for p in pts:
            first_t0.setdefault(p.run_id, p.t0_ns)
        by_point = {p.id: p for p in pts}
        names = [*KV_USAGE_NAMES, "vllm:num_requests_running"]
        rows = s.execute(select(ServerMetricSample).where(ServerMetricSample.point_id.in_(list(by_point)),
                                                          ServerMetricSample.name.in_(names))
                         .order_by(ServerMetricSample.point_id, ServerMetricSample.ts_ns)).scalars().all()
        acc: dict[tuple[int, int], dict[str, Any]] = {}
        for m in rows:
            p = by_point[m.point_id]
            key = (m.point_id, m.ts_ns)
            d = acc.setdefault(key, {"run_id": p.run_id, "idx": p.idx,
                                     "level_label": "inf" if p.level is None else f"{p.level:g}",
                                     "t_s": (p.t0_ns - first_t0[p.run_id] + m.ts_ns) / 1e9,
                                     "kv_usage_pct": None, "running": 0.0})
            if m.name in KV_USAGE_NAMES:
                d["kv_usage_pct"] = (d["kv_usage_pct"] or 0.0) + 100.0 * m.value
            else:
                d["running"] += m.value
        return sorted(acc.values(), key=lambda d: (d["run_id"], d["t_s"]))


def job_summary(url: str | None, job_id: int) -> dict[str, Any] | None:
    """``{id, kind, status, progress, progress_message, error}`` of a job, or None."""
    with session_scope(url) as s:
        j = s.get(Job, job_id)
        if j is None:
            return None
        return {"id": j.id, "kind": j.kind, "status": j.status, "progress": float(j.progress or 0.0),
                "progress_message": j.progress_message, "error": j.error, "spec": j.spec}


def runs_of_job(url: str | None, job_id: int) -> list[int]:
    """Run ids of a job."""
    with session_scope(url) as s:
        return [int(i) for i in s.execute(select(Run.id).where(Run.job_id == job_id).order_by(Run.id)).scalars()]
