"""Stored results read for judgements made from raw samples (shared by the CLI and the dashboard).

:func:`budget_candidates` builds :class:`profiles.budget.BudgetCandidate` records of stored runs: all of
each run's raw per-iteration latencies (``latency_samples``, converted once from integer ns to ms), its
headline ``latency_ms`` summary (p99 and count, for runs without raw samples), ``items_per_s``
(``run_metrics``; inferences/s x batch when only ``throughput_per_s`` is stored) and its validity (False
when ``runs.numerically_valid`` is False or any of its accuracy rows is invalid; None when unknown).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import select

from db.models import AccuracyResult, LatencySample, Run, RunMetric, Summary
from db.session import session_scope
from profiles.budget import BudgetCandidate


def latency_samples_ns(run_ids: Iterable[int], url: str | None = None) -> dict[int, np.ndarray]:
    """Every raw latency sample of each run, int64 ns in iteration order (``{run_id: array [n]}``; a run
    without samples maps to an empty array)."""
    ids = [int(r) for r in run_ids]
    out: dict[int, np.ndarray] = {r: np.empty(0, np.int64) for r in ids}
    with session_scope(url) as s:
        for rid in ids:
            q = select(LatencySample.latency_ns).where(LatencySample.run_id == rid).order_by(LatencySample.seq)
            out[rid] = np.fromiter(s.execute(q).scalars(), dtype=np.int64)
    return out


def budget_candidates(run_ids: Iterable[int], url: str | None = None) -> list[BudgetCandidate]:
    """Budget candidates of the runs (module doc), in run id order."""
    ids = sorted({int(r) for r in run_ids})
    if not ids:
        return []
    samples = latency_samples_ns(ids, url)
    with session_scope(url) as s:
        runs = list(s.execute(select(Run).where(Run.id.in_(ids)).order_by(Run.id)).scalars())
        sums = {r.run_id: r for r in s.execute(select(Summary).where(
            Summary.run_id.in_(ids), Summary.point_id.is_(None), Summary.metric == "latency_ms")).scalars()}
        metrics: dict[int, dict[str, float | None]] = {}
        for rm in s.execute(select(RunMetric).where(RunMetric.run_id.in_(ids), RunMetric.point_id.is_(None))).scalars():
            metrics.setdefault(rm.run_id, {})[rm.name] = rm.value
        invalid = set(s.execute(select(AccuracyResult.run_id).where(
            AccuracyResult.run_id.in_(ids), AccuracyResult.valid.is_(False))).scalars())
        out = []
        for r in runs:
            m = metrics.get(r.id, {})
            items = m.get("items_per_s")
            if items is None and m.get("throughput_per_s") is not None:
                items = float(m["throughput_per_s"]) * (r.batch_size or 1)  # type: ignore[arg-type]
            valid = False if (r.numerically_valid is False or r.id in invalid) else r.numerically_valid
            sm = sums.get(r.id)
            arr = samples.get(r.id)
            out.append(BudgetCandidate(
                run_id=int(r.id), engine=r.engine, precision=r.precision, batch_size=r.batch_size, status=r.status,
                valid=valid, items_per_s=items, samples_ms=arr / 1e6 if arr is not None and arr.size else None,
                summary_p99_ms=sm.p99 if sm is not None and sm.unit == "ms" else None,
                summary_count=int(sm.count) if sm is not None else 0))
    return out
