"""The job queue: small query functions shared by the dashboard, the CLI and the worker.

Life of a job (``jobs.status``)::

    queued --claim_next--> running --(child records it)--> succeeded | failed | cancelled
    queued --request_cancel--> cancelled
    running --request_cancel--> running + cancel_requested (the worker stops the child)
    running --fail_stale--> failed (its worker or CLI process is gone, or its heartbeat stopped)

Rules kept here:
- A job is claimed with ONE atomic ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) AND status='queued'``
  statement (see :func:`claim_next`); SQLite serialises writers, PostgreSQL adds ``FOR UPDATE SKIP
  LOCKED`` to the subquery and a transaction-scoped advisory lock so that two workers never pick two
  jobs of one device in the same instant.
- One device (``jobs.device``: ``"cpu"``, ``"cuda:0"`` ...) runs at most one job at a time, across all
  workers and in-process CLI jobs: a device with a ``running`` job is busy.
- Every function opens its own short transaction; none is held across an engine run.

Worker ids have the form ``"worker@<host>:<pid>"`` (a worker) or ``"cli@<host>:<pid>"`` (a CLI
process that runs the job in-process, see :func:`start_inline_job`); :func:`fail_stale` uses them to
tell whether the owner of a running job on this host still exists.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from typing import cast as type_cast

from sqlalchemy import JSON, CursorResult, Engine, String, cast, exists, insert, literal, select, text, update
from sqlalchemy.orm import aliased

from db.config import db_url, home
from db.models import TERMINAL_STATUSES, Job, JobEvent, Run, utcnow
from db.session import get_engine, session_scope
from profiles.errors import EngineError, InputError

#: Lines of the job log copied into ``jobs.error`` when a child dies without recording a result.
ERROR_LOG_LINES = 40

#: Key of the PostgreSQL advisory lock that serialises claims (any constant bigint; "ESCLAIM" in ASCII).
_PG_CLAIM_LOCK_KEY = 0x4553434C41494D

ACTIVE_STATUSES = ("queued", "running")


# ----------------------------------------------------------------------------------------------
# identities


def worker_identity(role: str = "worker", pid: int | None = None) -> str:
    """``"<role>@<host>:<pid>"`` for ``jobs.worker_id`` (role ``worker`` or ``cli``)."""
    return f"{role}@{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def parse_identity(worker_id: str | None) -> tuple[str, str, int] | None:
    """``(role, host, pid)`` of a worker id made by :func:`worker_identity`, or None if it is not one."""
    if not worker_id or "@" not in worker_id:
        return None
    role, rest = worker_id.split("@", 1)
    host, _, pid = rest.rpartition(":")
    if not host or not pid.isdigit():
        return None
    return role, host, int(pid)


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists on this host (signal 0 probe; a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def as_utc(t: dt.datetime | None) -> dt.datetime | None:
    """``t`` as an aware UTC datetime (SQLite returns naive datetimes; they are stored in UTC)."""
    if t is None:
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


# ----------------------------------------------------------------------------------------------
# submit / cancel


def _validate(kind: str, spec: Any, device: str, timeout_s: float | None, origin: str) -> None:
    if not isinstance(kind, str) or not kind.strip() or len(kind) > 64:
        raise InputError(f"job field 'kind' must be a non-empty string of at most 64 characters, got {kind!r}")
    if not isinstance(spec, dict):
        raise InputError(f"job field 'spec' must be a JSON object (dict), got {type(spec).__name__}")
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"job field 'spec' is not JSON-serialisable: {exc}") from None
    if not isinstance(device, str) or not device.strip() or len(device) > 64:
        raise InputError(f"job field 'device' must be a non-empty string such as 'cpu' or 'cuda:0', got {device!r}")
    if timeout_s is not None and (not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s) or timeout_s <= 0):
        raise InputError(f"job field 'timeout_s' must be a positive number of seconds or None, got {timeout_s!r}")
    if origin not in ("dashboard", "cli"):
        raise InputError(f"job field 'origin' must be 'dashboard' or 'cli', got {origin!r}")


def cli_user() -> str:
    """Who runs this CLI process: ``"cli:<OS user>"`` (``getpass.getuser``; ``"cli:unknown"`` without one)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def submit_job(
    kind: str,
    spec: dict[str, Any],
    *,
    device: str = "cpu",
    model_id: int | None = None,
    timeout_s: float | None = None,
    origin: str = "dashboard",
    created_by: str | None = None,
    url: str | None = None,
) -> int:
    """Insert a ``queued`` job and return its id.

    Args:
        kind: job kind (a key of ``engine_runner.jobs.REGISTRY``; an unknown kind fails when it runs).
        spec: the job's validated spec as a JSON-serialisable dict.
        device: the device the job occupies (``"cpu"``, ``"cuda:0"``...): one job per device at a time.
        model_id: ``models.id`` the job is about, if any.
        timeout_s: wall-clock limit of the run in seconds (None = no limit); past it the worker stops
            the job and fails it with "timed out after N s".
        origin: ``"dashboard"`` or ``"cli"``.
        created_by: who started it (``db.access.Identity.name``; default :func:`cli_user` for the CLI, None
            otherwise).
        url: database URL (None = ``ENGINESCOPE_DB_URL`` / default SQLite).

    Raises:
        InputError: a field is invalid (the message names it).
    """
    _validate(kind, spec, device, timeout_s, origin)
    if created_by is None and origin == "cli":
        created_by = cli_user()
    with session_scope(url) as s:
        job = Job(kind=kind, spec=spec, device=device, model_id=model_id, timeout_s=timeout_s,
                  origin=origin, created_by=created_by, status="queued", progress=0.0, cancel_requested=False, created_at=utcnow())
        s.add(job)
        s.flush()
        s.add(JobEvent(job_id=job.id, kind="stage", message=f"queued ({kind} on {device})", data={}))
        return int(job.id)


