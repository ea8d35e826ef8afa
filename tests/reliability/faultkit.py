"""Helpers of the fault tests (tests/reliability/test_faults.py): polling, the checks every fault ends
with (orphans, partial results, database consistency), a worker subprocess, a tiny ONNX model, tmpfs.

Nothing here asserts a duration: every wait polls for a state with a generous deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select

REPO = Path(__file__).resolve().parents[2]
SUITE_DIR = REPO / "tests"


def wait_for(pred: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition", every_s: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy (returned); fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def cli_env(home: Path, url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of an ``enginescope`` subprocess on ``home`` (this checkout's code first on PYTHONPATH)."""
    env = {**os.environ, "ENGINESCOPE_HOME": str(home), "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if url:
        env["ENGINESCOPE_DB_URL"] = url
    else:
        env.pop("ENGINESCOPE_DB_URL", None)
    env.update(extra)
    return env


def enginescope(*args: str, env: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
    """Start ``python -m engine_runner.cli ARGS`` (text pipes); the caller waits for it."""
    return subprocess.Popen([sys.executable, "-m", "engine_runner.cli", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def start_worker(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    """``enginescope worker`` as a real process (its log on stderr, read at the end)."""
    return enginescope("worker", "--poll-interval", "0.1", "--grace", "3", *extra, env=env)


def stop_process(p: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> tuple[str, str]:
    """Signal ``p``, wait for it (SIGKILL after ``timeout_s``), return its (stdout, stderr)."""
    if p.poll() is None:
        p.send_signal(sig)
    try:
        return p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()


# ---------------------------------------------------------------------------------------------------
# the checks every fault test ends with


#: Children of the test process that existed before the current test began (pytest's own helpers, e.g.
#: multiprocessing's resource tracker started by an earlier test): not the fault's leftovers.
PREEXISTING: set[int] = set()


def note_preexisting_children() -> None:
    """Record the children alive now (called by tests/reliability/conftest.py before each test)."""
    PREEXISTING.clear()
    with contextlib.suppress(psutil.Error):
        PREEXISTING.update(p.pid for p in psutil.Process().children(recursive=True))


def assert_no_orphans(pgids: list[int] = (), timeout_s: float = 30.0) -> None:  # type: ignore[assignment]
    """No live child of this test process is left that the test started (see :data:`PREEXISTING`), and no
    process is left in any of ``pgids`` (a job's process group: the child and whatever it launched). Zombies
    that init has not reaped yet count as gone."""
    me = psutil.Process()

    def leftovers() -> list[str]:
        out = []
        for p in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if p.pid not in PREEXISTING and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"child {p.pid} {p.cmdline()[:4]}")
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):  # a process may end while we look
                if pgids and os.getpgid(p.pid) in pgids and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"group member {p.pid} {p.cmdline()[:4]}")
        return out

    deadline = time.monotonic() + timeout_s
    left = leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftovers()
    assert not left, f"processes outlived the fault: {left}"


def assert_consistent(url: str) -> None:
    """``PRAGMA integrity_check`` = ok and ``PRAGMA foreign_key_check`` empty (SQLite), and the job/run
    invariants every fault must keep (on any database):

    - no run is ``running`` under a job that has ended (partial results never look in progress or complete);
    - a ``succeeded`` job has no failed run other than a batch sweep's recorded limit;
    - every job that did not succeed says why (``jobs.error``).
    """
    from db.models import TERMINAL_STATUSES, Job, Run
    from db.session import session_scope, sqlite_path
    from engine_runner.jobs import sweep_limit

    path = sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            conn.close()
    with session_scope(url) as s:
        jobs = {j.id: j for j in s.execute(select(Job)).scalars()}
        runs = list(s.execute(select(Run)).scalars())
    for r in runs:
        j = jobs.get(r.job_id) if r.job_id is not None else None
        if j is None:
            continue
        if j.status in TERMINAL_STATUSES:
            assert r.status != "running", f"run {r.id} still running under job {j.id} ({j.status})"
        if j.status == "succeeded":
            assert r.status == "succeeded" or sweep_limit(r.config), f"job {j.id} succeeded with run {r.id} {r.status}"
    for j in jobs.values():
        if j.status in ("failed", "cancelled"):
            assert j.error, f"job {j.id} {j.status} without a reason"


def job(url: str, job_id: int) -> Any:
    from db import jobs as q

    j = q.get_job(job_id, url=url)
    assert j is not None
    return j


def runs_of(url: str, job_id: int) -> list[Any]:
    from db.models import Run
    from db.session import session_scope

    with session_scope(url) as s:
        return list(s.execute(select(Run).where(Run.job_id == job_id).order_by(Run.id)).scalars())


def sample_count(url: str, run_id: int) -> int:
    from sqlalchemy import func

    from db.models import LatencySample
    from db.session import session_scope

    with session_scope(url) as s:
        return int(s.execute(select(func.count()).select_from(LatencySample)
                             .where(LatencySample.run_id == run_id)).scalar_one())


# ---------------------------------------------------------------------------------------------------
# inputs


def tiny_onnx(path: Path) -> Path:
    """A 4 -> 3 linear ONNX model (tests/unit/onnx_builders.py)."""
    sys.path.insert(0, str(SUITE_DIR / "unit"))
    try:
        from onnx_builders import linear_model, save_plain
    finally:
        sys.path.remove(str(SUITE_DIR / "unit"))
    return save_plain(linear_model(0), path)


def bench_spec(url: str, model_path: Path, **kw: Any) -> tuple[dict[str, Any], int]:
    """A validated ``model_bench`` spec (JSON) for ``model_path`` on the CPU, and its model id."""
    from engine_runner.commands.bench import resolve_model
    from profiles.specs import BenchSpec, validate_spec

    model_id = resolve_model(str(model_path), url)
    data = {"model_id": model_id, "engine": "onnxruntime", "device": "cpu", "precisions": ["fp32"],
            "batch_sizes": [1], "warmup_iterations": 2, "warmup_s": 0.0, "iterations": 20, "min_duration_s": 0.0,
            "profile_layers": False, **kw}
    return validate_spec(BenchSpec, data).model_dump(mode="json"), model_id


# ---------------------------------------------------------------------------------------------------
# a small filesystem


def can_mount_tmpfs(probe_dir: Path) -> str | None:
    """None when this process can mount a tmpfs (root with CAP_SYS_ADMIN), else why not."""
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    probe_dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe_dir)], capture_output=True, text=True)
    if r.returncode != 0:
        return f"mount -t tmpfs failed: {r.stderr.strip()}"
    subprocess.run(["umount", str(probe_dir)], check=True)
    return None


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (mount's syntax: 256k, 8m) at ``where`` for the block (lazy unmount after)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> Path:
    """Write zeros to ``path`` until its filesystem is full (ENOSPC); return the filler file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path
