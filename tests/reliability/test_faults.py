"""Faults (issue 12): each one injected into real processes, then the same checks.

After every fault: the job's status and its reason, no orphan process (no live child of this test, no
process left in the job's process group), partial results not marked succeeded, and ``PRAGMA
integrity_check`` = ok plus the job/run invariants (:func:`faultkit.assert_consistent`).

Already covered elsewhere and not repeated here: SIGKILL of a clock_check child, the worker's SIGTERM,
an orphaned child stopping itself, a child ignoring SIGTERM, grandchildren left in the group
(tests/integration/test_worker.py); stale-job rules on synthetic rows (tests/unit/test_job_queue.py).
The catalog with every fault, what the user sees and the guarantee: docs/reliability.md, "Faults".
Engines: ONNX Runtime CPU on a 4 -> 3 linear model; serving faults use engine_runner/mock_server.py (a
stand-in for vLLM: the job's "endpoint" engine) and tests/reliability/fault_server.py.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultkit import (REPO, assert_consistent, assert_no_orphans, bench_spec, can_mount_tmpfs, cli_env, enginescope,
                      fill, job, runs_of, sample_count, start_worker, stop_process, tiny_onnx, tmpfs, wait_for)

pytestmark = pytest.mark.integration

SLOW_BENCH = {"min_duration_s": 600.0, "max_duration_s": 900.0, "iterations": 10_000_000}


@pytest.fixture
def home(es_env: str) -> Path:
    return Path(os.environ["ENGINESCOPE_HOME"])


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_onnx(tmp_path / "linear.onnx")


@pytest.fixture
def worker(es_env: str, home: Path) -> Iterator[subprocess.Popen[str]]:
    w = start_worker(cli_env(home, es_env))
    yield w
    stop_process(w)


def _timing(url: str, job_id: int) -> bool:
    from db import jobs as q

    return any("timing" in (e.message or "") or e.kind == "progress" and (e.progress or 0) > 0
               for e in q.job_events(job_id, url=url))


def _status(url: str, job_id: int) -> str:
    return str(job(url, job_id).status)


def _ended(url: str, job_id: int) -> bool:
    from db.models import TERMINAL_STATUSES

    return _status(url, job_id) in TERMINAL_STATUSES


# ---------------------------------------------------------------------------------------------------
# the job's child process


def test_sigkill_child_mid_benchmark(es_env: str, worker: subprocess.Popen[str], model: Path) -> None:
    from db import jobs as q

    spec, model_id = bench_spec(es_env, model, **SLOW_BENCH)
    job_id = q.submit_job("model_bench", spec, model_id=model_id)
    wait_for(lambda: runs_of(es_env, job_id) and sample_count(es_env, runs_of(es_env, job_id)[0].id) == 0
             and _timing(es_env, job_id), 120, "the timing loop")
    pid = job(es_env, job_id).pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _ended(es_env, job_id), 60, "the job to end")
    j = job(es_env, job_id)
    assert j.status == "failed" and f"child process {pid} was killed by SIGKILL" in j.error
    [run] = runs_of(es_env, job_id)
    assert run.status == "failed" and "killed by SIGKILL" in run.error  # never shown as complete
    stop_process(worker)
    assert_no_orphans([pid])
    assert_consistent(es_env)


def test_sigkill_child_mid_sweep(es_env: str, worker: subprocess.Popen[str], model: Path) -> None:
    """Batch sweep 1, 2, 4 ...: kill after two points finished; those stay, the one in flight fails."""
    from db import jobs as q

    spec, model_id = bench_spec(es_env, model, batch_sweep=True, max_batch=4096, min_duration_s=0.3,
                                max_duration_s=5.0, iterations=10)
    job_id = q.submit_job("model_bench", spec, model_id=model_id)
    wait_for(lambda: sum(r.status == "succeeded" for r in runs_of(es_env, job_id)) >= 2, 180, "two finished points")
    pid = job(es_env, job_id).pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _ended(es_env, job_id), 60, "the job to end")
    j = job(es_env, job_id)
    assert j.status == "failed" and "killed by SIGKILL" in j.error
    runs = runs_of(es_env, job_id)
    done = [r for r in runs if r.status == "succeeded"]
    assert len(done) >= 2 and all(sample_count(es_env, r.id) > 0 for r in done)  # finished points stay
    assert all(r.status in ("succeeded", "failed") for r in runs)
    assert [r.batch_size for r in done] == [2 ** i for i in range(len(done))]
    stop_process(worker)
    assert_no_orphans([pid])
    assert_consistent(es_env)


# ---------------------------------------------------------------------------------------------------
# the server under test


def _mock_server_process(*args: str) -> tuple[subprocess.Popen[str], str]:
    p = enginescope("mock-server", "--port", "0", *args, env=cli_env(Path(os.environ["ENGINESCOPE_HOME"])))
    assert p.stdout is not None
    line = p.stdout.readline()
    url = next((w for w in line.split() if w.startswith("http://")), None)
    assert url, f"mock server printed {line!r}"
    return p, url.rstrip("/")


def _llm_spec(url: str, tok: Path, **kw: object) -> dict[str, object]:
    return {"engine": "endpoint", "endpoint": url, "model": "mock-llm", "tokenizer": str(tok), "input_len": 8,
            "output_len": 8, "warmup": 0, **kw}


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.llm_fixtures import tiny_tokenizer

    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_server_killed_mid_sweep(es_env: str, worker: subprocess.Popen[str], tok: Path) -> None:
    """The mock server stands in for vLLM (engine "endpoint"): killed during level 2 of 3."""
    from db import jobs as q
    from db.models import LoadPoint
    from db.session import session_scope
    from sqlalchemy import select

    srv, url = _mock_server_process("--ttft-ms", "5", "--itl-ms", "2")
    try:
        # each level sends max(4, 200 x C) requests of 8 tokens (~20 ms each): seconds per level
        spec = _llm_spec(url, tok, concurrency=[1, 2, 4], num_prompts=4, prompts_per_concurrency=200,
                         request_timeout_s=10)
        job_id = q.submit_job("llm_serve", spec, device="cpu")

        def in_level_2() -> bool:
            return any("level 2/3" in (e.message or "") for e in q.job_events(job_id, url=es_env))

        wait_for(in_level_2, 120, "level 2 to start")
        time.sleep(0.5)  # let some of level 2's requests complete first (nothing below depends on it)
        srv.kill()
        srv.wait(30)
        wait_for(lambda: _ended(es_env, job_id), 180, "the job to end")
    finally:
        stop_process(srv)
    j = job(es_env, job_id)
    assert j.status == "failed", j.error
    [run] = runs_of(es_env, job_id)
    assert run.status == "failed" and "stopped answering during this level" in run.error, run.error
    assert "stopped answering" in j.error and "finished levels are kept" in j.error
    with session_scope(es_env) as s:
        pts = list(s.execute(select(LoadPoint).where(LoadPoint.run_id == run.id).order_by(LoadPoint.idx)).scalars())
    *finished, in_flight = pts
    assert finished, "level 1 ended before the server was killed"
    for p in finished:  # finished levels stay, complete
        assert p.status == "succeeded" and p.failed == 0 and p.completed == 200 * int(p.level or 0)
    # the level in flight when the server died is failed with the reason, never shown as complete
    assert in_flight.status == "failed" and in_flight.failed > 0
    assert "connection" in in_flight.report["failures_by_reason"]
    assert "stopped answering" in in_flight.report["server_lost"]
    assert len(pts) < 3 or in_flight.idx == 2  # the sweep stopped at the level in flight
    stop_process(worker)
    assert_no_orphans([j.pid])
    assert_consistent(es_env)


# ---------------------------------------------------------------------------------------------------
# the worker


def test_worker_sigkilled_and_restarted_never_runs_a_job_twice(es_env: str, home: Path) -> None:
    """Policy: a job whose worker died is failed, never re-queued (its partial runs are not re-run)."""
    from db import jobs as q

    first = q.submit_job("clock_check", {"duration_s": 120, "samples": 2000})
    later = q.submit_job("clock_check", {"duration_s": 0.2, "samples": 200})
    w = start_worker(cli_env(home, es_env))
    try:
        wait_for(lambda: any(e.kind == "progress" for e in q.job_events(first, url=es_env)), 60, "first progress")
        child = job(es_env, first).pid
        w.kill()
        w.wait(30)
    finally:
        stop_process(w)
    wait_for(lambda: _ended(es_env, first), 60, "the orphaned child to stop its job")
    assert job(es_env, first).status == "failed" and "worker that ran this job exited" in job(es_env, first).error
    assert_no_orphans([child])
    w2 = start_worker(cli_env(home, es_env), "--once")
    out, err = w2.communicate(timeout=120)
    assert w2.returncode == 0, err
    assert _status(es_env, later) == "succeeded"
    assert job(es_env, first).status == "failed" and len(runs_of(es_env, first)) == 1  # not run again
    assert "starting 1 job(s)" in err or "after starting 1 job(s)" in err
    assert_no_orphans([child])
    assert_consistent(es_env)


def test_worker_and_child_sigkilled_restart_fails_the_stale_job(es_env: str, home: Path) -> None:
    """The whole machine's processes die (OOM killer): nothing records an end; the next worker fails it."""
    from db import jobs as q

    first = q.submit_job("clock_check", {"duration_s": 120, "samples": 2000})
    w = start_worker(cli_env(home, es_env))
    try:
        wait_for(lambda: any(e.kind == "progress" for e in q.job_events(first, url=es_env)), 60, "first progress")
        child = job(es_env, first).pid
        os.killpg(child, signal.SIGKILL)
        w.kill()
        w.wait(30)
    finally:
        stop_process(w)
    assert _status(es_env, first) == "running"  # nobody could record anything
    w2 = start_worker(cli_env(home, es_env), "--once")
    _, err = w2.communicate(timeout=120)
    assert w2.returncode == 0, err
    j = job(es_env, first)
    assert j.status == "failed" and j.error.startswith("stale job: worker worker@") and "is gone" in j.error
    assert len(runs_of(es_env, first)) == 1 and runs_of(es_env, first)[0].status == "failed"
    assert_no_orphans([child])
    assert_consistent(es_env)


