"""SIGINT / SIGTERM of a CLI command that runs a job in-process (``enginescope bench``, ``serve-bench``).

Without this, SIGTERM ends Python at once: no ``finally`` runs, the job row stays ``running`` until a
worker notices the dead CLI pid, and a server the job launched is orphaned. SIGINT raised
``KeyboardInterrupt`` with a traceback. :func:`cancel_on_signals` turns the first SIGINT or SIGTERM into
:class:`~profiles.errors.JobCancelled` ("stopped by SIGTERM (the enginescope CLI process was
interrupted)"), which the job code handles as a cancel: the run in flight is failed with that reason,
launched servers are stopped in their ``finally`` blocks, and ``engine_runner.jobs.execute`` records the
job ``cancelled``. A second signal while the job records its end is ignored. The previous handlers come
back when the block ends; :attr:`Interrupts.signum` tells the caller which signal arrived, so it can exit
with ``128 + signum`` as a shell expects.

An exception raised by a signal handler is lost when the signal lands while Python runs a finaliser or a
weakref callback ("Exception ignored in ..."; seen in CI; that report is silenced inside the block). So the
handler also records the reason
(:func:`pending`), and :meth:`engine_runner.jobctx.JobContext.check_cancelled`, which every job polls between
iterations and requests, raises it there: the cancel is never lost, only delayed to the next check.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from profiles.errors import JobCancelled

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_pending: str | None = None


def pending() -> str | None:
    """The reason of a signal that arrived inside :func:`cancel_on_signals` and has not ended the block yet
    (``"stopped by SIGTERM (...)"``), else None."""
    return _pending


@dataclass
class Interrupts:
    """What :func:`cancel_on_signals` saw: ``signum`` of the first signal, or None."""

    signum: int | None = None

    @property
    def exit_code(self) -> int | None:
        """``128 + signum`` (130 for SIGINT, 143 for SIGTERM), or None when no signal arrived."""
        return None if self.signum is None else 128 + self.signum


@contextmanager
def cancel_on_signals() -> Iterator[Interrupts]:
    """Within the block, the first SIGINT/SIGTERM raises ``JobCancelled`` in the main thread (see module doc).

    Off the main thread (where handlers cannot be installed) the block runs with the handlers as they are.
    """
    seen = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        global _pending
        if seen.signum is not None:
            return  # the job is already stopping: let it record its end
        seen.signum = signum
        _pending = f"stopped by {signal.Signals(signum).name} (the enginescope CLI process was interrupted)"
        raise JobCancelled(_pending)

    def unraisable(info: Any) -> None:
        if isinstance(info.exc_value, JobCancelled) and _pending is not None:
            return  # the handler's exception was lost in a finaliser; check_cancelled raises it again
        previous_hook(info)

    global _pending
    _pending = None
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable
    previous: dict[int, Any] = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield seen
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sys.unraisablehook = previous_hook
        _pending = None


def execute_interruptible(ctx: Any) -> tuple[str, Interrupts]:
    """``engine_runner.jobs.execute(ctx)`` under :func:`cancel_on_signals`; returns (final status, what arrived).

    A signal that lands outside the job function (while ``execute`` records the end) still ends the job
    ``cancelled`` with the signal's reason, unless its end was already committed.
    """
    from db.jobs import finish_job
    from engine_runner.jobs import execute

    with cancel_on_signals() as seen:
        try:
            status = execute(ctx)
        except JobCancelled as exc:
            finish_job(ctx.job_id, "cancelled", str(exc), from_statuses=("running",), url=ctx.db_url)
            status = "cancelled"
    if seen.signum is not None and status != "cancelled":
        from db.jobs import get_job

        job = get_job(ctx.job_id, url=ctx.db_url)
        status = job.status if job else status
    return status, seen