def request_cancel(job_id: int, *, url: str | None = None) -> bool:
    """Ask to cancel a job. A ``queued`` job becomes ``cancelled`` at once; a ``running`` one gets
    ``cancel_requested`` (its worker then stops the child: SIGTERM to its process group, a grace
    period, SIGKILL). Returns False when the job does not exist or has already ended."""
    now = utcnow()
    with session_scope(url) as s:
        res = _rows(s.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
            status="cancelled", cancel_requested=True, finished_at=now, error="cancelled before it started")))
        if res.rowcount:
            s.add(JobEvent(job_id=job_id, kind="stage", message="job cancelled before it started", data={}))
            return True
        res = _rows(s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(cancel_requested=True)))
        if res.rowcount:
            s.add(JobEvent(job_id=job_id, kind="info", message="cancel requested", data={}))
            return True
    return False


# ----------------------------------------------------------------------------------------------
# claiming


def _rows(result: Any) -> CursorResult[Any]:
    """The result of a DML statement, typed as the ``CursorResult`` it is (for ``rowcount``)."""
    return type_cast(CursorResult[Any], result)


def _is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def job_log_path(job_id: int) -> Path:
    """Where the worker writes the log of job ``job_id``: ``home()/logs/job-<id>.log``."""
    return home() / "logs" / f"job-{job_id}.log"


