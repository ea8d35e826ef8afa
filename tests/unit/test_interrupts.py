"""engine_runner.interrupts: a signal whose exception is lost (raised inside a finaliser) still cancels the
job at its next check, silently; the handlers and the hook come back afterwards."""

from __future__ import annotations

import gc
import os
import signal
import sys

import pytest

from engine_runner.interrupts import cancel_on_signals, pending
from profiles.errors import JobCancelled


class _Finalised:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the signal lands while Python runs this finaliser


def test_a_lost_signal_exception_is_raised_at_the_next_check(es_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    from db.jobs import start_inline_job
    from engine_runner.jobctx import JobContext

    before_hook, before_handler = sys.unraisablehook, signal.getsignal(signal.SIGTERM)
    ctx = JobContext(job_id=start_inline_job("clock_check", {}), kind="clock_check", spec={}, db_url=es_env)
    with cancel_on_signals() as seen:
        obj = _Finalised()
        del obj  # the handler's JobCancelled is raised inside __del__: Python reports it as unraisable
        gc.collect()
        assert seen.signum == signal.SIGTERM and pending() is not None
        assert ctx.cancelled()
        with pytest.raises(JobCancelled, match="stopped by SIGTERM"):
            ctx.check_cancelled()
    assert pending() is None and seen.exit_code == 143
    assert sys.unraisablehook is before_hook and signal.getsignal(signal.SIGTERM) is before_handler
    assert "Traceback" not in capsys.readouterr().err  # the lost exception was not reported
