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
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from profiles.errors import JobCancelled

SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
        if seen.signum is not None:
            return  # the job is already stopping: let it record its end
        seen.signum = signum
        raise JobCancelled(f"stopped by {signal.Signals(signum).name} (the enginescope CLI process was interrupted)")

    previous: dict[int, Any] = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield seen
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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