# ---------------------------------------------------------------------------------------------------
# the dashboard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dashboard(home: Path, url: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=REPO, env=cli_env(home, url), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text.strip() == "ok"
    except httpx.HTTPError:
        return False


def test_dashboard_restarted_during_a_job(es_env: str, home: Path, worker: subprocess.Popen[str]) -> None:
    """The dashboard only reads and writes job rows: killing and restarting it does not touch the job."""
    from db import jobs as q

    port = _free_port()
    dash = _dashboard(home, es_env, port)
    try:
        wait_for(lambda: _healthy(port), 120, "the dashboard to serve")
        job_id = q.submit_job("clock_check", {"duration_s": 4, "samples": 2000})
        wait_for(lambda: any(e.kind == "progress" for e in q.job_events(job_id, url=es_env)), 60, "first progress")
        dash.kill()
        dash.wait(30)
        assert _status(es_env, job_id) == "running"
        dash = _dashboard(home, es_env, port)
        wait_for(lambda: _healthy(port), 120, "the restarted dashboard")
        wait_for(lambda: _ended(es_env, job_id), 120, "the job to end")
    finally:
        stop_process(dash)
    assert _status(es_env, job_id) == "succeeded", job(es_env, job_id).error
    # what the restarted dashboard's data layer reads about it
    from dashboard import data

    rows = {r["id"]: r for r in data.list_jobs(es_env)}
    assert rows[job_id]["status"] == "succeeded"
    stop_process(worker)
    assert_no_orphans([job(es_env, job_id).pid])
    assert_consistent(es_env)