def claim_next(worker_id: str, busy_devices: Iterable[str] = (), *, exclusive_devices: bool = True,
               only_devices: Iterable[str] | None = None, url: str | None = None) -> Job | None:
    """Atomically claim the oldest queued job whose device is free; None when there is none.

    ``exclusive_devices=False`` (the Ray dispatcher) claims the oldest queued job whatever its device:
    there Ray's ``num_gpus`` places jobs on GPUs, and ``jobs.device`` names a device of the node the job
    lands on (``cuda:0`` = the first GPU Ray gave it), not one shared machine's device.

    ``only_devices`` (``enginescope worker --device D``, repeatable) restricts the claim to jobs on those
    devices: a worker that owns ``cuda:1`` never takes a ``cuda:0`` job. None = any device.

    A device is busy when it is in ``busy_devices`` (the caller's own running jobs) or when any job on
    it is ``running`` in the database (other workers, in-process CLI jobs, or a stale job that
    :func:`fail_stale` has not failed yet). The claim is one statement::

        UPDATE jobs SET status='running', worker_id=:w, started_at=now, heartbeat_at=now,
               log_path=<home>/logs/job-<id>.log
        WHERE id = (SELECT id FROM jobs WHERE status='queued' AND device NOT IN (:busy)
                    AND device NOT IN (SELECT device FROM jobs WHERE status='running')
                    ORDER BY id LIMIT 1 [FOR UPDATE SKIP LOCKED])
          AND status='queued'
        RETURNING *

    and the claim counts only when it returned a row. On PostgreSQL the transaction first takes
    ``pg_advisory_xact_lock`` so that two workers cannot each see the other's device as free.

    Returns:
        The claimed ``Job`` (detached, attributes loaded) or None.
    """
    busy = sorted({d for d in busy_devices})
    engine = get_engine(url or db_url())
    running = aliased(Job)
    sub = (
        select(Job.id)
        .where(Job.status == "queued")
        .order_by(Job.id)
        .limit(1)
    )
    if only_devices is not None:
        sub = sub.where(Job.device.in_(sorted(set(only_devices))))
    if exclusive_devices:
        sub = sub.where(Job.device.not_in(busy) if busy else literal(True)).where(
            Job.device.not_in(select(running.device).where(running.status == "running").scalar_subquery()))
    if _is_postgres(engine):
        sub = sub.with_for_update(skip_locked=True)
    now = utcnow()
    log_prefix = str(home() / "logs" / "job-")
    stmt = (
        update(Job)
        .where(Job.id == sub.scalar_subquery(), Job.status == "queued")
        .values(status="running", worker_id=worker_id, started_at=now, heartbeat_at=now, pid=None,
                log_path=literal(log_prefix) + cast(Job.id, String) + literal(".log"))
        .returning(Job.id)
    )
    with session_scope(url) as s:
        if _is_postgres(engine):
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CLAIM_LOCK_KEY})
        row = s.execute(stmt).first()
        if row is None:
            return None
        job_id = int(row[0])
        s.add(JobEvent(job_id=job_id, kind="stage", message=f"claimed by {worker_id}", data={"worker_id": worker_id}))
    return get_job(job_id, url=url)


def start_inline_job(
    kind: str,
    spec: dict[str, Any],
    *,
    device: str = "cpu",
    model_id: int | None = None,
    origin: str = "cli",
    created_by: str | None = None,
    url: str | None = None,
) -> int:
    """Insert a job that this process runs itself (the CLI), already ``running``, only if ``device`` is free.

    The job never passes through ``queued``, so no worker can claim it; it is owned by
    ``"cli@<host>:<pid>"`` and its ``pid`` is this process, so :func:`fail_stale` fails it if this
    process dies without recording a result. One ``INSERT ... SELECT ... WHERE NOT EXISTS (a running job
    on the device)`` statement (plus the PostgreSQL claim lock) keeps device exclusivity atomic.

    Raises:
        InputError: a field is invalid.
        EngineError: ``device`` is busy (the message names the job that holds it).
    """
    _validate(kind, spec, device, None, origin)
    engine = get_engine(url or db_url())
    now = utcnow()
    wid = worker_identity("cli")
    running = aliased(Job)
    cols = {
        "kind": literal(kind), "spec": literal(spec, type_=JSON), "status": literal("running"),
        "progress": literal(0.0), "device": literal(device), "model_id": literal(model_id, type_=Job.model_id.type),
        "created_at": literal(now, type_=Job.created_at.type), "started_at": literal(now, type_=Job.started_at.type),
        "heartbeat_at": literal(now, type_=Job.heartbeat_at.type), "cancel_requested": literal(False),
        "pid": literal(os.getpid()), "worker_id": literal(wid), "origin": literal(origin),
        "created_by": literal(created_by or cli_user(), type_=Job.created_by.type),
    }
    sel = select(*[c.label(k) for k, c in cols.items()]).where(
        ~exists(select(running.id).where(running.device == device, running.status == "running")))
    stmt = insert(Job).from_select(list(cols), sel).returning(Job.id)
    with session_scope(url) as s:
        if _is_postgres(engine):
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CLAIM_LOCK_KEY})
        row = s.execute(stmt).first()
        if row is None:
            holder = s.execute(select(Job.id, Job.kind, Job.worker_id).where(
                Job.device == device, Job.status == "running").limit(1)).first()
            who = f"job {holder.id} ({holder.kind}, {holder.worker_id})" if holder else "another job"
            raise EngineError(f"device {device!r} is busy with {who}; wait for it or cancel it (enginescope jobs cancel ID)")
        job_id = int(row[0])
        s.add(JobEvent(job_id=job_id, kind="stage", message=f"running in-process ({wid})", data={"worker_id": wid}))
    return job_id


