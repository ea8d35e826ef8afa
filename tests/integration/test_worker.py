"""The worker with real child processes running the real ``clock_check`` job, on a temp ENGINESCOPE_HOME.

Each test starts children (``python -m engine_runner.child``), so each takes a few seconds: most of it
is the child's interpreter start and imports.
"""

from __future__ import annotations

import datetime as dt
import re
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from db import jobs as q
from db.models import TERMINAL_STATUSES, Job, LatencySample, Run, RunMetric, Summary, utcnow
from db.session import session_scope
from engine_runner.worker import Worker, group_alive

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def wait_for(pred: Callable[[], object], timeout_s: float = 30.0, what: str = "condition") -> object:
    """Poll ``pred`` every 50 ms until truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def status(job_id: int) -> str:
    job = q.get_job(job_id)
    assert job is not None
    return job.status


def has_progress(job_id: int) -> bool:
    return any(e.kind == "progress" for e in q.job_events(job_id))


@pytest.fixture
def worker(es_env: str) -> Iterator[Worker]:
    """A worker looping in a background thread of the test process (its children are real processes)."""
    w = Worker(es_env, poll_interval_s=0.1, heartbeat_timeout_s=30.0, grace_s=2.0)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    yield w
    w.stop()
    t.join(20)
    assert not t.is_alive(), "worker thread did not stop"


def test_clock_check_job_succeeds_with_events_log_and_samples(es_env: str) -> None:
    job_id = q.submit_job("clock_check", {"duration_s": 0.3, "samples": 2000})
    started = Worker(es_env, poll_interval_s=0.1).run(once=True)
    assert started == 1
    job = q.get_job(job_id)
    assert job.status == "succeeded", job.error
    assert job.progress == 1.0 and job.pid and job.worker_id.startswith("worker@")
    kinds = [e.kind for e in q.job_events(job_id)]
    assert kinds.count("progress") >= 2 and kinds[-1] == "stage"
    assert Path(job.log_path) == q.job_log_path(job_id)
    log = Path(job.log_path).read_text()
    assert f"=== job {job_id} (clock_check)" in log and "[progress] burst" in log and "job succeeded" in log
    with session_scope() as s:
        run = s.execute(select(Run).where(Run.job_id == job_id)).scalar_one()
        assert run.engine == "host-clock" and run.status == "succeeded"
        assert run.config["clock"]["monotonic"] is True
        n = s.execute(select(func.count()).select_from(LatencySample).where(LatencySample.run_id == run.id)).scalar_one()
        assert n == run.config["bursts"] * (run.config["reads_per_burst"] - 1) >= 2000
        mn = s.execute(select(func.min(LatencySample.latency_ns)).where(LatencySample.run_id == run.id)).scalar_one()
        assert mn >= 0  # a monotonic clock never steps back
        summ = s.execute(select(Summary).where(Summary.run_id == run.id)).scalar_one()
        assert summ.metric == "clock_delta_ns" and summ.unit == "ns" and summ.count == n and summ.p50 > 0
        metrics = {m.name: m.value for m in s.execute(select(RunMetric).where(RunMetric.run_id == run.id)).scalars()}
        assert 0.0 <= metrics["clock_zero_step_fraction"] < 1.0 and metrics["clock_reads_per_s"] > 0


def test_bad_spec_fails_with_field_name(es_env: str) -> None:
    job_id = q.submit_job("clock_check", {"duration_s": -1})
    Worker(es_env, poll_interval_s=0.1).run(once=True)
    job = q.get_job(job_id)
    assert job.status == "failed" and "InputError" in job.error and "duration_s" in job.error


def test_cancel_mid_run_stops_the_process_group(worker: Worker) -> None:
    job_id = q.submit_job("clock_check", {"duration_s": 60, "samples": 2000})
    wait_for(lambda: has_progress(job_id), what="first progress event")
    pid = q.get_job(job_id).pid
    assert pid and group_alive(pid)
    assert q.request_cancel(job_id)
    wait_for(lambda: status(job_id) in TERMINAL_STATUSES, 15, "the job to end")
    job = q.get_job(job_id)
    assert job.status == "cancelled", job.error
    wait_for(lambda: not group_alive(pid), 5, "the process group to disappear")
    with session_scope() as s:
        run = s.execute(select(Run).where(Run.job_id == job_id)).scalar_one()
        assert run.status == "failed"  # the interrupted run is not left "running"


def test_timeout_fails_the_job(es_env: str) -> None:
    job_id = q.submit_job("clock_check", {"duration_s": 60, "samples": 2000}, timeout_s=2.5)
    Worker(es_env, poll_interval_s=0.1, grace_s=2.0).run(once=True)
    job = q.get_job(job_id)
    assert job.status == "failed" and job.error == "timed out after 2.5 s"
    wait_for(lambda: not group_alive(job.pid), 5, "the process group to disappear")


def test_sigkilled_child_is_failed_with_log_tail(worker: Worker) -> None:
    job_id = q.submit_job("clock_check", {"duration_s": 60, "samples": 2000})
    wait_for(lambda: has_progress(job_id), what="first progress event")
    pid = q.get_job(job_id).pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: status(job_id) in TERMINAL_STATUSES, 10, "the job to end")
    job = q.get_job(job_id)
    assert job.status == "failed"
    assert f"child process {pid} was killed by SIGKILL without recording a result" in job.error
    assert "[progress] burst" in job.error  # the tail of its log
    assert len(job.error.splitlines()) <= 2 + q.ERROR_LOG_LINES


def test_restarted_worker_fails_stale_jobs_then_runs_the_queue(es_env: str) -> None:
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = utcnow() - dt.timedelta(seconds=600)
    stale_local = q.submit_job("clock_check", {})            # cpu: blocks the device until failed
    stale_remote = q.submit_job("clock_check", {}, device="cuda:0")
    queued = q.submit_job("clock_check", {"duration_s": 0.2, "samples": 500})
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == stale_local).values(
            status="running", worker_id=f"worker@{host}:{dead.pid}", pid=dead.pid, heartbeat_at=utcnow(), started_at=old))
        s.execute(update(Job).where(Job.id == stale_remote).values(
            status="running", worker_id="worker@another-host:77", heartbeat_at=old, started_at=old))
    Worker(es_env, poll_interval_s=0.1, heartbeat_timeout_s=30).run(once=True)
    j = q.get_job(stale_local)
    assert j.status == "failed" and f"worker@{host}:{dead.pid} is gone" in j.error
    j = q.get_job(stale_remote)
    assert j.status == "failed" and re.search(r"no heartbeat for 6\d\d s", j.error)
    assert status(queued) == "succeeded"


def test_jobs_on_one_device_never_overlap_other_devices_do(es_env: str) -> None:
    spec = {"duration_s": 0.3, "samples": 500}
    cpu1 = q.submit_job("clock_check", spec)
    cpu2 = q.submit_job("clock_check", spec)
    gpu = q.submit_job("clock_check", spec, device="cuda:0")
    Worker(es_env, poll_interval_s=0.1).run(once=True)
    a, b, g = (q.get_job(i) for i in (cpu1, cpu2, gpu))
    assert a.status == b.status == g.status == "succeeded"
    t = {j.id: (q.as_utc(j.started_at), q.as_utc(j.finished_at)) for j in (a, b, g)}
    assert t[cpu1][1] <= t[cpu2][0], "two cpu jobs overlapped"
    assert t[gpu][0] < t[cpu1][1], "a job on another device waited for the cpu job"


def _start_cli_worker(es_env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "engine_runner.cli", "worker", "--poll-interval", "0.1", "--grace", "2"],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_cli_worker_sigterm_stops_children_and_fails_their_jobs(es_env: str) -> None:
    job_id = q.submit_job("clock_check", {"duration_s": 60, "samples": 2000})
    w = _start_cli_worker(es_env)
    try:
        wait_for(lambda: has_progress(job_id), what="first progress event")
        pid = q.get_job(job_id).pid
        w.send_signal(signal.SIGTERM)
        out, _ = w.communicate(timeout=20)
    finally:
        if w.poll() is None:
            w.kill()
    assert w.returncode == 0, out.decode()
    job = q.get_job(job_id)
    assert job.status == "failed" and job.error.startswith("worker stopped (worker received SIGTERM)")
    wait_for(lambda: not group_alive(pid), 5, "the process group to disappear")
    assert b"stopping 1 running job(s)" in out


def test_child_stops_itself_when_the_worker_is_killed(es_env: str) -> None:
    job_id = q.submit_job("clock_check", {"duration_s": 60, "samples": 2000})
    w = _start_cli_worker(es_env)
    try:
        wait_for(lambda: has_progress(job_id), what="first progress event")
        pid = q.get_job(job_id).pid
        w.kill()  # SIGKILL: the worker cannot clean up; the orphaned child must notice
        w.wait(10)
        wait_for(lambda: not group_alive(pid), 15, "the orphaned child to stop")
    finally:
        if w.poll() is None:
            w.kill()
        w.communicate()
    job = q.get_job(job_id)
    assert job.status == "failed" and "worker that ran this job exited" in job.error


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _run_worker_with(es_env: str, python: str) -> tuple[Worker, threading.Thread]:
    w = Worker(es_env, poll_interval_s=0.1, grace_s=1.0, python=python)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    return w, t


def test_child_ignoring_sigterm_is_killed_after_the_grace_period(es_env: str, tmp_path: Path) -> None:
    """A child stuck where SIGTERM cannot reach it (here: it ignores SIGTERM) gets SIGKILL after grace_s."""
    stubborn = _script(tmp_path / "stubborn", "trap '' TERM\necho started\nwhile :; do sleep 0.1; done\n")
    job_id = q.submit_job("clock_check", {})
    w, t = _run_worker_with(es_env, stubborn)
    try:
        pid = wait_for(lambda: q.get_job(job_id).pid, what="the child to start")
        assert q.request_cancel(job_id)
        wait_for(lambda: status(job_id) in TERMINAL_STATUSES, 15, "the job to end")
    finally:
        w.stop()
        t.join(20)
    job = q.get_job(job_id)
    assert job.status == "cancelled" and job.error == "cancelled by the user; child was killed by SIGKILL"
    # killed members may linger a moment as zombies until init reaps them
    wait_for(lambda: not group_alive(pid), 5, "the process group to disappear")
    assert "started" in q.log_tail(job)


def test_processes_left_in_the_group_are_killed_when_the_child_exits(es_env: str, tmp_path: Path) -> None:
    """A grandchild that ignores SIGTERM (say, a server the job launched) does not outlive its job."""
    pidfile = tmp_path / "grandchild.pid"
    launcher = _script(tmp_path / "launcher", f"sh -c 'trap \"\" TERM; echo $$ > {pidfile}; while :; do sleep 0.1; done' &\n"
                                              f"exec {sys.executable} \"$@\"\n")
    job_id = q.submit_job("clock_check", {"duration_s": 0.2, "samples": 200})
    Worker(es_env, poll_interval_s=0.1, python=launcher).run(once=True)
    assert status(job_id) == "succeeded"
    grandchild = int(pidfile.read_text())
    wait_for(lambda: not q.pid_alive(grandchild), 5, "the grandchild to be killed")