# ---------------------------------------------------------------------------------------------------
# the CLI running a job in-process


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_bench_signal_cancels_the_job(es_env: str, home: Path, model: Path, sig: int) -> None:
    from db import jobs as q

    p = enginescope("bench", str(model), "--no-layers", "--warmup", "2", "--warmup-s", "0", "--iterations",
                    "10000000", "--min-duration", "600", "--max-duration", "900", "--json", env=cli_env(home, es_env))
    try:
        job_id = wait_for(lambda: next((j.id for j in q.list_jobs(5, url=es_env) if j.kind == "model_bench"), None),
                          120, "the CLI's job")
        wait_for(lambda: _timing(es_env, job_id), 120, "the timing loop")
        out, err = stop_process(p, sig, 60)
    finally:
        stop_process(p, signal.SIGKILL)
    assert p.returncode == 128 + sig, err
    j = job(es_env, job_id)
    assert j.status == "cancelled" and f"stopped by {signal.Signals(sig).name}" in j.error, j.error
    [run] = runs_of(es_env, job_id)
    assert run.status == "failed"
    assert "Traceback" not in err
    assert_no_orphans([p.pid])
    assert_consistent(es_env)


def test_cli_serve_bench_sigterm_cancels_the_job(es_env: str, home: Path, tok: Path) -> None:
    from db import jobs as q
    from tests.llm_fixtures import mock_server

    with mock_server(ttft_ms=5, itl_ms=20, model="mock-llm") as url:
        p = enginescope("serve-bench", "--endpoint", url, "--model", "mock-llm", "--tokenizer", str(tok),
                        "--concurrency", "1", "--num-prompts", "1000", "--warmup", "0", "--input-len", "8",
                        "--output-len", "8", "--device", "cpu", env=cli_env(home, es_env))
        try:
            job_id = wait_for(lambda: next((j.id for j in q.list_jobs(5, url=es_env) if j.kind == "llm_serve"), None),
                              120, "the CLI's job")
            wait_for(lambda: any("level 1/1" in (e.message or "") for e in q.job_events(job_id, url=es_env)), 120,
                     "the level to start")
            out, err = stop_process(p, signal.SIGTERM, 60)
        finally:
            stop_process(p, signal.SIGKILL)
    assert p.returncode == 143, err
    j = job(es_env, job_id)
    assert j.status == "cancelled" and "stopped by SIGTERM" in j.error, j.error
    assert all(r.status == "failed" for r in runs_of(es_env, job_id))
    # the level in flight was cut short: never stored as a finished level (the signal's exception ends the
    # level before it is stored; when that exception is lost, the stored point is failed as stopped mid-level)
    from sqlalchemy import select

    from db.models import LoadPoint
    from db.session import session_scope

    with session_scope(es_env) as s:
        pts = s.execute(select(LoadPoint).where(LoadPoint.run_id.in_([r.id for r in runs_of(es_env, job_id)]))).scalars().all()
        assert all(p.status == "failed" and "stopped mid-level" in (p.report or {}).get("stopped", "")
                   for p in pts), [(p.status, p.report and p.report.get("stopped")) for p in pts]
    assert_no_orphans([p.pid])
    assert_consistent(es_env)


