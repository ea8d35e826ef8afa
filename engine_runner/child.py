"""``python -m engine_runner.child JOB_ID``: run one claimed job in this (child) process.

The worker starts this module with ``start_new_session=True`` (its own session and process group, so a
crash, a GPU-memory leak or a stuck engine never takes the worker down, and the whole group can be
signalled), with stdout and stderr appended to the job's log file. This module:

- sets up logging to the job's log file (stderr, when the worker already points it there);
- builds a :class:`~engine_runner.jobctx.JobContext` and calls :func:`engine_runner.jobs.execute`,
  which records running -> succeeded | failed | cancelled on the ``jobs`` row;
- turns SIGTERM into :class:`~profiles.errors.JobCancelled` (the worker sends SIGTERM to the process
  group on cancel, timeout and worker stop; the worker then records the final reason);
- watches its parent: if the worker dies, the child stops its job (status failed, "worker gone")
  instead of running on unsupervised.

Exit status: 0 when the job succeeded, 1 failed, 3 cancelled, 2 bad arguments / unknown job.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from profiles.errors import JobCancelled

log = logging.getLogger("enginescope.child")

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}

#: Why this child was asked to stop (set before JobCancelled is raised): "sigterm" | "worker_gone".
_stop_reason: str | None = None


def _same_file(stream: object, path: str) -> bool:
    try:
        a = os.fstat(stream.fileno())  # type: ignore[attr-defined]
        b = os.stat(path)
    except (OSError, AttributeError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def setup_logging(log_path: str | None) -> None:
    """Send log records to the job's log file: through stderr when the worker opened stderr on that
    file, else by appending to ``log_path`` directly (a child started by hand)."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    if log_path and not _same_file(sys.stderr, log_path):
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        fh: logging.Handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    root.addHandler(sh)


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    global _stop_reason
    # Raise once; a second SIGTERM while the job records its end must not interrupt that write.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _stop_reason is None:
        _stop_reason = "sigterm"
    raise JobCancelled(f"stopped by {signal.Signals(signum).name} "
                       + ("(the worker is gone)" if _stop_reason == "worker_gone" else "(cancel, timeout or worker stop)"))


def _watch_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    """Daemon thread: when the worker (our parent) dies we are re-parented; stop the job then."""
    global _stop_reason
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent_pid:
            _stop_reason = "worker_gone"
            log.error("the worker (pid %d) is gone; stopping the job", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main(argv: list[str] | None = None) -> int:
    """Run job ``argv[0]`` to its end; return the exit status (see module doc)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m engine_runner.child JOB_ID", file=sys.stderr)
        return 2
    job_id = int(args[0])

    from db.jobs import finish_job, get_job
    from engine_runner.jobctx import JobContext
    from engine_runner.jobs import execute

    job = get_job(job_id)
    if job is None:
        print(f"engine_runner.child: job {job_id} does not exist in {os.environ.get('ENGINESCOPE_DB_URL', 'the default database')}",
              file=sys.stderr)
        return 2
    setup_logging(job.log_path)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if os.getppid() > 1:
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="parent-watch").start()
    log.info("child pid %d (pgid %d) runs job %d (%s) on %s", os.getpid(), os.getpgid(0), job_id, job.kind, job.device)
    ctx = JobContext(job_id=job_id, kind=job.kind, spec=dict(job.spec or {}), db_url=os.environ.get("ENGINESCOPE_DB_URL"),
                     log=logging.getLogger(f"enginescope.job.{job.kind}"))
    try:
        status = execute(ctx)
    except SQLAlchemyError as exc:
        # the database refused the job's writes, the one recording its end included (locked past the busy
        # timeout, disk full, unreachable): say so in the log; the worker fails the job with this log's tail
        log.error("job %d: the database %s refused a write, so the job's end could not be recorded: %s: %s",
                  job_id, os.environ.get("ENGINESCOPE_DB_URL", "(default)"), type(exc).__name__,
                  str(exc).splitlines()[0])
        return EXIT_CODES["failed"]
    except JobCancelled as exc:
        # SIGTERM arrived while execute() itself was writing; record it if nothing terminal was.
        finish_job(job_id, "cancelled", str(exc), from_statuses=("running",))
        status = "cancelled"
    if _stop_reason == "worker_gone":
        finish_job(job_id, "failed", "the worker that ran this job exited; the job was stopped",
                   from_statuses=("running", "cancelled"))
        status = "failed"
    log.info("job %d ended %s", job_id, status)
    return EXIT_CODES.get(status, 1)


if __name__ == "__main__":
    sys.exit(main())
