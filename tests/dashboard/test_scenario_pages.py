"""AppTests of the scenarios on the dashboard: the p99 budget on Compare (from the stored raw samples), the
batch sweep chart with its knee, and the New benchmark form's budget / sweep fields."""

from __future__ import annotations

from sqlalchemy import select

from tests.dashboard.conftest import Seeded, page


def _texts(at) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "success")
                     for e in getattr(at, kind))


def _frame(at, *columns: str):  # type: ignore[no-untyped-def]
    for e in at.dataframe:
        if all(c in e.value.columns for c in columns):
            return e.value
    raise AssertionError(f"no dataframe with columns {columns}")


def test_compare_budget_marks_runs_and_names_fastest_valid(seeded: Seeded) -> None:
    from db.models import Job
    from db.results import latency_samples_ns
    from db.session import session_scope
    from profiles.stats import percentile

    with session_scope(seeded.url) as s:  # the job was run with --p99-budget-ms 0.19: Compare starts from it
        job = s.get(Job, seeded.job_id)
        job.spec = {**job.spec, "p99_budget_ms": 0.19}
    at = page("compare").run()
    assert not at.exception, at.exception
    assert at.number_input(key="compare_p99_budget").value == 0.19
    table = _frame(at, "meets budget", "why")
    by_prec = {v: row for v, row in zip(table["variant"], table.to_dict("records"))}
    fp16 = by_prec["onnxruntime / fp16"]
    raw = latency_samples_ns([seeded.run_ids["fp16"]], seeded.url)[seeded.run_ids["fp16"]]
    assert fp16["p99 ms"] == percentile(raw / 1e6, 99) and fp16["n"] == 200
    assert fp16["meets budget"] == "yes" and fp16["fastest"] == "FASTEST"
    assert by_prec["onnxruntime / fp32"]["meets budget"] == "no"
    # the invalid int8 run is faster and fits, yet is never named
    inv = by_prec["onnxruntime / int8-dynamic"]
    assert inv["meets budget"] == "yes" and inv["fastest"] == "" and "invalid" in inv["why"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Fastest within p99 0.19 ms"] == "onnxruntime / fp16 b1"
    at.number_input(key="compare_p99_budget").set_value(0.01).run()
    assert not at.exception
    assert "no run meets p99 <= 0.01 ms" in _texts(at)


def test_compare_shows_batch_sweep_with_knee(seeded: Seeded) -> None:
    from db.models import Run, RunMetric
    from db.session import session_scope

    stop = {"reason": "out_of_memory", "detail": "batch 8 ran out of memory: MemoryError", "knee_batch": 2,
            "limit_batch": 8, "batches": [1, 2, 4, 8]}
    with session_scope(seeded.url) as s:
        for b, items in ((1, 100.0), (2, 190.0), (4, 192.0), (8, None)):
            run = Run(job_id=seeded.job_id, model_id=seeded.model_id, engine="onnxruntime", precision="fp16",
                      batch_size=b, status="succeeded" if items else "failed", error=None if items else "MemoryError",
                      config={"batch_sweep": {"step": b, "stop": stop, **({} if items else {"limit": True})}})
            s.add(run)
            s.flush()
            if items:
                s.add(RunMetric(run_id=run.id, name="items_per_s", value=items, unit="items/s"))
    at = page("compare").run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert "stopped by **out_of_memory**" in text and "knee at batch 2" in text and "memory limit at batch 8" in text
    assert "sweep's recorded memory limit" in text
    fig = next(c for c in at.get("plotly_chart") if "batch sweep" in str(c.proto.spec))
    spec = str(fig.proto.spec)
    assert "knee: batch 2" in spec and "out of memory" in spec


def test_new_benchmark_queues_budget_and_sweep(seeded: Seeded) -> None:
    from db.models import Job
    from db.session import session_scope

    at = page("new_benchmark").run()
    at.number_input(key="newbench_p99_budget").set_value(5.0)
    at.checkbox(key="newbench_batch_sweep").check().run()
    at.number_input(key="newbench_max_batch").set_value(64).run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert job.spec["p99_budget_ms"] == 5.0 and job.spec["batch_sweep"] is True and job.spec["max_batch"] == 64
    # several batch sizes with a sweep: the form's label names the problem, nothing is queued
    at.text_input(key="newbench_batches").input("1, 8").run()
    at.button(key="newbench_submit").click().run()
    errors = " ".join(e.value for e in at.error)
    assert "Batch sweep (max throughput): starts from one batch size" in errors
    with session_scope(seeded.url) as s:
        assert len(s.execute(select(Job).where(Job.status == "queued")).all()) == 1
