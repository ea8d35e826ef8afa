"""profiles.budget on stored runs (db.results.budget_candidates): p99 from every raw sample, the fastest run
within the budget by items/s, never an invalid one."""

from __future__ import annotations

import numpy as np
import pytest

from profiles.budget import BudgetCandidate, evaluate_p99_budget
from profiles.errors import InputError
from profiles.stats import percentile


def _store(url: str) -> dict[str, int]:
    """A model_bench-like job: fp32 b1 (p99 ~2 ms, 500 items/s), fp32 b8 (p99 ~9 ms, 900 items/s),
    int8 b8 (p99 ~4 ms, 2000 items/s, numerically invalid), fp16 b8 (p99 ~5 ms, 1600 items/s),
    fp16 b16 (failed)."""
    from db.models import Job, LatencySample, Run, RunMetric, Summary
    from db.session import session_scope
    from profiles.stats import summarize_ns

    rng = np.random.default_rng(3)
    spec = {"fp32_b1": ("fp32", 1, 1.5e6, 500.0, True), "fp32_b8": ("fp32", 8, 8e6, 900.0, True),
            "int8_b8": ("int8-qdq", 8, 3e6, 2000.0, False), "fp16_b8": ("fp16", 8, 4e6, 1600.0, True)}
    ids = {}
    with session_scope(url) as s:
        job = Job(kind="model_bench", spec={"p99_budget_ms": 6.0}, status="succeeded", device="cpu")
        s.add(job)
        s.flush()
        for key, (prec, batch, med_ns, items, valid) in spec.items():
            run = Run(job_id=job.id, engine="onnxruntime", precision=prec, batch_size=batch, status="succeeded",
                      numerically_valid=valid)
            s.add(run)
            s.flush()
            samples = (med_ns * (1 + np.abs(rng.normal(0, 0.1, 3000)))).astype(np.int64)
            s.add_all([LatencySample(run_id=run.id, seq=i, latency_ns=int(v)) for i, v in enumerate(samples)])
            s.add(Summary(run_id=run.id, metric="latency_ms", **summarize_ns(samples, "ms").as_dict()))
            s.add(RunMetric(run_id=run.id, name="items_per_s", value=items, unit="items/s"))
            ids[key] = int(run.id)
        bad = Run(job_id=job.id, engine="onnxruntime", precision="fp16", batch_size=16, status="failed",
                  error="MemoryError")
        s.add(bad)
        s.flush()
        ids["fp16_b16"] = int(bad.id)
    return ids


def test_budget_on_stored_runs(es_env: str) -> None:
    from db.results import budget_candidates, latency_samples_ns

    ids = _store(es_env)
    cands = budget_candidates(ids.values(), es_env)
    assert [c.run_id for c in cands] == sorted(ids.values())
    report = evaluate_p99_budget(cands, 6.0)
    by_run = {v.run_id: v for v in report.verdicts}
    raw = latency_samples_ns([ids["fp16_b8"]], es_env)[ids["fp16_b8"]]
    assert raw.size == 3000
    v = by_run[ids["fp16_b8"]]
    assert v.p99_ms == pytest.approx(percentile(raw / 1e6, 99)) and v.samples == 3000 and v.p99_source == "raw samples"
    assert v.meets and v.eligible
    assert by_run[ids["fp32_b1"]].meets and by_run[ids["fp32_b1"]].eligible
    assert by_run[ids["fp32_b8"]].meets is False and "over" in by_run[ids["fp32_b8"]].reason
    inv = by_run[ids["int8_b8"]]
    assert inv.meets and not inv.eligible and "invalid" in inv.reason  # fits and is the fastest, but invalid
    assert by_run[ids["fp16_b16"]].meets is None and not by_run[ids["fp16_b16"]].eligible
    assert report.fastest is not None and report.fastest.run_id == ids["fp16_b8"]
    assert "fp16 batch 8" in report.note and "n=3000" in report.note
    doc = report.as_dict()
    assert doc["fastest"]["run_id"] == ids["fp16_b8"] and len(doc["runs"]) == 5

    tight = evaluate_p99_budget(cands, 0.5)
    assert tight.fastest is None and not any(v.meets for v in tight.verdicts) and "no run meets" in tight.note
    # only the invalid run fits: still no fastest
    only_invalid = evaluate_p99_budget([c for c in cands if c.run_id in (ids["int8_b8"], ids["fp32_b8"])], 6.0)
    assert only_invalid.fastest is None and "none is numerically valid" in only_invalid.note


def test_tie_goes_to_lower_p99_and_summary_fallback() -> None:
    a = BudgetCandidate(1, "ort", "fp32", 1, "succeeded", True, 100.0, samples_ms=np.full(10, 2.0))
    b = BudgetCandidate(2, "ort", "fp16", 1, "succeeded", None, 100.0, summary_p99_ms=1.0, summary_count=50)
    r = evaluate_p99_budget([a, b], 3.0)
    assert r.fastest is not None and r.fastest.run_id == 2 and r.fastest.p99_source.startswith("stored summary")
    assert r.fastest.samples == 50


def test_bad_budget() -> None:
    with pytest.raises(InputError, match="--p99-budget-ms"):
        evaluate_p99_budget([], 0)