# ---------------------------------------------------------------------------------------------------
# the database


def _clock_rows(url: str, job_id: int) -> tuple[int, int]:
    """(samples stored, samples the clock_check run says it took)."""
    [run] = runs_of(url, job_id)
    return sample_count(url, run.id), run.config["bursts"] * (run.config["reads_per_burst"] - 1)


def _db_path(url: str) -> str:
    from db.session import sqlite_path

    path = sqlite_path(url)
    assert path
    return path


def test_long_reader_loses_no_rows(es_env: str, home: Path) -> None:
    from db import jobs as q

    reader = sqlite3.connect(_db_path(es_env), isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM jobs").fetchall()  # a read transaction open for the whole job
    try:
        job_id = q.submit_job("clock_check", {"duration_s": 1.0, "samples": 5000})
        w = start_worker(cli_env(home, es_env), "--once")
        _, err = w.communicate(timeout=120)
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert _status(es_env, job_id) == "succeeded", err
    stored, taken = _clock_rows(es_env, job_id)
    assert stored == taken >= 5000
    assert_no_orphans()
    assert_consistent(es_env)


def test_long_writer_within_busy_timeout_the_job_waits_and_finishes(es_env: str, home: Path) -> None:
    from db import jobs as q

    job_id = q.submit_job("clock_check", {"duration_s": 3.0, "samples": 5000})
    w = start_worker(cli_env(home, es_env))
    writer = sqlite3.connect(_db_path(es_env), isolation_level=None)
    try:
        wait_for(lambda: any(e.kind == "progress" for e in q.job_events(job_id, url=es_env)), 60, "first progress")
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock: every write of the job waits
        time.sleep(3.0)  # well inside the 30 s busy timeout
        writer.execute("COMMIT")
        wait_for(lambda: _ended(es_env, job_id), 120, "the job to end")
    finally:
        writer.close()
        stop_process(w)
    assert _status(es_env, job_id) == "succeeded", job(es_env, job_id).error
    stored, taken = _clock_rows(es_env, job_id)
    assert stored == taken  # no lost rows
    assert_no_orphans()
    assert_consistent(es_env)


def test_writer_past_busy_timeout_fails_the_job_with_the_reason(es_env: str, home: Path) -> None:
    """A write that cannot commit fails the job (named), once the database is writable again."""
    from db import jobs as q

    job_id = q.submit_job("clock_check", {"duration_s": 30.0, "samples": 2000})
    env = cli_env(home, es_env, ENGINESCOPE_SQLITE_BUSY_TIMEOUT_MS="1500")
    w = start_worker(env)
    writer = sqlite3.connect(_db_path(es_env), isolation_level=None)
    try:
        wait_for(lambda: any(e.kind == "progress" for e in q.job_events(job_id, url=es_env)), 60, "first progress")
        child = job(es_env, job_id).pid
        writer.execute("BEGIN IMMEDIATE")
        wait_for(lambda: not _alive(child), 120, "the child to give up on the locked database")
        assert _status(es_env, job_id) == "running"  # nothing could be written yet: not silently "done"
        writer.execute("COMMIT")
        wait_for(lambda: _ended(es_env, job_id), 60, "the worker to record the failure")
    finally:
        writer.close()
        stop_process(w)
    j = job(es_env, job_id)
    assert j.status == "failed" and "database is locked" in j.error, j.error
    assert "refused a write" in j.error
    assert_no_orphans([child])
    assert_consistent(es_env)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------------------------------------------
# disk full (a real small tmpfs; needs root)


@pytest.fixture
def mountable(tmp_path: Path) -> None:
    why = can_mount_tmpfs(tmp_path / "probe")
    if why:
        pytest.skip(f"disk-full faults need a small tmpfs: {why}")


def test_disk_full_while_writing_an_artifact(es_env: str, home: Path, model: Path, mountable: None) -> None:
    """$ENGINESCOPE_HOME/artifacts on a 1 MiB tmpfs: a first job's runs fit; filled, the next job's fp16 ONNX
    variant (an artifact) cannot be written: its run fails naming the path, the first job stays intact."""
    from db import jobs as q

    with tmpfs(home / "artifacts", "1m"):
        spec, model_id = bench_spec(es_env, model, profile_layers=True)
        ok = q.submit_job("model_bench", spec, model_id=model_id)
        w = start_worker(cli_env(home, es_env), "--once")
        _, err = w.communicate(timeout=180)
        assert _status(es_env, ok) == "succeeded", job(es_env, ok).error
        before = [(r.id, r.status, sample_count(es_env, r.id)) for r in runs_of(es_env, ok)]
        fill(home / "artifacts" / "filler")
        spec16, _ = bench_spec(es_env, model, precisions=["fp16"])  # writes an fp16 ONNX variant (an artifact)
        bad = q.submit_job("model_bench", spec16, model_id=model_id)
        w = start_worker(cli_env(home, es_env), "--once")
        _, err = w.communicate(timeout=180)
        j = job(es_env, bad)
        assert j.status == "failed", err
        assert "No space left on device" in j.error and str(home / "artifacts") in j.error, j.error
        assert [(r.id, r.status, sample_count(es_env, r.id)) for r in runs_of(es_env, ok)] == before
        assert all(r.status == "failed" for r in runs_of(es_env, bad))
    assert_no_orphans()
    assert_consistent(es_env)


def test_disk_full_while_writing_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mountable: None) -> None:
    """The database on a small tmpfs, filled while a job writes its samples: the job fails (reason: the
    database refused the write, with its path), the earlier job's rows are intact, the file is sound."""
    from db import jobs as q
    from db.session import get_engine, migrate

    with tmpfs(tmp_path / "small", "4m") as small:
        home = small / "home"
        home.mkdir()
        url = f"sqlite:///{home / 'enginescope.db'}"
        monkeypatch.setenv("ENGINESCOPE_HOME", str(home))
        monkeypatch.setenv("ENGINESCOPE_DB_URL", url)
        get_engine.cache_clear()
        migrate(url)
        try:
            first = q.submit_job("clock_check", {"duration_s": 0.2, "samples": 500}, url=url)
            w = start_worker(cli_env(home, url), "--once")
            _, err = w.communicate(timeout=120)
            assert _status(url, first) == "succeeded", err
            before = _clock_rows(url, first)
            job_id = q.submit_job("clock_check", {"duration_s": 60.0, "samples": 200_000}, url=url)
            w = start_worker(cli_env(home, url))
            try:
                wait_for(lambda: any(e.kind == "progress" for e in q.job_events(job_id, url=url)), 60, "first progress")
                filler = fill(small / "filler")
                child = job(url, job_id).pid
                wait_for(lambda: not _alive(child), 120, "the child to fail on the full disk")
                filler.unlink()  # space again: the worker can record what happened
                wait_for(lambda: _ended(url, job_id), 60, "the worker to record the failure")
            finally:
                stop_process(w)
            j = job(url, job_id)
            assert j.status == "failed", j.error
            assert "database or disk is full" in j.error and "refused a write" in j.error, j.error
            assert _clock_rows(url, first) == before
            assert_no_orphans([child])
            assert_consistent(url)
        finally:
            get_engine.cache_clear()


