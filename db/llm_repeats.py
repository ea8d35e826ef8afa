"""Repeated LLM load levels (``serve-bench --repeats N``): the load points of one level pooled into one.

An ``llm_serve`` run with repeats stores one ``load_points`` row per (level, repeat), in the order measured
(``idx``; levels interleaved: L1 L2 L3, L1 L2 L3, ...) with ``repeat`` 0..N-1, each with its own report and raw
``llm_requests``. Where one point per level is shown (the LLM page, ``serve-bench --json``), the level's repeats
are pooled by :func:`pooled_report`: :func:`profiles.llm_metrics.point_report` over every repeat's requests with
the repeats' durations summed (so throughput = all successful requests / all measured seconds, and percentiles
come from all requests: nothing is counted twice). The job stores these in ``runs.config["repeats"]["pooled"]``
keyed by :func:`level_key`; a reader computes them here when absent (a run stopped between repeats).
Verdicts read the repeats separately (:func:`db.verdicts.llm_by_repeat`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import LlmRequest, LoadPoint
from profiles.llm_metrics import RequestRecord, point_report



def level_key(mode: str, level: float | None) -> str:
    """``"concurrency=16"``, ``"request_rate=4"``, ``"request_rate=inf"`` (an infinite rate is stored as
    ``level`` None); the same keys as :func:`db.verdicts.llm_levels`."""
    return f"{mode}={'inf' if level is None else f'{level:g}'}"


def group_by_level(points: Sequence[LoadPoint]) -> list[list[LoadPoint]]:
    """The points of one run grouped by level, groups in order of their first point (``points`` in idx
    order), each group in idx order (= repeat order)."""
    groups: dict[str, list[LoadPoint]] = {}
    for p in points:
        groups.setdefault(level_key(p.mode, p.level), []).append(p)
    return list(groups.values())


def _server_pooled(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Server blocks of the repeats combined: counter deltas and scrapes summed, gauge maxima maximised."""
    out: dict[str, Any] = {}
    for b in blocks:
        for k, v in b.items():
            if k == "finished_requests_delta" and isinstance(v, dict):
                acc = out.setdefault(k, {})
                for r, n in v.items():
                    acc[r] = acc.get(r, 0.0) + n
            elif not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            elif k.startswith("max_"):
                out[k] = v if out.get(k) is None else max(out[k], v)
            else:  # *_delta counters, scrapes
                out[k] = out.get(k, 0) + v
    for k in ("max_num_requests_running", "max_num_requests_waiting", "max_kv_cache_usage"):
        out.setdefault(k, None)
    return out


def _records(s: Session, point_id: int) -> list[RequestRecord]:
    rows = s.execute(select(LlmRequest).where(LlmRequest.point_id == point_id).order_by(LlmRequest.seq)).scalars()
    return [RequestRecord.from_attrs(r) for r in rows]


def pooled_report(s: Session, points: Sequence[LoadPoint], slos: dict[str, float] | None = None) -> dict[str, Any]:
    """One report for the repeats ``points`` of one level (the keys of
    :func:`profiles.llm_metrics.point_report`, plus ``server`` (:func:`_server_pooled`), ``client_cpu_s``,
    ``client_cpu_s_per_s``, ``client_health`` (the first starved repeat's, else the last repeat's),
    ``warmup_requests``, ``peers`` (of the repeat that ran them, with ``after_repeat``) and ``repeats``:
    ``{"count", "per_repeat": [{"repeat", "point_id", "idx", "completed", "failed", "duration_s",
    "request_throughput_per_s", "output_token_throughput_per_s", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms",
    "e2e_p50_ms"}]}``). ``duration_s`` is the sum of the repeats' durations."""
    records: list[RequestRecord] = []
    for p in points:
        records.extend(_records(s, p.id))
    duration = sum(float(p.duration_s or 0.0) for p in points)
    reps = [p.report or {} for p in points]
    report: dict[str, Any] = point_report(records, duration, slos) if duration > 0 else {
        "completed": 0, "failed": sum(p.failed for p in points), "failures_by_reason": {}, "duration_s": 0.0}
    report["server"] = _server_pooled([r.get("server") or {} for r in reps])
    cpus = [float(c) for r in reps if (c := r.get("client_cpu_s")) is not None]
    cpu = sum(cpus) if cpus else None
    report["client_cpu_s"] = cpu
    report["client_cpu_s_per_s"] = cpu / duration if cpu is not None and duration else None
    healths: list[dict[str, Any]] = [h for r in reps if isinstance(h := r.get("client_health"), dict)]
    report["client_health"] = next((h for h in healths if h.get("starved")), healths[-1] if healths else None)
    report["warmup_requests"] = sum(int(r.get("warmup_requests") or 0) for r in reps)
    for p, r in zip(points, reps):
        if r.get("peers"):
            report["peers"] = {k: ({**v, "after_repeat": int(p.repeat or 0)} if isinstance(v, dict) else v)
                               for k, v in r["peers"].items()}
    report["repeats"] = {"count": len(points), "per_repeat": [{
        "repeat": int(p.repeat or 0), "point_id": int(p.id), "idx": int(p.idx), "completed": p.completed,
        "failed": p.failed, "duration_s": p.duration_s,
        "request_throughput_per_s": r.get("request_throughput_per_s"),
        "output_token_throughput_per_s": r.get("output_token_throughput_per_s"),
        "ttft_p50_ms": (r.get("ttft_ms") or {}).get("p50"), "ttft_p99_ms": (r.get("ttft_ms") or {}).get("p99"),
        "tpot_p50_ms": (r.get("tpot_ms") or {}).get("p50"), "e2e_p50_ms": (r.get("e2e_ms") or {}).get("p50"),
    } for p, r in zip(points, reps)]}
    return report


def level_reports(s: Session, run_config: dict[str, Any] | None,
                  points: Sequence[LoadPoint]) -> list[tuple[LoadPoint, dict[str, Any], list[LoadPoint]]]:
    """One ``(first point, report, the level's points)`` per level of a run whose ``points`` are in idx order.

    Only a run measured with repeats (``run_config["repeats"]["count"] > 1``) is pooled: its levels' repeats
    get the report stored by the job in ``run_config["repeats"]["pooled"]``, else (a run stopped between
    repeats) :func:`pooled_report` now. Any other run keeps one entry per point with the point's own report
    (an imported file may list a level twice; those are not repeats)."""
    cfg = run_config or {}
    block: dict[str, Any] = cfg["repeats"] if isinstance(cfg.get("repeats"), dict) else {}
    if int(block.get("count") or 1) <= 1:
        return [(p, p.report or {}, [p]) for p in points]
    stored = block.get("pooled") or {}
    given = (cfg.get("spec") or {}).get("slos")
    slos = ({k: float(v) for k, v in given.items() if v is not None} or None) if isinstance(given, dict) else None
    out = []
    for group in group_by_level(points):
        first = group[0]
        rep = stored.get(level_key(first.mode, first.level))
        if not isinstance(rep, dict) or (rep.get("repeats") or {}).get("count") != len(group):
            rep = pooled_report(s, group, slos)
        out.append((first, rep, group))
    return out
