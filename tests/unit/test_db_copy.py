"""``enginescope db copy``: every table's rows move with their ids remapped, nothing twice (db/copy.py).

The source is a real SQLite database filled by a real job (model_bench on ONNX Runtime, run in-process on a
tiny MLP built here) plus a saved report, a profiled run pointing at its measured run and a queued job; the
target here is a second SQLite database. The SQLite -> PostgreSQL copy is in tests/integration/test_ray_fleet.py
(it needs the PostgreSQL server that module starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

FAST = {"iterations": 10, "min_duration_s": 0, "warmup_iterations": 1, "warmup_s": 0, "profile_layers": False}


def seed(url: str, tmp: Path) -> dict[str, Any]:
    """Fill the database at ``url`` with one real model_bench job and the other row kinds copy must handle."""
    from db.jobs import start_inline_job, submit_job
    from db.models import Report, Run
    from db.session import session_scope
    from db.store import add_model
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute
    from tests.dashboard.conftest import make_mlp_onnx

    model = add_model(make_mlp_onnx(tmp / "mlp.onnx"), url=url)
    spec = {"model_id": int(model.id), "precisions": ["fp32"], "batch_sizes": [1, 2], **FAST}
    job_id = start_inline_job("model_bench", spec, model_id=int(model.id), url=url)
    assert execute(JobContext(job_id=job_id, kind="model_bench", spec=dict(spec), db_url=url)) == "succeeded"
    queued = submit_job("clock_check", {}, url=url)
    with session_scope(url) as s:
        runs = s.execute(select(Run).where(Run.job_id == job_id).order_by(Run.id)).scalars().all()
        prof = Run(job_id=job_id, model_id=int(model.id), engine="onnxruntime", status="succeeded",
                   config={"profiler": {"tool": "torch", "of_run_id": runs[0].id}}, label="[profiled: torch]")
        s.add(prof)
        s.flush()
        s.add(Report(title="fp32 on the laptop", baseline_run_id=runs[0].id, run_ids=[r.id for r in runs], metric="p50"))
    return {"model_id": int(model.id), "job_id": job_id, "queued": queued, "run_ids": [r.id for r in runs]}


def counts(url: str) -> dict[str, int]:
    from db.models import Base
    from db.session import session_scope

    with session_scope(url) as s:
        return {t.name: int(s.execute(select(func.count()).select_from(t)).scalar_one()) for t in Base.metadata.sorted_tables}


def check_copy(src: str, dst: str, seeded: dict[str, Any]) -> None:
    """Copy twice; the first adds every ended row with ids remapped, the second nothing."""
    from db.copy import copy_database
    from db.models import Job, Report, Run
    from db.session import session_scope

    before = counts(src)
    lines: list[str] = []
    first = copy_database(src, dst, progress=lines.append)
    after = counts(dst)
    assert first["jobs"] == {"copied": 1, "present": 0, "skipped": 1}  # the queued job stays local
    assert after["jobs"] == 1 and after["runs"] == before["runs"] and after["models"] == 1
    for t in ("latency_samples", "summaries", "run_metrics", "job_events", "reports", "telemetry_samples"):
        assert after[t] == before[t] - (1 if t == "job_events" else 0), t  # the queued job's event stays local
    assert any(line.startswith("db copy: latency_samples:") for line in lines)
    with session_scope(dst) as s:
        runs = s.execute(select(Run).order_by(Run.id)).scalars().all()
        report = s.execute(select(Report)).scalar_one()
        job = s.execute(select(Job)).scalar_one()
    measured = [r for r in runs if "profiler" not in (r.config or {})]
    prof = next(r for r in runs if "profiler" in (r.config or {}))
    assert report.run_ids == [r.id for r in measured] and report.baseline_run_id == measured[0].id
    assert prof.config["profiler"]["of_run_id"] == measured[0].id
    assert job.spec["model_id"] == runs[0].model_id and all(r.job_id == job.id for r in runs)
    second = copy_database(src, dst, progress=lines.append)
    assert counts(dst) == after
    assert all(c["copied"] == 0 for c in second.values()), second
    assert second["runs"]["present"] == before["runs"]


def test_copy_sqlite_to_sqlite_twice_adds_nothing_the_second_time(es_env: str, tmp_path: Path) -> None:
    from db.session import get_engine

    seeded = seed(es_env, tmp_path)
    dst = f"sqlite:///{tmp_path / 'team.db'}"
    check_copy(es_env, dst, seeded)
    get_engine.cache_clear()


def test_copy_into_a_target_with_its_own_rows_keeps_them(es_env: str, tmp_path: Path) -> None:
    """The target's own model with the same content is reused (content hash), its own jobs stay."""
    from db.copy import copy_database
    from db.jobs import submit_job
    from db.session import migrate
    from db.store import add_model
    from tests.dashboard.conftest import make_mlp_onnx

    seed(es_env, tmp_path)
    dst = f"sqlite:///{tmp_path / 'team.db'}"
    migrate(dst)
    other = add_model(make_mlp_onnx(tmp_path / "same.onnx"), url=dst)  # same bytes as the source's model
    submit_job("clock_check", {"samples": 100}, url=dst)
    res = copy_database(es_env, dst, progress=lambda _m: None)
    assert res["models"] == {"copied": 0, "present": 1, "skipped": 0}
    c = counts(dst)
    assert c["models"] == 1 and c["jobs"] == 2
    from db.models import Run
    from db.session import session_scope

    with session_scope(dst) as s:
        assert set(s.execute(select(Run.model_id)).scalars()) == {other.id}


def test_refuses_same_url_and_an_unmigrated_source(es_env: str, tmp_path: Path) -> None:
    from db.copy import copy_database
    from profiles.errors import InputError

    with pytest.raises(InputError, match="same database"):
        copy_database(es_env, es_env)
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(InputError, match="enginescope migrate --db-url"):
        copy_database(empty, f"sqlite:///{tmp_path / 't.db'}")


def test_cli_db_copy(es_env: str, tmp_path: Path) -> None:
    from engine_runner.cli import app

    seed(es_env, tmp_path)
    dst = f"sqlite:///{tmp_path / 'team.db'}"
    r = CliRunner().invoke(app, ["db", "copy", "--from", es_env, "--to", dst])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("copied ") and "2 skipped (queued/running jobs and their rows)" in r.stdout
    r2 = CliRunner().invoke(app, ["db", "copy", "--from", es_env, "--to", dst])
    assert r2.exit_code == 0 and r2.stdout.startswith("copied 0 row(s)"), r2.output