def set_child(job_id: int, pid: int, log_path: str | os.PathLike[str] | None = None, *, url: str | None = None) -> None:
    """Record the child process of a running job (its pid, and its log path when given)."""
    values: dict[str, Any] = {"pid": pid}
    if log_path is not None:
        values["log_path"] = str(log_path)
    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def set_placement(job_id: int, worker_id: str, message: str, data: dict[str, Any], *, url: str | None = None) -> None:
    """Record where a running job landed (the Ray runner: ``worker_id = "ray:<node_id>@<ip>"``) with an
    ``info`` event carrying ``data`` (node id, IP, GPU ids, accelerator types)."""
    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
            worker_id=worker_id[:128], heartbeat_at=utcnow()))
        s.add(JobEvent(job_id=job_id, kind="info", message=message, data=data))


def add_event(job_id: int, kind: str, message: str, data: dict[str, Any] | None = None, *, url: str | None = None) -> None:
    """Append one event to a job's stream (``kind``: progress | stage | warning | error | info)."""
    with session_scope(url) as s:
        s.add(JobEvent(job_id=job_id, kind=kind, message=message, data=data or {}))


def fail_or_amend(job_id: int, reason: str, *, url: str | None = None) -> bool:
    """Fail a job with ``reason``; when it has already failed (e.g. its child noticed first that its
    parent died), put ``reason`` in front of the recorded error so the cause is read first. A job that
    succeeded or was cancelled is left alone. Returns True when the row changed."""
    if finish_job(job_id, "failed", reason, from_statuses=ACTIVE_STATUSES, url=url):
        return True
    with session_scope(url) as s:
        job = s.get(Job, job_id)
        if job is None or job.status != "failed" or (job.error or "").startswith(reason):
            return False
        job.error = reason + ("\n" + job.error if job.error else "")
        s.add(JobEvent(job_id=job_id, kind="error", message=reason, data={}))
    return True


def heartbeat(job_ids: Sequence[int], *, url: str | None = None) -> set[int]:
    """Set ``heartbeat_at`` of the given running jobs to now; return the ids whose cancel was requested."""
    if not job_ids:
        return set()
    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id.in_(job_ids), Job.status == "running").values(heartbeat_at=utcnow()))
        rows = s.execute(select(Job.id).where(Job.id.in_(job_ids), Job.cancel_requested.is_(True))).scalars().all()
    return {int(r) for r in rows}


def finish_job(
    job_id: int,
    status: str,
    error: str | None,
    *,
    from_statuses: Sequence[str] = ACTIVE_STATUSES,
    url: str | None = None,
) -> bool:
    """Set a job's final ``status`` and ``error`` if its current status is in ``from_statuses``.

    Runs of the job still ``running`` are failed with the same reason. Returns True when the job row
    changed. Used by the worker when a child ended without recording a result, timed out or was
    stopped; the child itself records its outcome through ``engine_runner.jobs.execute``.

    Raises:
        InputError: ``status`` is not a terminal status.
    """
    if status not in TERMINAL_STATUSES:
        raise InputError(f"final job status must be a terminal status {TERMINAL_STATUSES}, got {status!r}")
    now = utcnow()
    with session_scope(url) as s:
        res = _rows(s.execute(update(Job).where(Job.id == job_id, Job.status.in_(list(from_statuses))).values(
            status=status, error=error, finished_at=now, heartbeat_at=now)))
        if not res.rowcount:
            return False
        s.execute(update(Run).where(Run.job_id == job_id, Run.status == "running").values(
            status="failed", error=error or f"job ended {status} before the run finished", finished_at=now))
        first = (error or "").splitlines()[0] if error else ""
        s.add(JobEvent(job_id=job_id, kind="error" if status == "failed" else "stage",
                       message=f"job {status}" + (f": {first}" if first else ""), data={}))
    return True


