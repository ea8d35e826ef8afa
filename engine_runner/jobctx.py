"""What a running job sees: its spec, a progress/event stream, cancellation, the database.

A job function has the signature ``run(ctx: JobContext) -> None``; it writes Runs and their data in
short transactions through :meth:`JobContext.session` and raises an ``EngineScopeError`` on a failed
setup. The same function runs in the worker's child process and in-process from the CLI; only the
hooks differ (the CLI prints progress, the worker child only writes it to the DB).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.config import home as data_home
from db.models import Job, JobEvent, utcnow
from db.session import session_scope
from profiles.errors import JobCancelled

#: Called with every event: (kind, message, progress or None, data).
EventHook = Callable[[str, str, "float | None", dict[str, Any]], None]

_CANCEL_POLL_NS = 500_000_000  # read the cancel flag at most every 0.5 s


@dataclass
class JobContext:
    """Context of one job execution.

    Attributes:
        job_id: primary key of the ``jobs`` row.
        kind: job kind (key of ``engine_runner.jobs.REGISTRY``).
        spec: the job's validated spec as a JSON dict.
        db_url: SQLAlchemy URL of the database the job writes to (None = default).
        home: ENGINESCOPE_HOME.
        hooks: callables receiving every progress event (CLI printer, tests).
        log: logger whose output goes to the job's log file.
    """

    job_id: int
    kind: str
    spec: dict[str, Any]
    db_url: str | None = None
    home: Path = field(default_factory=data_home)
    hooks: list[EventHook] = field(default_factory=list)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("enginescope.job"))
    _last_cancel_check_ns: int = 0

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A short transaction on the job's database (commit on success)."""
        with session_scope(self.db_url) as s:
            yield s

    def event(self, kind: str, message: str, progress: float | None = None, **data: Any) -> None:
        """Record an event (``kind``: progress | stage | info | warning | error) and notify hooks.

        ``progress`` in [0, 1] also updates ``jobs.progress``; it is clamped, never decreases the bar
        of a stage below 0.
        """
        if progress is not None:
            progress = min(1.0, max(0.0, float(progress)))
        self.log.info("[%s] %s%s", kind, message, f" ({progress:.0%})" if progress is not None else "")
        with self.session() as s:
            s.add(JobEvent(job_id=self.job_id, kind=kind, message=message, progress=progress, data=data))
            values: dict[str, Any] = {"heartbeat_at": utcnow(), "progress_message": message}
            if progress is not None:
                values["progress"] = progress
            s.execute(update(Job).where(Job.id == self.job_id).values(**values))
        for hook in self.hooks:
            hook(kind, message, progress, data)

    def progress(self, fraction: float, message: str, **data: Any) -> None:
        """Shorthand for ``event("progress", message, fraction, **data)``."""
        self.event("progress", message, fraction, **data)

    def cancelled(self) -> bool:
        """True when the user asked to cancel this job (reads the DB at most every 0.5 s), or a signal of the
        CLI process is pending (``engine_runner.interrupts.pending``)."""
        from engine_runner.interrupts import pending

        if pending() is not None:
            return True
        now = time.monotonic_ns()
        if now - self._last_cancel_check_ns < _CANCEL_POLL_NS:
            return False
        self._last_cancel_check_ns = now
        with self.session() as s:
            flag = s.execute(select(Job.cancel_requested).where(Job.id == self.job_id)).scalar_one_or_none()
        return bool(flag)

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when cancellation was requested, or when a SIGINT/SIGTERM of the CLI
        process arrived and its exception was lost (``engine_runner.interrupts.pending``)."""
        from engine_runner.interrupts import pending

        reason = pending()
        if reason is not None:
            raise JobCancelled(reason)
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} cancelled by the user")