# ---------------------------------------------------------------------------------------------------
# a port held by another process


def test_port_held_by_another_process(es_env: str, home: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        p = enginescope("mock-server", "--port", str(port), env=cli_env(home, es_env))
        out, err = p.communicate(timeout=60)
    assert p.returncode == 2, (out, err)
    assert str(port) in err and "in use" in err and "Traceback" not in err
    assert_no_orphans()


def test_vllm_launch_refuses_a_held_port_before_starting_anything(es_env: str) -> None:
    from engine_runner.engines import vllm_server
    from profiles.errors import InputError

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not vllm_server.port_is_free(port)
        cfg = vllm_server.VllmServerConfig(model="/nonexistent-model", port=port)
        server = vllm_server.VllmServer(cfg, Path(os.environ["ENGINESCOPE_HOME"]) / "vllm.log")
        with pytest.raises(InputError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start()
        assert server.proc is None  # nothing was launched
    assert_no_orphans()


# ---------------------------------------------------------------------------------------------------
# a misbehaving endpoint


@pytest.mark.parametrize("mode", ["forever", "stall", "close"])
def test_endpoint_misbehaves_request_fails_level_continues(es_env: str, tok: Path, mode: str) -> None:
    from db.models import LlmRequest, LoadPoint
    from db.session import session_scope
    from fault_server import fault_server
    from sqlalchemy import select
    from tests.llm_fixtures import run_llm_job

    with fault_server(mode) as (url, srv):
        spec = _llm_spec(url, tok, concurrency=[1, 2], num_prompts=4, request_timeout_s=2.0)
        job_id, status = run_llm_job(es_env, spec)
    assert srv.faulted >= 4
    [run] = runs_of(es_env, job_id)
    with session_scope(es_env) as s:
        pts = list(s.execute(select(LoadPoint).where(LoadPoint.run_id == run.id).order_by(LoadPoint.idx)).scalars())
        reqs = {p.idx: list(s.execute(select(LlmRequest).where(LlmRequest.point_id == p.id)).scalars()) for p in pts}
    assert len(pts) == 2  # the first level's bad requests did not stop the sweep
    want = {"forever": "timeout", "stall": "timeout", "close": None}[mode]
    for p in pts:
        assert (p.completed, p.failed) == (2, 2), p.report["failures_by_reason"]
        bad = [r for r in reqs[p.idx] if r.error_reason]
        assert len(bad) == 2 and all(r.error for r in bad)
        if want:
            assert {r.error_reason for r in bad} == {want}
        else:
            assert {r.error_reason for r in bad} <= {"connection", "stream_error"}
    assert status == "succeeded"  # every level has successes; failures are data, counted by reason
    assert_no_orphans()
    assert_consistent(es_env)


# ---------------------------------------------------------------------------------------------------
# a file at the database path that is not ours


def _corrupt(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _foreign(path: Path) -> None:
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    c.execute("INSERT INTO customers VALUES (1, 'kept')")
    c.commit()
    c.close()


def _truncated(path: Path) -> None:
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, x BLOB)")
    c.execute("CREATE TABLE alembic_version (version_num TEXT)")
    c.executemany("INSERT INTO jobs (x) VALUES (?)", [(os.urandom(2000),) for _ in range(50)])
    c.commit()
    c.close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + os.urandom(len(data) - 100))  # header kept, pages garbled


@pytest.mark.parametrize("make", [_corrupt, _foreign, _truncated], ids=["random-bytes", "foreign-sqlite", "garbled-pages"])
def test_file_at_the_database_path_is_refused_untouched(tmp_path: Path, make, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from db.session import get_engine
    from profiles.errors import InputError

    home = tmp_path / "home"
    home.mkdir()
    db = home / "enginescope.db"
    make(db)
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    listing = sorted(os.listdir(home))
    for args in (["migrate"], ["jobs", "list"], ["worker", "--once"]):
        p = enginescope(*args, env=cli_env(home))
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2, (args, out, err)
        assert f"database file {db}" in err and "Traceback" not in err, (args, err)
    # the dashboard's data layer
    monkeypatch.setenv("ENGINESCOPE_HOME", str(home))
    monkeypatch.setenv("ENGINESCOPE_DB_URL", f"sqlite:///{db}")
    get_engine.cache_clear()
    from dashboard import data

    with pytest.raises(InputError, match=f"database file {db}"):
        data.list_models(f"sqlite:///{db}")
    get_engine.cache_clear()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert not [n for n in os.listdir(home) if n.startswith("enginescope.db-")]  # no -wal / -shm made
    assert sorted(n for n in os.listdir(home) if n.startswith("enginescope.db")) == \
        [n for n in listing if n.startswith("enginescope.db")]