def fail_stale(heartbeat_timeout_s: float, *, url: str | None = None) -> list[int]:
    """Fail ``running`` jobs whose owner is gone; return their ids.

    A running job is stale when either
    - it was claimed by a worker and its ``heartbeat_at`` (else ``started_at``) is older than
      ``heartbeat_timeout_s`` seconds (a live worker heartbeats every poll interval), or
    - its owner runs on this host (``worker@host:pid`` or ``cli@host:pid``) and that pid is gone.
    In-process CLI jobs on other hosts are never failed by age (nothing heartbeats them between
    events). The error names the reason and ends with the tail of the job's log, if any.

    Raises:
        InputError: ``heartbeat_timeout_s`` is not positive.
    """
    if not heartbeat_timeout_s > 0:
        raise InputError(f"--heartbeat-timeout must be a positive number of seconds, got {heartbeat_timeout_s!r}")
    now = utcnow()
    host = socket.gethostname()
    with session_scope(url) as s:
        rows = s.execute(select(Job.id, Job.worker_id, Job.pid, Job.heartbeat_at, Job.started_at, Job.created_at,
                                Job.log_path).where(Job.status == "running")).all()
    reasons: dict[int, tuple[str, str | None]] = {}
    for r in rows:
        ident = parse_identity(r.worker_id)
        if ident and ident[1] == host and not pid_alive(ident[2]):
            owner = "worker" if ident[0] == "worker" else f"{ident[0]} process"
            reasons[r.id] = (f"{owner} {r.worker_id} is gone (pid {ident[2]} no longer exists) while the job ran", r.log_path)
            continue
        if ident and ident[0] != "worker":
            continue
        last = as_utc(r.heartbeat_at or r.started_at or r.created_at)
        age_s = (now - last).total_seconds() if last else math.inf
        if age_s > heartbeat_timeout_s:
            reasons[r.id] = (f"no heartbeat for {age_s:.0f} s (limit {heartbeat_timeout_s:g} s) from worker "
                             f"{r.worker_id or '?'}; the worker stopped or lost the database", r.log_path)
    failed = []
    for job_id, (reason, log_path) in reasons.items():
        tail = log_tail_path(log_path, ERROR_LOG_LINES) if log_path else ""
        error = f"stale job: {reason}" + (f"\n--- last {ERROR_LOG_LINES} lines of {log_path} ---\n{tail}" if tail else "")
        if finish_job(job_id, "failed", error, from_statuses=("running",), url=url):
            failed.append(job_id)
    return failed


# ----------------------------------------------------------------------------------------------
# reading


def list_jobs(limit: int = 100, *, url: str | None = None) -> list[Job]:
    """The newest ``limit`` jobs, newest first (detached ``Job`` rows)."""
    with session_scope(url) as s:
        return list(s.execute(select(Job).order_by(Job.id.desc()).limit(limit)).scalars().all())


def get_job(job_id: int, *, url: str | None = None) -> Job | None:
    """The job ``job_id`` (detached) or None."""
    with session_scope(url) as s:
        return s.get(Job, job_id)


def job_events(job_id: int, *, since_id: int = 0, url: str | None = None) -> list[JobEvent]:
    """Events of job ``job_id`` with ``id > since_id``, oldest first (poll with the last id seen)."""
    with session_scope(url) as s:
        return list(s.execute(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > since_id)
                              .order_by(JobEvent.id)).scalars().all())


def log_tail_path(path: str | os.PathLike[str] | None, lines: int = 80, *, max_bytes: int = 1 << 20) -> str:
    """The last ``lines`` lines of the text file at ``path`` (reads at most its last ``max_bytes``).

    Tolerant: a missing path or unreadable file gives ``""``; undecodable bytes are replaced.
    """
    if not path or lines <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text_ = data.decode("utf-8", errors="replace")
    tail = deque(text_.splitlines(), maxlen=lines)
    return "\n".join(tail)


def log_tail(job: Job, lines: int = 80) -> str:
    """The last ``lines`` lines of ``job``'s log file (``jobs.log_path``); ``""`` when there is none yet."""
    return log_tail_path(job.log_path, lines)
