"""The job queue (db/jobs.py) on a fresh SQLite database: submit, atomic claim, device serialisation,
cancel, stale detection, log tails."""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import update

from db import jobs as q
from db.models import Job, Run, utcnow
from db.session import session_scope
from profiles.errors import EngineError, InputError


def _claim_race(n_threads: int, url: str) -> list[int]:
    """n threads claim at the same instant (barrier), each once; return the ids they won."""
    barrier = threading.Barrier(n_threads)
    won: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(i: int) -> None:
        try:
            barrier.wait()
            job = q.claim_next(f"worker@test:{i}", (), url=url)
            if job is not None:
                with lock:
                    won.append(job.id)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    ts = [threading.Thread(target=claimer, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors
    return won


def _set(job_id: int, **values: object) -> None:
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_submit_validates_fields(es_env: str) -> None:
    with pytest.raises(InputError, match="'spec'"):
        q.submit_job("clock_check", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="'timeout_s'"):
        q.submit_job("clock_check", {}, timeout_s=-1)
    with pytest.raises(InputError, match="'device'"):
        q.submit_job("clock_check", {}, device="")
    with pytest.raises(InputError, match="'spec' is not JSON"):
        q.submit_job("clock_check", {"x": object()})
    job_id = q.submit_job("clock_check", {"duration_s": 1.0}, device="cuda:0", timeout_s=5, origin="cli")
    job = q.get_job(job_id)
    assert job is not None and job.status == "queued" and job.device == "cuda:0" and job.timeout_s == 5.0
    assert job.spec == {"duration_s": 1.0} and job.origin == "cli"
    assert [e.message for e in q.job_events(job_id)] == ["queued (clock_check on cuda:0)"]


def test_two_claimers_one_winner(es_env: str) -> None:
    job_id = q.submit_job("clock_check", {})
    won = _claim_race(8, es_env)
    assert won == [job_id]
    job = q.get_job(job_id)
    assert job is not None and job.status == "running" and job.worker_id.startswith("worker@test:")
    assert job.started_at is not None and job.heartbeat_at is not None
    assert Path(job.log_path) == Path(q.job_log_path(job_id))  # home()/logs/job-<id>.log


def test_concurrent_claims_respect_devices(es_env: str) -> None:
    """Three queued cpu jobs and two gpu jobs, eight simultaneous claimers: one job per device."""
    cpu = [q.submit_job("clock_check", {}) for _ in range(3)]
    g0 = q.submit_job("clock_check", {}, device="cuda:0")
    g1 = q.submit_job("clock_check", {}, device="cuda:1")
    won = sorted(_claim_race(8, es_env))
    assert won == sorted([cpu[0], g0, g1])  # the oldest cpu job, never two on one device
    assert q.claim_next("worker@test:9", ()) is None  # every device busy in the database


def test_claim_skips_busy_devices_and_orders_by_id(es_env: str) -> None:
    a = q.submit_job("clock_check", {})
    b = q.submit_job("clock_check", {}, device="cuda:0")
    c = q.submit_job("clock_check", {})
    # the caller's own busy set is honoured even when the database shows nothing running
    j = q.claim_next("worker@test:1", {"cpu"})
    assert j is not None and j.id == b
    assert q.claim_next("worker@test:1", {"cpu", "cuda:0"}) is None
    j = q.claim_next("worker@test:1", ())
    assert j is not None and j.id == a
    assert q.claim_next("worker@test:1", ()) is None  # c waits: cpu is running job a
    q.finish_job(a, "succeeded", None)
    j = q.claim_next("worker@test:1", ())
    assert j is not None and j.id == c


def test_cancel_queued_running_and_finished(es_env: str) -> None:
    a = q.submit_job("clock_check", {})
    b = q.submit_job("clock_check", {})
    assert q.request_cancel(a) is True
    job = q.get_job(a)
    assert job.status == "cancelled" and job.finished_at is not None and "before it started" in job.error
    j = q.claim_next("worker@test:1", ())
    assert j is not None and j.id == b  # the cancelled job is never claimed
    assert q.request_cancel(b) is True
    job = q.get_job(b)
    assert job.status == "running" and job.cancel_requested is True
    assert q.heartbeat([b]) == {b}  # the worker learns of it with its next heartbeat
    q.finish_job(b, "cancelled", "cancelled by the user")
    assert q.request_cancel(b) is False
    assert q.request_cancel(9999) is False


def test_finish_job_only_from_active_and_fails_runs(es_env: str) -> None:
    a = q.submit_job("clock_check", {})
    q.claim_next("worker@test:1", ())
    with session_scope() as s:
        s.add(Run(job_id=a, engine="host-clock", status="running"))
    assert q.finish_job(a, "failed", "boom") is True
    assert q.finish_job(a, "succeeded", None) is False  # a terminal status is not overwritten
    with session_scope() as s:
        run = s.query(Run).filter(Run.job_id == a).one()
        assert run.status == "failed" and run.error == "boom"
    with pytest.raises(InputError, match="terminal"):
        q.finish_job(a, "running", None)


def test_fail_stale(es_env: str, tmp_path: Path) -> None:
    host = socket.gethostname()
    old = utcnow() - dt.timedelta(seconds=300)
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    # 1: another host's worker, heartbeat 300 s old -> stale by age
    j1 = q.submit_job("clock_check", {})
    _set(j1, status="running", worker_id="worker@elsewhere:123", heartbeat_at=old, started_at=old, log_path=str(log))
    # 2: this host's worker whose pid is gone, heartbeat fresh -> stale at once
    j2 = q.submit_job("clock_check", {})
    _set(j2, status="running", worker_id=f"worker@{host}:{_dead_pid()}", heartbeat_at=utcnow(), started_at=utcnow())
    # 3: a live worker (this test process), fresh heartbeat -> not stale
    j3 = q.submit_job("clock_check", {}, device="cuda:0")
    _set(j3, status="running", worker_id=q.worker_identity("worker"), heartbeat_at=utcnow(), started_at=utcnow())
    # 4: an in-process CLI job on another host, old heartbeat -> nothing tells us it died; kept
    j4 = q.submit_job("clock_check", {}, device="cuda:1")
    _set(j4, status="running", worker_id="cli@elsewhere:5", heartbeat_at=old, started_at=old)
    # 5: an in-process CLI job on this host whose process is gone -> stale
    j5 = q.submit_job("clock_check", {}, device="cuda:2")
    _set(j5, status="running", worker_id=f"cli@{host}:{_dead_pid()}", heartbeat_at=utcnow(), started_at=utcnow())

    assert sorted(q.fail_stale(60.0)) == sorted([j1, j2, j5])
    e1 = q.get_job(j1).error
    age = re.search(r"no heartbeat for (\d+) s \(limit 60 s\)", e1)
    assert age and 300 <= int(age.group(1)) < 400 and "worker@elsewhere:123" in e1
    assert e1.rstrip().endswith("line 99") and "line 59" not in e1  # the last 40 lines of its log
    assert "is gone" in q.get_job(j2).error and q.get_job(j2).status == "failed"
    assert q.get_job(j3).status == "running" and q.get_job(j4).status == "running"
    assert "cli process" in q.get_job(j5).error
    assert q.fail_stale(60.0) == []
    with pytest.raises(InputError, match="heartbeat"):
        q.fail_stale(0)


def test_inline_job_takes_the_device_atomically(es_env: str) -> None:
    a = q.start_inline_job("model_bench", {"x": 1})
    job = q.get_job(a)
    assert job.status == "running" and job.worker_id == q.worker_identity("cli") and job.spec == {"x": 1}
    assert q.claim_next("worker@test:1", ()) is None  # nothing queued; and cpu is taken
    queued = q.submit_job("clock_check", {})
    assert q.claim_next("worker@test:1", ()) is None  # the worker waits for the CLI job's device
    with pytest.raises(EngineError, match=f"device 'cpu' is busy with job {a}"):
        q.start_inline_job("model_bench", {})
    assert q.start_inline_job("model_bench", {}, device="cuda:0") > a
    q.finish_job(a, "succeeded", None)
    assert q.claim_next("worker@test:1", ()).id == queued


def test_log_tail(tmp_path: Path) -> None:
    assert q.log_tail_path(tmp_path / "missing.log") == ""
    assert q.log_tail_path(None) == ""
    p = tmp_path / "x.log"
    p.write_bytes(b"a\nb\n\xff\xfe bad bytes\nlast\n")
    assert q.log_tail_path(p, 2).splitlines() == ["\ufffd\ufffd bad bytes", "last"]
    big = tmp_path / "big.log"
    big.write_text("".join(f"{i}\n" for i in range(200_000)))
    assert q.log_tail_path(big, 3) == "199997\n199998\n199999"
    job = Job(kind="x", log_path=str(p))
    assert q.log_tail(job, 1) == "last"


def test_identity_round_trip() -> None:
    wid = q.worker_identity("worker", pid=42)
    assert q.parse_identity(wid) == ("worker", socket.gethostname(), 42)
    assert q.parse_identity("nonsense") is None and q.parse_identity(None) is None
    assert q.pid_alive(q.os.getpid()) and not q.pid_alive(_dead_pid())


def test_jobs_cli_submit_list_show_cancel_logs(es_env: str) -> None:
    from typer.testing import CliRunner

    from engine_runner.cli import app

    r = CliRunner()
    res = r.invoke(app, ["jobs", "submit", "clock_check", "--spec", '{"duration_s": 2}', "--timeout", "30"])
    assert res.exit_code == 0, res.output
    job_id = int(res.output.strip())
    assert q.get_job(job_id).origin == "cli" and q.get_job(job_id).timeout_s == 30.0
    res = r.invoke(app, ["jobs", "submit", "clock_check", "--spec", "{not json"])
    assert res.exit_code != 0 and "--spec is not valid JSON" in str(res.exception or res.output)
    res = r.invoke(app, ["jobs", "list"])
    assert res.exit_code == 0 and f"{job_id:>5}  clock_check  cpu      queued" in res.output
    res = r.invoke(app, ["jobs", "logs", str(job_id)])
    assert res.exit_code == 0 and "has no log yet" in res.output
    claimed = q.claim_next("worker@test:1", ())
    Path(claimed.log_path).parent.mkdir(parents=True, exist_ok=True)
    Path(claimed.log_path).write_text("first\nsecond\nthird\n")
    res = r.invoke(app, ["jobs", "logs", str(job_id), "-n", "2"])
    assert res.exit_code == 0 and res.output == "second\nthird\n"
    res = r.invoke(app, ["jobs", "cancel", str(job_id)])
    assert res.exit_code == 0 and "cancel requested" in res.output
    res = r.invoke(app, ["jobs", "show", str(job_id)])
    assert res.exit_code == 0 and "cancel_requested: True" in res.output and "claimed by worker@test:1" in res.output
    res = r.invoke(app, ["jobs", "show", "999"])
    assert res.exit_code != 0 and "job 999 does not exist" in str(res.exception)
    inline = q.start_inline_job("clock_check", {"duration_s": 1}, device="cpu:inline")
    res = r.invoke(app, ["jobs", "logs", str(inline)])  # a bench/serve-bench job run in the CLI's own process
    assert res.exit_code == 0 and "ran in-process from the CLI" in res.output and f"jobs show {inline}" in res.output
